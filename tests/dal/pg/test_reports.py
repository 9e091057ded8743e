"""`ReportStore` (dal/pg/reports.py) against the real PostgreSQL server: a student's records,
oldest first, in every status."""

from __future__ import annotations

from datetime import timedelta

from dal.models import AttendanceRecord, FailReason
from dal.pg import Postgres
from tests.dal.pg.support import T0, TEACHER, attendance, present, student


async def test_student_records_oldest_first_every_status(pg: Postgres) -> None:
    await pg.accounts.add_users(users=[TEACHER, student("1")])
    sessions = [attendance(start=T0 + timedelta(days=d), name=f"Ders {d}") for d in range(3)]
    await pg.attendance.add_attendances(attendances=sessions)
    await pg.attendance.add_attendance_records(
        records=[
            present(sessions[0], "1"),
            AttendanceRecord(
                attendance_id=sessions[1].attendance_id,
                student_number="1",
                is_attended=True,
                attendance_time=T0,
                is_late=True,
            ),
            AttendanceRecord(
                attendance_id=sessions[2].attendance_id,
                student_number="1",
                is_attended=False,
                fail_reason=FailReason.ABSENT,
            ),
        ]
    )

    history = await pg.reports.get_student_records(student_number="1")

    assert [(h.lesson_name, h.is_attended, h.is_late, h.fail_reason) for h in history] == [
        ("Ders 0", True, False, None),
        ("Ders 1", True, True, None),
        ("Ders 2", False, False, "ABSENT"),
    ]
    assert history[2].lesson_code == "FIZ101"
    assert history[2].start_time == T0 + timedelta(days=2)
