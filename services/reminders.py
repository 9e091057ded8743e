"""Reminders: a teacher's lesson is about to start; a session is about to close.

- Teacher reminder: `lead` before each lesson in a teacher's own cached schedule, the linked
  teacher gets `remind.teacher` with a one-tap "start attendance" button (unless attendance for
  that lesson is already open).
- Closing reminder: `closing` before an open session's planned end, each enrolled student who
  has not checked in and has a linked account gets `remind.closing`, once per session.
- (The "attendance is open" message goes out when a session opens:
  `SessionService._announce_open`, services/attendance/sessions.py.)

Every reminder respects `users.reminders_enabled` (the /reminders switch) and is sent at most
once: a `once:remind:*` marker (SET NX with an expiry) is set before the notices are queued,
so a second replica, a rerun or an overlapping tick finds it and stays quiet. A tick that
runs late still sends what is due, as long as the lesson has not started or the session has
not closed.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Final
from uuid import UUID
from zoneinfo import ZoneInfo

from dal.models import EVERYONE, Role, ScheduleEntry
from dal.pg import AccountStore, ScheduleStore
from dal.redis import keys
from dal.redis.sessions import LiveSessions
from services.attendance.sessions import entry_to_lesson
from services.notify import URGENT, Button, Moment, Notice, Notifier, Stale

__all__ = [
    "ReminderReport",
    "ReminderService",
    "closing_dedupe_key",
    "teacher_dedupe_key",
]

log = logging.getLogger(__name__)

# PostgreSQL keeps microseconds: the window [now, now + lead + 1 µs) includes a lesson that
# starts exactly `lead` from now.
_TICK: Final = timedelta(microseconds=1)


def teacher_dedupe_key(school_number: str, course_code: str, start: datetime) -> str:
    return keys.once("remind", "teacher", school_number, course_code, int(start.timestamp()))


def closing_dedupe_key(attendance_id: UUID) -> str:
    return keys.once("remind", "closing", attendance_id)


@dataclass(slots=True)
class ReminderReport:
    teacher: int = 0  # teacher reminders queued
    closing: int = 0  # closing reminders queued (one per student)


class ReminderService:
    """Sends due reminders; `run_once()` is one scheduler tick."""

    def __init__(
        self,
        *,
        accounts: AccountStore,
        schedules: ScheduleStore,
        sessions: LiveSessions,
        notifier: Notifier,
        tz: ZoneInfo,
        lead: timedelta,
        closing: timedelta,
        dedupe_ttl_seconds: int = 2 * 86_400,
        max_sessions: int = 10_000,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self._accounts = accounts
        self._schedules = schedules
        self._sessions = sessions
        self._notifier = notifier
        self._tz = tz
        self._lead = lead
        self._closing = closing
        self._dedupe_ttl = dedupe_ttl_seconds
        self._max_sessions = max_sessions
        self._clock = clock

    async def run_once(self) -> ReminderReport:
        now = self._clock()
        report = ReminderReport(
            teacher=await self.remind_teachers(now=now),
            closing=await self.remind_closing(now=now),
        )
        if report.teacher or report.closing:
            log.info("reminders queued: %d teacher, %d closing", report.teacher, report.closing)
        return report

    async def remind_teachers(self, *, now: datetime) -> int:
        """Remind teachers of lessons starting within `lead` from `now` (not yet started)."""
        entries = await self._schedules.get_teacher_lessons_starting(
            start=now, end=now + self._lead + _TICK
        )
        if not entries:
            return 0
        unique: dict[tuple[str, str, datetime], ScheduleEntry] = {}
        for entry in entries:
            unique.setdefault((entry.school_number, entry.course_code, entry.start_time), entry)
        contacts = {
            c.school_number: c
            for c in await self._accounts.get_contacts(
                school_numbers=sorted({e.school_number for e in unique.values()})
            )
        }
        notices: list[Notice] = []
        for entry in unique.values():
            contact = contacts.get(entry.school_number)
            if contact is None or contact.role is not Role.TEACHER or not contact.reminders_enabled:
                continue
            open_session = await self._sessions.get_open_attendance(
                teacher_school_number=entry.school_number, now=now
            )
            if open_session is not None and open_session.lesson_code == entry.course_code:
                continue  # already taking attendance for this lesson
            key = teacher_dedupe_key(entry.school_number, entry.course_code, entry.start_time)
            notice = Notice(
                telegram_id=contact.telegram_id,
                language=contact.language,
                key="remind.teacher",
                values={
                    "lesson": entry_to_lesson(entry).title,
                    "start": Moment(entry.start_time, self._tz.key, time_only=True),
                },
                buttons=(
                    Button(
                        "button.start_attendance",
                        "start_lesson",
                        (entry.course_code, int(entry.start_time.timestamp())),
                    ),
                ),
                drop_if=(Stale.lesson_opened(entry.school_number, entry.course_code),),
                lane=URGENT,
            )
            # The marker and the queued notice in one step (durable outbox, sent in the
            # background): once per lesson, and not lost to a crash.
            if await self._notifier.enqueue([notice], once=key, once_ttl=self._dedupe_ttl):
                notices.append(notice)
        return len(notices)

    async def remind_closing(self, *, now: datetime) -> int:
        """Remind enrolled, not-yet-checked-in students of sessions closing within `closing`."""
        horizon = now + self._closing
        # Only the sessions still open and closing by the horizon: the ended ones awaiting
        # finalization (thousands during a PostgreSQL outage) are not in this range.
        ids = await self._sessions.closing_attendance_ids(
            after=now, until=horizon, limit=self._max_sessions
        )
        sent = 0
        for attendance_id in ids:
            attendance = await self._sessions.get_attendance(attendance_id=attendance_id)
            if attendance is None or attendance.end_time is not None:
                continue  # gone, or ended by the teacher
            if not now < attendance.planned_end_time <= horizon:
                continue  # already closed (awaiting finalization), or not yet due
            enrolled = await self._sessions.get_enrolled(attendance_id=attendance_id)
            enrolled.discard(EVERYONE)
            if not enrolled:
                continue
            records = await self._sessions.get_attendance_records(attendance_id=attendance_id)
            missing = enrolled - {r.student_number for r in records}
            if not missing:
                continue
            contacts = await self._accounts.get_contacts(school_numbers=sorted(missing))
            recipients = [c for c in contacts if c.role is Role.STUDENT and c.reminders_enabled]
            if not recipients:
                continue
            end = Moment(attendance.planned_end_time, self._tz.key, time_only=True)
            if not await self._notifier.enqueue(
                [
                    Notice(
                        telegram_id=c.telegram_id,
                        language=c.language,
                        key="remind.closing",
                        values={"lesson": attendance.lesson_name, "end": end},
                        drop_if=(Stale.checked_in(attendance_id, c.school_number),),
                        lane=URGENT,
                    )
                    for c in recipients
                ],
                once=closing_dedupe_key(attendance_id),
                once_ttl=self._dedupe_ttl,
            ):
                continue
            sent += len(recipients)
        return sent
