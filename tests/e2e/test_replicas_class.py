"""Scale-out, proven on one class: two `python -m bot` processes in webhook mode behind a
round-robin proxy, one PostgreSQL and one Redis. Every check-in is recorded once, the session is
finalized once, and every reply and every result is delivered once (README, "Several replicas").
"""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from pathlib import Path

import asyncpg
import pytest

from dal.pg import Postgres
from dal.redis.stores import RedisStores
from tests.fakes.telegram_server import FakeTelegram
from tests.support import (
    STUDENT_BASE,
    link,
    open_session,
    poll_until,
    prepare_stores,
    student_user,
    teacher_user,
    webhook_replicas,
)

pytestmark = pytest.mark.slow

SECRET = "replica-webhook-secret-0123456789_abcdefghij"
TEACHER_ID = 6_100_000_001


async def test_two_webhook_replicas_take_one_class_exactly_once(
    pg_dsn: str, redis_url: str, tmp_path: Path
) -> None:
    n = 40
    await prepare_stores(pg_dsn, redis_url)
    numbers = [f"2025{i:04d}" for i in range(n)]
    pg = await Postgres.connect(pg_dsn)
    redis = RedisStores.from_url(redis_url)
    try:
        teacher = teacher_user()
        await link(pg, teacher, TEACHER_ID)
        for i, number in enumerate(numbers):
            # Linked in PostgreSQL only: the replica that gets the code fills Redis's cache.
            await link(pg, student_user(number), STUDENT_BASE + i)
        now = datetime.now(UTC)
        session = await open_session(
            redis,
            teacher=teacher,
            start=now - timedelta(minutes=1),
            end=now + timedelta(minutes=49),
            enrolled=numbers,
            teacher_telegram_id=TEACHER_ID,
        )
        async with FakeTelegram() as telegram:
            telegram.user(TEACHER_ID, "Teacher")
            students = [telegram.user(STUDENT_BASE + i, f"S{i}") for i in range(n)]
            async with webhook_replicas(
                telegram, pg_dsn, redis_url, tmp_path, FINALIZE_INTERVAL_SECONDS="1"
            ) as replicas:
                # The class: every other student sends the code once, the others a wrong one;
                # the proxy alternates. Those present on time hear nothing more (their answer
                # said it all); the others get their result, once, from one of the replicas.
                wrong = f"{(int(session.code) + 1) % 1_000_000:06d}"
                await asyncio.gather(
                    *(s.send(session.code if i % 2 == 0 else wrong) for i, s in enumerate(students))
                )
                await poll_until(
                    lambda: all(len(s.messages) >= 1 for s in students), 20, "every reply"
                )
                await redis.sessions.finish_attendance(
                    attendance_id=session.attendance_id, end_time=datetime.now(UTC)
                )
                await poll_until(
                    lambda: all(len(s.messages) >= 2 for s in students[1::2]), 30, "every result"
                )
                await asyncio.sleep(2)  # room for a duplicate to show up
                for replica in replicas:
                    code, _ = await replica.terminate()
                    assert code == 0, replica.log.read_text()
            logs = [r.log.read_text() for r in replicas]
            assert all("webhook mode" in log for log in logs)
            assert all("Traceback" not in log for log in logs), logs
            for i, student in enumerate(students):
                texts = [str(m.get("text", "")) for m in student.messages]
                if i % 2 == 0:
                    assert len(texts) == 1 and texts[0].startswith("✅"), (i, texts)
                else:
                    assert len(texts) == 2 and texts[1].startswith("📊 FIZ101"), (i, texts)
    finally:
        await redis.close()
        await pg.db.close()

    conn = await asyncpg.connect(pg_dsn)
    try:
        sessions = await conn.fetchval(
            "SELECT count(*) FROM attendances WHERE attendance_id = $1", session.attendance_id
        )
        rows = await conn.fetch(
            "SELECT student_number, is_attended FROM attendance_records WHERE attendance_id = $1",
            session.attendance_id,
        )
    finally:
        await conn.close()
    assert sessions == 1
    assert sorted(r["student_number"] for r in rows) == numbers
    attended = {r["student_number"] for r in rows if r["is_attended"]}
    assert attended == set(numbers[::2])
