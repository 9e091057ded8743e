"""The services as bot/compose.py wires them: each gets the others it calls, the scheduler runs
the ones it is handed, and an override for a service that does not exist is refused."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from bot.scheduler import ScheduledJobs, build_scheduler
from dal.pg import Postgres
from dal.redis.stores import RedisStores
from services.checkin_outcomes import CheckInStatus
from tests.support import (
    build_test_services,
    demo_settings,
    link,
    open_session,
    student_user,
    teacher_user,
)

NOW = datetime.now(UTC)


async def test_a_student_whose_cached_link_expired_checks_in_through_the_account_service(
    pg_client: Postgres, redis_client: RedisStores
) -> None:
    # Linked in PostgreSQL only, as after the Redis copy of the link expired.
    await link(pg_client, student_user("2024001"), 501)
    session = await open_session(
        redis_client,
        teacher=teacher_user(),
        start=NOW - timedelta(minutes=1),
        end=NOW + timedelta(minutes=50),
        enrolled=["2024001"],
    )
    attendance = build_test_services(pg_client, redis_client).attendance

    result = await attendance.check_in(telegram_id=501, code=session.code)

    assert result.status is CheckInStatus.OK_PRESENT
    assert await redis_client.users.get_user_session(telegram_id=501) is not None  # re-cached


async def test_the_scheduler_runs_the_services_it_is_handed(
    pg_client: Postgres, redis_client: RedisStores
) -> None:
    services = build_test_services(pg_client, redis_client, owner="replica-x")
    scheduler = build_scheduler(
        settings=demo_settings(), services=services, guards=redis_client.guards
    )
    jobs = scheduler.get_job("finalize").func.__self__
    assert isinstance(jobs, ScheduledJobs)
    assert jobs.owner == "replica-x"
    assert scheduler.get_job("purge").func.__self__ is jobs
    assert scheduler.get_job("reminders").func.__self__ is jobs


async def test_an_override_for_a_service_that_does_not_exist_is_refused(
    pg_client: Postgres, redis_client: RedisStores
) -> None:
    with pytest.raises(ValueError, match="finaliser"):
        build_test_services(pg_client, redis_client, finaliser={"concurrency": 1})
    # Spelled right, it reaches the constructor (which refuses a level the bot has not).
    with pytest.raises(ValueError, match="security level"):
        build_test_services(pg_client, redis_client, sessions={"security_level_default": 4})
