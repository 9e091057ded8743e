"""Group chats: the bot works in private chats only; commands there get one pointer."""

from __future__ import annotations

from aiogram import F, Router
from aiogram.types import Message

from bot.i18n import t

router = Router(name="groups")
router.message.filter(F.chat.type != "private")


@router.message(F.text.startswith("/"))
async def group_command(message: Message, lang: str) -> None:
    await message.answer(t("text.private_only", lang))
