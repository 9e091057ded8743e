"""A course's term in the two shapes Moodle imports as they are.

1. **mod_attendance "bulk mark sessions" import** (Attendance activity, *Import attendance*):
   one row per student per session, columns `session` (the session's start as `Y-m-d H:i` in
   the university's time zone, which the importer matches against each session's date),
   `idnumber` (the user field the teacher maps, Moodle's *ID number*, which universities fill
   with the school number), `status` (the acronym of Moodle's default status set: P present,
   L late, E excused, A absent) and `remarks`. The importer upper-cases and trims the acronym,
   lower-cases the user field, and reports any row it cannot match instead of failing the
   file. Source: mod_attendance `classes/import/bulkmarksessions.php`,
   https://github.com/danmarsden/moodle-mod_attendance (the mapping form's default columns:
   session 0, user 1, status 2).
2. **Gradebook import** (*Grades > Import > CSV file*): a header row, one row per student,
   the `ID number` column mapped to the user's ID number and one grade column, named
   `Attendance % (COURSE)`, mapped to a new grade item; the value is the attendance rate in
   percent with a point as the decimal mark. Source: https://docs.moodle.org/en/Grade_import.

Both are UTF-8, comma-separated (Moodle's default separator) and without a byte-order mark
(Moodle strips one anyway), every cell through `safe_cell` like every other export. A record
still pending review is left out of the attendance file (Moodle has no such status; the
teacher resolves it first), a rejected check-in goes in as absent.
"""

from __future__ import annotations

from collections.abc import Sequence
from zoneinfo import ZoneInfo

from dal.models import RecordStatus
from services.csv_export import csv_document
from services.exports import CourseData

__all__ = [
    "GRADEBOOK_ID_HEADER",
    "MOD_ATTENDANCE_HEADER",
    "MOODLE_ACRONYMS",
    "gradebook_csv",
    "gradebook_header",
    "mod_attendance_csv",
]

MOD_ATTENDANCE_HEADER = ["session", "idnumber", "status", "remarks"]
GRADEBOOK_ID_HEADER = "ID number"
MOODLE_SEPARATOR = ","

# mod_attendance's default status set; PENDING has no counterpart and is left out.
MOODLE_ACRONYMS: dict[RecordStatus, str] = {
    RecordStatus.PRESENT: "P",
    RecordStatus.LATE: "L",
    RecordStatus.EXCUSED: "E",
    RecordStatus.ABSENT: "A",
    RecordStatus.REJECTED: "A",
}


def mod_attendance_csv(data: CourseData, *, tz: ZoneInfo) -> bytes:
    """The bulk-mark import file (`CourseData.pending` says how many records it leaves out)."""
    starts = {s.attendance_id: s.start_time.astimezone(tz) for s in data.sessions}
    rows: list[Sequence[object]] = []
    ordered = sorted(
        (r for r in data.records if r.attendance_id in starts),
        key=lambda r: (starts[r.attendance_id], r.student_number),
    )
    for record in ordered:
        acronym = MOODLE_ACRONYMS.get(record.status)
        if acronym is None:
            continue
        rows.append(
            [
                f"{starts[record.attendance_id]:%Y-%m-%d %H:%M}",
                record.student_number,
                acronym,
                record.teacher_note or "",
            ]
        )
    return csv_document(MOD_ATTENDANCE_HEADER, rows, separator=MOODLE_SEPARATOR, bom=False)


def gradebook_header(course_key: str) -> list[str]:
    return [GRADEBOOK_ID_HEADER, f"Attendance % ({course_key})"]


def gradebook_csv(data: CourseData) -> bytes:
    """One row per student: the ID number and the attendance rate (the same rule as the XLSX,
    /my_attendance and the warnings), in percent to one decimal."""
    rows = [
        [line.student_number, f"{line.rate.percent:.1f}"]
        for line in sorted(data.students(), key=lambda line: line.student_number)
    ]
    return csv_document(
        gradebook_header(data.course_key), rows, separator=MOODLE_SEPARATOR, bom=False
    )
