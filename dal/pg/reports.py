"""`ReportStore`: what the reports read: teachers' history, students' records, term sheets,
exports and the low-attendance warning states.

Reads only (besides the warning states); soft-deleted sessions and records are left out.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from uuid import UUID

from pydantic import AwareDatetime, BaseModel, ConfigDict

from dal.models import Attendance, RecordStatus
from dal.pg.common import ATTENDANCE_COLUMNS, COURSE_KEY_SQL, Store

__all__ = ["CourseRecordRow", "CourseSummary", "ReportStore", "StudentAttendanceRow"]


class StudentAttendanceRow(BaseModel):
    """One line of a student's attendance history."""

    model_config = ConfigDict(frozen=True)

    attendance_id: UUID
    lesson_name: str
    lesson_code: str | None
    start_time: AwareDatetime
    is_attended: bool
    is_late: bool
    fail_reason: str | None
    status: RecordStatus


@dataclass(frozen=True, slots=True)
class CourseSummary:
    """A course a teacher has saved sessions of (`course_key`: see COURSE_KEY_SQL)."""

    course_key: str
    lesson_name: str
    sessions: int


@dataclass(frozen=True, slots=True)
class CourseRecordRow:
    """One record of a course export (plain: thousands are read at once)."""

    attendance_id: UUID
    student_number: str
    full_name: str
    status: RecordStatus
    attendance_time: datetime | None
    fail_reason: str | None
    teacher_note: str | None
    source: str


class ReportStore(Store):
    """History pages, per-course statistics and exports."""

    async def get_attendances(
        self, *, teacher_school_number: str, limit: int = 20, offset: int = 0
    ) -> list[Attendance]:
        """The teacher's attendances, newest first."""
        _check_page(limit, offset)
        rows = await self._pool.fetch(
            f"SELECT {ATTENDANCE_COLUMNS} FROM attendances"
            " WHERE teacher_school_number = $1 AND NOT is_deleted"
            " ORDER BY start_time DESC, attendance_id LIMIT $2 OFFSET $3",
            teacher_school_number,
            limit,
            offset,
        )
        return [Attendance.model_validate(dict(row)) for row in rows]

    async def get_student_records(self, *, student_number: str) -> list[StudentAttendanceRow]:
        """The student's visible records of the current term (the latest term of the cached
        schedules, as dal/pg/schedules.py reads it; sessions of an unknown term count when no
        term is known at all), oldest lesson first: the per-course statistics of
        /my_attendance. Read through the student's index, so years of history cost nothing."""
        rows = await self._pool.fetch(
            "SELECT a.attendance_id, a.lesson_name, a.lesson_code, a.start_time,"
            " r.is_attended, r.is_late, r.fail_reason, r.status"
            " FROM attendance_records AS r"
            " JOIN attendances AS a ON a.attendance_id = r.attendance_id"
            " WHERE r.student_number = $1 AND NOT r.is_deleted AND NOT a.is_deleted"
            " AND a.term IS NOT DISTINCT FROM (SELECT max(term) FROM schedule_entries)"
            " ORDER BY a.start_time, a.attendance_id",
            student_number,
        )
        return [StudentAttendanceRow.model_validate(dict(row)) for row in rows]

    async def get_course_status_counts(
        self, *, course_key: str, student_numbers: Sequence[str]
    ) -> dict[str, dict[str, int]]:
        """Per student of `student_numbers`: their visible records in the course (`course_key`:
        the lesson code, or the name of sessions without one) counted by status."""
        rows = await self._pool.fetch(
            "SELECT r.student_number, r.status, count(*) AS n"
            " FROM attendance_records AS r"
            " JOIN attendances AS a ON a.attendance_id = r.attendance_id"
            " WHERE r.student_number = ANY($2::text[]) AND NOT r.is_deleted"
            f" AND NOT a.is_deleted AND {COURSE_KEY_SQL} = $1"
            " GROUP BY r.student_number, r.status",
            course_key,
            list(student_numbers),
        )
        counts: dict[str, dict[str, int]] = {}
        for row in rows:
            counts.setdefault(row["student_number"], {})[row["status"]] = int(row["n"])
        return counts

    async def get_teacher_courses(self, *, teacher_school_number: str) -> list[CourseSummary]:
        """The courses the teacher has saved sessions of, most recent first."""
        rows = await self._pool.fetch(
            f"SELECT {COURSE_KEY_SQL} AS course_key,"
            " (array_agg(a.lesson_name ORDER BY a.start_time DESC))[1] AS lesson_name,"
            " count(*) AS sessions, max(a.start_time) AS last_start"
            " FROM attendances AS a"
            " WHERE a.teacher_school_number = $1 AND NOT a.is_deleted"
            " GROUP BY 1 ORDER BY last_start DESC, 1",
            teacher_school_number,
        )
        return [CourseSummary(r["course_key"], r["lesson_name"], int(r["sessions"])) for r in rows]

    async def get_course_teachers(self, *, course_key: str) -> list[str]:
        """Everyone with a visible saved session of the course (a registrar's export)."""
        rows = await self._pool.fetch(
            "SELECT DISTINCT a.teacher_school_number FROM attendances AS a"
            f" WHERE NOT a.is_deleted AND {COURSE_KEY_SQL} = $1 ORDER BY 1",
            course_key,
        )
        return [r["teacher_school_number"] for r in rows]

    async def get_course_sessions(
        self, *, teacher_school_number: str, course_key: str
    ) -> list[Attendance]:
        """The teacher's visible sessions of the course, oldest first."""
        rows = await self._pool.fetch(
            f"SELECT {ATTENDANCE_COLUMNS} FROM attendances AS a"
            f" WHERE a.teacher_school_number = $1 AND NOT a.is_deleted AND {COURSE_KEY_SQL} = $2"
            " ORDER BY a.start_time, a.attendance_id",
            teacher_school_number,
            course_key,
        )
        return [Attendance.model_validate(dict(row)) for row in rows]

    async def get_course_records(
        self, *, teacher_school_number: str, course_key: str
    ) -> list[CourseRecordRow]:
        """The visible records of the teacher's visible sessions of the course, with the
        students' names: one query, plain rows (an export reads thousands)."""
        rows = await self._pool.fetch(
            "SELECT r.attendance_id, r.student_number,"
            " coalesce(u.user_full_name, r.student_number) AS full_name, r.status,"
            " r.attendance_time, r.fail_reason, r.teacher_note, r.source"
            " FROM attendance_records AS r"
            " JOIN attendances AS a ON a.attendance_id = r.attendance_id"
            " LEFT JOIN users AS u ON u.user_school_number = r.student_number"
            " WHERE a.teacher_school_number = $1 AND NOT a.is_deleted AND NOT r.is_deleted"
            f" AND {COURSE_KEY_SQL} = $2"
            " ORDER BY a.start_time, r.student_number",
            teacher_school_number,
            course_key,
        )
        return [
            CourseRecordRow(
                attendance_id=r["attendance_id"],
                student_number=r["student_number"],
                full_name=r["full_name"],
                status=RecordStatus(r["status"]),
                attendance_time=r["attendance_time"],
                fail_reason=r["fail_reason"],
                teacher_note=r["teacher_note"],
                source=r["source"],
            )
            for r in rows
        ]

    async def set_warning_states(
        self, *, course_key: str, states: dict[str, bool]
    ) -> dict[str, bool]:
        """Store whether each student is below the warning threshold in the course; return
        the students whose state changed (or was new), with the new state. One statement:
        two finalizations racing on the same student report a change once."""
        if not states:
            return {}
        numbers = sorted(states)
        rows = await self._pool.fetch(
            "INSERT INTO attendance_warnings AS w (student_number, course_key, below)"
            " SELECT n, $1, b FROM unnest($2::text[], $3::boolean[]) AS i (n, b)"
            " ON CONFLICT (student_number, course_key) DO UPDATE"
            " SET below = excluded.below, changed_at = now()"
            " WHERE w.below IS DISTINCT FROM excluded.below"
            " RETURNING w.student_number, w.below",
            course_key,
            numbers,
            [states[n] for n in numbers],
        )
        return {row["student_number"]: bool(row["below"]) for row in rows}


def _check_page(limit: int, offset: int) -> None:
    if limit < 0 or offset < 0:
        raise ValueError("limit and offset must not be negative")
