"""Filters as coroutines.

aiogram runs a plain (non-async) filter — a magic `F` expression, a bare `State` — in a worker
thread (`asyncio.to_thread`), which costs more than the check itself on the check-in path. These
are the same checks as `async def`, run in the event loop.
"""

from __future__ import annotations

from aiogram.filters import Command, CommandStart
from aiogram.types import CallbackQuery, Message
from magic_filter import MagicFilter

from services.text import is_code

MAX_TEXT = 1000


async def private_chat(message: Message) -> bool:
    return message.chat.type == "private"


async def group_chat(message: Message) -> bool:
    return message.chat.type != "private"


async def private_query(query: CallbackQuery) -> bool:
    return query.message is not None and query.message.chat.type == "private"


async def check_in_code(message: Message, login_prompt: object = None) -> bool:
    """A check-in code, unless the bot last asked the sender for a credential (then it may
    be a six-digit password: handlers.login.late_credential deletes it). `login_prompt` is
    read with the conversation state by bot/fsm.py."""
    return login_prompt is not True and is_code(message.text)


async def has_text(message: Message) -> bool:
    return message.text is not None


async def no_text(message: Message) -> bool:
    return message.text is None


async def too_long(message: Message) -> bool:
    return message.text is not None and len(message.text) > MAX_TEXT


async def command_text(message: Message) -> bool:
    return message.text is not None and message.text.startswith("/")


# Commands are case-insensitive everywhere: a phone that capitalises the first word turns
# `/login 12345678901` into `/Login 12345678901`, which must still be read (and deleted) as the
# command. Every handler builds its command filters here; tests/e2e/test_credentials_in_chat.py
# checks.


def on_command(*names: str, magic: MagicFilter | None = None) -> Command:
    """aiogram's `Command`, ignoring case."""
    return Command(*names, ignore_case=True, magic=magic)


def on_start(*, deep_link: bool = False, magic: MagicFilter | None = None) -> CommandStart:
    """aiogram's `CommandStart`, ignoring case."""
    return CommandStart(deep_link=deep_link, ignore_case=True, magic=magic)
