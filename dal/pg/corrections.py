"""`CorrectionStore`: teachers' corrections to saved sessions, and their audit trail.

Every correction made with `changed_by` writes a row of `record_corrections` in the same
transaction as the change; `get_corrections` / `get_course_corrections` read that trail.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from uuid import UUID

from dal.errors import Conflict, NotFound
from dal.models import AttendanceRecord, RecordStatus, record_status
from dal.pg.common import (
    COURSE_KEY_SQL,
    RECORD_COLUMNS,
    RECORD_COLUMNS_R,
    USER_COLUMNS,
    Store,
    row_count,
)
from dal.pg.counts import move_record, remove_records
from dal.pg.pool import Conn

__all__ = ["Correction", "CorrectionStore"]


@dataclass(frozen=True, slots=True)
class Correction:
    """One entry of the audit trail (`record_corrections`)."""

    attendance_id: UUID
    session_start: datetime
    student_number: str | None
    full_name: str | None
    action: str  # status | excused | added | record_deleted | session_deleted
    old_status: str | None
    new_status: str | None
    reason: str | None
    changed_by: str
    changed_at: datetime


_VISIBLE_RECORD = """
r.attendance_id = $1 AND r.student_number = $2 AND NOT r.is_deleted
AND a.attendance_id = r.attendance_id AND NOT a.is_deleted
"""


class CorrectionStore(Store):
    """Changes teachers make to saved sessions (status, excuse, added student, deletion)."""

    async def set_record_attended(
        self,
        *,
        attendance_id: UUID,
        student_number: str,
        is_attended: bool,
        fail_reason: str | None,
        changed_by: str | None = None,
        reason: str | None = None,
        note: str | None = None,
        expect_status: RecordStatus | None = None,
    ) -> AttendanceRecord:
        """Accept (`is_attended=True`, no reason) or fail a stored record; returns it.

        The status follows (`dal.models.record_status`): an accepted record that was stored
        late is late again. With `changed_by`, the change goes into the audit trail
        (`record_corrections`: old and new status, `reason`) in the same transaction; `note`
        replaces the teacher's note when given. With `expect_status`, a record in another
        status is left alone (`NotFound`): the row is locked, so two teachers' concurrent
        corrections do not both apply to the same old state.
        """
        if is_attended and fail_reason is not None:
            raise ValueError("an attended record has no fail_reason")
        status = record_status(is_attended=is_attended, is_late=False, fail_reason=fail_reason)
        async with self._transaction() as conn:
            old: str | None = await conn.fetchval(
                "SELECT r.status FROM attendance_records AS r, attendances AS a"
                # The session is share-locked too: a concurrent soft deletion of it either
                # waits for this correction or makes it find nothing, so the counts never
                # move for a record of a deleted session.
                f" WHERE {_VISIBLE_RECORD} FOR UPDATE OF r FOR SHARE OF a",
                attendance_id,
                student_number,
            )
            if old is None or (expect_status is not None and old != expect_status.value):
                raise NotFound(f"no record of {student_number!r} in attendance {attendance_id}")
            row = await conn.fetchrow(
                "UPDATE attendance_records AS r SET is_attended = $3, fail_reason = $4,"
                " status = CASE WHEN $3 AND r.is_late THEN 'late' ELSE $5 END,"
                " teacher_note = coalesce($6, r.teacher_note)"
                f" FROM attendances AS a WHERE {_VISIBLE_RECORD} RETURNING {RECORD_COLUMNS_R}",
                attendance_id,
                student_number,
                is_attended,
                fail_reason,
                status.value,
                note,
            )
            assert row is not None  # locked above
            record = AttendanceRecord.model_validate(dict(row))
            await move_record(
                conn,
                attendance_id=attendance_id,
                student_number=student_number,
                old=old,
                new=record.status,
            )
            if changed_by is not None:
                action = "excused" if record.status is RecordStatus.EXCUSED else "status"
                await _audit(
                    conn,
                    attendance_id,
                    student_number,
                    action,
                    old,
                    record.status.value,
                    reason,
                    changed_by,
                )
        return record

    async def add_saved_record(
        self, *, attendance_id: UUID, student_number: str, changed_by: str, at: datetime
    ) -> AttendanceRecord:
        """A teacher adds a student as present to a saved session (a correction, kept in the
        audit trail). An unknown school number becomes a student named by the number, as
        finalization does. A soft-deleted record of the student comes back as present.
        NotFound for a missing or deleted session, Conflict when the student has a record."""
        async with self._transaction() as conn:
            live = await conn.fetchval(
                "SELECT true FROM attendances WHERE attendance_id = $1 AND NOT is_deleted"
                " FOR SHARE",
                attendance_id,
            )
            if live is None:
                raise NotFound(f"no attendance {attendance_id}")
            await conn.execute(
                f"INSERT INTO users ({USER_COLUMNS}) VALUES ($1, $1, 'student')"
                " ON CONFLICT (user_school_number) DO NOTHING",
                student_number,
            )
            row = await conn.fetchrow(
                f"INSERT INTO attendance_records AS r ({RECORD_COLUMNS})"
                " VALUES ($1, $2, true, $3, NULL, false, 'teacher', false, NULL, NULL,"
                " 'present', NULL)"
                " ON CONFLICT (attendance_id, student_number) DO UPDATE SET is_attended = true,"
                " attendance_time = excluded.attendance_time, fail_reason = NULL,"
                " is_late = false, source = 'teacher', status = 'present', is_deleted = false,"
                " deletion_reason = NULL, deletion_time = NULL, teacher_note = NULL"
                f" WHERE r.is_deleted RETURNING {RECORD_COLUMNS_R}",
                attendance_id,
                student_number,
                at,
            )
            if row is None:
                raise Conflict(f"{student_number!r} already has a record in {attendance_id}")
            await move_record(
                conn,
                attendance_id=attendance_id,
                student_number=student_number,
                old=None,
                new=RecordStatus.PRESENT,
            )
            await _audit(
                conn, attendance_id, student_number, "added", None, "present", None, changed_by
            )
        return AttendanceRecord.model_validate(dict(row))

    async def delete_attendance(
        self, *, attendance_id: UUID, reason: str, changed_by: str | None = None
    ) -> None:
        """Soft-delete the attendance (its records disappear from reads with it). With
        `changed_by`, the audit trail (`record_corrections`) says who, in the same
        transaction."""
        async with self._transaction() as conn:
            status = await conn.execute(
                "UPDATE attendances SET is_deleted = true, deletion_reason = $2,"
                " deletion_time = now() WHERE attendance_id = $1 AND NOT is_deleted",
                attendance_id,
                reason,
            )
            if row_count(status) == 0:
                raise NotFound(f"no attendance {attendance_id}")
            # Its records no longer count. Locked first: a correction of one of them that
            # got there before has committed by now, and this reads its outcome.
            visible = await conn.fetch(
                "SELECT student_number, status FROM attendance_records"
                " WHERE attendance_id = $1 AND NOT is_deleted FOR UPDATE",
                attendance_id,
            )
            await remove_records(
                conn,
                attendance_id=attendance_id,
                statuses=[(r["student_number"], r["status"]) for r in visible],
            )
            if changed_by is not None:
                await _audit(
                    conn, attendance_id, None, "session_deleted", None, None, reason, changed_by
                )

    async def delete_attendance_record(
        self,
        *,
        attendance_id: UUID,
        student_number: str,
        reason: str,
        changed_by: str | None = None,
    ) -> None:
        async with self._transaction() as conn:
            live = await conn.fetchval(
                "SELECT true FROM attendances WHERE attendance_id = $1 AND NOT is_deleted"
                " FOR SHARE",
                attendance_id,
            )
            old: str | None = None
            if live:
                old = await conn.fetchval(
                    "UPDATE attendance_records AS r SET is_deleted = true, deletion_reason = $3,"
                    f" deletion_time = now() FROM attendances AS a WHERE {_VISIBLE_RECORD}"
                    " RETURNING r.status",
                    attendance_id,
                    student_number,
                    reason,
                )
            if old is None:
                raise NotFound(f"no record of {student_number!r} in attendance {attendance_id}")
            await move_record(
                conn,
                attendance_id=attendance_id,
                student_number=student_number,
                old=old,
                new=None,
            )
            if changed_by is not None:
                await _audit(
                    conn,
                    attendance_id,
                    student_number,
                    "record_deleted",
                    old,
                    None,
                    reason,
                    changed_by,
                )

    async def get_corrections(self, *, attendance_id: UUID) -> list[Correction]:
        """The audit trail of one session, oldest first."""
        rows = await self._pool.fetch(
            "SELECT c.attendance_id, a.start_time AS session_start, c.student_number,"
            " coalesce(u.user_full_name, c.student_number) AS full_name, c.action,"
            " c.old_status, c.new_status, c.reason, c.changed_by, c.changed_at"
            " FROM record_corrections AS c"
            " JOIN attendances AS a ON a.attendance_id = c.attendance_id"
            " LEFT JOIN users AS u ON u.user_school_number = c.student_number"
            " WHERE c.attendance_id = $1 ORDER BY c.changed_at, c.correction_id",
            attendance_id,
        )
        return [Correction(**dict(row)) for row in rows]

    async def get_course_corrections(
        self, *, teacher_school_number: str, course_key: str
    ) -> list[Correction]:
        """The audit trail of the teacher's sessions of the course (deleted ones included:
        their deletion is a correction), oldest first."""
        rows = await self._pool.fetch(
            "SELECT c.attendance_id, a.start_time AS session_start, c.student_number,"
            " coalesce(u.user_full_name, c.student_number) AS full_name, c.action,"
            " c.old_status, c.new_status, c.reason, c.changed_by, c.changed_at"
            " FROM record_corrections AS c"
            " JOIN attendances AS a ON a.attendance_id = c.attendance_id"
            " LEFT JOIN users AS u ON u.user_school_number = c.student_number"
            f" WHERE a.teacher_school_number = $1 AND {COURSE_KEY_SQL} = $2"
            " ORDER BY c.changed_at, c.correction_id",
            teacher_school_number,
            course_key,
        )
        return [Correction(**dict(row)) for row in rows]


async def _audit(
    conn: Conn,
    attendance_id: UUID,
    student_number: str | None,
    action: str,
    old_status: str | None,
    new_status: str | None,
    reason: str | None,
    changed_by: str,
) -> None:
    await conn.execute(
        "INSERT INTO record_corrections (attendance_id, student_number, action, old_status,"
        " new_status, reason, changed_by) VALUES ($1, $2, $3, $4, $5, $6, $7)",
        attendance_id,
        student_number,
        action,
        old_status,
        new_status,
        reason,
        changed_by,
    )
