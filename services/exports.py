"""A course's term documents for /export: the XLSX a teacher hands in and a flat CSV.

Built from one read of the course (`CourseData`): the same records, the same status
vocabulary (dal.models.RecordStatus) and the same rate rule
(services.attendance_status.AttendanceRate) as /my_attendance and /history, so the figures agree
everywhere.

XLSX (XlsxWriter): sheet 1 is the students × sessions matrix, one letter per record
(`P` present, `L` late, `A` absent, `E` excused, `?` pending review, `R` rejected, empty: no
record), then per student attended / held / excused / percentage (a number formatted as a
percentage), and per session the attended and record counts; P, L, A and E cells are coloured
by conditional formats; the header row and the number and name columns are frozen.
Sheet 2 lists the reasons (records with a reason code other than a plain absence, or a
teacher's note) and the audit trail of corrections. Every text cell is written as a string,
never a formula (a name starting with `=` stays text).

CSV: UTF-8 with a byte-order mark, `;` between fields (services.csv_export), one row per
student per session.
"""

from __future__ import annotations

import io
import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from uuid import UUID
from zoneinfo import ZoneInfo

import xlsxwriter
from xlsxwriter.worksheet import Worksheet

from dal.models import Attendance, FailReason, RecordStatus
from dal.pg import Correction, CourseRecordRow
from services.attendance_status import AttendanceRate, StatusCounts
from services.csv_export import csv_document

__all__ = [
    "CELL_LETTERS",
    "CSV_HEADER",
    "CourseData",
    "StudentLine",
    "course_csv",
    "course_xlsx",
    "document_name",
]

CELL_LETTERS: dict[RecordStatus, str] = {
    RecordStatus.PRESENT: "P",
    RecordStatus.LATE: "L",
    RecordStatus.ABSENT: "A",
    RecordStatus.EXCUSED: "E",
    RecordStatus.PENDING: "?",
    RecordStatus.REJECTED: "R",
}
# Conditional colours of the matrix (a sheet correct at a glance): green present, yellow late,
# red absent, blue excused; pending and rejected stay plain, to be read in sheet 2.
CELL_COLOURS: dict[str, dict[str, str]] = {
    "P": {"bg_color": "#C6EFCE", "font_color": "#006100"},
    "L": {"bg_color": "#FFEB9C", "font_color": "#9C5700"},
    "A": {"bg_color": "#FFC7CE", "font_color": "#9C0006"},
    "E": {"bg_color": "#DDEBF7", "font_color": "#1F4E78"},
}
LEGEND = (
    "P = present/katıldı, L = late/geç, A = absent/katılmadı, E = excused/mazeretli, "
    "? = pending review/onay bekliyor, R = rejected/reddedildi"
)

MATRIX_LEFT = ["Öğrenci No / Student no", "Ad Soyad / Name"]
MATRIX_RIGHT = [
    "Katılım / Attended",
    "Yapılan / Held",
    "Mazeretli / Excused",
    "% Devam / Attendance %",
]
ROW_ATTENDED = "Katılan / Attended"
ROW_RECORDS = "Kayıt / Records"
NOTES_HEADER = [
    "Tür / Kind",
    "Ders tarihi / Session",
    "Öğrenci No / Student no",
    "Ad Soyad / Name",
    "Durum / Status",
    "Önceki / Before",
    "Gerekçe / Reason",
    "Not / Note",
    "Değiştiren / By",
    "Zaman / When",
]
CSV_HEADER = [
    "course",
    "lesson",
    "session_date",
    "session_time",
    "student_number",
    "full_name",
    "status",
    "check_in_time",
    "reason",
    "note",
]

_SAFE_NAME = re.compile(r"[^A-Za-z0-9]+")
_SHEET_FORBIDDEN = re.compile(r"[\[\]:*?/\\]")


@dataclass(frozen=True, slots=True)
class StudentLine:
    student_number: str
    full_name: str
    cells: dict[UUID, RecordStatus]
    rate: AttendanceRate


@dataclass(frozen=True, slots=True)
class CourseData:
    """One teacher's course as saved: sessions oldest first, their visible records, and the
    audit trail."""

    course_key: str
    lesson_name: str
    sessions: list[Attendance]
    records: list[CourseRecordRow]
    corrections: list[Correction]

    def students(self) -> list[StudentLine]:
        """One line per student with any record, by name then number."""
        cells: dict[str, dict[UUID, RecordStatus]] = {}
        names: dict[str, str] = {}
        for record in self.records:
            cells.setdefault(record.student_number, {})[record.attendance_id] = record.status
            names[record.student_number] = record.full_name
        lines = [
            StudentLine(number, names[number], row, AttendanceRate(StatusCounts.of(row.values())))
            for number, row in cells.items()
        ]
        lines.sort(key=lambda line: (line.full_name, line.student_number))
        return lines

    @property
    def pending(self) -> int:
        """Records still pending review (left out of the Moodle attendance file)."""
        return sum(1 for r in self.records if r.status is RecordStatus.PENDING)

    def session_counts(self) -> dict[UUID, StatusCounts]:
        by_session: dict[UUID, list[RecordStatus]] = {s.attendance_id: [] for s in self.sessions}
        for record in self.records:
            by_session.setdefault(record.attendance_id, []).append(record.status)
        return {aid: StatusCounts.of(statuses) for aid, statuses in by_session.items()}


def document_name(course_key: str, day: datetime, extension: str, kind: str = "") -> str:
    """`COURSE_YYYY-MM-DD.ext` (`COURSE_kind_YYYY-MM-DD.ext` for another shape of the same
    term): the course key in letters, digits and `_`."""
    course = _SAFE_NAME.sub("_", course_key).strip("_") or "course"
    middle = f"{kind}_" if kind else ""
    return f"{course}_{middle}{day:%Y-%m-%d}.{extension}"


def _session_label(session: Attendance, tz: ZoneInfo) -> str:
    return session.start_time.astimezone(tz).strftime("%d.%m.%Y %H:%M")


def _sheet_title(text: str) -> str:
    return (_SHEET_FORBIDDEN.sub("_", text).strip("'") or "course")[:31]


def course_xlsx(data: CourseData, *, tz: ZoneInfo) -> bytes:
    buffer = io.BytesIO()
    workbook = xlsxwriter.Workbook(
        buffer,
        {
            "in_memory": True,
            # Text is text: never a formula, number or link, whatever it starts with.
            "strings_to_formulas": False,
            "strings_to_numbers": False,
            "strings_to_urls": False,
        },
    )
    bold = workbook.add_format({"bold": True})
    header = workbook.add_format({"bold": True, "text_wrap": True, "valign": "top"})
    centre = workbook.add_format({"align": "center"})
    percent = workbook.add_format({"num_format": "0.0%"})

    sheet = workbook.add_worksheet(_sheet_title(data.course_key))
    sessions = data.sessions
    students = data.students()
    first_session = len(MATRIX_LEFT)
    right = first_session + len(sessions)
    for col, title in enumerate(MATRIX_LEFT):
        sheet.write_string(0, col, title, header)
    for offset, session in enumerate(sessions):
        sheet.write_string(0, first_session + offset, _session_label(session, tz), header)
    for offset, title in enumerate(MATRIX_RIGHT):
        sheet.write_string(0, right + offset, title, header)
    for row, line in enumerate(students, start=1):
        sheet.write_string(row, 0, line.student_number)
        sheet.write_string(row, 1, line.full_name)
        for offset, session in enumerate(sessions):
            status = line.cells.get(session.attendance_id)
            if status is not None:
                sheet.write_string(row, first_session + offset, CELL_LETTERS[status], centre)
        sheet.write_number(row, right, line.rate.attended)
        sheet.write_number(row, right + 1, line.rate.held)
        sheet.write_number(row, right + 2, line.rate.counts.excused)
        # A fraction shown as a percentage: 0.75 reads "75.0%" and sums and sorts as a number.
        sheet.write_number(row, right + 3, round(line.rate.percent / 100, 4), percent)
    totals = data.session_counts()
    attended_row = len(students) + 1
    sheet.write_string(attended_row, 1, ROW_ATTENDED, bold)
    sheet.write_string(attended_row + 1, 1, ROW_RECORDS, bold)
    for offset, session in enumerate(sessions):
        counts = totals.get(session.attendance_id, StatusCounts())
        sheet.write_number(attended_row, first_session + offset, counts.attended, centre)
        sheet.write_number(attended_row + 1, first_session + offset, counts.total, centre)
    if students and sessions:
        for letter, colours in CELL_COLOURS.items():
            sheet.conditional_format(
                1,
                first_session,
                len(students),
                right - 1,
                {
                    "type": "cell",
                    "criteria": "==",
                    "value": f'"{letter}"',
                    "format": workbook.add_format(colours),
                },
            )
    sheet.write_string(attended_row + 3, 1, LEGEND)
    sheet.freeze_panes(1, first_session)
    sheet.set_column(0, 0, 14)
    sheet.set_column(1, 1, 28)
    sheet.set_column(first_session, max(first_session, right - 1), 11)
    sheet.set_column(right, right + 3, 12)
    sheet.set_row(0, 32)

    notes = workbook.add_worksheet("Gerekçeler - Reasons")
    for col, title in enumerate(NOTES_HEADER):
        notes.write_string(0, col, title, header)
    labels = {s.attendance_id: _session_label(s, tz) for s in sessions}
    row = 1
    added_later = {
        (c.attendance_id, c.student_number) for c in data.corrections if c.action == "added"
    }
    for record in data.records:
        if record.source == "teacher" and (
            (record.attendance_id, record.student_number) not in added_later
        ):
            # Added by the teacher during the lesson (no correction: the session was live).
            when = record.attendance_time
            _write_texts(
                notes,
                row,
                [
                    "added_in_class",
                    labels.get(record.attendance_id, ""),
                    record.student_number,
                    record.full_name,
                    record.status.value,
                    "",
                    "",
                    "",
                    "",
                    when.astimezone(tz).strftime("%d.%m.%Y %H:%M:%S") if when else "",
                ],
            )
            row += 1
        plain_absence = record.status is RecordStatus.ABSENT and record.fail_reason in (
            None,
            FailReason.ABSENT,
        )
        if record.status.attended or (plain_absence and not record.teacher_note):
            continue
        values = [
            "reason",
            labels.get(record.attendance_id, ""),
            record.student_number,
            record.full_name,
            record.status.value,
            "",
            record.fail_reason or "",
            record.teacher_note or "",
            "",
            "",
        ]
        _write_texts(notes, row, values)
        row += 1
    for correction in data.corrections:
        values = [
            correction.action,
            correction.session_start.astimezone(tz).strftime("%d.%m.%Y %H:%M"),
            correction.student_number or "",
            correction.full_name or "",
            correction.new_status or "",
            correction.old_status or "",
            correction.reason or "",
            "",
            correction.changed_by,
            correction.changed_at.astimezone(tz).strftime("%d.%m.%Y %H:%M:%S"),
        ]
        _write_texts(notes, row, values)
        row += 1
    notes.freeze_panes(1, 0)
    notes.set_column(0, len(NOTES_HEADER) - 1, 16)
    workbook.close()
    return buffer.getvalue()


def _write_texts(sheet: Worksheet, row: int, values: Sequence[str]) -> None:
    for col, value in enumerate(values):
        if value:
            sheet.write_string(row, col, value)


def course_csv(data: CourseData, *, tz: ZoneInfo) -> bytes:
    """One row per student per session (sessions oldest first, students by number)."""
    starts = {s.attendance_id: s.start_time.astimezone(tz) for s in data.sessions}
    rows: list[Sequence[object]] = []
    for record in data.records:
        start = starts.get(record.attendance_id)
        if start is None:
            continue
        rows.append(
            [
                data.course_key,
                data.lesson_name,
                f"{start:%Y-%m-%d}",
                f"{start:%H:%M}",
                record.student_number,
                record.full_name,
                record.status.value,
                (
                    record.attendance_time.astimezone(tz).strftime("%Y-%m-%d %H:%M:%S")
                    if record.attendance_time
                    else ""
                ),
                record.fail_reason or "",
                record.teacher_note or "",
            ]
        )
    return csv_document(CSV_HEADER, rows)
