"""Renders services' notices in each user's language and sends them through the bot.

Every call goes through the bot session's outgoing middleware (bot/outgoing.py), which paces
under Telegram's limits and retries 429s; permanent failures are recorded there.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence

from aiogram import Bot
from aiogram.exceptions import TelegramAPIError
from aiogram.types import InlineKeyboardButton, InlineKeyboardMarkup

from bot.i18n import t
from handlers.callbacks import LessonPick
from services.notify import Button, Notice

log = logging.getLogger(__name__)


def callback_data(button: Button) -> str:
    """The callback data for a service's button action."""
    if button.action == "start_lesson":
        code, start = button.args
        return LessonPick(code=str(code)[:24], start=int(start)).pack()
    raise ValueError(f"unknown button action {button.action!r}")


class BotNotifier:
    def __init__(self, bot: Bot, *, concurrency: int = 16) -> None:
        self._bot = bot
        self._limit = asyncio.Semaphore(concurrency)
        self._tasks: set[asyncio.Task[int]] = set()

    async def _send(self, notice: Notice) -> bool:
        markup = None
        if notice.buttons:
            markup = InlineKeyboardMarkup(
                inline_keyboard=[
                    [
                        InlineKeyboardButton(
                            text=t(b.label_key, notice.language), callback_data=callback_data(b)
                        )
                    ]
                    for b in notice.buttons
                ]
            )
        async with self._limit:
            try:
                await self._bot.send_message(
                    notice.telegram_id,
                    t(notice.key, notice.language, **notice.values),
                    reply_markup=markup,
                )
            except TelegramAPIError as exc:
                log.info("notice %s not delivered to %s: %s", notice.key, notice.telegram_id, exc)
                return False
        return True

    async def notify(self, notices: Sequence[Notice]) -> int:
        results = await asyncio.gather(*(self._send(n) for n in notices))
        return sum(results)

    def notify_later(self, notices: Sequence[Notice]) -> None:
        task = asyncio.create_task(self.notify(list(notices)))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def drain(self, grace_seconds: float = 30.0) -> None:
        """Wait for background notices to go out (at shutdown)."""
        if self._tasks:
            await asyncio.wait(set(self._tasks), timeout=grace_seconds)
