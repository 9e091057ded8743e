"""Pydantic models shared by the PostgreSQL and Redis clients.

Every datetime is timezone-aware (`AwareDatetime`): a naive one is a bug and fails validation.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from enum import IntEnum, StrEnum
from typing import Annotated, Any, Final
from uuid import UUID

from pydantic import (
    AwareDatetime,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    model_validator,
)


class Role(StrEnum):
    STUDENT = "student"
    TEACHER = "teacher"


class FailReason(StrEnum):
    """The reason code of a record that does not count as attended (`fail_reason`). Only the
    code: a teacher's note goes in `teacher_note`."""

    NOT_IN_SCHEDULE = "NOT_IN_SCHEDULE"  # checked in, lesson not in their schedule: pending review
    ANOTHER_SECTION = "ANOTHER_SECTION"  # checked in, the course is theirs in another section
    REJECTED = "REJECTED"  # the teacher rejected the check-in
    ABSENT = "ABSENT"  # enrolled, never checked in (written at finalization)
    MARKED_ABSENT = "MARKED_ABSENT"  # a teacher corrected a saved record to absent
    EXCUSED = "EXCUSED"  # excused by the teacher
    # Security levels 2 and 3: a valid code whose location did not prove presence,
    # pending review. MISSING: no location came (the record says so until one does).
    LOCATION_TOO_FAR = "LOCATION_TOO_FAR"
    LOCATION_FORWARDED = "LOCATION_FORWARDED"
    LOCATION_STALE = "LOCATION_STALE"
    LOCATION_MISSING = "LOCATION_MISSING"
    # Proving nothing: sent through an inline bot; no accuracy reported; accuracy worse than
    # the radius.
    LOCATION_VIA_BOT = "LOCATION_VIA_BOT"
    LOCATION_NO_ACCURACY = "LOCATION_NO_ACCURACY"
    LOCATION_INACCURATE = "LOCATION_INACCURATE"
    OVER_CAP = "OVER_CAP"  # checked in after the head-count cap was reached: pending review


def security_level(value: object) -> object:
    """A stored security level as the integer 1..3: the seed's "code" (and anything stored
    before migration 0004 as text) is level 1."""
    if value == "code" or value is None:
        return 1
    if isinstance(value, str) and value.strip() in {"1", "2", "3"}:
        return int(value)
    return value


SecurityLevel = Annotated[int, BeforeValidator(security_level), Field(ge=1, le=3)]


class Security(IntEnum):
    """What each security level adds (a session's `security_option`); the check-in script
    reads these as `LEVEL_CODE`, ... (dal/redis/scripts.py)."""

    CODE = 1  # the code alone
    LOCATION = 2  # and, once the teacher's location is known, the student's location
    ROTATING = 3  # and the code rotates (only the current and the previous one count)


# The member of a session's enrolled set that enrols everyone: the lesson has no known
# enrolment (opened by name). Written by services.attendance.sessions, honoured by lua/check_in.lua
# (as `EVERYONE`), never a student at finalization.
EVERYONE: Final = "*"


class RecordStatus(StrEnum):
    """The one vocabulary of a record's status: check-in replies, finalization, /history,
    exports and statistics all use it. Attended: present and late."""

    PRESENT = "present"
    LATE = "late"
    ABSENT = "absent"
    PENDING = "pending"  # pending review
    REJECTED = "rejected"
    EXCUSED = "excused"

    @property
    def attended(self) -> bool:
        return self in (RecordStatus.PRESENT, RecordStatus.LATE)


_PENDING_REASONS = frozenset(
    {
        FailReason.NOT_IN_SCHEDULE,
        FailReason.ANOTHER_SECTION,
        FailReason.LOCATION_TOO_FAR,
        FailReason.LOCATION_FORWARDED,
        FailReason.LOCATION_STALE,
        FailReason.LOCATION_MISSING,
        FailReason.LOCATION_VIA_BOT,
        FailReason.LOCATION_NO_ACCURACY,
        FailReason.LOCATION_INACCURATE,
        FailReason.OVER_CAP,
    }
)
_ABSENT_REASONS = frozenset({FailReason.ABSENT, FailReason.MARKED_ABSENT})


def record_status(*, is_attended: bool, is_late: bool, fail_reason: str | None) -> RecordStatus:
    """The status a record's stored fields say (for rows and records written without one)."""
    if is_attended:
        return RecordStatus.LATE if is_late else RecordStatus.PRESENT
    if fail_reason is None or fail_reason in _ABSENT_REASONS:
        return RecordStatus.ABSENT
    if fail_reason == FailReason.REJECTED:
        return RecordStatus.REJECTED
    if fail_reason == FailReason.EXCUSED:
        return RecordStatus.EXCUSED
    return RecordStatus.PENDING


class RecordSource(StrEnum):
    CODE = "code"  # the student sent the code or opened the deep link
    TEACHER = "teacher"  # the teacher added the student by school number


class _Model(BaseModel):
    model_config = ConfigDict(frozen=False, extra="ignore")


# --- PostgreSQL -------------------------------------------------------------------------


class User(_Model):
    user_school_number: str = Field(min_length=1, max_length=64)
    user_full_name: str = Field(min_length=1, max_length=200)
    role: Role


class Attendance(_Model):
    attendance_id: UUID
    teacher_school_number: str
    lesson_name: str
    start_time: AwareDatetime
    end_time: AwareDatetime | None = None
    security_option: SecurityLevel = 1
    lesson_code: str | None = None
    lesson_slot: str | None = None  # see services.lesson_finder.lesson_slot; None: ad hoc
    scheduled_start: AwareDatetime | None = None  # the lesson's start in the schedule
    term: str | None = None  # "YYYY-D", the term current when it opened; None: unknown
    is_deleted: bool = False
    deletion_reason: str | None = None
    deletion_time: AwareDatetime | None = None


class AttendanceRecord(_Model):
    attendance_id: UUID
    student_number: str
    is_attended: bool
    attendance_time: AwareDatetime | None = None
    fail_reason: str | None = None  # a reason code (FailReason), never free text
    is_late: bool = False
    source: RecordSource = RecordSource.CODE
    status: RecordStatus = RecordStatus.PRESENT  # derived from the fields above when not given
    teacher_note: str | None = None
    is_deleted: bool = False
    deletion_reason: str | None = None
    deletion_time: AwareDatetime | None = None

    @model_validator(mode="before")
    @classmethod
    def _derive_status(cls, data: Any) -> Any:
        if isinstance(data, dict) and data.get("status") is None:
            data = dict(data)
            data["status"] = record_status(
                is_attended=bool(data.get("is_attended")),
                is_late=bool(data.get("is_late")),
                fail_reason=data.get("fail_reason"),
            )
        return data


@dataclass(frozen=True, slots=True)
class RecordRow:
    """An `attendance_records` row as finalization writes it, by the thousand, from values
    already validated in Redis's models: a slotted dataclass, not a validating model
    (constructing 30,000 pydantic models cost a fifth of a finalization in `make bench`).
    The same fields as `AttendanceRecord`, which the PostgreSQL client accepts alike."""

    attendance_id: UUID
    student_number: str
    is_attended: bool
    attendance_time: datetime | None
    fail_reason: str | None
    is_late: bool
    source: RecordSource
    status: RecordStatus
    teacher_note: str | None
    is_deleted: bool = False
    deletion_reason: str | None = None
    deletion_time: datetime | None = None


class ScheduleEntry(_Model):
    """One dated lesson occurrence from a user's portal schedule, cached at login."""

    school_number: str
    start_time: AwareDatetime
    end_time: AwareDatetime
    course_code: str
    course_name: str
    teachers: str  # the portal's `Hocalar`, as shown
    teacher_key: str  # normalized teacher name(s) for matching (services.lesson_finder)
    term: str | None = None  # "YYYY-D" from the portal's Yil and Donem; None: unknown


# --- Redis ------------------------------------------------------------------------------


class CachedAccount(_Model):
    """A linked Telegram account: who this chat is, cached with a role-based TTL."""

    telegram_id: int
    school_number: str
    full_name: str
    role: Role
    language: str = "en"
    reminders_enabled: bool = True
    logged_in_at: AwareDatetime
    courses: list[str] = Field(default_factory=list)  # course codes, current term's schedule
    slots: list[str] = Field(default_factory=list)  # lesson slots, current term's schedule
    term: str | None = None  # the term `courses` and `slots` came from


class LiveSession(_Model):
    """A live attendance session."""

    attendance_id: UUID
    teacher_school_number: str
    teacher_full_name: str
    teacher_telegram_id: int | None = None
    lesson_name: str
    lesson_code: str | None = None
    slot: str | None = None  # the lesson slot (services.lesson_finder.lesson_slot); None: ad hoc
    scheduled_start: AwareDatetime | None = None  # the lesson's start in the schedule
    term: str | None = None  # the current term when it opened
    code: str = Field(pattern=r"^\d{6}$")
    security_option: SecurityLevel = 1
    start_time: AwareDatetime
    planned_end_time: AwareDatetime
    end_time: AwareDatetime | None = None  # set when ended; finalization moves it to PostgreSQL
    status_chat_id: int | None = None  # the teacher's live status message
    status_message_id: int | None = None
    # Levels 2 and 3: the teacher's shared location anchors the session.
    anchor_latitude: float | None = None
    anchor_longitude: float | None = None
    # Level 3: the code before the current one (still accepted) and when the code last changed.
    previous_code: str | None = Field(default=None, pattern=r"^\d{6}$")
    code_changed_at: AwareDatetime | None = None
    # The head count the teacher gave: check-ins beyond it are pending review (OVER_CAP).
    head_count_cap: int | None = Field(default=None, ge=1)


class LiveRecord(_Model):
    """One student's record in a live session.

    Stored in the session's hash without `attendance_id` (the key carries it). Lateness is not
    stored: it follows from `attendance_time` and the session's start.
    """

    attendance_id: UUID
    student_number: str
    student_full_name: str
    telegram_id: int | None = None
    is_attended: bool
    attendance_time: AwareDatetime
    fail_reason: str | None = None  # a reason code (FailReason)
    teacher_note: str | None = None  # a rejecting teacher's words
    source: RecordSource = RecordSource.CODE
