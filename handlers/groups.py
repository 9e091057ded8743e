"""Group chats: the bot works in private chats only; commands there get one pointer.

`/login USERNAME` typed in a group would leave a user name in front of the whole group: the
bot deletes it (when the group lets it) before pointing to the private chat.
"""

from __future__ import annotations

import logging

from aiogram import Bot, Router
from aiogram.exceptions import TelegramAPIError
from aiogram.filters import CommandObject
from aiogram.types import Message

from handlers.filters import command_text, group_chat, on_command
from handlers.replies import Reply
from services.pseudonyms import pseudonym
from ui.i18n import t

log = logging.getLogger(__name__)


async def group_login(message: Message, command: CommandObject, bot: Bot) -> Reply:
    if not (command.args or "").strip():
        return message.answer(t("text.private_only"))
    key = "text.private_only_deleted"
    try:
        await bot.delete_message(chat_id=message.chat.id, message_id=message.message_id)
    except TelegramAPIError:
        log.warning(
            "could not delete a /login with a user name in group %s", pseudonym(message.chat.id)
        )
        key = "login.delete_failed"
    return message.answer(t(key))


async def group_command(message: Message) -> Reply:
    return message.answer(t("text.private_only"))


def router() -> Router:
    """Group chats: a command gets the pointer, /login deleted first; a new router each call."""
    routes = Router(name="groups")
    routes.message.filter(group_chat)
    routes.message.register(group_login, on_command("login"))
    routes.message.register(group_command, command_text)
    return routes
