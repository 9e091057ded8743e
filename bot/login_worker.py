"""The login queue's worker: every second, on every replica, the sign-ons whose turn has come
(services/login_queue.py claims them atomically, so each is done by one replica once).

What the user is told, in their language, through the bot's paced outgoing path:
- a chat login: its progress message is edited in place, with the place in line while it
  waits (when the estimate changes) and with the outcome at the end;
- a sign-in from the page: the page reads the outcome by polling; the chat gets the one
  confirmation (name and role) after a success, or the outcome after a failure (the page may
  have been closed while waiting).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging

from aiogram import Bot
from aiogram.exceptions import TelegramAPIError, TelegramBadRequest

from services.login_queue import Finished, LoginQueue, Progress
from services.notify import ANSWER, Notice, Notifier
from ui.i18n import use_locale
from ui.login import page_confirmation, queued_text, result_text

log = logging.getLogger(__name__)


def page_notice(telegram_id: int, text: str) -> Notice:
    """A rendered text for the chat, sent through the outbox."""
    return Notice(telegram_id, "", "", {"text": text}, lane=ANSWER)


class LoginWorker:
    def __init__(
        self,
        *,
        queue: LoginQueue,
        bot: Bot,
        notifier: Notifier,
        tick: float = 1.0,
        progress_every: float = 5.0,
    ) -> None:
        self._queue = queue
        self._bot = bot
        self._notifier = notifier
        self._tick = tick
        self._progress_every = progress_every
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.create_task(self._run(), name="login-queue")

    async def stop(self, grace_seconds: float = 2.0) -> None:
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            await asyncio.wait({task}, timeout=grace_seconds)

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        last_progress = 0.0
        while True:
            try:
                await self.run_once()
                if loop.time() - last_progress >= self._progress_every:
                    last_progress = loop.time()
                    for progress in await self._queue.chat_progress():
                        await self._tell_place(progress)
            except asyncio.CancelledError:
                raise
            except Exception:  # the loop outlives a store outage; the tickets wait in Redis
                log.exception("login queue: a round failed")
            await asyncio.sleep(self._tick)

    async def run_once(self) -> int:
        """Sign on the tickets whose turn has come and tell their users; how many."""
        finished = await self._queue.run_once()
        await asyncio.gather(*(self._tell(x) for x in finished))
        return len(finished)

    async def _tell(self, done: Finished) -> None:
        ticket, result = done.ticket, done.result
        with use_locale(ticket.language):
            if ticket.channel == "chat" and ticket.chat_id is not None:
                await self._edit_or_send(ticket.chat_id, ticket.message_id, result_text(result))
                return
            text = page_confirmation(result) if result.kind == "ok" else result_text(result)
        await self._notifier.enqueue([page_notice(ticket.telegram_id, text)])

    async def _tell_place(self, progress: Progress) -> None:
        ticket = progress.ticket
        if ticket.chat_id is None or ticket.message_id is None:
            return
        with use_locale(ticket.language):
            text = queued_text(progress.queued)
        with contextlib.suppress(TelegramAPIError):
            await self._bot.edit_message_text(
                text=text, chat_id=ticket.chat_id, message_id=ticket.message_id
            )

    async def _edit_or_send(self, chat_id: int, message_id: int | None, text: str) -> None:
        if message_id is not None:
            try:
                await self._bot.edit_message_text(text=text, chat_id=chat_id, message_id=message_id)
                return
            except TelegramBadRequest as exc:  # deleted by the user, or already this text
                if "not modified" in str(exc):
                    return
        await self._notifier.enqueue([page_notice(chat_id, text)])
