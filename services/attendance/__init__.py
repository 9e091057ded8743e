"""Live attendance: teachers open, watch, correct and end sessions; students check in.

`AttendanceService` is what handlers, the bot and the tests call; it is composed of four
parts, each given only the stores it uses (built in bot/compose.py `build_services`):

- `sessions.py` (`SessionService`): find today's lesson, open, watch, end the session; its
  settings (security level, the teacher's location, the head-count cap); the live tally;
- `checkins.py` (`CheckInService`): a student's code, then the location at levels 2 and 3;
- `review.py` (`ReviewService`): the teacher accepts, rejects or adds a student while the
  session is open, and the student is told;
- `rotation.py` (`CodeRotation`): the level-3 code that changes every few seconds.

They share one live session, read and written through dal/redis/sessions.py, whose scripts
decide every race (a write after the end is refused by Redis, not by a Python check).
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from uuid import UUID
from zoneinfo import ZoneInfo

from dal.models import LiveRecord, LiveSession, RecordStatus
from services.attendance.checkins import CheckInService, LinkedAccounts
from services.attendance.review import NOTE_MAX_CHARS, SCHOOL_NUMBER, ReviewService, clean_note
from services.attendance.rotation import CodeRotation
from services.attendance.sessions import (
    EVERYONE,
    SECURITY_LEVELS,
    AlreadyOpen,
    ChooseLesson,
    NoLessons,
    Roster,
    SessionService,
    Started,
    StartOutcome,
    Tally,
    TeacherLessons,
    entry_to_lesson,
)
from services.checkin_outcomes import CheckInResult, LocationResult
from services.members import Identity


class AttendanceService:
    """The attendance use cases in one place for their callers; each method is its part's."""

    def __init__(
        self,
        *,
        sessions: SessionService,
        checkins: CheckInService,
        reviews: ReviewService,
        rotation: CodeRotation,
    ) -> None:
        self._sessions = sessions
        self._checkins = checkins
        self._reviews = reviews
        self._rotation = rotation

    # --- sessions.py ---------------------------------------------------------------------

    @property
    def tz(self) -> ZoneInfo:
        return self._sessions.tz

    def now(self) -> datetime:
        return self._sessions.now()

    async def teacher_lessons(self, *, teacher: Identity) -> TeacherLessons:
        return await self._sessions.teacher_lessons(teacher=teacher)

    async def start_session(
        self, *, teacher: Identity, chat_id: int, lesson_name: str | None = None
    ) -> StartOutcome:
        return await self._sessions.start_session(
            teacher=teacher, chat_id=chat_id, lesson_name=lesson_name
        )

    async def start_chosen(
        self, *, teacher: Identity, chat_id: int, course_code: str, start_epoch: int
    ) -> StartOutcome:
        return await self._sessions.start_chosen(
            teacher=teacher, chat_id=chat_id, course_code=course_code, start_epoch=start_epoch
        )

    async def open_session(self, *, teacher: Identity) -> LiveSession | None:
        return await self._sessions.open_session(teacher=teacher)

    async def owned_session(self, *, teacher: Identity, attendance_id: UUID) -> LiveSession:
        return await self._sessions.owned_session(teacher=teacher, attendance_id=attendance_id)

    async def set_status_message(
        self, *, attendance: LiveSession, chat_id: int, message_id: int
    ) -> None:
        await self._sessions.set_status_message(
            attendance=attendance, chat_id=chat_id, message_id=message_id
        )

    async def set_security_level(
        self, *, teacher: Identity, attendance_id: UUID, level: int
    ) -> LiveSession:
        return await self._sessions.set_security_level(
            teacher=teacher, attendance_id=attendance_id, level=level
        )

    async def share_teacher_location(
        self, *, teacher: Identity, latitude: float, longitude: float
    ) -> LiveSession | None:
        return await self._sessions.share_teacher_location(
            teacher=teacher, latitude=latitude, longitude=longitude
        )

    async def set_head_count_cap(
        self, *, teacher: Identity, attendance_id: UUID, cap: int | None
    ) -> LiveSession:
        return await self._sessions.set_head_count_cap(
            teacher=teacher, attendance_id=attendance_id, cap=cap
        )

    async def end_session(
        self, *, teacher: Identity, attendance_id: UUID | None = None
    ) -> Roster | None:
        return await self._sessions.end_session(teacher=teacher, attendance_id=attendance_id)

    async def roster(
        self, *, teacher: Identity, attendance_id: UUID | None = None
    ) -> Roster | None:
        return await self._sessions.roster(teacher=teacher, attendance_id=attendance_id)

    async def status(self, *, attendance_id: UUID) -> Roster | None:
        return await self._sessions.status(attendance_id=attendance_id)

    def is_late(self, attendance: LiveSession, record: LiveRecord) -> bool:
        return self._sessions.is_late(attendance, record)

    def status_of(self, attendance: LiveSession, record: LiveRecord) -> RecordStatus:
        return self._sessions.status_of(attendance, record)

    def tally(self, attendance: LiveSession, records: Sequence[LiveRecord]) -> Tally:
        return self._sessions.tally(attendance, records)

    # --- checkins.py ---------------------------------------------------------------------

    async def check_in(
        self, *, telegram_id: int, code: str, busy_keys: Sequence[str] = ()
    ) -> CheckInResult:
        return await self._checkins.check_in(
            telegram_id=telegram_id, code=code, busy_keys=busy_keys
        )

    async def awaiting_location(self, *, telegram_id: int) -> LiveSession | None:
        return await self._checkins.awaiting_location(telegram_id=telegram_id)

    @property
    def location_wait_seconds(self) -> int:
        return self._checkins.location_wait_seconds

    @property
    def location_radius_meters(self) -> float:
        return self._checkins.location_radius_meters

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
        return await self._checkins.submit_location(
            telegram_id=telegram_id,
            latitude=latitude,
            longitude=longitude,
            accuracy=accuracy,
            sent_at=sent_at,
            forwarded=forwarded,
            via_bot=via_bot,
        )

    async def without_location(self, *, telegram_id: int) -> LocationResult:
        return await self._checkins.without_location(telegram_id=telegram_id)

    # --- review.py -----------------------------------------------------------------------

    async def review(
        self,
        *,
        teacher: Identity,
        attendance_id: UUID,
        student_number: str,
        accept: bool,
        reason: str | None = None,
    ) -> LiveRecord:
        return await self._reviews.review(
            teacher=teacher,
            attendance_id=attendance_id,
            student_number=student_number,
            accept=accept,
            reason=reason,
        )

    async def add_student(
        self, *, teacher: Identity, attendance_id: UUID, student_number: str
    ) -> LiveRecord:
        return await self._reviews.add_student(
            teacher=teacher, attendance_id=attendance_id, student_number=student_number
        )

    async def language_of(self, telegram_id: int | None) -> str:
        return await self._reviews.language_of(telegram_id)

    # --- rotation.py ---------------------------------------------------------------------

    async def schedule_missed_rotations(self) -> int:
        return await self._rotation.schedule_missed_rotations()

    async def rotate_codes(self) -> list[LiveSession]:
        return await self._rotation.rotate_codes()


__all__ = [
    "EVERYONE",
    "NOTE_MAX_CHARS",
    "SCHOOL_NUMBER",
    "SECURITY_LEVELS",
    "AlreadyOpen",
    "AttendanceService",
    "CheckInService",
    "ChooseLesson",
    "CodeRotation",
    "LinkedAccounts",
    "NoLessons",
    "ReviewService",
    "Roster",
    "SessionService",
    "StartOutcome",
    "Started",
    "Tally",
    "TeacherLessons",
    "clean_note",
    "entry_to_lesson",
]
