"""What a check-in and a student's location decided: the outcome types the service returns.

The scripts (dal/redis/lua/check_in.lua, location.lua) answer with a word; the store hands it
over raw (dal/redis/checkins.py) and `CheckInService` (services/attendance/checkins.py) turns
it into these types, with the record's status (present or late, in services.attendance_status's
vocabulary) worked out once, so the handler and the Mini App page read the answer without
asking the service again.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from dal.models import LiveRecord, LiveSession, RecordStatus

__all__ = ["CheckInResult", "CheckInStatus", "LocationOutcome", "LocationResult"]


class CheckInStatus(StrEnum):
    OK_PRESENT = "OK_PRESENT"  # enrolled: recorded as present
    OK_PENDING = "OK_PENDING"  # not enrolled (record's reason: not in schedule, another section)
    DUPLICATE = "DUPLICATE"  # already checked in; `record` is the first record
    ENDED = "ENDED"  # the code belongs to a session that has ended
    OK_LOCATION = "OK_LOCATION"  # valid code at level 2/3: pending LOCATION_MISSING, location asked
    EXPIRED = "EXPIRED"  # level 3: a replaced code of an open session (not counted as wrong)
    WRONG_CODE = "WRONG_CODE"  # no live session has this code (counts toward the throttle)
    THROTTLED = "THROTTLED"  # too many wrong codes; `retry_after` seconds to wait
    NOT_LINKED = "NOT_LINKED"  # no user session in Redis for this Telegram account
    NOT_STUDENT = "NOT_STUDENT"  # the account is a teacher's


@dataclass(frozen=True, slots=True)
class CheckInResult:
    status: CheckInStatus
    attendance: LiveSession | None = None
    record: LiveRecord | None = None  # the record stored, or the existing one
    retry_after: int | None = None  # seconds, for THROTTLED
    # The record's status as the sheet will say it (PRESENT, LATE, PENDING), when there is one.
    recorded: RecordStatus | None = None


class LocationOutcome(StrEnum):
    OK_PRESENT = "OK_PRESENT"  # the waiting record is present now (`record` the new one)
    OK_PENDING = "OK_PENDING"  # pending review, with the location's reason on `record`
    NO_WAIT = "NO_WAIT"  # no check-in waits for a location (never asked, or the wait ran out)
    ENDED = "ENDED"  # the session ended (or is being finalized) meanwhile: nothing changed
    DECIDED = "DECIDED"  # someone (the teacher) decided the record meanwhile: left alone
    # The Mini App could not read a position: the record stays pending, LOCATION_MISSING.
    MISSING = "MISSING"


@dataclass(frozen=True, slots=True)
class LocationResult:
    outcome: LocationOutcome
    attendance: LiveSession | None = None
    record: LiveRecord | None = None
