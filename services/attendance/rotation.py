"""Level 3: the session's code changes every CODE_ROTATION_SECONDS.

Part of the attendance service (services/attendance/__init__.py). The rotation is a
compare-and-set in Redis (dal/redis/sessions.py, rotate.lua), so every replica may tick at
once; the check-in script accepts the current code and the previous one.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta

from dal.errors import NotFound
from dal.models import LiveSession
from dal.redis.sessions import AttendanceEnded, LiveSessions


class CodeRotation:
    def __init__(
        self,
        *,
        sessions: LiveSessions,
        code_rotation_seconds: int = 30,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self._sessions = sessions
        self._rotation = timedelta(seconds=code_rotation_seconds)
        self._clock = clock

    async def schedule_missed_rotations(self) -> int:
        """Level 3: put on the rotation schedule the open sessions missing from it (opened by
        a version before the schedule existed); run once at start-up, so that the codes of
        sessions open across an upgrade keep rotating. Returns how many were added."""
        return await self._sessions.schedule_missed_rotations(now=self._clock())

    async def rotate_codes(self) -> list[LiveSession]:
        """Level 3: new codes for the open sessions whose code is CODE_ROTATION_SECONDS old.
        Safe on every replica at once (the rotation is a compare-and-set). Reads only the
        sessions the rotation schedule says are due, not every open session."""
        now = self._clock()
        rotated: list[LiveSession] = []
        for attendance_id in await self._sessions.rotations_due(changed_by=now - self._rotation):
            try:
                session = await self._sessions.rotate_code(
                    attendance_id=attendance_id, now=now, every=self._rotation
                )
            except (AttendanceEnded, NotFound):
                # The scripts drop the schedule entry of a session gone or closed.
                continue
            if session is not None:
                rotated.append(session)
        return rotated


__all__ = ["CodeRotation"]
