"""One lateness rule and one status vocabulary for every view of a record.

The live reply, the teacher's status count, finalization, `/history`, the CSV export and
`/my_attendance` all go through these functions, so that one session shows the same numbers
everywhere.

Lateness: a check-in by code is late after the later of the lesson's scheduled start and the
moment attendance opened, plus `LATE_AFTER_MINUTES`; an ad-hoc session (no scheduled start)
counts from the opening. A teacher's addition is never late.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta

from dal.models import (
    FailReason,
    LiveRecord,
    LiveSession,
    RecordSource,
    RecordStatus,
    record_status,
)

__all__ = [
    "AttendanceRate",
    "StatusCounts",
    "is_late",
    "late_after_moment",
    "live_status",
    "split_reason",
    "status_rule",
]

_LEGACY_REJECTED = f"{FailReason.REJECTED}:"


def split_reason(fail_reason: str | None, note: str | None = None) -> tuple[str | None, str | None]:
    """(reason code, teacher's note). A live record written before codes and notes were
    kept apart says "REJECTED: note" in one field; it is read as the code plus the note."""
    if fail_reason is not None and fail_reason.startswith(_LEGACY_REJECTED):
        legacy = fail_reason[len(_LEGACY_REJECTED) :].strip()
        return FailReason.REJECTED.value, note or legacy or None
    return fail_reason, note


def late_after_moment(
    *, opened: datetime, scheduled_start: datetime | None, late_after: timedelta
) -> datetime:
    """The moment after which a check-in by code is late."""
    base = opened if scheduled_start is None else max(opened, scheduled_start)
    return base + late_after


def is_late(record: LiveRecord, attendance: LiveSession, late_after: timedelta) -> bool:
    if record.source is not RecordSource.CODE:
        return False
    threshold = late_after_moment(
        opened=attendance.start_time,
        scheduled_start=attendance.scheduled_start,
        late_after=late_after,
    )
    return record.attendance_time > threshold


def live_status(record: LiveRecord, attendance: LiveSession, late_after: timedelta) -> RecordStatus:
    """The status of a live record (what finalization will store for it)."""
    return status_rule(attendance, late_after)(record)


def status_rule(
    attendance: LiveSession, late_after: timedelta
) -> Callable[[LiveRecord], RecordStatus]:
    """`live_status` for many records of one session: the late moment is worked out once."""
    threshold = late_after_moment(
        opened=attendance.start_time,
        scheduled_start=attendance.scheduled_start,
        late_after=late_after,
    )
    code = RecordSource.CODE

    def status(record: LiveRecord) -> RecordStatus:
        if record.is_attended:
            late = record.source is code and record.attendance_time > threshold
            return RecordStatus.LATE if late else RecordStatus.PRESENT
        reason, _ = split_reason(record.fail_reason)
        return record_status(is_attended=False, is_late=False, fail_reason=reason)

    return status


@dataclass(frozen=True, slots=True)
class StatusCounts:
    """Records of one session by status. `attended` is present + late, everywhere."""

    present: int = 0
    late: int = 0
    absent: int = 0
    pending: int = 0
    rejected: int = 0
    excused: int = 0

    @classmethod
    def of(cls, statuses: Iterable[RecordStatus]) -> StatusCounts:
        counts = Counter(statuses)
        return cls(**{status.value: counts.get(status, 0) for status in RecordStatus})

    @property
    def attended(self) -> int:
        return self.present + self.late

    @property
    def not_accepted(self) -> int:
        """Checked in but not counted: pending review or rejected."""
        return self.pending + self.rejected

    @property
    def total(self) -> int:
        return self.attended + self.absent + self.pending + self.rejected + self.excused


@dataclass(frozen=True, slots=True)
class AttendanceRate:
    """A student's standing in one course: the one rule /my_attendance, /history's list of
    students below the threshold, the exports and the warnings use.

    Held: the course's sessions the student has a record of (soft-deleted ones excluded).
    An excused absence is not held against the student: the percentage is attended over held
    minus excused. Pending and rejected check-ins count as not attended.
    """

    counts: StatusCounts

    @property
    def attended(self) -> int:
        return self.counts.attended

    @property
    def held(self) -> int:
        return self.counts.total

    @property
    def counted(self) -> int:
        return self.counts.total - self.counts.excused

    @property
    def percent(self) -> float:
        """Attended over counted sessions, in percent; 100 when nothing counts yet."""
        if self.counted == 0:
            return 100.0
        return 100.0 * self.attended / self.counted

    def below(self, threshold_percent: float, min_sessions: int) -> bool:
        """Below the warning threshold, once at least `min_sessions` sessions were held."""
        return self.held >= min_sessions and self.percent < threshold_percent
