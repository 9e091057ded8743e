"""Saved attendance: a teacher's history, corrections and CSV export; a student's record."""

from __future__ import annotations

from dataclasses import dataclass
from uuid import UUID
from zoneinfo import ZoneInfo

from dal.errors import NotFound
from dal.models import (
    Attendance,
    AttendanceRecord,
    FailReason,
    RecordStatus,
    Role,
    UserSessionRedis,
)
from dal.postgres import AsyncPostgresClient, StudentAttendanceRow
from services.csv_export import csv_document
from services.errors import NotOwner, NotTeacher, RecordNotFound, SessionGone
from services.status import StatusCounts

MARKED_ABSENT = FailReason.MARKED_ABSENT.value  # a teacher corrected a saved record to absent


@dataclass(frozen=True, slots=True)
class SheetRow:
    student_number: str
    full_name: str
    record: AttendanceRecord


@dataclass(frozen=True, slots=True)
class Sheet:
    attendance: Attendance
    rows: list[SheetRow]

    @property
    def counts(self) -> StatusCounts:
        """By the stored status (services.status): the numbers every view shows."""
        return StatusCounts.of(r.record.status for r in self.rows)


def status_word(record: AttendanceRecord) -> str:
    """The CSV's status column: the status vocabulary's own words."""
    return _STATUS_WORDS[record.status]


_STATUS_WORDS = {
    RecordStatus.PRESENT: "present",
    RecordStatus.LATE: "late",
    RecordStatus.ABSENT: "absent",
    RecordStatus.PENDING: "pending review",
    RecordStatus.REJECTED: "rejected",
    RecordStatus.EXCUSED: "excused",
}


class ReportService:
    def __init__(self, *, pg: AsyncPostgresClient, tz: ZoneInfo) -> None:
        self._pg = pg
        self._tz = tz

    @property
    def tz(self) -> ZoneInfo:
        return self._tz

    async def history(
        self, *, teacher: UserSessionRedis, limit: int = 8, offset: int = 0
    ) -> list[Sheet]:
        _require_teacher(teacher)
        attendances = await self._pg.get_attendances(
            teacher_school_number=teacher.school_number, limit=limit, offset=offset
        )
        return [await self._sheet(a) for a in attendances]

    async def sheet(self, *, teacher: UserSessionRedis, attendance_id: UUID) -> Sheet:
        return await self._sheet(await self._owned(teacher, attendance_id))

    async def toggle(
        self, *, teacher: UserSessionRedis, attendance_id: UUID, student_number: str
    ) -> AttendanceRecord:
        """Switch a saved record between present and absent (a historical correction)."""
        await self._owned(teacher, attendance_id)
        records = await self._pg.get_attendance_records(attendance_id=attendance_id)
        current = next((r for r in records if r.student_number == student_number), None)
        if current is None:
            raise RecordNotFound(student_number)
        attended = not current.is_attended
        return await self._pg.set_record_attended(
            attendance_id=attendance_id,
            student_number=student_number,
            is_attended=attended,
            fail_reason=None if attended else MARKED_ABSENT,
        )

    async def export_csv(
        self, *, teacher: UserSessionRedis, attendance_id: UUID
    ) -> tuple[str, bytes]:
        sheet = await self.sheet(teacher=teacher, attendance_id=attendance_id)
        rows = [
            [
                row.student_number,
                row.full_name,
                status_word(row.record),
                (
                    row.record.attendance_time.astimezone(self._tz).strftime("%Y-%m-%d %H:%M:%S")
                    if row.record.attendance_time
                    else ""
                ),
                row.record.fail_reason or "",
                row.record.source,
                row.record.teacher_note or "",
            ]
            for row in sheet.rows
        ]
        header = [
            "student_number", "full_name", "status", "check_in_time", "reason", "source", "note"
        ]
        start = sheet.attendance.start_time.astimezone(self._tz)
        code = sheet.attendance.lesson_code or "lesson"
        name = f"attendance-{code}-{start:%Y%m%d-%H%M}.csv"
        return name, csv_document(header, rows)

    async def student_history(
        self, *, student: UserSessionRedis, limit: int = 20
    ) -> list[StudentAttendanceRow]:
        return await self._pg.get_student_history(student_number=student.school_number, limit=limit)

    async def _owned(self, teacher: UserSessionRedis, attendance_id: UUID) -> Attendance:
        _require_teacher(teacher)
        try:
            attendance = await self._pg.get_attendance_by_id(attendance_id=attendance_id)
        except NotFound:
            raise SessionGone from None
        if attendance.teacher_school_number != teacher.school_number:
            raise NotOwner
        return attendance

    async def _sheet(self, attendance: Attendance) -> Sheet:
        records = await self._pg.get_attendance_records(attendance_id=attendance.attendance_id)
        users = await self._pg.get_users(school_numbers=[r.student_number for r in records])
        names = {u.user_school_number: u.user_full_name for u in users}
        rows = [
            SheetRow(r.student_number, names.get(r.student_number, r.student_number), r)
            for r in records
        ]
        rows.sort(key=lambda row: (row.full_name, row.student_number))
        return Sheet(attendance, rows)


def _require_teacher(user: UserSessionRedis) -> None:
    if user.role is not Role.TEACHER:
        raise NotTeacher
