"""Loops bounded by the work due, not by what is open: the level-3 rotation
schedule, closing reminders that read only open sessions, and a finalizer that drains every
ended session in one tick, page by page."""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import redis.asyncio as aioredis

from bot.app import build_app
from bot.config import load_settings
from dal.pg import Postgres
from dal.redis.connection import client
from dal.redis.stores import RedisStores
from services.attendance import AttendanceService
from tests.fakes.telegram_server import FakeTelegram
from tests.services.test_reminders import (
    CLOSING,
    LESSON,
    TEACHER,
    reminders,
    seed_class,
    session_of,
)
from tests.services.test_reminders import attendance_service as reminder_attendance
from tests.support import (
    Clock,
    RecordingNotifier,
    build_test_services,
    open_session,
    put_records,
    record,
    session_keys,
    student_user,
    teacher_user,
)
from tests.throwaway import ThrowawayRedis

ROTATIONS = "attendances:rotations"


def service(redis: RedisStores, pg: Postgres, clock: Clock) -> AttendanceService:
    return build_test_services(pg, redis, clock=clock).attendance


async def calls(raw: aioredis.Redis, command: str) -> int:
    stats = await raw.info("commandstats")
    entry = stats.get(f"cmdstat_{command}")
    return int(entry["calls"]) if entry else 0


async def test_code_rotation_reads_only_the_level_3_sessions_that_are_due(
    pg_client: Postgres, tmp_path: Path
) -> None:
    # A Redis of its own: the command counts are server-wide, and the shared test server
    # also serves the other worker's tests.
    server = ThrowawayRedis(tmp_path / "redis", "--appendonly", "no")
    await server.start()
    redis_client = RedisStores.from_url(server.url, max_connections=8)
    redis_raw = client(server.url, decode_responses=True)
    try:
        await rotation_reads_only_what_is_due(pg_client, redis_client, redis_raw)
    finally:
        await redis_client.close()
        await redis_raw.aclose()
        await server.stop()


async def rotation_reads_only_what_is_due(
    pg_client: Postgres, redis_client: RedisStores, redis_raw: aioredis.Redis
) -> None:
    now = datetime.now(UTC)
    sessions = [
        await open_session(
            redis_client,
            teacher=teacher_user(f"T{n:03d}", f"Hoca {n}"),
            start=now - timedelta(minutes=5),
            end=now + timedelta(hours=1),
            enrolled=["S1"],
        )
        for n in range(60)
    ]
    rotating = await redis_client.sessions.set_security_level(
        attendance_id=sessions[0].attendance_id, level=3
    )
    assert await redis_raw.zrange(ROTATIONS, 0, -1) == [str(rotating.attendance_id)]
    clock = Clock(now)
    attendance = service(redis_client, pg_client, clock)

    gets = await calls(redis_raw, "get")
    rotated = await attendance.rotate_codes()
    # Started 5 minutes ago: due. The 59 level-1 sessions are not even read.
    assert [s.attendance_id for s in rotated] == [rotating.attendance_id]
    assert await calls(redis_raw, "get") - gets <= 2
    assert await attendance.rotate_codes() == []  # rescheduled 30 s ahead
    clock.advance(seconds=31)
    assert len(await attendance.rotate_codes()) == 1

    # Back to level 1, or gone: off the schedule.
    await redis_client.sessions.set_security_level(attendance_id=rotating.attendance_id, level=1)
    assert await redis_raw.zcard(ROTATIONS) == 0
    await redis_client.sessions.set_security_level(attendance_id=rotating.attendance_id, level=3)
    assert await redis_raw.zcard(ROTATIONS) == 1
    await redis_client.finalization.delete_attendance_keys(attendance_id=rotating.attendance_id)
    assert await redis_raw.zcard(ROTATIONS) == 0


async def test_closing_reminders_still_go_out_behind_thousands_of_unfinalized_sessions(
    pg_client: Postgres, redis_client: RedisStores, redis_raw: aioredis.Redis
) -> None:
    await seed_class(pg_client)
    clock = Clock(LESSON + timedelta(minutes=2))
    opener = reminder_attendance(pg_client, redis_client, clock, RecordingNotifier())
    outcome = await opener.start_session(teacher=session_of(TEACHER, 100), chat_id=100)
    end = outcome.attendance.planned_end_time  # type: ignore[union-attr]
    # A PostgreSQL outage: 1,500 sessions ended hours ago wait in the due index.
    ended = (LESSON - timedelta(hours=3)).timestamp()
    await redis_raw.zadd("attendances:due", {str(uuid.uuid4()): ended for _ in range(1_500)})
    notifier = RecordingNotifier()

    clock.at(end - CLOSING)
    report = await reminders(pg_client, redis_client, clock, notifier).run_once()

    assert report.closing == 3  # S1, S4 and S6: enrolled, linked, reminders on
    assert {n.key for n in notifier.sent} == {"remind.closing"}


async def test_one_finalize_tick_drains_every_ended_session_page_by_page(
    pg_client: Postgres, redis_client: RedisStores, redis_raw: aioredis.Redis
) -> None:
    now = datetime.now(UTC)
    await pg_client.accounts.add_users(users=[student_user("S1"), student_user("S2")])
    sessions = []
    for n in range(23):
        teacher = teacher_user(f"T{n:03d}", f"Hoca {n}")
        await pg_client.accounts.add_users(users=[teacher])
        attendance = await open_session(
            redis_client,
            teacher=teacher,
            start=now - timedelta(hours=1),
            end=now - timedelta(minutes=1),
            enrolled=["S1", "S2"],
        )
        await put_records(redis_client, [record(attendance, "S1")])
        sessions.append(attendance)
    notifier = RecordingNotifier()
    notifier.redis = redis_client.redis
    finalizer = build_test_services(
        pg_client,
        redis_client,
        notifier,
        clock=lambda: now,
        owner="replica-a",
        finalizer={"page_sessions": 5, "batch_sessions": 2},
    ).finalizer

    report = await finalizer.run_once()

    assert report.finalized == 23
    assert await pg_client.db.pool.fetchval("SELECT count(*) FROM attendances") == 23
    for attendance in sessions:
        assert await session_keys(redis_raw, attendance) == []


async def test_level_3_sessions_open_across_an_upgrade_rotate_once_the_bot_starts(
    pg_dsn: str,
    pg_client: Postgres,
    redis_url: str,
    redis_client: RedisStores,
    redis_raw: aioredis.Redis,
) -> None:
    now = datetime.now(UTC)
    old = [
        await open_session(
            redis_client,
            teacher=teacher_user(f"T{n:03d}", f"Hoca {n}"),
            start=now - timedelta(minutes=5),
            end=now + timedelta(hours=1),
            enrolled=["S1"],
        )
        for n in range(3)
    ]
    upgraded = await redis_client.sessions.set_security_level(
        attendance_id=old[0].attendance_id, level=3
    )
    plain = old[1]  # level 1: never scheduled
    ended = await redis_client.sessions.set_security_level(
        attendance_id=old[2].attendance_id, level=3
    )
    await redis_client.sessions.finish_attendance(attendance_id=ended.attendance_id, end_time=now)
    # Opened by the version before the rotation schedule: not on it.
    await redis_raw.delete(ROTATIONS)
    attendance = service(redis_client, pg_client, Clock(now))
    assert await attendance.rotate_codes() == []  # the gap: its code would never change

    async with FakeTelegram() as telegram:
        settings = load_settings(
            bot_token=telegram.token,
            telegram_api_url=telegram.base_url,
            database_url=pg_dsn,
            redis_url=redis_url,
            aksis_mode="demo",
            web_port=0,
        )
        async with build_app(settings) as app:
            # Start-up put the open level-3 session, and only it, on the schedule.
            assert await redis_raw.zrange(ROTATIONS, 0, -1) == [str(upgraded.attendance_id)]
            app.board.start()
            try:
                deadline = asyncio.get_running_loop().time() + 10
                while True:
                    current = await redis_client.sessions.get_attendance(
                        attendance_id=upgraded.attendance_id
                    )
                    assert current is not None
                    if current.code != upgraded.code:
                        break
                    assert asyncio.get_running_loop().time() < deadline, "the code never rotated"
                    await asyncio.sleep(0.2)
            finally:
                await app.board.stop()
    assert current.previous_code == upgraded.code
    assert await redis_client.sessions.get_attendance_id_by_code(code=current.code) == (
        upgraded.attendance_id
    )
    unchanged = await redis_client.sessions.get_attendance(attendance_id=plain.attendance_id)
    assert unchanged is not None and unchanged.code == plain.code
    # Idempotent: a second start adds nothing, the entry moved on by the rotation stays.
    score = await redis_raw.zscore(ROTATIONS, str(upgraded.attendance_id))
    assert await redis_client.sessions.schedule_missed_rotations(now=now) == 0
    assert await redis_raw.zscore(ROTATIONS, str(upgraded.attendance_id)) == score
