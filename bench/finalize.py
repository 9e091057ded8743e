"""Finalization throughput: ended sessions moved from Redis to PostgreSQL, records per second.

    python -m bench.finalize [--sessions 100] [--records 300] [--repeat 3] [--redis-db 10]

Seeds `--sessions` ended sessions of `--records` rows each (per session: 90 % of the enrolled
students checked in, a quarter of them late; the other enrolled are absent and written by the
finalizer; 20 students are pending review) and times `Finalizer.run_once()` on them, with one
batch at a time (the time split between the Redis reads and the PostgreSQL write is then
exact) and with the default concurrency of 4. Sessions go in the finalizer's batches (one
transaction each). The median (best) of `--repeat` runs is shown.

PostgreSQL: a throwaway database (created, then dropped) on the server of DATABASE_URL
(default postgresql://postgres@127.0.0.1:5432/postgres). Redis: database `--redis-db` of the
server of REDIS_URL (default redis://127.0.0.1:6379); the bench refuses a database that holds
sessions already, and removes what it wrote (nothing is flushed).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import time
import uuid
from datetime import UTC, datetime, timedelta
from urllib.parse import urlsplit, urlunsplit
from zoneinfo import ZoneInfo

import asyncpg

from bench.common import bench_services
from bot.notifier import OutboxNotifier
from dal.models import FailReason, LiveRecord, LiveSession, Role, User
from dal.pg import Postgres
from dal.redis.keys import DUE as DUE_KEY
from dal.redis.keys import records as records_key
from dal.redis.outbox import Outbox
from dal.redis.stores import RedisStores
from services.finalize import FinalizeReport

DEFAULT_DSN = "postgresql://postgres@127.0.0.1:5432/postgres"
DEFAULT_REDIS = "redis://127.0.0.1:6379/0"
PENDING = 20
TZ = ZoneInfo("Europe/Istanbul")


def _with_path(url: str, path: str) -> str:
    return urlunsplit(urlsplit(url)._replace(path=path))


async def _seed(pg: Postgres, redis: RedisStores, sessions: int, per_session: int) -> datetime:
    """Ended sessions in Redis, users in PostgreSQL; returns a moment after every end."""
    await pg.db.pool.execute(
        "TRUNCATE users, attendances, attendance_records, schedule_entries CASCADE"
    )
    students = [
        User(user_school_number=f"S{n:05d}", user_full_name=f"Öğrenci {n}", role=Role.STUDENT)
        for n in range(per_session)
    ]
    teachers = [
        User(user_school_number=f"T{n:04d}", user_full_name=f"Hoca {n}", role=Role.TEACHER)
        for n in range(sessions)
    ]
    await pg.accounts.add_users(users=[*teachers, *students])
    numbers = [s.user_school_number for s in students]
    enrolled = numbers[: max(0, per_session - PENDING)]
    start = datetime.now(UTC) - timedelta(days=1)
    for n, teacher in enumerate(teachers):
        began = start + timedelta(minutes=n)
        draft = LiveSession(
            attendance_id=uuid.uuid4(),
            teacher_school_number=teacher.user_school_number,
            teacher_full_name=teacher.user_full_name,
            lesson_name="BENCH101 - Bench",
            lesson_code="BENCH101",
            code="000000",
            start_time=began,
            planned_end_time=began + timedelta(minutes=50),
        )
        attendance = await redis.sessions.open_attendance(
            attendance=draft, enrolled=enrolled, now=began
        )
        async with redis.redis.pipeline(transaction=False) as pipe:
            for i, number in enumerate(numbers):
                pending = i >= len(enrolled)
                if not pending and i % 10 == 9:
                    continue  # absent: written by the finalizer
                rec = LiveRecord(
                    attendance_id=attendance.attendance_id,
                    student_number=number,
                    student_full_name=students[i].user_full_name,
                    is_attended=not pending,
                    attendance_time=began + timedelta(minutes=20 if i % 4 == 0 else 2),
                    fail_reason=FailReason.NOT_IN_SCHEDULE.value if pending else None,
                )
                pipe.hset(
                    records_key(attendance.attendance_id),
                    number,
                    rec.model_dump_json(exclude={"attendance_id"}),
                )
            await pipe.execute()
    return start + timedelta(days=1)


async def _once(
    pg: Postgres,
    redis: RedisStores,
    *,
    sessions: int,
    per_session: int,
    concurrency: int,
) -> tuple[float, FinalizeReport]:
    now = await _seed(pg, redis, sessions, per_session)
    finalizer = bench_services(
        pg,
        redis,
        # The real durable outbox: the finalizer's marker + XADD step is part of the cost.
        OutboxNotifier(Outbox(redis.redis)),
        clock=lambda: now,
        owner="bench",
        # Without warnings and receipts, as this benchmark has always been measured.
        finalizer={"concurrency": concurrency, "warnings": None, "receipts": None},
    ).finalizer
    began = time.perf_counter()
    report = await finalizer.run_once()
    elapsed = time.perf_counter() - began
    stored = await pg.db.pool.fetchval("SELECT count(*) FROM attendance_records")
    expected = sessions * per_session
    if report.finalized != sessions or stored != expected:
        raise RuntimeError(
            f"finalized {report.finalized}/{sessions} sessions, {stored}/{expected} records"
        )
    ids = await pg.db.pool.fetch("SELECT attendance_id FROM attendances")
    await redis.redis.delete(*[f"once:final:{row['attendance_id']}" for row in ids])
    return elapsed, report


async def run(dsn: str, redis_url: str, sessions: int, per_session: int, repeat: int) -> None:
    redis = RedisStores.from_url(redis_url)
    try:
        if await redis.redis.zcard(DUE_KEY):
            raise SystemExit(f"{redis_url} holds sessions already; pick another --redis-db")
        name = f"attn_bench_{uuid.uuid4().hex[:12]}"
        admin = await asyncpg.connect(dsn)
        try:
            await admin.execute(f'CREATE DATABASE "{name}"')
        finally:
            await admin.close()
        try:
            pg = await Postgres.connect(_with_path(dsn, f"/{name}"), max_size=8)
            try:
                version = await pg.db.pool.fetchval("SHOW server_version")
                total = sessions * per_session
                print(
                    f"PostgreSQL {version}; {sessions} sessions x {per_session} records"
                    f" = {total:,} records; median (best) of {repeat} runs"
                )
                await _once(pg, redis, sessions=2, per_session=per_session, concurrency=1)
                for concurrency in (1, 4):
                    runs = [
                        await _once(
                            pg,
                            redis,
                            sessions=sessions,
                            per_session=per_session,
                            concurrency=concurrency,
                        )
                        for _ in range(repeat)
                    ]
                    times = [elapsed for elapsed, _ in runs]
                    median = statistics.median(times)
                    _, report = sorted(runs, key=lambda r: r[0])[len(runs) // 2]
                    print(
                        f"concurrency {concurrency}: {median:6.2f} s, {total / median:>9,.0f}"
                        f" records/s (best {total / min(times):,.0f})"
                    )
                    spent = (
                        report.redis_read_seconds
                        + report.build_seconds
                        + report.postgres_seconds
                        + report.cleanup_seconds
                    )
                    label = "time per phase" if concurrency == 1 else "summed over sessions"
                    print(
                        f"  {label}: Redis reads {report.redis_read_seconds:.2f} s"
                        f" ({report.redis_read_seconds / spent:.0%}),"
                        f" building rows {report.build_seconds:.2f} s"
                        f" ({report.build_seconds / spent:.0%}),"
                        f" PostgreSQL {report.postgres_seconds:.2f} s"
                        f" ({report.postgres_seconds / spent:.0%}:"
                        f" users read {report.users_read_seconds:.2f},"
                        f" write {report.write_seconds:.2f} in {report.batches} transactions,"
                        f" contacts read {report.contacts_read_seconds:.2f}),"
                        f" Redis cleanup {report.cleanup_seconds:.2f} s"
                        f" ({report.cleanup_seconds / spent:.0%})"
                    )
            finally:
                await pg.db.close()
        finally:
            admin = await asyncpg.connect(dsn)
            try:
                await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
            finally:
                await admin.close()
    finally:
        await redis.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--sessions", type=int, default=100)
    parser.add_argument("--records", type=int, default=300, help="records per session")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--redis-db", type=int, default=10, help="Redis database to use")
    args = parser.parse_args()
    dsn = os.environ.get("DATABASE_URL", DEFAULT_DSN)
    redis_url = _with_path(os.environ.get("REDIS_URL", DEFAULT_REDIS), f"/{args.redis_db}")
    per_session = max(PENDING + 1, args.records)
    asyncio.run(run(dsn, redis_url, args.sessions, per_session, max(1, args.repeat)))


if __name__ == "__main__":
    main()
