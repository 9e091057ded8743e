"""`kill -9` of the real bot process while it finalizes a large batch loses nothing and
duplicates nothing: after a restart every record is in PostgreSQL exactly once and Redis holds
no session keys."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import asyncpg
import pytest

from dal.models import LiveRecord, LiveSession
from dal.pg import Postgres
from dal.redis.stores import RedisStores
from tests.fakes.telegram_server import FakeTelegram
from tests.harness import flush_redis, reset_database

SESSIONS = 80
RECORDS = 300
ROOT = Path(__file__).resolve().parents[2]


async def _seed(redis: RedisStores) -> set[tuple[uuid.UUID, str]]:
    """SESSIONS ended sessions of RECORDS check-ins each, as the bot leaves them in Redis."""
    now = datetime.now(UTC)
    expected: set[tuple[uuid.UUID, str]] = set()
    for s in range(SESSIONS):
        session = await redis.sessions.open_attendance(
            attendance=LiveSession(
                attendance_id=uuid.uuid4(),
                teacher_school_number=f"T{s:04d}",
                teacher_full_name=f"ÖĞRETMEN {s}",
                lesson_name=f"DERS {s}",
                lesson_code=f"C{s:04d}",
                code="000000",
                start_time=now - timedelta(minutes=50),
                planned_end_time=now + timedelta(minutes=10),
            ),
            enrolled=[],
        )
        records = [
            LiveRecord(
                attendance_id=session.attendance_id,
                student_number=f"{s:03d}{r:04d}",
                student_full_name=f"ÖĞRENCİ {s}-{r}",
                is_attended=True,
                attendance_time=now - timedelta(minutes=40),
            )
            for r in range(RECORDS)
        ]
        await asyncio.gather(*(redis.sessions.add_attendance_record(record=x) for x in records))
        # Ended well past the finalizer's settle time, so the first tick takes them all.
        await redis.sessions.finish_attendance(
            attendance_id=session.attendance_id, end_time=now - timedelta(seconds=30)
        )
        expected |= {(session.attendance_id, x.student_number) for x in records}
    return expected


async def _start_bot(env: dict[str, str], log: Path) -> asyncio.subprocess.Process:
    return await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "bot",
        cwd=ROOT,
        env=env,
        stdout=log.open("ab"),
        stderr=asyncio.subprocess.STDOUT,
    )


async def _count(conn: asyncpg.Connection, table: str) -> int:
    return int(await conn.fetchval(f"SELECT count(*) FROM {table}"))


@pytest.mark.slow
async def test_kill_9_while_finalizing_then_restart(
    pg_dsn: str, redis_url: str, tmp_path: Path
) -> None:
    await reset_database(pg_dsn)
    await flush_redis(redis_url)
    pg = await Postgres.connect(pg_dsn)  # applies the schema
    await pg.db.close()
    redis = RedisStores.from_url(redis_url)
    conn = await asyncpg.connect(pg_dsn)
    log = tmp_path / "bot.log"
    try:
        expected = await _seed(redis)
        async with FakeTelegram() as telegram:
            env = {
                **os.environ,
                "BOT_TOKEN": telegram.token,
                "TELEGRAM_API_URL": telegram.base_url,
                "DATABASE_URL": pg_dsn,
                "REDIS_URL": redis_url,
                "AKSIS_MODE": "demo",
                "FINALIZE_INTERVAL_SECONDS": "1",
                "JOB_LOCK_SECONDS": "3",
                "FINALIZE_CLAIM_SECONDS": "3",
                "WEB_PORT": "0",
            }
            first = await _start_bot(env, log)
            deadline = time.monotonic() + 60
            while await _count(conn, "attendances") == 0:
                assert first.returncode is None, log.read_text()
                assert time.monotonic() < deadline, "finalization never started"
                await asyncio.sleep(0.005)
            first.send_signal(signal.SIGKILL)
            await first.wait()
            saved_at_kill = await _count(conn, "attendances")
            assert saved_at_kill < SESSIONS, "the batch finished before the kill; enlarge it"
            left = await redis.sessions.get_due_attendance_ids(now=datetime.now(UTC))
            assert left, "nothing left"

            second = await _start_bot(env, log)
            try:
                deadline = time.monotonic() + 60
                while await redis.sessions.get_due_attendance_ids(now=datetime.now(UTC)):
                    assert second.returncode is None, log.read_text()
                    assert time.monotonic() < deadline, "the restarted bot did not finish"
                    await asyncio.sleep(0.2)
            finally:
                second.send_signal(signal.SIGTERM)
                assert await asyncio.wait_for(second.wait(), 30) == 0, log.read_text()

        rows = await conn.fetch("SELECT attendance_id, student_number FROM attendance_records")
        saved = [(r["attendance_id"], r["student_number"]) for r in rows]
        assert len(saved) == len(set(saved)) == SESSIONS * RECORDS
        assert set(saved) == expected
        assert await _count(conn, "attendances") == SESSIONS
        leftovers = [key async for key in redis.purge.scan_keys(match="attendance*")]
        assert leftovers == []
    finally:
        await conn.close()
        await redis.close()
