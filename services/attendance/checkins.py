"""Check-ins, the student's side: the code a student sends, then the location when the
session's level asks for one; the record's status (present, late or pending) in the one
vocabulary of services/attendance_status.py.

Part of the attendance service (services/attendance/__init__.py). One Redis script
(dal/redis/checkins.py) checks the code, the enrolment and the head-count cap and writes the
record; this part names its word (services/checkin_outcomes.py).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from datetime import UTC, datetime, timedelta
from typing import Protocol

from dal.models import CachedAccount, FailReason, LiveSession
from dal.redis import keys
from dal.redis.checkins import CheckInReply, CheckIns, LocationReply
from dal.redis.sessions import LiveSessions
from services.attendance_status import live_status
from services.checkin_outcomes import (
    CheckInResult,
    CheckInStatus,
    LocationOutcome,
    LocationResult,
)
from services.location import location_verdict
from services.text import code_digits

log = logging.getLogger(__name__)


class LinkedAccounts(Protocol):
    """Where a chat's linked account is read when its Redis cache has expired
    (services.accounts.AccountService): re-caches it and returns it, None when unlinked."""

    async def current_user(self, *, telegram_id: int) -> CachedAccount | None: ...


class CheckInService:
    def __init__(
        self,
        *,
        sessions: LiveSessions,
        checkins: CheckIns,
        late_after: timedelta,
        wrong_code_limit: int = 5,
        wrong_code_window_seconds: int = 60,
        location_radius_meters: float = 150.0,
        location_wait_seconds: int = 180,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
        linked_accounts: LinkedAccounts | None = None,
    ) -> None:
        self._sessions = sessions
        self._checkins = checkins
        self._linked_accounts = linked_accounts
        self._late_after = late_after
        self._wrong_limit = wrong_code_limit
        self._wrong_window = wrong_code_window_seconds
        self._clock = clock
        self._radius = location_radius_meters
        self._location_wait = location_wait_seconds

    async def check_in(
        self, *, telegram_id: int, code: str, busy_keys: Sequence[str] = ()
    ) -> CheckInResult:
        """Record a check-in with the code a student sent: one atomic Redis script that also
        reads the sender's linked account. When that account's Redis session has expired but
        the link still holds in PostgreSQL, `linked_accounts` re-caches it and the script runs
        once more. The code may be written in any script's decimal digits; text that cannot
        be a code is refused without counting as a wrong code. `busy_keys`: see
        `CheckIns.check_in` (raises `CheckInBusy`, nothing changed)."""
        digits = code_digits(code)
        if digits is None:
            return CheckInResult(status=CheckInStatus.WRONG_CODE)
        code = digits
        reply = await self._check_in(telegram_id, code, busy_keys)
        linked = self._linked_accounts
        if (
            reply.status == CheckInStatus.NOT_LINKED
            and linked is not None
            and await linked.current_user(telegram_id=telegram_id) is not None
        ):
            reply = await self._check_in(telegram_id, code, busy_keys)
        result = self._check_in_result(reply)
        # The outcome, in the update's log context (update id, sender's pseudonym): what an
        # operator reads first when a student says "the bot did not take my code".
        log.debug("check-in: %s", result.status.name)
        return result

    def _check_in_result(self, reply: CheckInReply) -> CheckInResult:
        """The script's word named, with the record's status (present, late or pending) in
        the one vocabulary (services.attendance_status), as the sheet will say it."""
        session, record = reply.attendance, reply.record
        recorded = (
            None
            if session is None or record is None
            else live_status(record, session, self._late_after)
        )
        return CheckInResult(
            status=CheckInStatus(reply.status),
            attendance=session,
            record=record,
            retry_after=reply.retry_after,
            recorded=recorded,
        )

    async def _check_in(
        self, telegram_id: int, code: str, busy_keys: Sequence[str]
    ) -> CheckInReply:
        return await self._checkins.check_in(
            telegram_id=telegram_id,
            code=code,
            now=self._clock(),
            throttle_key=keys.throttle("checkin", telegram_id),
            throttle_limit=self._wrong_limit,
            throttle_window=self._wrong_window,
            location_wait_seconds=self._location_wait,
            busy_keys=busy_keys,
        )

    async def awaiting_location(self, *, telegram_id: int) -> LiveSession | None:
        """The session whose check-in by this account still waits for a location, if any."""
        attendance_id = await self._checkins.location_wait(telegram_id=telegram_id)
        if attendance_id is None:
            return None
        return await self._sessions.get_attendance(attendance_id=attendance_id)

    @property
    def location_wait_seconds(self) -> int:
        return self._location_wait

    @property
    def location_radius_meters(self) -> float:
        return self._radius

    async def submit_location(
        self,
        *,
        telegram_id: int,
        latitude: float,
        longitude: float,
        accuracy: float | None,
        sent_at: datetime,
        forwarded: bool,
        via_bot: bool = False,
    ) -> LocationResult:
        """A student's location after a valid code at level 2 or 3 (services.location): the
        waiting record becomes present, or pending review with the reason. NO_WAIT when no
        check-in waits for one (never asked, or asked longer ago than the wait: the record
        stays LOCATION_MISSING)."""
        attendance_id = await self._checkins.location_wait(telegram_id=telegram_id)
        if attendance_id is None:
            return LocationResult(outcome=LocationOutcome.NO_WAIT)
        session = await self._sessions.get_attendance(attendance_id=attendance_id)
        reason: FailReason | None = FailReason.LOCATION_TOO_FAR
        if (
            session is not None
            and session.anchor_latitude is not None
            and session.anchor_longitude is not None
        ):
            reason = location_verdict(
                anchor=(session.anchor_latitude, session.anchor_longitude),
                latitude=latitude,
                longitude=longitude,
                accuracy=accuracy,
                sent_at=sent_at,
                now=self._clock(),
                forwarded=forwarded,
                radius=self._radius,
                via_bot=via_bot,
            )
        reply: LocationReply = await self._checkins.decide_location(
            telegram_id=telegram_id, reason=None if reason is None else str(reason)
        )
        if reply.record is not None:
            log.info(
                "location for session %s: %s", attendance_id, reply.record.fail_reason or "present"
            )
        return LocationResult(
            outcome=LocationOutcome(reply.outcome), attendance=reply.attendance, record=reply.record
        )

    async def without_location(self, *, telegram_id: int) -> LocationResult:
        """A student whose device could not read a position (the Mini App): nothing changes,
        the waiting record stays pending, LOCATION_MISSING, as when no location comes in chat
        (the student may still share one there meanwhile). MISSING with the session waited
        on, or NO_WAIT when no check-in waits."""
        session = await self.awaiting_location(telegram_id=telegram_id)
        if session is None:
            return LocationResult(outcome=LocationOutcome.NO_WAIT)
        return LocationResult(outcome=LocationOutcome.MISSING, attendance=session)


__all__ = ["CheckInService", "LinkedAccounts"]
