"""The scheduler wiring: job options, finalization on every replica, the other jobs on one
replica per tick, and a real scheduler run."""

from __future__ import annotations

import asyncio
import logging
from datetime import UTC, datetime, timedelta

import pytest
import redis.asyncio as aioredis
from apscheduler.schedulers.asyncio import AsyncIOScheduler
from apscheduler.triggers.interval import IntervalTrigger

from bot.scheduler import JOB_IDS, ScheduledJobs, build_scheduler
from dal.models import LiveSession
from dal.pg import Postgres
from dal.redis.stores import RedisStores
from services.finalize import FinalizeReport
from tests.support import (
    Clock,
    RecordingNotifier,
    build_test_services,
    demo_settings,
    link,
    open_session,
    put_records,
    record,
    session_keys,
    student_user,
    teacher_user,
)

NOW = datetime.now(UTC)


def make_scheduler(
    pg: Postgres,
    redis: RedisStores,
    notifier: RecordingNotifier,
    *,
    clock: Clock | None = None,
    **overrides: object,
) -> AsyncIOScheduler:
    config = demo_settings(**overrides)
    services = build_test_services(pg, redis, notifier, settings=config, clock=clock)
    # Exactly the keyword arguments bot/app.py passes (but the metrics).
    return build_scheduler(settings=config, services=services, guards=redis.guards)


def jobs_of(scheduler: AsyncIOScheduler) -> ScheduledJobs:
    owner = scheduler.get_job("finalize").func.__self__
    assert isinstance(owner, ScheduledJobs)
    return owner


async def ended_sessions(pg: Postgres, redis: RedisStores, count: int) -> list[LiveSession]:
    sessions: list[LiveSession] = []
    for n in range(count):
        teacher = teacher_user(f"T{n:03d}", f"Hoca {n}")
        await pg.accounts.add_users(users=[teacher, student_user("S1"), student_user("S2")])
        attendance = await open_session(
            redis,
            teacher=teacher,
            start=NOW - timedelta(hours=1),
            end=NOW - timedelta(minutes=1),
            enrolled=["S1", "S2"],
        )
        await put_records(redis, [record(attendance, "S1")])
        sessions.append(attendance)
    return sessions


async def test_build_scheduler_returns_an_unstarted_scheduler_with_three_deliberate_jobs(
    pg_client: Postgres, redis_client: RedisStores
) -> None:
    scheduler = make_scheduler(
        pg_client,
        redis_client,
        RecordingNotifier(),
        finalize_interval_seconds=7,
        purge_interval_seconds=11,
    )

    assert not scheduler.running
    jobs = {job.id: job for job in scheduler.get_jobs()}
    assert sorted(jobs) == sorted(JOB_IDS)
    intervals = {"finalize": 7, "purge": 11, "reminders": 30}
    for job_id, job in jobs.items():
        assert isinstance(job.trigger, IntervalTrigger)
        assert job.trigger.interval == timedelta(seconds=intervals[job_id])
        assert (job.coalesce, job.max_instances) == (True, 1)
        assert job.misfire_grace_time == intervals[job_id]


async def test_two_replicas_ticking_at_the_same_time_share_the_sessions_and_finalize_each_once(
    pg_client: Postgres, redis_client: RedisStores, redis_raw: aioredis.Redis
) -> None:
    sessions = await ended_sessions(pg_client, redis_client, 12)
    notifier = RecordingNotifier()
    first = jobs_of(make_scheduler(pg_client, redis_client, notifier))
    second = jobs_of(make_scheduler(pg_client, redis_client, notifier))
    assert first.owner != second.owner

    reports = await asyncio.gather(first.finalize(), second.finalize())

    # Both replicas ran (no job lock); the per-session claims kept each session to one.
    assert all(isinstance(r, FinalizeReport) for r in reports)
    assert sum(r.finalized for r in reports if r is not None) == 12
    assert await pg_client.db.pool.fetchval("SELECT count(*) FROM attendances") == 12
    assert await pg_client.db.pool.fetchval("SELECT count(*) FROM attendance_records") == 24
    for attendance in sessions:
        assert await session_keys(redis_raw, attendance) == []
    assert await redis_raw.exists("locks:job:finalize") == 0  # no lock was ever taken

    again = await asyncio.gather(first.finalize(), second.finalize())
    assert sum(r.finalized for r in again if r is not None) == 0
    assert await pg_client.db.pool.fetchval("SELECT count(*) FROM attendance_records") == 24


async def test_finalization_runs_while_another_replica_holds_the_old_job_lock(
    pg_client: Postgres, redis_client: RedisStores, redis_raw: aioredis.Redis
) -> None:
    (attendance,) = await ended_sessions(pg_client, redis_client, 1)
    jobs = jobs_of(make_scheduler(pg_client, redis_client, RecordingNotifier()))
    assert await redis_client.guards.acquire_lock(
        name="job:finalize", owner="other", ttl_seconds=60
    )

    report = await jobs.finalize()

    assert report is not None and report.finalized == 1
    assert await session_keys(redis_raw, attendance) == []


async def test_a_reminders_tick_skips_while_another_replica_holds_its_lock(
    pg_client: Postgres, redis_client: RedisStores, redis_raw: aioredis.Redis
) -> None:
    jobs = jobs_of(make_scheduler(pg_client, redis_client, RecordingNotifier()))
    assert await redis_client.guards.acquire_lock(
        name="job:reminders", owner="other", ttl_seconds=60
    )

    assert await jobs.reminders() is None

    assert await redis_raw.get("locks:job:reminders") == "other"


async def test_a_failing_tick_is_logged_and_releases_its_lock(
    pg_client: Postgres,
    redis_client: RedisStores,
    redis_raw: aioredis.Redis,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    jobs = jobs_of(make_scheduler(pg_client, redis_client, RecordingNotifier()))

    async def broken() -> None:
        raise RuntimeError("boom")

    monkeypatch.setattr(jobs._purger, "run_once", broken)

    assert await jobs.purge() is None
    assert await redis_raw.exists("locks:job:purge") == 0
    assert any("purge tick failed" in r.getMessage() for r in caplog.records)


async def test_redis_outage_skips_ticks_and_is_logged_once(
    pg_client: Postgres, caplog: pytest.LogCaptureFixture
) -> None:
    dead = RedisStores.from_url("redis://127.0.0.1:1/0", timeout=1)
    try:
        jobs = jobs_of(make_scheduler(pg_client, dead, RecordingNotifier()))
        caplog.set_level(logging.DEBUG, logger="bot.scheduler")
        for _ in range(3):
            assert await jobs.finalize() is None
            assert await jobs.reminders() is None
    finally:
        await dead.close()
    warnings = [
        r for r in caplog.records if r.name == "bot.scheduler" and r.levelno >= logging.WARNING
    ]
    assert len(warnings) == 1
    assert "Redis" in warnings[0].getMessage()


async def test_started_scheduler_finalizes_an_ended_session_and_shuts_down(
    pg_client: Postgres, redis_client: RedisStores, redis_raw: aioredis.Redis
) -> None:
    (attendance,) = await ended_sessions(pg_client, redis_client, 1)
    scheduler = make_scheduler(
        pg_client, redis_client, RecordingNotifier(), finalize_interval_seconds=1
    )

    scheduler.start()
    try:
        for _ in range(50):
            if not await session_keys(redis_raw, attendance):
                break
            await asyncio.sleep(0.1)
    finally:
        scheduler.shutdown(wait=False)

    assert await session_keys(redis_raw, attendance) == []
    stored = await pg_client.attendance.get_attendance_records(
        attendance_id=attendance.attendance_id
    )
    assert [(r.student_number, r.fail_reason) for r in stored] == [("S1", None), ("S2", "ABSENT")]


async def test_the_jobs_follow_the_injected_clock(
    pg_client: Postgres, redis_client: RedisStores, redis_raw: aioredis.Redis
) -> None:
    (attendance,) = await ended_sessions(pg_client, redis_client, 1)
    clock = Clock(NOW - timedelta(minutes=2))  # before the session's end
    jobs = jobs_of(make_scheduler(pg_client, redis_client, RecordingNotifier(), clock=clock))

    report = await jobs.finalize()
    assert report is not None and report.finalized == 0
    clock.at(NOW)
    report = await jobs.finalize()
    assert report is not None and report.finalized == 1
    assert await session_keys(redis_raw, attendance) == []


async def test_the_reminders_tick_announces_an_excuse_request_left_without_its_notice(
    pg_client: Postgres, redis_client: RedisStores
) -> None:
    """Wired as `python -m bot` runs it: a request stored by a replica that stopped before it
    queued the teacher's notice is announced by the next reminders tick, once."""
    teacher, student = teacher_user("T0900", "Hoca"), student_user("S0900")
    await pg_client.accounts.add_users(users=[teacher, student])
    await link(pg_client, teacher, 900)
    request = await pg_client.excuses.add_request(
        student_number="S0900",
        attendance_id=None,
        lesson_code="FIZ101",
        lesson_name="Fizik I",
        lesson_start=NOW + timedelta(days=2),
        teacher_school_number="T0900",
        reason="Rapor",
        file_id=None,
        file_kind=None,
    )
    notifier = RecordingNotifier()
    # The request's time is the database's, now: the tick comes five minutes after it.
    later = datetime.now(UTC) + timedelta(minutes=5)
    jobs = jobs_of(make_scheduler(pg_client, redis_client, notifier, clock=Clock(later)))
    assert await jobs.reminders() is not None
    await jobs.reminders()
    assert [(n.key, n.values["id"]) for n in notifier.to(900)] == [
        ("excreq.notice_advance", request.request_id)
    ]
