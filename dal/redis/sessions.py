"""Live attendance sessions in Redis: opening, reading, the teacher's changes, their records.

**No "checked in" that is later lost** (the invariant every live write keeps): a write into a
live session (a student's check-in, a teacher's accept/reject/add, a change of its settings or
code, its end) happens only inside one Lua script that, in the same atomic step, finds the
session key, finds no finalization claim (`keys.claim`) and finds the session's due score still
in the future by Redis's own clock (`redis_now()`, lua/now.lua), never by the caller's. The
finalizer claims a session only once its due score has passed by that same clock
(finalization.py, lua/claim.lua), and reads it only after the claim. A session ended by Redis's
clock can never be reopened: no script raises a due score that has passed, and ending one sets
its score to at most Redis's now. So every write either lands before the claim (and the
finalizer reads it) or is refused, whichever replica sent it and whatever its clock says.
Calling `TIME` before writes needs script effects replication: the default since Redis 5.0 and
the only mode of 7.x (tests run the scripts on the 6.2 binary too). The caller's clock only
stamps a record's `attendance_time`.

Session JSON is never re-encoded inside Lua: cjson would round Telegram ids (%.14g), so field
updates are read-modify-write in Python with a compare-and-set script (lua/update_session.lua).
"""

from __future__ import annotations

import logging
import secrets
from collections.abc import Callable, Iterable
from datetime import UTC, datetime, timedelta
from uuid import UUID

import redis.asyncio as aioredis

from dal.errors import Conflict, NotFound
from dal.models import LiveRecord, LiveSession
from dal.redis import keys, scripts
from dal.redis.base import Store, epoch, parse_record, record_json, text

__all__ = ["AttendanceAlreadyOpen", "AttendanceEnded", "LiveSessions", "generate_code"]

logger = logging.getLogger(__name__)


class AttendanceAlreadyOpen(Conflict):
    """The teacher already has an open session; `attendance_id` names it."""

    def __init__(self, attendance_id: UUID) -> None:
        super().__init__(f"teacher already has open attendance {attendance_id}")
        self.attendance_id = attendance_id


class AttendanceEnded(Conflict):
    """The session has ended (or its planned end has passed); it can no longer be changed so."""

    def __init__(self, attendance_id: UUID) -> None:
        super().__init__(f"attendance {attendance_id} has ended")
        self.attendance_id = attendance_id


def generate_code() -> str:
    """A six-digit check-in code from the system CSPRNG (leading zeros allowed)."""
    return f"{secrets.randbelow(1_000_000):06d}"


def _rotation_score(attendance: LiveSession) -> str:
    """The session's place in the rotation schedule: when its code last changed, or '' when
    it does not rotate (not level 3, or ended)."""
    if attendance.security_option != 3 or attendance.end_time is not None:
        return ""
    return epoch(attendance.code_changed_at or attendance.start_time)


def _compare_and_set_done(done: int, attendance_id: UUID) -> bool:
    """A session compare-and-set script's answer: 1 done (True); 0 the session is gone; -2 it
    has ended or is claimed; anything else (changed meanwhile): False, read and try again."""
    if done == 0:
        raise NotFound(f"attendance {attendance_id} not found in Redis")
    if done == -2:
        raise AttendanceEnded(attendance_id)
    return done == 1


Mutation = Callable[[LiveSession], tuple[LiveSession, str] | None]


class LiveSessions(Store):
    """Open sessions, their settings and records, and the due index (see the module docstring)."""

    def __init__(self, redis: aioredis.Redis, *, url: str = "redis://") -> None:
        super().__init__(redis, url=url)
        self._open_script = scripts.register(redis, "open")
        self._rotate_script = scripts.register(redis, "rotate")
        self._update_session_script = scripts.register(redis, "update_session")
        self._get_open_script = scripts.register(redis, "get_open")
        self._write_record_script = scripts.register(redis, "write_record")
        self._schedule_rotations_script = scripts.register(redis, "schedule_rotations")

    # --- sessions --------------------------------------------------------------------------

    async def open_attendance(
        self,
        *,
        attendance: LiveSession,
        enrolled: Iterable[str],
        code_factory: Callable[[], str] | None = None,
        max_tries: int = 20,
        now: datetime | None = None,
    ) -> LiveSession:
        """Store a new session under a fresh unique code; return it with that code.

        The incoming `attendance.code` is replaced. Raises `AttendanceAlreadyOpen` when the
        teacher has a session that has not ended, `Conflict` when the id is taken or no free
        code was found in `max_tries` attempts.
        """
        factory = code_factory or generate_code
        moment = epoch(now or datetime.now(UTC))
        attendance_id = str(attendance.attendance_id)
        script_keys = [
            keys.teacher(attendance.teacher_school_number),
            "",  # code key, per attempt
            keys.attendance(attendance_id),
            keys.enrolled(attendance_id),
            keys.DUE,
            keys.ROTATIONS,
        ]
        members = list(dict.fromkeys(enrolled))
        due_score = epoch(attendance.planned_end_time)
        rotation = _rotation_score(attendance)
        for _ in range(max_tries):
            code = factory()
            candidate = attendance.model_copy(update={"code": code})
            script_keys[1] = keys.code(code)
            args = [
                attendance_id,
                candidate.model_dump_json(),
                due_score,
                moment,
                rotation,
                *members,
            ]
            with self._errors:
                reply: list[str] = await self._open_script(keys=script_keys, args=args)
            outcome = reply[0]
            if outcome == "OK":
                return candidate
            if outcome == "OPEN":
                raise AttendanceAlreadyOpen(UUID(reply[1]))
            if outcome == "EXISTS":
                raise Conflict(f"attendance {attendance_id} already exists")
            logger.debug("check-in code collision, drawing another")
        raise Conflict(f"no free check-in code after {max_tries} attempts")

    async def get_attendance(self, *, attendance_id: UUID) -> LiveSession | None:
        with self._errors:
            raw = await self._redis.get(keys.attendance(attendance_id))
        return None if raw is None else LiveSession.model_validate_json(raw)

    async def get_open_attendance(
        self, *, teacher_school_number: str, now: datetime | None = None
    ) -> LiveSession | None:
        """The teacher's session that has not ended (at `now`, default: the current time)."""
        moment = float(epoch(now or datetime.now(UTC)))
        with self._errors:
            reply: list[str] | None = await self._get_open_script(
                keys=[keys.teacher(teacher_school_number), keys.DUE]
            )
        if not reply or not reply[1] or not reply[2] or float(reply[2]) <= moment:
            return None
        attendance = LiveSession.model_validate_json(reply[1])
        return attendance if attendance.end_time is None else None

    async def get_attendance_id_by_code(self, *, code: str) -> UUID | None:
        with self._errors:
            raw = await self._redis.get(keys.code(code))
        return None if raw is None else UUID(text(raw))

    async def get_enrolled(self, *, attendance_id: UUID) -> set[str]:
        with self._errors:
            members = await self._redis.smembers(keys.enrolled(attendance_id))
        return {text(member) for member in members}

    async def open_attendance_ids(self, *, now: datetime, limit: int = 10_000) -> list[UUID]:
        """Ids of the sessions not ended by `now` (from the due index)."""
        with self._errors:
            members = await self._redis.zrangebyscore(
                keys.DUE, f"({epoch(now)}", "+inf", start=0, num=limit
            )
        return [UUID(str(member)) for member in members]

    async def get_due_attendance_ids(
        self, *, now: datetime, limit: int = 100, offset: int = 0
    ) -> list[UUID]:
        """Ids of sessions that have ended by `now`, earliest end first (from `offset`)."""
        with self._errors:
            members = await self._redis.zrangebyscore(
                keys.DUE, "-inf", epoch(now), start=offset, num=limit
            )
        return [UUID(str(member)) for member in members]

    async def closing_attendance_ids(
        self, *, after: datetime, until: datetime, limit: int = 10_000
    ) -> list[UUID]:
        """Ids of the sessions still open at `after` that are due to end by `until`: the
        ended ones awaiting finalization are not read, however many there are."""
        with self._errors:
            members = await self._redis.zrangebyscore(
                keys.DUE, f"({epoch(after)}", epoch(until), start=0, num=limit
            )
        return [UUID(str(member)) for member in members]

    async def rotations_due(self, *, changed_by: datetime, limit: int = 10_000) -> list[UUID]:
        """Level 3: ids of the open sessions whose code last changed at `changed_by` or
        earlier (the rotation schedule; one O(log n + m) read, m the sessions due)."""
        with self._errors:
            members = await self._redis.zrangebyscore(
                keys.ROTATIONS, "-inf", epoch(changed_by), start=0, num=limit
            )
        return [UUID(str(member)) for member in members]

    async def schedule_missed_rotations(self, *, now: datetime, batch: int = 200) -> int:
        """Put on the rotation schedule the open level-3 sessions missing from it (opened
        before the schedule existed, e.g. by the version running before an upgrade): their
        codes would otherwise never rotate. Returns how many were added.

        Idempotent (an entry already there is kept) and cheap when nothing is open: one read
        of the due index per `batch` open sessions, one MGET of those sessions, and one script
        call for the level-3 ones, which adds each only if it is still the session read and
        still open by Redis's clock."""
        added = 0
        offset = 0
        while True:
            ids = await self._open_ids_page(now=now, offset=offset, limit=batch)
            if not ids:
                return added
            offset += len(ids)
            with self._errors:
                raws = await self._redis.mget([keys.attendance(i) for i in ids])
            script_keys = [keys.ROTATIONS, keys.DUE]
            args: list[str] = []
            for attendance_id, raw in zip(ids, raws, strict=True):
                if raw is None:
                    continue
                score = _rotation_score(LiveSession.model_validate_json(raw))
                if score:
                    script_keys.append(keys.attendance(attendance_id))
                    args += [str(attendance_id), text(raw), score]
            if args:
                with self._errors:
                    added += int(await self._schedule_rotations_script(keys=script_keys, args=args))
            if len(ids) < batch:
                return added

    async def _open_ids_page(self, *, now: datetime, offset: int, limit: int) -> list[UUID]:
        """Ids of the sessions not ended by `now`, `limit` from `offset` (due index order)."""
        with self._errors:
            members = await self._redis.zrangebyscore(
                keys.DUE, f"({epoch(now)}", "+inf", start=offset, num=limit
            )
        return [UUID(str(member)) for member in members]

    async def unschedule_rotation(self, *, attendance_id: UUID) -> None:
        """Drop a schedule entry whose session is gone or no longer rotates."""
        with self._errors:
            await self._redis.zrem(keys.ROTATIONS, str(attendance_id))

    async def due_overview(self, *, now: datetime) -> tuple[int, int, datetime | None]:
        """(open sessions, ended sessions not yet finalized, end of the oldest of those).

        Read from the due index alone (three O(log n) commands in one round trip), for the
        metrics endpoint.
        """
        with self._errors:
            async with self._redis.pipeline(transaction=False) as pipe:
                pipe.zcount(keys.DUE, f"({epoch(now)}", "+inf")
                pipe.zcount(keys.DUE, "-inf", epoch(now))
                pipe.zrange(keys.DUE, 0, 0, withscores=True)
                open_count, ended_count, oldest = await pipe.execute()
        oldest_end = None
        if ended_count and oldest:
            oldest_end = datetime.fromtimestamp(float(oldest[0][1]), UTC)
        return int(open_count), int(ended_count), oldest_end

    # --- the teacher's changes (compare-and-set, refused once ended) -----------------------

    async def finish_attendance(self, *, attendance_id: UUID, end_time: datetime) -> LiveSession:
        """End the session at `end_time`: nothing is deleted (finalization does that).

        The due score moves to `end_time` and the teacher's open-session pointer is cleared.
        Finishing an already finished (or claimed) session changes nothing and returns it.
        Raises `NotFound` when the session is gone. The due score becomes the earliest of
        `end_time`, Redis's clock and the current score: a caller whose clock runs ahead
        cannot keep a session open, nor reopen one that has already ended.
        """
        due_score = epoch(end_time)

        def mutate(current: LiveSession) -> tuple[LiveSession, str] | None:
            if current.end_time is not None:
                return None
            return current.model_copy(update={"end_time": end_time}), due_score

        try:
            return await self._update_attendance(
                attendance_id, mutate, clear_teacher=True, ending=True
            )
        except AttendanceEnded:
            current = await self.get_attendance(attendance_id=attendance_id)
            if current is None:
                raise NotFound(f"attendance {attendance_id} not found in Redis") from None
            return current

    async def set_status_message(
        self, *, attendance_id: UUID, chat_id: int, message_id: int
    ) -> LiveSession:
        """Remember the teacher's live status message. Raises `NotFound` if the session is gone."""

        def mutate(current: LiveSession) -> tuple[LiveSession, str] | None:
            update = {"status_chat_id": chat_id, "status_message_id": message_id}
            return current.model_copy(update=update), ""

        return await self._update_attendance(attendance_id, mutate)

    async def set_security_level(self, *, attendance_id: UUID, level: int) -> LiveSession:
        """Change an open session's security level. `NotFound` if gone, `AttendanceEnded` once
        ended (by Redis's clock) or claimed: the compare-and-set script checks, like every
        write into a live session."""

        def mutate(current: LiveSession) -> tuple[LiveSession, str] | None:
            if current.end_time is not None:
                raise AttendanceEnded(attendance_id)
            if current.security_option == level:
                return None
            return current.model_copy(update={"security_option": level}), ""

        return await self._update_attendance(attendance_id, mutate, require_open=True)

    async def set_anchor(
        self, *, attendance_id: UUID, latitude: float, longitude: float
    ) -> LiveSession:
        """Anchor an open session at the teacher's location (`AttendanceEnded` once ended)."""

        def mutate(current: LiveSession) -> tuple[LiveSession, str] | None:
            if current.end_time is not None:
                raise AttendanceEnded(attendance_id)
            update = {"anchor_latitude": latitude, "anchor_longitude": longitude}
            return current.model_copy(update=update), ""

        return await self._update_attendance(attendance_id, mutate, require_open=True)

    async def set_head_count_cap(self, *, attendance_id: UUID, cap: int | None) -> LiveSession:
        """Set (or clear) an open session's head-count cap (`AttendanceEnded` once ended)."""

        def mutate(current: LiveSession) -> tuple[LiveSession, str] | None:
            if current.end_time is not None:
                raise AttendanceEnded(attendance_id)
            return current.model_copy(update={"head_count_cap": cap}), ""

        return await self._update_attendance(attendance_id, mutate, require_open=True)

    async def rotate_code(
        self,
        *,
        attendance_id: UUID,
        now: datetime,
        every: timedelta,
        code_factory: Callable[[], str] | None = None,
        max_tries: int = 20,
    ) -> LiveSession | None:
        """Level 3: give the open session a new code when its current one is `every` old (by
        `now`); the current code becomes the previous one. Returns the session when the code
        changed, None when nothing was due (or another replica rotated first). Raises
        `AttendanceEnded` once the session has ended by Redis's clock or is claimed."""
        factory = code_factory or generate_code
        key = keys.attendance(attendance_id)
        for _ in range(max_tries):
            with self._errors:
                raw = await self._redis.get(key)
            if raw is None:
                await self.unschedule_rotation(attendance_id=attendance_id)
                raise NotFound(f"attendance {attendance_id} not found in Redis")
            current = LiveSession.model_validate_json(raw)
            changed = current.code_changed_at or current.start_time
            if current.security_option != 3 or current.end_time is not None:
                await self.unschedule_rotation(attendance_id=attendance_id)
                return None
            if now - changed < every:
                return None
            code = factory()
            if code in (current.code, current.previous_code):
                continue
            updated = current.model_copy(
                update={"code": code, "previous_code": current.code, "code_changed_at": now}
            )
            script_keys = [
                key,
                keys.DUE,
                keys.claim(attendance_id),
                keys.code(code),
                keys.ROTATIONS,
            ]
            args = [raw, updated.model_dump_json(), str(attendance_id), epoch(now)]
            with self._errors:
                done: int = await self._rotate_script(keys=script_keys, args=args)
            if _compare_and_set_done(done, attendance_id):
                return updated
            # -1: changed meanwhile (re-read: maybe rotated by another replica); -3: taken
        raise Conflict(f"attendance {attendance_id}: no code rotation after {max_tries} tries")

    async def _update_attendance(
        self,
        attendance_id: UUID,
        mutate: Mutation,
        *,
        clear_teacher: bool = False,
        require_open: bool = False,
        ending: bool = False,
        max_tries: int = 10,
    ) -> LiveSession:
        """Read, change in Python, compare-and-set in Lua; retry if someone wrote meanwhile.

        `mutate` returns the new session and its new due score ('' keeps it), or None for
        "nothing to change".
        """
        key = keys.attendance(attendance_id)
        for _ in range(max_tries):
            with self._errors:
                raw = await self._redis.get(key)
            if raw is None:
                raise NotFound(f"attendance {attendance_id} not found in Redis")
            current = LiveSession.model_validate_json(raw)
            change = mutate(current)
            if change is None:
                return current
            updated, due_score = change
            script_keys = [
                key,
                keys.DUE,
                keys.teacher(current.teacher_school_number),
                keys.claim(attendance_id),
                keys.ROTATIONS,
            ]
            args = [
                raw,
                updated.model_dump_json(),
                str(attendance_id),
                due_score,
                "1" if clear_teacher else "0",
                "1" if require_open else "0",
                "1" if ending and due_score else "0",
                _rotation_score(updated),
            ]
            with self._errors:
                done: int = await self._update_session_script(keys=script_keys, args=args)
            if _compare_and_set_done(done, attendance_id):
                return updated
        raise Conflict(f"attendance {attendance_id} kept changing; update abandoned")

    # --- records ---------------------------------------------------------------------------

    async def add_attendance_record(self, *, record: LiveRecord) -> bool:
        """Store the record unless the student has one; False if already there.

        Raises `NotFound` when the session is gone and `AttendanceEnded` when it has ended by
        Redis's clock or the finalizer has claimed it (a record written then would never reach
        PostgreSQL).
        """
        return await self._write_record(record, mode="nx")

    async def update_attendance_record(self, *, record: LiveRecord) -> None:
        """Replace (or add) the student's record; refused like `add_attendance_record`."""
        await self._write_record(record, mode="set")

    async def _write_record(self, record: LiveRecord, *, mode: str) -> bool:
        aid = record.attendance_id
        script_keys = [keys.attendance(aid), keys.records(aid), keys.DUE, keys.claim(aid)]
        args = [record.student_number, record_json(record), mode, str(aid)]
        with self._errors:
            written: int = await self._write_record_script(keys=script_keys, args=args)
        if written == -1:
            raise NotFound(f"attendance {aid} not found in Redis")
        if written == -2:
            raise AttendanceEnded(aid)
        return written == 1

    async def get_attendance_record(
        self, *, attendance_id: UUID, student_number: str
    ) -> LiveRecord | None:
        with self._errors:
            raw = await self._redis.hget(keys.records(attendance_id), student_number)
        return None if raw is None else parse_record(attendance_id, raw)

    async def get_attendance_records(self, *, attendance_id: UUID) -> list[LiveRecord]:
        """Every record of the session, earliest check-in first."""
        with self._errors:
            raw = await self._redis.hgetall(keys.records(attendance_id))
        records = [parse_record(attendance_id, value) for value in raw.values()]
        records.sort(key=lambda r: (r.attendance_time, r.student_number))
        return records

    async def count_attendance_records(self, *, attendance_id: UUID) -> int:
        with self._errors:
            count: int = await self._redis.hlen(keys.records(attendance_id))
        return count
