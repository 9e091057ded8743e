"""Pydantic models shared by the PostgreSQL and Redis clients.

Every datetime is timezone-aware (`AwareDatetime`): a naive one is a bug and fails validation.
"""

from __future__ import annotations

from enum import StrEnum
from uuid import UUID

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field


class Role(StrEnum):
    STUDENT = "student"
    TEACHER = "teacher"


class FailReason(StrEnum):
    """Why a record does not count as attended (stored in `fail_reason`)."""

    NOT_IN_SCHEDULE = "NOT_IN_SCHEDULE"  # checked in, lesson not in their schedule: pending review
    REJECTED = "REJECTED"  # the teacher rejected the check-in
    ABSENT = "ABSENT"  # enrolled, never checked in (written at finalization)


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
    security_option: str = "code"
    lesson_code: str | None = None
    is_deleted: bool = False
    deletion_reason: str | None = None
    deletion_time: AwareDatetime | None = None


class AttendanceRecord(_Model):
    attendance_id: UUID
    student_number: str
    is_attended: bool
    attendance_time: AwareDatetime | None = None
    fail_reason: str | None = None
    is_late: bool = False
    source: RecordSource = RecordSource.CODE
    is_deleted: bool = False
    deletion_reason: str | None = None
    deletion_time: AwareDatetime | None = None


class ScheduleEntry(_Model):
    """One dated lesson occurrence from a user's portal schedule, cached at login."""

    school_number: str
    start_time: AwareDatetime
    end_time: AwareDatetime
    course_code: str
    course_name: str
    teachers: str  # the portal's `Hocalar`, as shown
    teacher_key: str  # normalized teacher name(s) for matching (services.lesson_finder)


# --- Redis ------------------------------------------------------------------------------


class UserSessionRedis(_Model):
    """A linked Telegram account: who this chat is, cached with a role-based TTL."""

    telegram_id: int
    school_number: str
    full_name: str
    role: Role
    language: str = "en"
    reminders_enabled: bool = True
    logged_in_at: AwareDatetime
    courses: list[str] = Field(default_factory=list)  # course codes in the cached schedule


class AttendanceRedis(_Model):
    """A live attendance session."""

    attendance_id: UUID
    teacher_school_number: str
    teacher_full_name: str
    teacher_telegram_id: int | None = None
    lesson_name: str
    lesson_code: str | None = None
    code: str = Field(pattern=r"^\d{6}$")
    security_option: str = "code"
    start_time: AwareDatetime
    planned_end_time: AwareDatetime
    end_time: AwareDatetime | None = None  # set when ended; finalization moves it to PostgreSQL
    status_chat_id: int | None = None  # the teacher's live status message
    status_message_id: int | None = None


class AttendanceRecordRedis(_Model):
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
    fail_reason: str | None = None
    source: RecordSource = RecordSource.CODE
