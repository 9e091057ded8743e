"""`CorrectionStore` (dal/pg/corrections.py) against the real PostgreSQL server: a session or a
record soft-deleted disappears from every read; a teacher accepts, then rejects, a record."""

from __future__ import annotations

import pytest

from dal.errors import NotFound
from dal.models import AttendanceRecord, FailReason
from dal.pg import Postgres
from tests.dal.pg.support import T0, TEACHER, _session, attendance, present, student


async def test_soft_deleted_attendance_disappears_with_its_records(
    pg: Postgres,
) -> None:
    await pg.accounts.add_users(users=[TEACHER, student("1")])
    att = attendance()
    await pg.attendance.add_attendances(attendances=[att])
    await pg.attendance.add_attendance_records(records=[present(att, "1")])

    await pg.corrections.delete_attendance(attendance_id=att.attendance_id, reason="yanlış ders")

    assert await pg.reports.get_attendances(teacher_school_number="T0001") == []
    with pytest.raises(NotFound):
        await pg.attendance.get_attendance_by_id(attendance_id=att.attendance_id)
    assert await pg.attendance.get_attendance_records(attendance_id=att.attendance_id) == []
    assert await pg.reports.get_student_records(student_number="1") == []
    with pytest.raises(NotFound):
        await pg.corrections.delete_attendance(attendance_id=att.attendance_id, reason="again")
    row = await pg.db.pool.fetchrow(
        "SELECT deletion_reason, deletion_time FROM attendances WHERE attendance_id = $1",
        att.attendance_id,
    )
    assert row is not None
    assert row["deletion_reason"] == "yanlış ders"
    assert row["deletion_time"] is not None


async def test_soft_deleted_record_is_excluded(pg: Postgres) -> None:
    att = await _session(pg, 2)
    await pg.attendance.add_attendance_records(records=[present(att, "0000"), present(att, "0001")])

    await pg.corrections.delete_attendance_record(
        attendance_id=att.attendance_id, student_number="0000", reason="kopya"
    )

    stored = await pg.attendance.get_attendance_records(attendance_id=att.attendance_id)
    assert [r.student_number for r in stored] == ["0001"]
    assert await pg.reports.get_student_records(student_number="0000") == []
    with pytest.raises(NotFound):
        await pg.corrections.delete_attendance_record(
            attendance_id=att.attendance_id, student_number="0000", reason="again"
        )
    with pytest.raises(NotFound):
        await pg.corrections.set_record_attended(
            attendance_id=att.attendance_id,
            student_number="0000",
            is_attended=True,
            fail_reason=None,
        )


async def test_teacher_accepts_then_rejects_a_pending_record(pg: Postgres) -> None:
    att = await _session(pg, 1)
    await pg.attendance.add_attendance_records(
        records=[
            AttendanceRecord(
                attendance_id=att.attendance_id,
                student_number="0000",
                is_attended=False,
                attendance_time=T0,
                fail_reason=FailReason.NOT_IN_SCHEDULE,
            )
        ]
    )

    accepted = await pg.corrections.set_record_attended(
        attendance_id=att.attendance_id, student_number="0000", is_attended=True, fail_reason=None
    )
    assert (accepted.is_attended, accepted.fail_reason) == (True, None)
    rejected = await pg.corrections.set_record_attended(
        attendance_id=att.attendance_id,
        student_number="0000",
        is_attended=False,
        fail_reason="REJECTED: başka şube",
    )

    assert rejected.fail_reason == "REJECTED: başka şube"
    assert await pg.attendance.get_attendance_records(attendance_id=att.attendance_id) == [rejected]
    with pytest.raises(NotFound):
        await pg.corrections.set_record_attended(
            attendance_id=att.attendance_id,
            student_number="nobody",
            is_attended=True,
            fail_reason=None,
        )
    with pytest.raises(ValueError, match="no fail_reason"):
        await pg.corrections.set_record_attended(
            attendance_id=att.attendance_id,
            student_number="0000",
            is_attended=True,
            fail_reason="ABSENT",
        )
