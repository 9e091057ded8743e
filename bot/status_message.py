"""The teacher's live session message: lesson, code, time left and a count, edited in place.

Level-3 sessions get a new code every CODE_ROTATION_SECONDS from the same loop (`rotate`),
and their message is edited with it (one edit per rotation, inside the per-chat budget).

Check-ins mark a session dirty; one background loop edits each dirty message at most once every
`interval` seconds (Telegram counts edits against the per-chat limit), and refreshes the
time left once a minute.

The interval follows the load: an edit is a message of the bot's one budget (~30/s), and at the
top of the hour 300 live counts edited every 3 s would take 100 of every 30 slots... that is,
all of them, from the answers to the students whose codes they count. So each tick asks
`pressure()` (the shared flood budget's booked-ahead seconds, bot/flood.py): while the budget
is booked more than `busy_seconds` ahead the interval doubles, up to `max_interval`; once it has
room again the interval halves back to `min_interval`. A count seen a little later costs the
teacher nothing; an answer seen late costs a student their check-in.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from uuid import UUID

from aiogram import Bot
from aiogram.exceptions import TelegramAPIError, TelegramBadRequest

from dal.models import LiveSession
from services.attendance import AttendanceService
from ui.i18n import current_locale, use_locale
from ui.render import session_keyboard, session_status

log = logging.getLogger(__name__)


class StatusBoard:
    def __init__(
        self,
        *,
        bot: Bot,
        attendance: AttendanceService,
        min_interval: float = 3.0,
        tick: float = 1.0,
        clock_refresh: float = 60.0,
        projector_url: Callable[[UUID], str | None] = lambda _aid: None,
        pressure: Callable[[], Awaitable[float]] | None = None,
        busy_seconds: float = 0.5,
        max_interval: float = 30.0,
    ) -> None:
        self._bot = bot
        self._projector_url = projector_url
        self._attendance = attendance
        self._min_interval = min_interval
        self.interval = min_interval
        self._pressure = pressure
        self._busy = busy_seconds
        self._max_interval = max(max_interval, min_interval)
        self._tick = tick
        self._clock_refresh = clock_refresh
        self._dirty: set[UUID] = set()
        self._last_edit: dict[UUID, float] = {}
        self._langs: dict[UUID, str] = {}
        self._task: asyncio.Task[None] | None = None

    async def _username(self) -> str:
        me = await self._bot.me()
        return me.username or "bot"

    async def post(self, attendance: LiveSession, *, chat_id: int) -> None:
        """Send the status message of a newly opened session and remember where it is."""
        lang = current_locale()
        roster = await self._attendance.status(attendance_id=attendance.attendance_id)
        if roster is None:
            return
        message = await self._bot.send_message(
            chat_id,
            session_status(
                roster,
                tz=self._attendance.tz,
                now=self._attendance.now(),
                bot_username=await self._username(),
                projector_url=self._projector_url(attendance.attendance_id),
            ),
            reply_markup=session_keyboard(attendance),
        )
        await self._attendance.set_status_message(
            attendance=attendance, chat_id=chat_id, message_id=message.message_id
        )
        self._langs[attendance.attendance_id] = lang
        self._last_edit[attendance.attendance_id] = time.monotonic()

    def touch(self, attendance_id: UUID) -> None:
        self._dirty.add(attendance_id)

    async def refresh(self, attendance_id: UUID) -> None:
        """Edit the status message now (after the session ends, say)."""
        self._dirty.discard(attendance_id)
        roster = await self._attendance.status(attendance_id=attendance_id)
        if roster is None:
            self._forget(attendance_id)
            return
        session = roster.attendance
        if session.status_chat_id is None or session.status_message_id is None:
            return
        lang = self._langs.get(attendance_id) or await self._attendance.language_of(
            session.teacher_telegram_id
        )
        now = self._attendance.now()
        ended = session.end_time is not None and session.end_time <= now
        username = await self._username()
        with use_locale(lang):  # a background edit: the teacher's locale, not an update's
            text = session_status(
                roster,
                tz=self._attendance.tz,
                now=now,
                bot_username=username,
                projector_url=self._projector_url(attendance_id),
            )
            markup = None if ended else session_keyboard(session)
        try:
            await self._bot.edit_message_text(
                text=text,
                chat_id=session.status_chat_id,
                message_id=session.status_message_id,
                reply_markup=markup,
            )
        except TelegramBadRequest as exc:
            if "not modified" not in str(exc):
                log.info("status message of %s not edited: %s", attendance_id, exc)
        except TelegramAPIError as exc:
            log.info("status message of %s not edited: %s", attendance_id, exc)
        self._last_edit[attendance_id] = time.monotonic()
        if ended:
            self._forget(attendance_id)

    def _forget(self, attendance_id: UUID) -> None:
        self._last_edit.pop(attendance_id, None)
        self._langs.pop(attendance_id, None)
        self._dirty.discard(attendance_id)

    async def rotate(self) -> None:
        """Level 3: rotate the codes that are due (any replica may; the rotation is a
        compare-and-set) and edit those sessions' status messages on the next tick."""
        for session in await self._attendance.rotate_codes():
            self._dirty.add(session.attendance_id)
            self._last_edit.setdefault(session.attendance_id, 0.0)

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(self._tick)
            try:
                await self.rotate()
            except Exception:
                log.exception("code rotation failed")
            await self.adapt()
            now = time.monotonic()
            due = [
                aid
                for aid, last in list(self._last_edit.items())
                if (aid in self._dirty and now - last >= self.interval)
                or now - last >= self._clock_refresh
            ]
            due += [aid for aid in self._dirty if aid not in self._last_edit]
            for aid in due:
                try:
                    await self.refresh(aid)
                except Exception:
                    log.exception("status refresh of %s failed", aid)

    async def adapt(self) -> float:
        """The edit interval for this tick, from the budget's load (see the module docstring)."""
        if self._pressure is None:
            return self.interval
        try:
            booked = await self._pressure()
        except Exception:  # the budget cannot be asked: keep the interval as it is
            return self.interval
        if booked > self._busy:
            self.interval = min(self._max_interval, self.interval * 2.0)
        else:
            self.interval = max(self._min_interval, self.interval / 2.0)
        return self.interval

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.create_task(self._run(), name="status-board")

    async def stop(self, grace_seconds: float = 2.0) -> None:
        """Cancel the refresh loop and give it `grace_seconds` to end. Waiting with asyncio.wait,
        not `await task` under suppress(CancelledError): that would also swallow a
        cancellation of the caller and let a stuck loop hold shutdown up for ever."""
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            await asyncio.wait({task}, timeout=grace_seconds)
