"""A student's check-in and the location that decides it: the hot path, one script call each.

Both are writes into a live session and keep the invariant of dal/redis/sessions.py (refused
once the session has ended by Redis's clock or is claimed by the finalizer).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from uuid import UUID

import redis.asyncio as aioredis

from dal.models import LiveRecord, LiveSession
from dal.redis import keys, scripts
from dal.redis.base import Store, parse_record, text

__all__ = ["CheckInBusy", "CheckInReply", "CheckIns", "LocationReply"]


class CheckInBusy(Exception):
    """One of the check-in's `busy_keys` exists (the sender is in a conversation, was asked
    for a credential, or is marked undeliverable): nothing was changed, and the caller that
    passed those keys handles the update the long way (bot/fsm.py)."""


@dataclass(frozen=True, slots=True)
class CheckInReply:
    """The check-in script's answer, its word (`status`) raw: the service names the outcome
    (services/checkin_outcomes.py). The word is one of OK_PRESENT, OK_PENDING, OK_LOCATION,
    DUPLICATE (`record` the first record), ENDED, EXPIRED (`attendance` only), WRONG_CODE,
    NOT_LINKED, NOT_STUDENT (nothing else) or THROTTLED (`retry_after` seconds)."""

    status: str
    attendance: LiveSession | None = None
    record: LiveRecord | None = None  # the record stored, or the existing one
    retry_after: int | None = None  # seconds, for THROTTLED


@dataclass(frozen=True, slots=True)
class LocationReply:
    """The location script's answer, its word (`outcome`) raw: OK_PRESENT / OK_PENDING (with
    the new record), NO_WAIT, ENDED or DECIDED (see `CheckIns.decide_location`)."""

    outcome: str
    attendance: LiveSession | None = None
    record: LiveRecord | None = None


_NO_SESSION = frozenset({"WRONG_CODE", "NOT_LINKED", "NOT_STUDENT"})


class CheckIns(Store):
    """Check-ins by code (lua/check_in.lua) and by location (lua/location.lua)."""

    def __init__(self, redis: aioredis.Redis, *, url: str = "redis://") -> None:
        super().__init__(redis, url=url)
        self._check_in_script = scripts.register(redis, "check_in")
        self._location_script = scripts.register(redis, "location")

    async def check_in(
        self,
        *,
        telegram_id: int,
        code: str,
        now: datetime,
        throttle_key: str,
        throttle_limit: int = 5,
        throttle_window: int = 60,
        location_wait_seconds: int = 300,
        busy_keys: Sequence[str] = (),
    ) -> CheckInReply:
        """Record the check-in of the student linked to `telegram_id`, in one Lua call.

        When one of `busy_keys` exists, nothing is done and `CheckInBusy` is raised (read in
        the same atomic call, so the hot path pays no round trip to look first).

        Order: not linked (no user session in Redis: throttled like a wrong code, counts a
        failure) -> not a student -> throttled (no lookup) -> unknown code (counts a failure)
        -> session gone -> ended (due score passed by Redis's clock, or claimed by the
        finalizer; `now` only stamps the record) -> duplicate (returns the first record) ->
        enrolled (present) or not (pending review, NOT_IN_SCHEDULE or ANOTHER_SECTION). The
        student counts as enrolled when the session's enrolled set names them, when it holds
        `*` (no known enrolment), or when the session's lesson slot is among the slots of their
        user session (their cached schedule, same term).
        """
        if now.tzinfo is None:
            raise ValueError("now must be timezone-aware")
        script_keys = [
            throttle_key,
            keys.code(code),
            keys.DUE,
            keys.user(telegram_id),
            keys.location_wait(telegram_id),
        ]
        args = [
            str(throttle_limit),
            str(throttle_window),
            now.isoformat(),
            str(int(telegram_id)),
            code,
            str(location_wait_seconds),
            *busy_keys,
        ]
        with self._errors:
            reply: list[Any] = await self._check_in_script(keys=script_keys, args=args)
        status = str(reply[0])
        if status == "BUSY":
            raise CheckInBusy
        if status in _NO_SESSION:
            return CheckInReply(status=status)
        if status == "THROTTLED":
            return CheckInReply(status=status, retry_after=int(reply[1]))
        attendance = LiveSession.model_validate_json(reply[2])
        if status == "ENDED" or status == "EXPIRED":
            return CheckInReply(status=status, attendance=attendance)
        record = parse_record(UUID(reply[1]), reply[3])
        return CheckInReply(status=status, attendance=attendance, record=record)

    async def decide_location(self, *, telegram_id: int, reason: str | None) -> LocationReply:
        """Decide the LOCATION_MISSING record this account's check-in left waiting: present
        (`reason` None; pending OVER_CAP when the cap is reached meanwhile) or pending with
        `reason`. One script: refused once the session has ended by Redis's clock or is
        claimed, and a record someone decided meanwhile (the teacher) is left alone."""
        with self._errors:
            reply: list[Any] = await self._location_script(
                keys=[keys.location_wait(telegram_id), keys.DUE], args=[reason or ""]
            )
        outcome = str(reply[0])
        if len(reply) < 4:
            return LocationReply(outcome=outcome)
        attendance = LiveSession.model_validate_json(reply[2])
        return LocationReply(
            outcome=outcome, attendance=attendance, record=parse_record(UUID(reply[1]), reply[3])
        )

    async def location_wait(self, *, telegram_id: int) -> UUID | None:
        """The session this account's check-in waits on for a location, if any."""
        with self._errors:
            raw = await self._redis.get(keys.location_wait(telegram_id))
        return None if raw is None else UUID(text(raw).split("|", 1)[0])
