"""What the PostgreSQL store tests of this directory share: a teacher, a fixed lesson time, and
builders for students, sessions, records and schedule entries; `count` reads a table's size and
`_session` stores a teacher's session with its students."""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

from dal.models import Attendance, AttendanceRecord, Role, ScheduleEntry, User
from dal.pg import Postgres

IST = ZoneInfo("Europe/Istanbul")
T0 = datetime(2025, 3, 10, 9, 0, tzinfo=IST)
TEACHER = User(user_school_number="T0001", user_full_name="Ayşe Öğretmen", role=Role.TEACHER)


def student(number: str, name: str | None = None) -> User:
    return User(
        user_school_number=number, user_full_name=name or f"Öğrenci {number}", role=Role.STUDENT
    )


def attendance(
    *, start: datetime = T0, teacher: str = TEACHER.user_school_number, name: str = "Fizik I"
) -> Attendance:
    return Attendance(
        attendance_id=uuid.uuid4(),
        teacher_school_number=teacher,
        lesson_name=name,
        lesson_code="FIZ101",
        start_time=start,
        end_time=start + timedelta(minutes=50),
    )


def present(att: Attendance, number: str, *, minutes: int = 2) -> AttendanceRecord:
    return AttendanceRecord(
        attendance_id=att.attendance_id,
        student_number=number,
        is_attended=True,
        attendance_time=att.start_time + timedelta(minutes=minutes),
    )


def entry(
    number: str,
    *,
    start: datetime = T0,
    code: str = "FIZ101",
    key: str = "ayse ogretmen",
    minutes: int = 50,
) -> ScheduleEntry:
    return ScheduleEntry(
        school_number=number,
        start_time=start,
        end_time=start + timedelta(minutes=minutes),
        course_code=code,
        course_name=f"Ders {code}",
        teachers="Dr. Ayşe Öğretmen",
        teacher_key=key,
    )


async def count(pg: Postgres, table: str) -> int:
    value: int = await pg.db.pool.fetchval(f"SELECT count(*) FROM {table}")
    return value


async def _session(pg: Postgres, students: int) -> Attendance:
    await pg.accounts.add_users(users=[TEACHER, *(student(f"{n:04d}") for n in range(students))])
    att = attendance()
    await pg.attendance.add_attendances(attendances=[att])
    return att
