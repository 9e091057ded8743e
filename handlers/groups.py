"""Group chats: the bot works in private chats only; commands there get one pointer."""

from __future__ import annotations

from aiogram import Router
from aiogram.types import Message

from bot.i18n import t
from handlers.filters import command_text, group_chat

router = Router(name="groups")
router.message.filter(group_chat)


@router.message(command_text)
async def group_command(message: Message, lang: str) -> None:
    await message.answer(t("text.private_only", lang))
