"""The finalizer's side of a live session: claim it once ended, read it whole, delete it.

The claim is what closes a session to every live write (the invariant of dal/redis/sessions.py):
`claim_attendance` succeeds only once the due score has passed by Redis's clock, and every
write script refuses a claimed session.
"""

from __future__ import annotations

from collections.abc import Sequence
from enum import StrEnum
from uuid import UUID

import redis.asyncio as aioredis

from dal.models import LiveRecord, LiveSession
from dal.redis import keys, scripts
from dal.redis.base import Store, parse_records, text

__all__ = ["ClaimOutcome", "FinalizationStore", "SessionRead"]


class ClaimOutcome(StrEnum):
    CLAIMED = "CLAIMED"  # this owner holds the claim: no write can reach the session any more
    HELD = "HELD"  # another worker holds it
    OPEN = "OPEN"  # not ended yet by Redis's clock (the caller's clock runs ahead)


# A session as the finalizer reads it: (session, records, enrolled), None when the session key
# is gone, or the error that kept it from being decoded.
SessionRead = tuple[LiveSession, list[LiveRecord], set[str]] | None | ValueError


class FinalizationStore(Store):
    """Claims, the bulk read and the deletion of ended sessions."""

    def __init__(self, redis: aioredis.Redis, *, url: str = "redis://") -> None:
        super().__init__(redis, url=url)
        self._claim_script = scripts.register(redis, "claim")
        self._delete_session_script = scripts.register(redis, "delete_session")
        self._compare_delete_script = scripts.register(redis, "compare_delete")

    async def claim_attendance(
        self, *, attendance_id: UUID, owner: str, ttl_seconds: int
    ) -> ClaimOutcome:
        """Claim an ended session for finalization.

        CLAIMED: from now on no check-in or teacher's change can reach it, so it may be read.
        HELD: another worker holds the claim. OPEN: Redis's clock says it has not ended yet.
        """
        script_keys = [keys.claim(attendance_id), keys.DUE, keys.attendance(attendance_id)]
        with self._errors:
            reply: int = await self._claim_script(
                keys=script_keys, args=[owner, ttl_seconds, str(attendance_id)]
            )
        if reply == 1:
            return ClaimOutcome.CLAIMED
        return ClaimOutcome.HELD if reply == 0 else ClaimOutcome.OPEN

    async def release_claim(self, *, attendance_id: UUID, owner: str) -> bool:
        """Drop the claim if `owner` still holds it; True when it was dropped."""
        with self._errors:
            deleted: int = await self._compare_delete_script(
                keys=[keys.claim(attendance_id)], args=[owner]
            )
        return deleted == 1

    async def read_sessions(self, *, attendance_ids: Sequence[UUID]) -> list[SessionRead]:
        """Sessions, their records (in no order) and enrolled sets, in ONE pipelined round
        trip (GET, HVALS, SMEMBERS per session): the finalizer's bulk read. None for a session
        whose key is gone; the ValueError for one that cannot be decoded. Records are decoded
        in one pass per session by pydantic-core."""
        with self._errors:
            async with self._redis.pipeline(transaction=False) as pipe:
                for aid in attendance_ids:
                    pipe.get(keys.attendance(aid))
                    pipe.hvals(keys.records(aid))
                    pipe.smembers(keys.enrolled(aid))
                replies = await pipe.execute()
        out: list[SessionRead] = []
        for n, aid in enumerate(attendance_ids):
            raw, values, members = replies[3 * n : 3 * n + 3]
            if raw is None:
                out.append(None)
                continue
            try:
                attendance = LiveSession.model_validate_json(raw)
                records = parse_records(aid, values)
            except ValueError as exc:  # pydantic's ValidationError is a ValueError
                out.append(exc)
                continue
            out.append((attendance, records, {text(m) for m in members}))
        return out

    async def delete_attendance_keys(self, *, attendance_id: UUID) -> None:
        """Remove every key of the session atomically (after it reached PostgreSQL).

        The code and teacher keys are removed only while they still point at this session.
        """
        script_keys = [
            keys.attendance(attendance_id),
            keys.records(attendance_id),
            keys.enrolled(attendance_id),
            keys.claim(attendance_id),
            keys.DUE,
            keys.ROTATIONS,
        ]
        with self._errors:
            await self._delete_session_script(keys=script_keys, args=[str(attendance_id)])
