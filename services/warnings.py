"""Low-attendance warnings (issue 13): after finalization, a student whose attendance in a
course has fallen below `ATTENDANCE_WARNING_PERCENT` (after at least
`ATTENDANCE_WARNING_MIN_SESSIONS` sessions) is told once per crossing.

The state "was below when last looked at" lives in PostgreSQL (`attendance_warnings`), and
one statement both stores the new state and reports which students' state changed: a student
is told when theirs turns to below, not again while it stays below, and again only after it
has recovered and fallen anew. Excused absences do not count against a student
(services.status.AttendanceRate).
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Protocol

from dal.models import Attendance, RecordStatus
from dal.pg import LinkedUser, ReportStore
from services.notify import Notice, Notifier, Percent
from services.status import AttendanceRate, StatusCounts

logger = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class WarningRule:
    percent: float = 70.0
    min_sessions: int = 3

    def below(self, rate: AttendanceRate) -> bool:
        return rate.below(self.percent, self.min_sessions)


def warning_rule(settings: WarningSettings) -> WarningRule:
    return WarningRule(
        percent=settings.attendance_warning_percent,
        min_sessions=settings.attendance_warning_min_sessions,
    )


class WarningSettings(Protocol):
    attendance_warning_percent: float
    attendance_warning_min_sessions: int


def course_key(attendance: Attendance) -> str:
    """The course a session belongs to: its lesson code, else its lesson name (as
    dal.pg.common.COURSE_KEY_SQL)."""
    return attendance.lesson_code or attendance.lesson_name


def rate_of(counts: Mapping[str, int]) -> AttendanceRate:
    return AttendanceRate(
        StatusCounts(**{s.value: int(counts.get(s.value, 0)) for s in RecordStatus})
    )


class AttendanceWarnings:
    def __init__(self, *, reports: ReportStore, notifier: Notifier, rule: WarningRule) -> None:
        self._reports = reports
        self._notifier = notifier
        self._rule = rule

    async def check(
        self,
        sessions: Iterable[tuple[Attendance, Iterable[str]]],
        contacts: Mapping[str, LinkedUser],
    ) -> int:
        """For each stored session and its students: update their standing in the session's
        course and queue a warning for each who has just fallen below. Returns how many were
        queued."""
        by_course: dict[str, tuple[str, set[str]]] = {}
        for attendance, numbers in sessions:
            key = course_key(attendance)
            entry = by_course.setdefault(key, (attendance.lesson_name, set()))
            entry[1].update(numbers)
        notices: list[Notice] = []
        for key, (lesson, numbers) in sorted(by_course.items()):
            counts = await self._reports.get_course_status_counts(
                course_key=key, student_numbers=sorted(numbers)
            )
            rates = {number: rate_of(counts.get(number, {})) for number in numbers}
            changed = await self._reports.set_warning_states(
                course_key=key,
                states={number: self._rule.below(rate) for number, rate in rates.items()},
            )
            for number, below in sorted(changed.items()):
                contact = contacts.get(number)
                if not below or contact is None:
                    continue
                rate = rates[number]
                notices.append(
                    Notice(
                        telegram_id=contact.telegram_id,
                        language=contact.language,
                        key="warning.below",
                        values={
                            "lesson": lesson,
                            "attended": rate.attended,
                            "held": rate.counted,
                            "percent": Percent(rate.percent),
                            "threshold": Percent(self._rule.percent),
                        },
                    )
                )
        if notices:
            # Into the durable outbox before returning: the crossing is already saved, so a
            # notice lost here would never be sent again.
            await self._notifier.enqueue(notices)
        return len(notices)
