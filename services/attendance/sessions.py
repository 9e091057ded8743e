"""Live sessions, the teacher's side: find today's lesson, open it, watch it, change its
settings (security level, the teacher's location, the head-count cap) and end it.

Part of the attendance service (services/attendance/__init__.py): the check-ins, the
teacher's review and the code rotation read and write the same live session through
dal/redis/sessions.py; this part decides what a session is and who owns it.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, time, timedelta
from uuid import UUID
from zoneinfo import ZoneInfo

from dal.errors import NotFound
from dal.models import (
    EVERYONE,
    LiveRecord,
    LiveSession,
    RecordStatus,
    ScheduleEntry,
    Security,
)
from dal.pg import AccountStore, ScheduleStore
from dal.redis.sessions import AttendanceAlreadyOpen, AttendanceEnded, LiveSessions
from services.attendance_status import StatusCounts, is_late, live_status
from services.errors import InvalidInput, NotOwner, SessionClosed, SessionGone
from services.lesson_finder import Lesson, current_lesson, lesson_slot
from services.members import Identity, require_teacher
from services.notify import URGENT, Button, Notice, Notifier, Stale
from services.text import person_key, turkish_casefold

log = logging.getLogger(__name__)

# `EVERYONE` (dal.models; the check-in script reads it too) is the enrolment of a session whose
# lesson is in no schedule (opened by a typed name): everyone who sends the code counts as
# present, since nobody's enrolment is known (the teacher is told so). A scheduled lesson's
# enrolment is its slot's students: the check-in script also accepts a student whose
# cached schedule has the slot (one who linked after the opening), and records one who has the
# course in another section as pending review with the reason ANOTHER_SECTION.
# Security levels: 1 code, 2 code and place, 3 rotating code and place.
SECURITY_LEVELS = tuple(Security)


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


class SessionService:
    def __init__(
        self,
        *,
        accounts: AccountStore,
        schedules: ScheduleStore,
        sessions: LiveSessions,
        notifier: Notifier,
        tz: ZoneInfo,
        early_margin: timedelta,
        late_after: timedelta,
        default_duration: timedelta,
        security_level_default: int = 1,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self._accounts = accounts
        self._schedules = schedules
        self._sessions = sessions
        self._notifier = notifier
        self._tz = tz
        self._early_margin = early_margin
        self._late_after = late_after
        self._default_duration = default_duration
        self._clock = clock
        if security_level_default not in SECURITY_LEVELS:
            raise ValueError(f"security level must be 1, 2 or 3, got {security_level_default}")
        self._level_default = security_level_default

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
        await self.live_session(teacher=teacher, attendance_id=attendance_id)
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

    async def live_session(self, *, teacher: Identity, attendance_id: UUID) -> LiveSession:
        """The teacher's session, still open by this replica's clock: a quick first answer.
        The write itself is what decides: Redis refuses it once the session has ended by
        Redis's clock or the finalizer has claimed it (`ReviewService._write`; a setting's write
        here), so that no change is confirmed and then lost; changes after the end go through
        /history."""
        attendance = await self.owned_session(teacher=teacher, attendance_id=attendance_id)
        end = attendance.end_time or attendance.planned_end_time
        if end <= self._clock():
            raise SessionClosed
        return attendance

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
        await self.live_session(teacher=teacher, attendance_id=attendance_id)
        try:
            return await self._sessions.set_head_count_cap(attendance_id=attendance_id, cap=cap)
        except AttendanceEnded:
            raise SessionClosed from None
        except NotFound:
            raise SessionGone from None


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
    "ChooseLesson",
    "NoLessons",
    "Roster",
    "SessionService",
    "StartOutcome",
    "Started",
    "Tally",
    "TeacherLessons",
    "entry_to_lesson",
]
