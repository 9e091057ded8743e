"""`ReportStore`: what the reports read: teachers' history, students' records, term sheets,
exports and the low-attendance warning states.

Reads only (besides the warning states); soft-deleted sessions and records are left out.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from uuid import UUID

from pydantic import AwareDatetime, BaseModel, ConfigDict

from dal.models import Attendance, RecordStatus
from dal.pg.common import ATTENDANCE_COLUMNS, COURSE_KEY_SQL, Store
from dal.pg.counts import COUNT_COLUMNS

# The term /my_attendance shows: the latest term of the cached schedules ('' when none names
# one, as attendance_course_counts writes an unknown term).
_CURRENT_TERM_SQL = "coalesce((SELECT max(term) FROM schedule_entries), '')"

__all__ = [
    "CourseCounts",
    "CourseRecordRow",
    "CourseSummary",
    "ReportStore",
    "StudentAttendanceRow",
    "WarningChange",
]


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


@dataclass(frozen=True, slots=True)
class CourseCounts:
    """A student's records of one course in one term, by status (attendance_course_counts)."""

    student_number: str
    term: str  # '' when unknown
    course_key: str
    lesson_name: str
    counts: dict[str, int]  # RecordStatus value -> records


@dataclass(frozen=True, slots=True)
class WarningChange:
    """A student's warning level in a course, before and after one look."""

    before: int
    after: int


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

    async def get_student_course_counts(self, *, student_number: str) -> list[CourseCounts]:
        """The student's per-course counts of the current term (see get_student_records),
        by course key: one row per course, whatever the years of history."""
        rows = await self._pool.fetch(
            f"SELECT student_number, term, course_key, lesson_name, {', '.join(COUNT_COLUMNS)}"
            " FROM attendance_course_counts"
            f" WHERE student_number = $1 AND term = {_CURRENT_TERM_SQL} AND held > 0"
            " ORDER BY course_key",
            student_number,
        )
        return [_counts(row) for row in rows]

    async def get_course_counts(
        self, *, course_key: str, term: str | None, student_numbers: Sequence[str]
    ) -> dict[str, CourseCounts]:
        """The counts of `student_numbers` in the course and term (None: unknown), by
        student: what the warning check reads after a finalization."""
        rows = await self._pool.fetch(
            f"SELECT student_number, term, course_key, lesson_name, {', '.join(COUNT_COLUMNS)}"
            " FROM attendance_course_counts"
            " WHERE student_number = ANY($3::text[]) AND term = $2 AND course_key = $1",
            course_key,
            term or "",
            list(student_numbers),
        )
        return {row["student_number"]: _counts(row) for row in rows}

    async def get_lesson_starts(
        self, *, student_numbers: Sequence[str], term: str | None, course_code: str | None = None
    ) -> dict[str, dict[str, list[datetime]]]:
        """Per student and course code: the starts of the lessons of `term` in their cached
        schedule (None: the current term, as /my_attendance takes it; '' a schedule that
        named none), `course_code` only when given. The weekly slots a course has, and so
        its planned sessions, are read from these."""
        rows = await self._pool.fetch(
            "SELECT school_number, course_code, start_time FROM schedule_entries"
            " WHERE school_number = ANY($1::text[])"
            f" AND coalesce(term, '') = coalesce($2::text, {_CURRENT_TERM_SQL})"
            " AND ($3::text IS NULL OR course_code = $3) ORDER BY 1, 2, 3",
            list(student_numbers),
            term,
            course_code,
        )
        starts: dict[str, dict[str, list[datetime]]] = {}
        for row in rows:
            by_course = starts.setdefault(row["school_number"], {})
            by_course.setdefault(row["course_code"], []).append(row["start_time"])
        return starts

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

    async def set_warning_levels(
        self, *, course_key: str, levels: dict[str, int]
    ) -> dict[str, WarningChange]:
        """Store each student's warning level in the course (0 nothing, 1 at most one more
        session to miss, 2 below the threshold); return the students whose level changed,
        with the level before and after (a new student starts from 0: one that is new at 0
        is not returned). One statement, the old level read under the row's lock: two
        finalizations racing on the same student report a change once."""
        if not levels:
            return {}
        numbers = sorted(levels)
        rows = await self._pool.fetch(
            "INSERT INTO attendance_warnings AS w (student_number, course_key, below, level)"
            " SELECT n, $1, l = 2, l FROM unnest($2::text[], $3::smallint[]) AS i (n, l)"
            " ORDER BY n"
            " ON CONFLICT (student_number, course_key) DO UPDATE"
            " SET previous_level = w.level, level = excluded.level, below = excluded.below,"
            " changed_at = now()"
            " WHERE w.level IS DISTINCT FROM excluded.level"
            " RETURNING w.student_number, w.previous_level, w.level",
            course_key,
            numbers,
            [levels[n] for n in numbers],
        )
        return {
            row["student_number"]: WarningChange(int(row["previous_level"]), int(row["level"]))
            for row in rows
            if row["previous_level"] != row["level"]
        }


def _counts(row: Any) -> CourseCounts:
    return CourseCounts(
        student_number=row["student_number"],
        term=row["term"],
        course_key=row["course_key"],
        lesson_name=row["lesson_name"],
        counts={column: int(row[column]) for column in COUNT_COLUMNS},
    )


def _check_page(limit: int, offset: int) -> None:
    if limit < 0 or offset < 0:
        raise ValueError("limit and offset must not be negative")
