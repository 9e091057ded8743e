"""Filters as coroutines.

aiogram runs a plain (non-async) filter — a magic `F` expression, a bare `State` — in a worker
thread (`asyncio.to_thread`), which costs more than the check itself on the check-in path. These
are the same checks as `async def`, run in the event loop.
"""

from __future__ import annotations

from aiogram.types import CallbackQuery, Message

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
