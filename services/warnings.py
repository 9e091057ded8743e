"""Low-attendance warnings: after finalization, a student is told once when their standing in
a course reaches a new level:

1. at most one more session can be missed: if they miss the next one too, the term cannot end
   at `ATTENDANCE_WARNING_PERCENT` or above (only where the course's planned sessions are
   known: its weekly slots in the student's cached schedule times `TERM_WEEKS`);
2. below `ATTENDANCE_WARNING_PERCENT` now (after at least `ATTENDANCE_WARNING_MIN_SESSIONS`).

The level lives in PostgreSQL (`attendance_warnings`), and one statement both stores the new
level and reports the old one: a student is told when theirs rises, not again while it stays,
and again only after it has fallen (an excuse, a correction) and risen anew. The figures are
the per-(student, course, term) counts kept at finalization (`attendance_course_counts`), so
the check reads one row per student, not their records of every year. Excused absences do
not count against a student (services.attendance_status.AttendanceRate).
"""

from __future__ import annotations

import logging
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from fractions import Fraction
from typing import Protocol
from zoneinfo import ZoneInfo

from dal.models import Attendance, RecordStatus
from dal.pg import LinkedUser, ReportStore
from services.attendance_status import AttendanceRate, StatusCounts
from services.notify import Notice, Notifier, Percent

logger = logging.getLogger(__name__)


# Warning levels (attendance_warnings.level).
LEVEL_NONE = 0
LEVEL_LAST = 1  # at most one more session can be missed
LEVEL_BELOW = 2  # below the threshold now


@dataclass(frozen=True, slots=True)
class WarningRule:
    percent: float = 70.0
    min_sessions: int = 3
    term_weeks: int = 14

    def below(self, rate: AttendanceRate) -> bool:
        return rate.below(self.percent, self.min_sessions)

    def can_miss(self, rate: AttendanceRate, planned: int | None) -> int | None:
        """How many more of the term's sessions the student can miss and still end it at the
        threshold or above, attending every other one (`planned`: the course's sessions in
        the term; None or 0: unknown, and so is the answer). Negative: not even attending
        every remaining session gets there. At most the sessions still to come."""
        if not planned:
            return None
        remaining = max(0, planned - rate.held)
        # attended + (remaining - k) >= threshold x (planned - excused), in exact fractions
        # (70 % of 10 sessions is 7, not 6.999...).
        needed = Fraction(str(self.percent)) / 100 * max(0, planned - rate.counts.excused)
        spare = math.floor(rate.attended + remaining - needed)
        return min(spare, remaining)

    def level(self, rate: AttendanceRate, planned: int | None) -> int:
        if self.below(rate):
            return LEVEL_BELOW
        spare = self.can_miss(rate, planned)
        if spare is not None and spare <= 1:
            return LEVEL_LAST
        return LEVEL_NONE


def warning_rule(settings: WarningSettings) -> WarningRule:
    return WarningRule(
        percent=settings.attendance_warning_percent,
        min_sessions=settings.attendance_warning_min_sessions,
        term_weeks=settings.term_weeks,
    )


class WarningSettings(Protocol):
    attendance_warning_percent: float
    attendance_warning_min_sessions: int
    term_weeks: int


def planned_sessions(starts: Sequence[datetime], tz: ZoneInfo, term_weeks: int) -> int | None:
    """A course's planned sessions in a term: its weekly slots (weekday and local start time
    of the cached lessons) times the term's weeks; None when the schedule has none."""
    slots = {(s.astimezone(tz).isoweekday(), s.astimezone(tz).strftime("%H:%M")) for s in starts}
    return len(slots) * term_weeks if slots else None


def course_key(attendance: Attendance) -> str:
    """The course a session belongs to: its lesson code, else its lesson name (as
    dal.pg.common.COURSE_KEY_SQL)."""
    return attendance.lesson_code or attendance.lesson_name


def rate_of(counts: Mapping[str, int]) -> AttendanceRate:
    """The rate of a row of counts by status (attendance_course_counts)."""
    return AttendanceRate(
        StatusCounts(**{s.value: int(counts.get(s.value, 0)) for s in RecordStatus})
    )


class AttendanceWarnings:
    def __init__(
        self,
        *,
        reports: ReportStore,
        notifier: Notifier,
        rule: WarningRule,
        tz: ZoneInfo | None = None,
    ) -> None:
        self._reports = reports
        self._notifier = notifier
        self._rule = rule
        self._tz = tz or ZoneInfo("UTC")

    async def check(
        self,
        sessions: Iterable[tuple[Attendance, Iterable[str]]],
        contacts: Mapping[str, LinkedUser],
    ) -> int:
        """For each stored session and its students: update their warning level in the
        session's course and queue a notice for each whose level has just risen. Returns how
        many were queued."""
        by_course: dict[tuple[str, str | None], tuple[Attendance, set[str]]] = {}
        for attendance, numbers in sessions:
            # Per course and term, with its latest session (whose name the notice shows).
            group = (course_key(attendance), attendance.term)
            seen = by_course.get(group)
            if seen is None or attendance.start_time >= seen[0].start_time:
                by_course[group] = (attendance, seen[1] if seen is not None else set())
            by_course[group][1].update(numbers)
        notices: list[Notice] = []
        for (key, term), (latest, numbers) in sorted(
            by_course.items(), key=lambda item: (item[0][0], item[0][1] or "")
        ):
            students = sorted(numbers)
            counts = await self._reports.get_course_counts(
                course_key=key, term=term, student_numbers=students
            )
            starts: Mapping[str, Mapping[str, list[datetime]]] = {}
            if latest.lesson_code:
                starts = await self._reports.get_lesson_starts(
                    student_numbers=students, term=term or "", course_code=latest.lesson_code
                )
            rates: dict[str, AttendanceRate] = {}
            planned: dict[str, int | None] = {}
            for number in students:
                row = counts.get(number)
                rates[number] = rate_of(row.counts if row is not None else {})
                lessons = starts.get(number, {}).get(latest.lesson_code or "", [])
                planned[number] = planned_sessions(lessons, self._tz, self._rule.term_weeks)
            changed = await self._reports.set_warning_levels(
                course_key=key,
                levels={n: self._rule.level(rates[n], planned[n]) for n in students},
            )
            for number, change in sorted(changed.items()):
                contact = contacts.get(number)
                if change.after <= change.before or contact is None:
                    continue
                notices.append(
                    self._notice(contact, latest.lesson_name, rates[number], planned[number])
                )
        if notices:
            # Into the durable outbox before returning: the new level is already saved, so a
            # notice lost here would never be sent again.
            await self._notifier.enqueue(notices)
        return len(notices)

    def _notice(
        self, contact: LinkedUser, lesson: str, rate: AttendanceRate, planned: int | None
    ) -> Notice:
        threshold = Percent(self._rule.percent)
        if self._rule.below(rate):
            return Notice(
                telegram_id=contact.telegram_id,
                language=contact.language,
                key="warning.below",
                values={
                    "lesson": lesson,
                    "attended": rate.attended,
                    "held": rate.counted,
                    "percent": Percent(rate.percent),
                    "threshold": threshold,
                },
            )
        spare = self._rule.can_miss(rate, planned)
        return Notice(
            telegram_id=contact.telegram_id,
            language=contact.language,
            key="warning.miss_one" if spare == 1 else "warning.miss_none",
            values={
                "lesson": lesson,
                "attended": rate.attended,
                "held": rate.counted,
                "threshold": threshold,
            },
        )
