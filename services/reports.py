"""Saved attendance: a teacher's history, corrections and CSV export; a student's record."""

from __future__ import annotations

import hashlib
import logging
from dataclasses import dataclass
from datetime import datetime
from uuid import UUID
from zoneinfo import ZoneInfo

from dal.errors import Conflict, NotFound
from dal.models import (
    Attendance,
    AttendanceRecord,
    FailReason,
    RecordStatus,
)
from dal.pg import (
    AccountStore,
    AttendanceStore,
    Correction,
    CorrectionStore,
    CourseRecordRow,
    CourseSummary,
    ReportStore,
    StudentAttendanceRow,
)
from services.attendance.review import SCHOOL_NUMBER
from services.attendance_status import AttendanceRate, StatusCounts
from services.csv_export import csv_document
from services.errors import (
    AlreadyOnList,
    InvalidInput,
    NotOwner,
    RecordNotFound,
    SessionGone,
)
from services.exports import CourseData, StudentLine, course_csv, course_xlsx, document_name
from services.members import Identity, require_teacher
from services.moodle import gradebook_csv, mod_attendance_csv
from services.warnings import AttendanceWarnings, WarningRule, planned_sessions, rate_of

log = logging.getLogger(__name__)

MAX_REASON_LENGTH = 300


def course_token(course_key: str) -> str:
    """A short stand-in for a course key in a button (64 bytes of callback data): the
    handler finds the course among the user's own by it, so a forged one finds nothing."""
    return hashlib.sha256(course_key.encode("utf-8")).hexdigest()[:12]


@dataclass(frozen=True, slots=True)
class CourseStanding:
    """A student's line of /my_attendance: one course."""

    course_key: str
    lesson_name: str
    rate: AttendanceRate
    below: bool
    rows: list[StudentAttendanceRow]  # oldest first (empty where only the summary was read)
    # How many more sessions can be missed this term (WarningRule.can_miss); None: the
    # course's planned sessions are not known.
    can_miss: int | None = None

    @property
    def token(self) -> str:
        return course_token(self.course_key)

    def missed_first(self) -> list[StudentAttendanceRow]:
        """The dated list: sessions not attended first, then attended; newest first in each."""
        ordered = sorted(self.rows, key=lambda r: r.start_time, reverse=True)
        return [r for r in ordered if not r.status.attended] + [
            r for r in ordered if r.status.attended
        ]


MARKED_ABSENT = FailReason.MARKED_ABSENT.value  # a teacher corrected a saved record to absent


@dataclass(frozen=True, slots=True)
class SavedSheetRow:
    student_number: str
    full_name: str
    record: AttendanceRecord


@dataclass(frozen=True, slots=True)
class SavedSheet:
    """A session saved in PostgreSQL with its records and the students' names (/history, the
    one-session CSV). The sheet written at finalization is services.final_sheet.FinalSheet."""

    attendance: Attendance
    rows: list[SavedSheetRow]

    @property
    def counts(self) -> StatusCounts:
        """By the stored status (services.attendance_status): the numbers every view shows."""
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
    def __init__(
        self,
        *,
        accounts: AccountStore,
        attendance: AttendanceStore,
        corrections: CorrectionStore,
        reports: ReportStore,
        tz: ZoneInfo,
        rule: WarningRule | None = None,
        warnings: AttendanceWarnings | None = None,
    ) -> None:
        self._accounts = accounts
        self._attendance = attendance
        self._corrections = corrections
        self._reports = reports
        self._tz = tz
        self._rule = rule or WarningRule()
        # A correction changes a student's figures as a finalization does: the same check.
        self._warnings = warnings

    @property
    def rule(self) -> WarningRule:
        return self._rule

    @property
    def tz(self) -> ZoneInfo:
        return self._tz

    async def history(
        self, *, teacher: Identity, limit: int = 8, offset: int = 0
    ) -> list[SavedSheet]:
        require_teacher(teacher)
        attendances = await self._reports.get_attendances(
            teacher_school_number=teacher.school_number, limit=limit, offset=offset
        )
        return [await self._sheet(a) for a in attendances]

    async def sheet(self, *, teacher: Identity, attendance_id: UUID) -> SavedSheet:
        return await self._sheet(await self._owned(teacher, attendance_id))

    async def toggle(
        self, *, teacher: Identity, attendance_id: UUID, student_number: str
    ) -> AttendanceRecord:
        """Switch a saved record between present and absent (a historical correction)."""
        attendance = await self._owned(teacher, attendance_id)
        records = await self._attendance.get_attendance_records(attendance_id=attendance_id)
        current = next((r for r in records if r.student_number == student_number), None)
        if current is None:
            raise RecordNotFound(student_number)
        attended = not current.is_attended
        try:
            record = await self._corrections.set_record_attended(
                attendance_id=attendance_id,
                student_number=student_number,
                is_attended=attended,
                fail_reason=None if attended else MARKED_ABSENT,
                changed_by=teacher.school_number,
                expect_status=current.status,
            )
        except NotFound:
            raise RecordNotFound(student_number) from None
        await self._recheck(attendance, student_number)
        return record

    async def excuse(
        self,
        *,
        teacher: Identity,
        attendance_id: UUID,
        student_number: str,
        reason: str,
    ) -> AttendanceRecord:
        """Mark a saved absent record excused (a medical report...), with the teacher's
        reason; the audit trail keeps who, when and why. Only an absent record can be."""
        attendance = await self._owned(teacher, attendance_id)
        reason = " ".join(reason.split())
        if not reason or len(reason) > MAX_REASON_LENGTH:
            raise InvalidInput("excuse.reason_invalid")
        try:
            record = await self._corrections.set_record_attended(
                attendance_id=attendance_id,
                student_number=student_number,
                is_attended=False,
                fail_reason=FailReason.EXCUSED.value,
                changed_by=teacher.school_number,
                reason=reason,
                note=reason,
                expect_status=RecordStatus.ABSENT,
            )
        except NotFound:
            raise RecordNotFound(student_number) from None
        await self._recheck(attendance, student_number)
        return record

    async def add_to_saved(
        self, *, teacher: Identity, attendance_id: UUID, student_number: str, at: datetime
    ) -> AttendanceRecord:
        """Add a student as present to a saved session (kept in the audit trail)."""
        number = student_number.strip()
        if not SCHOOL_NUMBER.fullmatch(number):
            raise InvalidInput("add.bad_number")
        attendance = await self._owned(teacher, attendance_id)
        try:
            record = await self._corrections.add_saved_record(
                attendance_id=attendance_id,
                student_number=number,
                changed_by=teacher.school_number,
                at=at,
            )
        except Conflict:
            raise AlreadyOnList(number) from None
        except NotFound:
            raise SessionGone from None
        await self._recheck(attendance, number)
        return record

    async def _recheck(self, attendance: Attendance, student_number: str) -> None:
        """The student's warning level in the course after a correction: a record made absent
        can take them below the limit (warned now, not at the course's next finalization), one
        made present lowers the level so a later fall is warned again. The correction is
        saved whatever happens here; a failure is logged and the next finalization looks
        again."""
        if self._warnings is None:
            return
        try:
            contacts = await self._accounts.get_contacts(school_numbers=[student_number])
            await self._warnings.check(
                [(attendance, [student_number])], {c.school_number: c for c in contacts}
            )
        except Exception:
            log.exception("low-attendance check after a correction failed")

    # --- term figures ---------------------------------------------------------

    async def my_courses(
        self, *, student: Identity, with_rows: bool = False
    ) -> list[CourseStanding]:
        """The student's standing per course this term, by course name: from the per-course
        counts kept at finalization (one row per course), with the dated records only when
        `with_rows` asks for them."""
        number = student.school_number
        counts = await self._reports.get_student_course_counts(student_number=number)
        starts = (await self._reports.get_lesson_starts(student_numbers=[number], term=None)).get(
            number, {}
        )
        by_course: dict[str, list[StudentAttendanceRow]] = {}
        if with_rows:
            for row in await self._reports.get_student_records(student_number=number):
                by_course.setdefault(row.lesson_code or row.lesson_name, []).append(row)
        standings = []
        for course in counts:
            rate = rate_of(course.counts)
            planned = planned_sessions(
                starts.get(course.course_key, []), self._tz, self._rule.term_weeks
            )
            standings.append(
                CourseStanding(
                    course_key=course.course_key,
                    lesson_name=course.lesson_name,
                    rate=rate,
                    below=self._rule.below(rate),
                    rows=by_course.get(course.course_key, []),
                    can_miss=self._rule.can_miss(rate, planned),
                )
            )
        standings.sort(key=lambda c: (c.lesson_name, c.course_key))
        return standings

    async def my_course(self, *, student: Identity, token: str) -> CourseStanding:
        for standing in await self.my_courses(student=student, with_rows=True):
            if standing.token == token:
                return standing
        raise RecordNotFound(token)

    async def export_courses(self, *, teacher: Identity) -> list[CourseSummary]:
        require_teacher(teacher)
        return await self._reports.get_teacher_courses(teacher_school_number=teacher.school_number)

    async def course_by_token(self, *, teacher: Identity, token: str) -> CourseSummary:
        for course in await self.export_courses(teacher=teacher):
            if course_token(course.course_key) == token:
                return course
        raise SessionGone

    async def course_data(self, *, teacher: Identity, course_key: str) -> CourseData:
        require_teacher(teacher)
        number = teacher.school_number
        sessions = await self._reports.get_course_sessions(
            teacher_school_number=number, course_key=course_key
        )
        if not sessions:
            raise SessionGone
        records = await self._reports.get_course_records(
            teacher_school_number=number, course_key=course_key
        )
        corrections = await self._corrections.get_course_corrections(
            teacher_school_number=number, course_key=course_key
        )
        return CourseData(
            course_key=course_key,
            lesson_name=sessions[-1].lesson_name,
            sessions=sessions,
            records=records,
            corrections=corrections,
        )

    async def registrar_course_data(
        self, *, course_key: str, start: datetime, end: datetime
    ) -> CourseData:
        """Every teacher's saved sessions of the course that started in [start, end), their
        records and corrections, as one document (`python -m bot export`, for the registrar)."""
        sessions: list[Attendance] = []
        records: list[CourseRecordRow] = []
        corrections: list[Correction] = []
        for number in await self._reports.get_course_teachers(course_key=course_key):
            kept = {
                s.attendance_id: s
                for s in await self._reports.get_course_sessions(
                    teacher_school_number=number, course_key=course_key
                )
                if start <= s.start_time < end
            }
            if not kept:
                continue
            sessions.extend(kept.values())
            records.extend(
                r
                for r in await self._reports.get_course_records(
                    teacher_school_number=number, course_key=course_key
                )
                if r.attendance_id in kept
            )
            corrections.extend(
                c
                for c in await self._corrections.get_course_corrections(
                    teacher_school_number=number, course_key=course_key
                )
                if c.attendance_id in kept
            )
        if not sessions:
            raise SessionGone
        sessions.sort(key=lambda s: (s.start_time, str(s.attendance_id)))
        order = {s.attendance_id: i for i, s in enumerate(sessions)}
        records.sort(key=lambda r: (order[r.attendance_id], r.student_number))
        corrections.sort(key=lambda c: c.changed_at)
        return CourseData(
            course_key=course_key,
            lesson_name=sessions[-1].lesson_name,
            sessions=sessions,
            records=records,
            corrections=corrections,
        )

    def render_documents(
        self, data: CourseData, *, formats: tuple[str, ...], now: datetime
    ) -> list[tuple[str, bytes]]:
        course_key = data.course_key
        day = now.astimezone(self._tz)
        documents: list[tuple[str, bytes]] = []
        for fmt in formats:
            if fmt == "xlsx":
                documents.append(
                    (document_name(course_key, day, "xlsx"), course_xlsx(data, tz=self._tz))
                )
            elif fmt == "csv":
                documents.append(
                    (document_name(course_key, day, "csv"), course_csv(data, tz=self._tz))
                )
            elif fmt == "moodle":
                name = document_name(course_key, day, "csv", kind="moodle_attendance")
                documents.append((name, mod_attendance_csv(data, tz=self._tz)))
            elif fmt == "grades":
                name = document_name(course_key, day, "csv", kind="moodle_grades")
                documents.append((name, gradebook_csv(data)))
        return documents

    def below_threshold(self, data: CourseData) -> list[StudentLine]:
        """The course's students below the warning threshold (the export preview)."""
        return [line for line in data.students() if self._rule.below(line.rate)]

    async def export_csv(self, *, teacher: Identity, attendance_id: UUID) -> tuple[str, bytes]:
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
            "student_number",
            "full_name",
            "status",
            "check_in_time",
            "reason",
            "source",
            "note",
        ]
        start = sheet.attendance.start_time.astimezone(self._tz)
        code = sheet.attendance.lesson_code or "lesson"
        name = f"attendance-{code}-{start:%Y%m%d-%H%M}.csv"
        return name, csv_document(header, rows)

    async def _owned(self, teacher: Identity, attendance_id: UUID) -> Attendance:
        require_teacher(teacher)
        try:
            attendance = await self._attendance.get_attendance_by_id(attendance_id=attendance_id)
        except NotFound:
            raise SessionGone from None
        if attendance.teacher_school_number != teacher.school_number:
            raise NotOwner
        return attendance

    async def _sheet(self, attendance: Attendance) -> SavedSheet:
        records = await self._attendance.get_attendance_records(
            attendance_id=attendance.attendance_id
        )
        users = await self._accounts.get_users(school_numbers=[r.student_number for r in records])
        names = {u.user_school_number: u.user_full_name for u in users}
        rows = [
            SavedSheetRow(r.student_number, names.get(r.student_number, r.student_number), r)
            for r in records
        ]
        rows.sort(key=lambda row: (row.full_name, row.student_number))
        return SavedSheet(attendance, rows)
