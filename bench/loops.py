"""The background loops with 1,000 open sessions: Redis commands and time per tick.

    python -m bench.loops [--open 1000] [--level3 100] [--ended 200]

Seeds `--open` open sessions (`--level3` of them at security level 3) and `--ended` ended
ones (10 students each) into Redis database 8 (flushed) and a throwaway PostgreSQL database,
then measures, by the server's own `INFO commandstats` (every command, those run inside Lua
scripts included; the INFO calls themselves left out):

- the code-rotation tick of bot/status_message.py (`AttendanceService.rotate_codes`), with no code
  due and with every level-3 code due, beside the loop it replaced (every open session read
  each second: the due index's open range, then each session) run on the same data;
- the closing-reminders read, beside the old read of the due range shared with the finalizer;
- a finalize tick with nothing ended, and one draining the ended sessions (one replica, then
  two replicas at once sharing the work through the per-session claims).
"""

from __future__ import annotations

import argparse
import asyncio
import time
import uuid
from collections.abc import Awaitable, Callable, Sequence
from datetime import UTC, datetime, timedelta
from typing import TypeVar
from zoneinfo import ZoneInfo

import redis.asyncio as aioredis

from bench.common import bench_services, flush_redis, redis_url, throwaway_database
from dal.errors import NotFound
from dal.models import LiveRecord, LiveSession, Role, User
from dal.pg import Postgres
from dal.redis import keys
from dal.redis.sessions import AttendanceEnded
from dal.redis.stores import RedisStores
from services.finalize import Finalizer
from services.notify import Notice, Notifier

T = TypeVar("T")
TZ = ZoneInfo("Europe/Istanbul")
EVERY = timedelta(seconds=30)


class _Discard:
    """Notices are dropped, not queued: the loops' own cost is measured."""

    async def enqueue(
        self,
        notices: Sequence[Notice],
        *,
        once: str | None = None,
        once_ttl: int = 0,
        once_state: str | None = None,
    ) -> bool:
        return True


def _notifier() -> Notifier:
    return _Discard()


async def _commands(raw: aioredis.Redis) -> int:
    stats = await raw.info("commandstats")
    return sum(int(v["calls"]) for k, v in stats.items() if k != "cmdstat_info")


async def _measure(raw: aioredis.Redis, run: Callable[[], Awaitable[T]]) -> tuple[T, int, float]:
    before = await _commands(raw)
    started = time.perf_counter()
    result = await run()
    elapsed = time.perf_counter() - started
    return result, await _commands(raw) - before, elapsed


async def _seed(
    pg: Postgres, redis: RedisStores, *, open_count: int, level3: int, ended: int
) -> datetime:
    now = datetime.now(UTC)
    students = [
        User(user_school_number=f"S{n:03d}", user_full_name=f"Öğrenci {n}", role=Role.STUDENT)
        for n in range(10)
    ]
    teachers = [
        User(user_school_number=f"T{n:05d}", user_full_name=f"Hoca {n}", role=Role.TEACHER)
        for n in range(open_count + ended)
    ]
    await pg.accounts.add_users(users=[*students, *teachers])
    numbers = [s.user_school_number for s in students]
    for n, teacher in enumerate(teachers):
        is_open = n < open_count
        start = now - timedelta(minutes=5 if is_open else 80)
        draft = LiveSession(
            attendance_id=uuid.uuid4(),
            teacher_school_number=teacher.user_school_number,
            teacher_full_name=teacher.user_full_name,
            lesson_name="BENCH101 - Bench",
            code="000000",
            security_option=3 if n < level3 else 1,
            start_time=start,
            planned_end_time=start + timedelta(minutes=50 if is_open else 60),
        )
        attendance = await redis.sessions.open_attendance(
            attendance=draft, enrolled=numbers, now=start
        )
        if not is_open:  # ended: its records written straight in, as bench/finalize.py does
            async with redis.redis.pipeline(transaction=False) as pipe:
                for number in numbers[:8]:
                    rec = LiveRecord(
                        attendance_id=attendance.attendance_id,
                        student_number=number,
                        student_full_name="Öğrenci",
                        is_attended=True,
                        attendance_time=start + timedelta(minutes=2),
                    )
                    pipe.hset(
                        keys.records(attendance.attendance_id),
                        number,
                        rec.model_dump_json(exclude={"attendance_id"}),
                    )
                await pipe.execute()
    return now


async def _old_rotation_tick(redis: RedisStores, now: datetime) -> int:
    """The loop before it was bounded by the work due: every open session read and parsed,
    every second, on every replica, and the level-3 ones that are due rotated."""
    rotated = 0
    for attendance_id in await redis.sessions.open_attendance_ids(now=now):
        raw = await redis.redis.get(keys.attendance(attendance_id))
        if raw is None:
            continue
        session = LiveSession.model_validate_json(raw)
        changed = session.code_changed_at or session.start_time
        if session.security_option != 3 or session.end_time is not None or now - changed < EVERY:
            continue
        try:
            if await redis.sessions.rotate_code(attendance_id=attendance_id, now=now, every=EVERY):
                rotated += 1
        except (AttendanceEnded, NotFound):
            continue
    return rotated


def _finalizer(pg: Postgres, redis: RedisStores, owner: str, now: datetime) -> Finalizer:
    # Without warnings and receipts, as this loop has always been measured.
    services = bench_services(
        pg,
        redis,
        _notifier(),
        clock=lambda: now,
        owner=owner,
        finalizer={"warnings": None, "receipts": None},
    )
    return services.finalizer


def _row(label: str, commands: int, seconds: float, note: str = "") -> None:
    print(f"  {label:<52} {commands:>7,} commands {seconds * 1000:>9.1f} ms  {note}")


async def run(open_count: int, level3: int, ended: int) -> None:
    url = redis_url()
    await flush_redis(url)
    redis = RedisStores.from_url(url)
    raw = redis.redis
    async with throwaway_database() as dsn:
        pg = await Postgres.connect(dsn, max_size=8)
        try:
            now = await _seed(pg, redis, open_count=open_count, level3=level3, ended=ended)
            print(f"{open_count} open sessions ({level3} at level 3), {ended} ended awaiting")
            clock_now = now
            attendance = bench_services(
                pg,
                redis,
                _notifier(),
                clock=lambda: clock_now,
                rotation={"code_rotation_seconds": int(EVERY.total_seconds())},
            ).attendance
            print("code rotation tick (bot/status_message.py, every second on every replica):")
            # Started 5 minutes ago: every level-3 code is due on the first tick.
            rotated, n, s = await _measure(raw, attendance.rotate_codes)
            _row("schedule, every level-3 code due", n, s, f"{len(rotated)} rotated")
            rotated, n, s = await _measure(raw, attendance.rotate_codes)
            _row("schedule, nothing due (the usual second)", n, s, f"{len(rotated)} rotated")
            count, n, s = await _measure(raw, lambda: _old_rotation_tick(redis, now))
            _row("old loop, nothing due", n, s, f"{count} rotated")
            later = now + EVERY + timedelta(seconds=1)
            count, n, s = await _measure(raw, lambda: _old_rotation_tick(redis, later))
            _row("old loop, every level-3 code due", n, s, f"{count} rotated")

            print("closing reminders read (services/reminders.py):")
            horizon = now + timedelta(minutes=50)
            ids, n, s = await _measure(
                raw,
                lambda: redis.sessions.closing_attendance_ids(after=now, until=horizon),
            )
            _row("open sessions closing by the horizon", n, s, f"{len(ids)} ids")
            ids, n, s = await _measure(
                raw,
                lambda: redis.sessions.get_due_attendance_ids(now=horizon, limit=1_000),
            )
            opened = set(await redis.sessions.open_attendance_ids(now=now))
            missed = len(opened - set(ids))
            _row(
                "old: due range -inf..horizon, limit 1000",
                n,
                s,
                f"{len(ids)} ids, {missed} open sessions never reached",
            )

            print("finalize tick (bot/scheduler.py, every replica, no job lock):")
            early = now - timedelta(hours=1)
            report, n, s = await _measure(raw, lambda: _finalizer(pg, redis, "a", early).run_once())
            _row("nothing ended", n, s, f"{report.finalized} finalized")
            half = ended // 2
            first = _finalizer(pg, redis, "a", now)
            # One replica drains the first half (the earliest ends: pages from the start).
            ids_before = await redis.sessions.get_due_attendance_ids(now=now, limit=ended)
            keep = ids_before[half:]
            scores = {str(i): await raw.zscore("attendances:due", str(i)) for i in keep}
            await raw.zrem("attendances:due", *scores)  # hidden from the first drain
            report, n, s = await _measure(raw, first.run_once)
            _row(f"one replica drains {half}", n, s, f"{report.finalized} finalized")
            await raw.zadd("attendances:due", {k: float(v or 0) for k, v in scores.items()})
            second = _finalizer(pg, redis, "b", now)
            (r1, r2), n, s = await _measure(
                raw, lambda: asyncio.gather(first.run_once(), second.run_once())
            )
            _row(
                f"two replicas drain {len(keep)} together",
                n,
                s,
                f"{r1.finalized} + {r2.finalized} finalized, {r1.skipped + r2.skipped} skipped",
            )
        finally:
            await pg.db.close()
            await redis.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--open", type=int, default=1_000, dest="open_count")
    parser.add_argument("--level3", type=int, default=100)
    parser.add_argument("--ended", type=int, default=200)
    args = parser.parse_args()
    asyncio.run(run(args.open_count, args.level3, args.ended))


if __name__ == "__main__":
    main()
