"""The teacher's review during a session: accept or reject a check-in left pending, add a
student by school number; the student is told (once per change).

Part of the attendance service (services/attendance/__init__.py): every change is a write
into the live session that Redis refuses once the session has ended or is claimed
(`_write`); the session itself, and whether it is this teacher's, come from
services/attendance/sessions.py.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Callable
from datetime import UTC, datetime
from uuid import UUID

from dal.errors import NotFound
from dal.models import FailReason, LiveRecord, LiveSession, RecordSource
from dal.pg import AccountStore
from dal.redis import keys
from dal.redis.accounts import UserStore
from dal.redis.sessions import AttendanceEnded, LiveSessions
from services.attendance.sessions import SessionService
from services.errors import (
    AlreadyOnList,
    InvalidInput,
    RecordNotFound,
    SessionClosed,
    SessionGone,
)
from services.members import Identity
from services.notify import RESULT, Notice, Notifier

SCHOOL_NUMBER = re.compile(r"^[A-Za-z0-9]{3,20}$")
# A teacher's note on a rejection, capped once where it is stored: the stored note is what the
# student is shown, and 200 characters stay far under Telegram's 4,096 even when every one of
# them becomes a five-character HTML entity.
NOTE_MAX_CHARS = 200
# A teacher's decision is told once: its marker outlives any session (they last hours).
_DECISION_NOTICE_TTL_SECONDS = 2 * 86_400


def clean_note(text: str | None) -> str:
    """A teacher-typed note as stored and shown: whitespace collapsed, at most
    NOTE_MAX_CHARS characters (an ellipsis marks a cut)."""
    note = " ".join((text or "").split())
    if len(note) > NOTE_MAX_CHARS:
        note = note[: NOTE_MAX_CHARS - 1].rstrip() + "…"
    return note


class ReviewService:
    def __init__(
        self,
        *,
        accounts: AccountStore,
        sessions: LiveSessions,
        live: SessionService,
        user_store: UserStore,
        notifier: Notifier,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self._accounts = accounts
        self._sessions = sessions
        self._live = live
        self._user_store = user_store
        self._notifier = notifier
        self._clock = clock

    # --- corrections during the session --------------------------------------------------

    async def _live_session(self, *, teacher: Identity, attendance_id: UUID) -> LiveSession:
        """The teacher's session, still open (`SessionService.live_session`)."""
        return await self._live.live_session(teacher=teacher, attendance_id=attendance_id)

    async def review(
        self,
        *,
        teacher: Identity,
        attendance_id: UUID,
        student_number: str,
        accept: bool,
        reason: str | None = None,
    ) -> LiveRecord:
        attendance = await self._live_session(teacher=teacher, attendance_id=attendance_id)
        record = await self._sessions.get_attendance_record(
            attendance_id=attendance_id, student_number=student_number
        )
        if record is None:
            raise RecordNotFound(student_number)
        note: str | None = None
        if accept:
            fail_reason = None
        else:
            note = clean_note(reason) or None
            fail_reason = str(FailReason.REJECTED)
        updated = record.model_copy(
            update={"is_attended": accept, "fail_reason": fail_reason, "teacher_note": note}
        )
        await self._write(updated, replace=True)
        if record.telegram_id is not None:
            key = "student.accepted" if accept else "student.rejected"
            values: dict[str, object] = {"lesson": attendance.lesson_name}
            if not accept:
                values["reason"] = f" ({note})" if note else ""
            language = await self.language_of(record.telegram_id)
            # Durable before the teacher hears "done". The marker holds the decision last told
            # (the record as written), so a call retried after a crash between the write and
            # this step tells it now, a repeated one (a second click) tells nothing, and a
            # later different decision is told.
            told = hashlib.sha256(updated.model_dump_json().encode()).hexdigest()[:16]
            await self._notifier.enqueue(
                [
                    Notice(
                        telegram_id=record.telegram_id,
                        language=language,
                        key=key,
                        values=values,
                        lane=RESULT,  # the answer to a check-in left for review
                    )
                ],
                once=keys.once("review", attendance_id, student_number),
                once_ttl=_DECISION_NOTICE_TTL_SECONDS,
                once_state=told,
            )
        return updated

    async def add_student(
        self, *, teacher: Identity, attendance_id: UUID, student_number: str
    ) -> LiveRecord:
        number = student_number.strip()
        if not SCHOOL_NUMBER.fullmatch(number):
            raise InvalidInput("add.bad_number")
        attendance = await self._live_session(teacher=teacher, attendance_id=attendance_id)
        existing = await self._sessions.get_attendance_record(
            attendance_id=attendance_id, student_number=number
        )
        if existing is not None:
            if existing.is_attended:
                if existing.source == RecordSource.TEACHER:
                    # Added by the teacher already: a call retried after a crash that came
                    # between the write and the notice; the marker keeps it to one notice.
                    await self._tell_added(attendance, existing.telegram_id, number)
                raise AlreadyOnList(number)
            return await self.review(
                teacher=teacher, attendance_id=attendance_id, student_number=number, accept=True
            )
        known = await self._accounts.get_users(school_numbers=[number])
        contacts = await self._accounts.get_contacts(school_numbers=[number])
        contact = contacts[0] if contacts else None
        record = LiveRecord(
            attendance_id=attendance_id,
            student_number=number,
            student_full_name=known[0].user_full_name if known else number,
            telegram_id=contact.telegram_id if contact else None,
            is_attended=True,
            attendance_time=self._clock(),
            source=RecordSource.TEACHER,
        )
        if not await self._write(record, replace=False):
            raise AlreadyOnList(number)
        language = contact.language if contact is not None else None
        await self._tell_added(attendance, record.telegram_id, number, language)
        return record

    async def _tell_added(
        self,
        attendance: LiveSession,
        telegram_id: int | None,
        student_number: str,
        language: str | None = None,
    ) -> None:
        """ "The teacher added you": durable before the teacher hears "done", once per
        student and session."""
        if telegram_id is None:
            return
        await self._notifier.enqueue(
            [
                Notice(
                    telegram_id=telegram_id,
                    language=language or await self.language_of(telegram_id),
                    key="student.checked_in_by_teacher",
                    values={"lesson": attendance.lesson_name},
                    lane=RESULT,
                )
            ],
            once=keys.once("added", attendance.attendance_id, student_number),
            once_ttl=_DECISION_NOTICE_TTL_SECONDS,
        )

    async def _write(self, record: LiveRecord, *, replace: bool) -> bool:
        """A teacher's write into the live session; SessionClosed when Redis refuses it."""
        try:
            if replace:
                await self._sessions.update_attendance_record(record=record)
                return True
            return await self._sessions.add_attendance_record(record=record)
        except AttendanceEnded:
            raise SessionClosed from None
        except NotFound:
            raise SessionGone from None

    async def language_of(self, telegram_id: int | None) -> str:
        """The reply language of a linked account; English when unknown."""
        if telegram_id is None:
            return "en"
        session = await self._user_store.get_user_session(telegram_id=telegram_id)
        return session.language if session else "en"


__all__ = ["NOTE_MAX_CHARS", "SCHOOL_NUMBER", "ReviewService", "clean_note"]
