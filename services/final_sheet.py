"""The sheet an ended session becomes in PostgreSQL: its attendance row, a record for every
student (the enrolled who never came are absent) and the users to upsert.

Pure (no I/O): services/finalize.py reads the session from Redis, builds its sheet here and
writes it; building it again from the same session gives the same sheet, which is what lets
the finalizer repeat a step after a crash.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import timedelta
from typing import Final

from dal.models import (
    EVERYONE,
    Attendance,
    FailReason,
    LiveRecord,
    LiveSession,
    RecordRow,
    RecordSource,
    RecordStatus,
    Role,
    User,
)
from services.attendance_status import StatusCounts, split_reason, status_rule

log = logging.getLogger(__name__)

_NAME_MAX: Final = 200  # users.user_full_name, as validated by dal.models.User


@dataclass(frozen=True, slots=True)
class FinalSheet:
    """What one ended session becomes in PostgreSQL, before it is written. Read back for
    /history it is services.reports.SavedSheet."""

    attendance: Attendance
    records: list[RecordRow]
    users: list[User]  # to upsert: students first, the teacher last
    counts: StatusCounts  # the one status vocabulary (services.attendance_status)


def _name(raw: str, fallback: str) -> str:
    name = " ".join(raw.split())[:_NAME_MAX]
    return name or fallback


def build_sheet(
    *,
    attendance: LiveSession,
    records: Sequence[LiveRecord],
    enrolled: Iterable[str],
    known_users: Mapping[str, User],
    late_after: timedelta,
) -> FinalSheet:
    """The PostgreSQL rows for an ended session (pure: no I/O).

    Records keep their state, with the status of services.attendance_status (one lateness
    rule: after the later of the scheduled start and the opening, plus `late_after`; a
    teacher-added record is never late); every enrolled student without a record gets an ABSENT one.
    `EVERYONE` in `enrolled` names nobody. Users to upsert: students not yet known,
    and known students who checked in by code under a new name (their Redis name comes from
    the portal at login); a teacher-added record for a known user, or any record naming a
    known teacher, leaves that user's row alone, so a typed school number can never rename or
    demote anyone. Unchanged users are left out: no row locks for nothing.
    """
    attendance_id = attendance.attendance_id
    rows: list[RecordRow] = []
    users: dict[str, User] = {}
    status_of = status_rule(attendance, late_after)
    new_row = RecordRow  # values from validated models: not validated again (see RecordRow)
    for record in records:
        number = record.student_number
        known = known_users.get(number)
        name = _name(record.student_full_name, number)
        if known is None or (
            record.source is RecordSource.CODE
            and known.role is Role.STUDENT
            and known.user_full_name != name
        ):
            users[number] = User(user_school_number=number, user_full_name=name, role=Role.STUDENT)
        status = status_of(record)
        reason, note = split_reason(record.fail_reason, record.teacher_note)
        rows.append(
            new_row(
                attendance_id=attendance_id,
                student_number=number,
                is_attended=record.is_attended,
                attendance_time=record.attendance_time,
                fail_reason=None if record.is_attended else reason,
                is_late=status is RecordStatus.LATE,
                source=record.source,
                status=status,
                teacher_note=note,
            )
        )
    recorded = {record.student_number for record in records}
    unknown = 0
    for number in sorted(set(enrolled) - recorded - {EVERYONE}):
        if number not in known_users:
            # Enrolment comes from cached schedules, whose rows need a user row; should one be
            # missing all the same, the sheet stays complete under the number (which is not
            # logged: a line names no person by number).
            unknown += 1
            users[number] = User(
                user_school_number=number, user_full_name=number, role=Role.STUDENT
            )
        rows.append(
            new_row(
                attendance_id=attendance_id,
                student_number=number,
                is_attended=False,
                attendance_time=None,
                fail_reason=FailReason.ABSENT.value,
                is_late=False,
                source=RecordSource.CODE,
                status=RecordStatus.ABSENT,
                teacher_note=None,
            )
        )
    if unknown:
        log.warning("%d absent student(s) of %s have no user row", unknown, attendance_id)
    teacher = attendance.teacher_school_number
    users.pop(teacher, None)
    user_list = [
        *users.values(),
        User(
            user_school_number=teacher,
            user_full_name=_name(attendance.teacher_full_name, teacher),
            role=Role.TEACHER,
        ),
    ]
    row = Attendance(
        attendance_id=attendance_id,
        teacher_school_number=teacher,
        lesson_name=attendance.lesson_name,
        lesson_code=attendance.lesson_code,
        lesson_slot=attendance.slot,
        scheduled_start=attendance.scheduled_start,
        term=attendance.term,
        start_time=attendance.start_time,
        end_time=attendance.end_time or attendance.planned_end_time,
        security_option=attendance.security_option,
    )
    counts = StatusCounts.of(row.status for row in rows)
    return FinalSheet(attendance=row, records=rows, users=user_list, counts=counts)


__all__ = ["FinalSheet", "build_sheet"]
