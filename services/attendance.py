"""Live attendance: teachers open, watch, correct and end sessions; students check in.

Why one file of ~750 lines: every use case here reads, checks and writes the same live session
through the same few helpers (`_live_session`, `_write`, the lateness rule), and the teacher's
changes and the students' check-ins must keep one reading of that session. Splitting it into a
teacher-side and a student-side service is the next step if it grows.
"""

from __future__ import annotations

import hashlib
import logging
import re
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, time, timedelta
from typing import Protocol
from uuid import UUID
from zoneinfo import ZoneInfo

from dal.errors import NotFound
from dal.models import (
    EVERYONE,
    CachedAccount,
    FailReason,
    LiveRecord,
    LiveSession,
    RecordSource,
    RecordStatus,
    ScheduleEntry,
    Security,
)
from dal.pg import AccountStore, ScheduleStore
from dal.redis import keys
from dal.redis.accounts import UserStore
from dal.redis.checkins import CheckInReply, CheckIns, LocationReply
from dal.redis.sessions import AttendanceAlreadyOpen, AttendanceEnded, LiveSessions
from services.attendance_status import StatusCounts, is_late, live_status
from services.checkin_outcomes import (
    CheckInResult,
    CheckInStatus,
    LocationOutcome,
    LocationResult,
)
from services.errors import (
    AlreadyOnList,
    InvalidInput,
    NotOwner,
    RecordNotFound,
    SessionClosed,
    SessionGone,
)
from services.lesson_finder import Lesson, current_lesson, lesson_slot
from services.location import location_verdict
from services.members import Identity, require_teacher
from services.notify import RESULT, URGENT, Button, Notice, Notifier, Stale
from services.text import code_digits, person_key, turkish_casefold

log = logging.getLogger(__name__)

# `EVERYONE` (dal.models; the check-in script reads it too) is the enrolment of a session whose
# lesson is in no schedule (opened by a typed name): everyone who sends the code counts as
# present, since nobody's enrolment is known (the teacher is told so). A scheduled lesson's
# enrolment is its slot's students: the check-in script also accepts a student whose
# cached schedule has the slot (one who linked after the opening), and records one who has the
# course in another section as pending review with the reason ANOTHER_SECTION.
SCHOOL_NUMBER = re.compile(r"^[A-Za-z0-9]{3,20}$")
# A teacher's note on a rejection, capped once where it is stored: the stored note is what the
# student is shown, and 200 characters stay far under Telegram's 4,096 even when every one of
# them becomes a five-character HTML entity.
NOTE_MAX_CHARS = 200
# Security levels: 1 code, 2 code and place, 3 rotating code and place.
SECURITY_LEVELS = tuple(Security)
# A teacher's decision is told once: its marker outlives any session (they last hours).
_DECISION_NOTICE_TTL_SECONDS = 2 * 86_400


def clean_note(text: str | None) -> str:
    """A teacher-typed note as stored and shown: whitespace collapsed, at most
    NOTE_MAX_CHARS characters (an ellipsis marks a cut)."""
    note = " ".join((text or "").split())
    if len(note) > NOTE_MAX_CHARS:
        note = note[: NOTE_MAX_CHARS - 1].rstrip() + "…"
    return note


@dataclass(frozen=True, slots=True)
class Started:
    attendance: LiveSession
    enrolled: int

    @property
    def ad_hoc(self) -> bool:
        """Opened by a typed lesson name: no enrolment, nobody notified or listed absent."""
        return self.attendance.slot is None


@dataclass(frozen=True, slots=True)
class AlreadyOpen:
    attendance: LiveSession


@dataclass(frozen=True, slots=True)
class ChooseLesson:
    lessons: list[Lesson]


@dataclass(frozen=True, slots=True)
class TeacherLessons:
    """Today's lessons of a teacher and where they came from."""

    lessons: list[Lesson]
    own: bool  # the teacher's own portal schedule
    ambiguous: bool  # found by a name another linked teacher shares: never opened unasked


@dataclass(frozen=True, slots=True)
class NoLessons:
    pass


StartOutcome = Started | AlreadyOpen | ChooseLesson | NoLessons


@dataclass(frozen=True, slots=True)
class Tally:
    """Live counts by status (services.attendance_status): `present` is on time, `late` apart."""

    present: int
    late: int
    pending: int
    rejected: int

    @property
    def attended(self) -> int:
        return self.present + self.late

    @property
    def total(self) -> int:
        return self.present + self.late + self.pending + self.rejected


@dataclass(frozen=True, slots=True)
class Roster:
    attendance: LiveSession
    records: list[LiveRecord]
    tally: Tally


def entry_to_lesson(entry: ScheduleEntry) -> Lesson:
    return Lesson(
        start=entry.start_time,
        end=entry.end_time,
        course_code=entry.course_code,
        course_name=entry.course_name,
        teachers=entry.teachers,
        teacher_keys=tuple(k for k in entry.teacher_key.split("|") if k),
        term=entry.term,
    )


class LinkedAccounts(Protocol):
    """Where a chat's linked account is read when its Redis cache has expired
    (services.accounts.AccountService): re-caches it and returns it, None when unlinked."""

    async def current_user(self, *, telegram_id: int) -> CachedAccount | None: ...


class AttendanceService:
    def __init__(
        self,
        *,
        accounts: AccountStore,
        schedules: ScheduleStore,
        sessions: LiveSessions,
        checkins: CheckIns,
        user_store: UserStore,
        notifier: Notifier,
        tz: ZoneInfo,
        early_margin: timedelta,
        late_after: timedelta,
        default_duration: timedelta,
        wrong_code_limit: int = 5,
        wrong_code_window_seconds: int = 60,
        security_level_default: int = 1,
        location_radius_meters: float = 150.0,
        code_rotation_seconds: int = 30,
        location_wait_seconds: int = 180,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
        linked_accounts: LinkedAccounts | None = None,
    ) -> None:
        self._accounts = accounts
        self._schedules = schedules
        self._sessions = sessions
        self._checkins = checkins
        self._user_store = user_store
        self._notifier = notifier
        self._linked_accounts = linked_accounts
        self._tz = tz
        self._early_margin = early_margin
        self._late_after = late_after
        self._default_duration = default_duration
        self._wrong_limit = wrong_code_limit
        self._wrong_window = wrong_code_window_seconds
        self._clock = clock
        if security_level_default not in SECURITY_LEVELS:
            raise ValueError(f"security level must be 1, 2 or 3, got {security_level_default}")
        self._level_default = security_level_default
        self._radius = location_radius_meters
        self._rotation = timedelta(seconds=code_rotation_seconds)
        self._location_wait = location_wait_seconds

    @property
    def tz(self) -> ZoneInfo:
        return self._tz

    def now(self) -> datetime:
        return self._clock()

    # --- lesson finding ------------------------------------------------------------------

    async def teacher_lessons(self, *, teacher: Identity) -> TeacherLessons:
        """Today's lessons of a teacher, the ones /start_session offers.

        A lesson in the teacher's own portal schedule is theirs. Without one, the lessons whose
        teacher field names them in linked students' schedules, except any lesson another
        teacher has in their own schedule; when another linked teacher shares the normalized
        name, the list is only offered to pick from (`ambiguous`), never opened unasked.
        """
        require_teacher(teacher)
        local_day = self._clock().astimezone(self._tz).date()
        start = datetime.combine(local_day, time(0), self._tz)
        end = start + timedelta(days=1)
        entries = await self._schedules.get_schedule(
            school_number=teacher.school_number, start=start, end=end
        )
        own = bool(entries)
        ambiguous = False
        if not own:
            key = person_key(teacher.full_name)
            entries = await self._schedules.find_lessons_by_teacher_key(
                teacher_key=key, start=start, end=end
            )
            if entries:
                others = await self._schedules.get_teacher_lessons_starting(
                    start=start - timedelta(days=1), end=end
                )
                taken = {
                    (e.course_code, e.start_time)
                    for e in others
                    if e.school_number != teacher.school_number
                }
                entries = [e for e in entries if (e.course_code, e.start_time) not in taken]
                ambiguous = any(
                    u.user_school_number != teacher.school_number
                    and person_key(u.user_full_name) == key
                    for u in await self._accounts.get_linked_teachers()
                )
        lessons = {(e.course_code, e.start_time): entry_to_lesson(e) for e in entries}
        ordered = sorted(lessons.values(), key=lambda lesson: (lesson.start, lesson.course_code))
        return TeacherLessons(ordered, own=own, ambiguous=ambiguous)

    # --- opening -------------------------------------------------------------------------

    async def start_session(
        self, *, teacher: Identity, chat_id: int, lesson_name: str | None = None
    ) -> StartOutcome:
        require_teacher(teacher)
        existing = await self.open_session(teacher=teacher)
        if existing is not None:
            return AlreadyOpen(existing)
        today = await self.teacher_lessons(teacher=teacher)
        lessons = today.lessons
        now = self._clock()
        if lesson_name is not None:
            name = " ".join(lesson_name.split())
            if not 2 <= len(name) <= 100:
                raise InvalidInput("session.bad_name")
            matched = _match_lesson(lessons, name, now)
            if matched is not None and not today.own:
                _log_choice(matched, "typed")
            lesson = matched or self._ad_hoc_lesson(name, now)
        else:
            found = current_lesson(lessons, now, early_margin=self._early_margin)
            if found is None or today.ambiguous:
                return ChooseLesson(lessons) if lessons else NoLessons()
            lesson = found
        return await self._open(teacher=teacher, chat_id=chat_id, lesson=lesson)

    async def start_chosen(
        self, *, teacher: Identity, chat_id: int, course_code: str, start_epoch: int
    ) -> StartOutcome:
        """Open the lesson a teacher picked from today's list (or a reminder's button)."""
        require_teacher(teacher)
        existing = await self.open_session(teacher=teacher)
        if existing is not None:
            return AlreadyOpen(existing)
        today = await self.teacher_lessons(teacher=teacher)
        for lesson in today.lessons:
            if lesson.course_code == course_code and int(lesson.start.timestamp()) == start_epoch:
                if not today.own:
                    _log_choice(lesson, "picked")
                return await self._open(teacher=teacher, chat_id=chat_id, lesson=lesson)
        raise InvalidInput("session.choice_expired")

    def _ad_hoc_lesson(self, name: str, now: datetime) -> Lesson:
        return Lesson(
            start=now,
            end=now + self._default_duration,
            course_code="",
            course_name=name,
            teachers="",
            teacher_keys=(),
        )

    async def _open(self, *, teacher: Identity, chat_id: int, lesson: Lesson) -> StartOutcome:
        now = self._clock()
        slot: str | None = None
        enrolled: list[str] = []
        # The session's term is its lesson's (the teacher's own schedule, or the students'
        # rows it was found in), never the newest term some cache holds: one student's early
        # page of next term must not empty this term's enrolment. A lesson of unknown term
        # (and a typed one) takes the term that has begun by the calendar of the cached rows.
        term = lesson.term or await self._schedules.get_current_term(now=now)
        if lesson.course_code:
            slot = lesson_slot(lesson.course_code, lesson.start, lesson.teacher_keys, self._tz)
            entries = await self._schedules.get_course_entries(
                course_code=lesson.course_code, term=term
            )
            enrolled = sorted(
                {
                    e.school_number
                    for e in entries
                    if lesson_slot(e.course_code, e.start_time, e.teacher_key.split("|"), self._tz)
                    == slot
                }
            )
        planned_end = max(lesson.end, now + timedelta(minutes=5))
        draft = LiveSession(
            attendance_id=uuid.uuid4(),
            teacher_school_number=teacher.school_number,
            teacher_full_name=teacher.full_name,
            teacher_telegram_id=teacher.telegram_id,
            lesson_name=lesson.title if lesson.course_code else lesson.course_name,
            lesson_code=lesson.course_code or None,
            slot=slot,
            scheduled_start=lesson.start if slot is not None else None,
            term=term,
            code="000000",
            security_option=self._level_default,
            start_time=now,
            planned_end_time=planned_end,
            status_chat_id=chat_id,
        )
        try:
            attendance = await self._sessions.open_attendance(
                attendance=draft, enrolled=enrolled if lesson.course_code else [EVERYONE]
            )
        except AttendanceAlreadyOpen:
            existing = await self._sessions.get_open_attendance(
                teacher_school_number=teacher.school_number, now=self._clock()
            )
            if existing is None:
                raise
            return AlreadyOpen(existing)
        log.info(
            "session %s opened for %s with %d enrolled",
            attendance.attendance_id,
            attendance.lesson_code or "an unscheduled lesson",
            len(enrolled),
        )
        await self._announce_open(attendance, enrolled)
        return Started(attendance, len(enrolled))

    async def _announce_open(self, attendance: LiveSession, enrolled: Sequence[str]) -> None:
        if not enrolled:
            return
        contacts = await self._accounts.get_contacts(school_numbers=list(enrolled))
        notices = [
            Notice(
                telegram_id=c.telegram_id,
                language=c.language,
                key="remind.open",
                values={"lesson": attendance.lesson_name},
                # Opens the Mini App's check-in page (when the bot has a PUBLIC_URL).
                buttons=(Button("button.checkin_page", "web_app", ("checkin",)),),
                drop_if=(
                    Stale.checked_in(attendance.attendance_id, c.school_number),
                    Stale.session_over(attendance.attendance_id),
                ),
                lane=URGENT,  # useful only while the session is open
            )
            for c in contacts
            if c.reminders_enabled and c.telegram_id is not None
        ]
        if notices:
            await self._notifier.enqueue(notices)

    # --- the teacher's session -----------------------------------------------------------

    async def open_session(self, *, teacher: Identity) -> LiveSession | None:
        require_teacher(teacher)
        return await self._sessions.get_open_attendance(
            teacher_school_number=teacher.school_number, now=self._clock()
        )

    async def owned_session(self, *, teacher: Identity, attendance_id: UUID) -> LiveSession:
        """The live session `attendance_id`, checked to belong to this teacher."""
        require_teacher(teacher)
        attendance = await self._sessions.get_attendance(attendance_id=attendance_id)
        if attendance is None:
            raise SessionGone
        if attendance.teacher_school_number != teacher.school_number:
            raise NotOwner
        return attendance

    async def set_status_message(
        self, *, attendance: LiveSession, chat_id: int, message_id: int
    ) -> None:
        await self._sessions.set_status_message(
            attendance_id=attendance.attendance_id, chat_id=chat_id, message_id=message_id
        )

    async def set_security_level(
        self, *, teacher: Identity, attendance_id: UUID, level: int
    ) -> LiveSession:
        """Change the level of the teacher's open session (its owner only; refused by Redis
        once the session has ended or is claimed). Lowering the level never touches records
        already written."""
        if level not in SECURITY_LEVELS:
            raise InvalidInput("level.bad")
        await self._live_session(teacher=teacher, attendance_id=attendance_id)
        try:
            return await self._sessions.set_security_level(attendance_id=attendance_id, level=level)
        except AttendanceEnded:
            raise SessionClosed from None
        except NotFound:
            raise SessionGone from None

    async def end_session(
        self, *, teacher: Identity, attendance_id: UUID | None = None
    ) -> Roster | None:
        """End the teacher's open session now (or the one named); None if there is none."""
        if attendance_id is None:
            attendance = await self.open_session(teacher=teacher)
            if attendance is None:
                return None
        else:
            attendance = await self.owned_session(teacher=teacher, attendance_id=attendance_id)
        if attendance.end_time is None or attendance.end_time > self._clock():
            attendance = await self._sessions.finish_attendance(
                attendance_id=attendance.attendance_id, end_time=self._clock()
            )
        return await self._roster(attendance)

    async def roster(
        self, *, teacher: Identity, attendance_id: UUID | None = None
    ) -> Roster | None:
        if attendance_id is None:
            attendance = await self.open_session(teacher=teacher)
            if attendance is None:
                return None
        else:
            attendance = await self.owned_session(teacher=teacher, attendance_id=attendance_id)
        return await self._roster(attendance)

    async def status(self, *, attendance_id: UUID) -> Roster | None:
        """The live figures of a session, for the teacher's status message."""
        attendance = await self._sessions.get_attendance(attendance_id=attendance_id)
        return None if attendance is None else await self._roster(attendance)

    async def _roster(self, attendance: LiveSession) -> Roster:
        aid = attendance.attendance_id
        records = await self._sessions.get_attendance_records(attendance_id=aid)
        return Roster(attendance, records, self.tally(attendance, records))

    def is_late(self, attendance: LiveSession, record: LiveRecord) -> bool:
        return is_late(record, attendance, self._late_after)

    def status_of(self, attendance: LiveSession, record: LiveRecord) -> RecordStatus:
        return live_status(record, attendance, self._late_after)

    def tally(self, attendance: LiveSession, records: Sequence[LiveRecord]) -> Tally:
        counts = StatusCounts.of(self.status_of(attendance, r) for r in records)
        return Tally(
            present=counts.present,
            late=counts.late,
            pending=counts.pending,
            rejected=counts.rejected,
        )

    # --- corrections during the session --------------------------------------------------

    async def _live_session(self, *, teacher: Identity, attendance_id: UUID) -> LiveSession:
        """The teacher's session, still open by this replica's clock: a quick first answer.
        The write itself is what decides: Redis refuses it once the session has ended by
        Redis's clock or the finalizer has claimed it (`_write`), so that no change is
        confirmed and then lost; changes after the end go through /history."""
        attendance = await self.owned_session(teacher=teacher, attendance_id=attendance_id)
        end = attendance.end_time or attendance.planned_end_time
        if end <= self._clock():
            raise SessionClosed
        return attendance

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
        if record.telegram_id is not None and updated != record:
            key = "student.accepted" if accept else "student.rejected"
            values: dict[str, object] = {"lesson": attendance.lesson_name}
            if not accept:
                values["reason"] = f" ({note})" if note else ""
            language = await self.language_of(record.telegram_id)
            # Durable before the teacher hears "done"; the marker names this change (from the
            # record as it was to the one written), so a retried call sends it once, while a
            # later different decision is a new change and is told.
            change = hashlib.sha256(
                f"{record.model_dump_json()}\n{updated.model_dump_json()}".encode()
            ).hexdigest()[:16]
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
                once=keys.once("review", attendance_id, student_number, change),
                once_ttl=_DECISION_NOTICE_TTL_SECONDS,
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

    # --- students ------------------------------------------------------------------------

    async def check_in(
        self, *, telegram_id: int, code: str, busy_keys: Sequence[str] = ()
    ) -> CheckInResult:
        """Record a check-in with the code a student sent: one atomic Redis script that also
        reads the sender's linked account. When that account's Redis session has expired but
        the link still holds in PostgreSQL, `linked_accounts` re-caches it and the script runs
        once more. The code may be written in any script's decimal digits; text that cannot
        be a code is refused without counting as a wrong code. `busy_keys`: see
        `CheckIns.check_in` (raises `CheckInBusy`, nothing changed)."""
        digits = code_digits(code)
        if digits is None:
            return CheckInResult(status=CheckInStatus.WRONG_CODE)
        code = digits
        reply = await self._check_in(telegram_id, code, busy_keys)
        linked = self._linked_accounts
        if (
            reply.status == CheckInStatus.NOT_LINKED
            and linked is not None
            and await linked.current_user(telegram_id=telegram_id) is not None
        ):
            reply = await self._check_in(telegram_id, code, busy_keys)
        result = self._check_in_result(reply)
        # The outcome, in the update's log context (update id, sender's pseudonym): what an
        # operator reads first when a student says "the bot did not take my code".
        log.debug("check-in: %s", result.status.name)
        return result

    def _check_in_result(self, reply: CheckInReply) -> CheckInResult:
        """The script's word named, with the record's status (present, late or pending) in
        the one vocabulary (services.attendance_status), as the sheet will say it."""
        session, record = reply.attendance, reply.record
        recorded = (
            None
            if session is None or record is None
            else live_status(record, session, self._late_after)
        )
        return CheckInResult(
            status=CheckInStatus(reply.status),
            attendance=session,
            record=record,
            retry_after=reply.retry_after,
            recorded=recorded,
        )

    async def _check_in(
        self, telegram_id: int, code: str, busy_keys: Sequence[str]
    ) -> CheckInReply:
        return await self._checkins.check_in(
            telegram_id=telegram_id,
            code=code,
            now=self._clock(),
            throttle_key=keys.throttle("checkin", telegram_id),
            throttle_limit=self._wrong_limit,
            throttle_window=self._wrong_window,
            location_wait_seconds=self._location_wait,
            busy_keys=busy_keys,
        )

    async def awaiting_location(self, *, telegram_id: int) -> LiveSession | None:
        """The session whose check-in by this account still waits for a location, if any."""
        attendance_id = await self._checkins.location_wait(telegram_id=telegram_id)
        if attendance_id is None:
            return None
        return await self._sessions.get_attendance(attendance_id=attendance_id)

    @property
    def location_wait_seconds(self) -> int:
        return self._location_wait

    @property
    def location_radius_meters(self) -> float:
        return self._radius

    async def submit_location(
        self,
        *,
        telegram_id: int,
        latitude: float,
        longitude: float,
        accuracy: float | None,
        sent_at: datetime,
        forwarded: bool,
        via_bot: bool = False,
    ) -> LocationResult:
        """A student's location after a valid code at level 2 or 3 (services.location): the
        waiting record becomes present, or pending review with the reason. NO_WAIT when no
        check-in waits for one (never asked, or asked longer ago than the wait: the record
        stays LOCATION_MISSING)."""
        attendance_id = await self._checkins.location_wait(telegram_id=telegram_id)
        if attendance_id is None:
            return LocationResult(outcome=LocationOutcome.NO_WAIT)
        session = await self._sessions.get_attendance(attendance_id=attendance_id)
        reason: FailReason | None = FailReason.LOCATION_TOO_FAR
        if (
            session is not None
            and session.anchor_latitude is not None
            and session.anchor_longitude is not None
        ):
            reason = location_verdict(
                anchor=(session.anchor_latitude, session.anchor_longitude),
                latitude=latitude,
                longitude=longitude,
                accuracy=accuracy,
                sent_at=sent_at,
                now=self._clock(),
                forwarded=forwarded,
                radius=self._radius,
                via_bot=via_bot,
            )
        reply: LocationReply = await self._checkins.decide_location(
            telegram_id=telegram_id, reason=None if reason is None else str(reason)
        )
        if reply.record is not None:
            log.info(
                "location for session %s: %s", attendance_id, reply.record.fail_reason or "present"
            )
        return LocationResult(
            outcome=LocationOutcome(reply.outcome), attendance=reply.attendance, record=reply.record
        )

    async def without_location(self, *, telegram_id: int) -> LocationResult:
        """A student whose device could not read a position (the Mini App): nothing changes,
        the waiting record stays pending, LOCATION_MISSING, as when no location comes in chat
        (the student may still share one there meanwhile). MISSING with the session waited
        on, or NO_WAIT when no check-in waits."""
        session = await self.awaiting_location(telegram_id=telegram_id)
        if session is None:
            return LocationResult(outcome=LocationOutcome.NO_WAIT)
        return LocationResult(outcome=LocationOutcome.MISSING, attendance=session)

    # --- security levels, the teacher's location, the head-count cap -------------------

    async def share_teacher_location(
        self, *, teacher: Identity, latitude: float, longitude: float
    ) -> LiveSession | None:
        """Anchor the teacher's open session at their location; None when none is open."""
        session = await self.open_session(teacher=teacher)
        if session is None:
            return None
        try:
            return await self._sessions.set_anchor(
                attendance_id=session.attendance_id, latitude=latitude, longitude=longitude
            )
        except AttendanceEnded:
            raise SessionClosed from None
        except NotFound:
            raise SessionGone from None

    async def set_head_count_cap(
        self, *, teacher: Identity, attendance_id: UUID, cap: int | None
    ) -> LiveSession:
        """The number of students in the room: check-ins beyond it are pending (OVER_CAP)."""
        if cap is not None and not 1 <= cap <= 10_000:
            raise InvalidInput("cap.bad")
        await self._live_session(teacher=teacher, attendance_id=attendance_id)
        try:
            return await self._sessions.set_head_count_cap(attendance_id=attendance_id, cap=cap)
        except AttendanceEnded:
            raise SessionClosed from None
        except NotFound:
            raise SessionGone from None

    async def schedule_missed_rotations(self) -> int:
        """Level 3: put on the rotation schedule the open sessions missing from it (opened by
        a version before the schedule existed); run once at start-up, so that the codes of
        sessions open across an upgrade keep rotating. Returns how many were added."""
        return await self._sessions.schedule_missed_rotations(now=self._clock())

    async def rotate_codes(self) -> list[LiveSession]:
        """Level 3: new codes for the open sessions whose code is CODE_ROTATION_SECONDS old.
        Safe on every replica at once (the rotation is a compare-and-set). Reads only the
        sessions the rotation schedule says are due, not every open session."""
        now = self._clock()
        rotated: list[LiveSession] = []
        for attendance_id in await self._sessions.rotations_due(changed_by=now - self._rotation):
            try:
                session = await self._sessions.rotate_code(
                    attendance_id=attendance_id, now=now, every=self._rotation
                )
            except (AttendanceEnded, NotFound):
                # The scripts drop the schedule entry of a session gone or closed.
                continue
            if session is not None:
                rotated.append(session)
        return rotated


def _log_choice(lesson: Lesson, how: str) -> None:
    """A lesson found by name, not in the teacher's own schedule: who took it, for the record."""
    # Who took it is the log context's `user=` pseudonym, never the teacher's number.
    log.info(
        "a teacher %s lesson %s starting %s (found by name, not in their own schedule)",
        how,
        lesson.course_code,
        lesson.start.isoformat(),
    )


def _match_lesson(lessons: Sequence[Lesson], name: str, now: datetime) -> Lesson | None:
    """Today's lesson whose code or name contains `name`, preferring one on now or next."""
    wanted = turkish_casefold(name)
    matches = [
        lesson
        for lesson in lessons
        if wanted in turkish_casefold(lesson.course_code)
        or wanted in turkish_casefold(lesson.course_name)
        or wanted == turkish_casefold(lesson.title)
    ]
    if not matches:
        return None
    running = [m for m in matches if m.start <= now < m.end]
    upcoming = [m for m in matches if m.start > now]
    return (running or upcoming or matches)[0]


__all__ = [
    "EVERYONE",
    "SECURITY_LEVELS",
    "AlreadyOpen",
    "AttendanceService",
    "ChooseLesson",
    "NoLessons",
    "Roster",
    "StartOutcome",
    "Started",
    "Tally",
    "TeacherLessons",
]
