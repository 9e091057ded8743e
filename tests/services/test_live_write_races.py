"""No "checked in" that is later lost: writes into a live session race the finalizer.

Real Redis and PostgreSQL. Whether a session is still open is judged inside Redis by its own
clock (`TIME`) and by the finalizer's claim, never by the caller's clock: a replica whose clock
runs 10 s behind, or a teacher's "add student" held up by a slow PostgreSQL (a real TCP proxy
that delays every packet), gets either a write that reaches PostgreSQL or a refusal. The
finalizer here takes sessions as soon as they end (`settle_seconds=0`): correctness may not
depend on waiting.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

import pytest

from dal.models import CachedAccount, LiveSession, Role
from dal.pg import Postgres
from dal.redis.finalization import ClaimOutcome
from dal.redis.stores import RedisStores
from services.attendance import AttendanceService
from services.checkin_outcomes import CheckInStatus
from services.errors import SessionClosed, SessionGone
from services.finalize import Finalizer
from tests.support import (
    build_test_services,
    open_session,
    pg_behind_proxy,
    student_user,
    teacher_user,
)

RACES = 25
TEACHER = teacher_user()


def real_clock(offset: timedelta = timedelta(0)) -> Callable[[], datetime]:
    return lambda: datetime.now(UTC) + offset


def service(pg: Postgres, redis: RedisStores, clock: Callable[[], datetime]) -> AttendanceService:
    services = build_test_services(pg, redis, clock=clock, checkins={"wrong_code_limit": 1_000})
    return services.attendance


def finalizer(pg: Postgres, redis: RedisStores, clock: Callable[[], datetime]) -> Finalizer:
    services = build_test_services(
        pg, redis, clock=clock, owner="race", finalizer={"settle_seconds": 0}
    )
    return services.finalizer


async def link_students(redis: RedisStores, numbers: list[str]) -> dict[str, int]:
    """Linked student accounts in Redis (what the check-in script reads); number -> chat id."""
    ids: dict[str, int] = {}
    for n, number in enumerate(numbers):
        telegram_id = 7_000_000_000 + n
        await redis.users.save_user_session(
            session=CachedAccount(
                telegram_id=telegram_id,
                school_number=number,
                full_name=f"Öğrenci {number}",
                role=Role.STUDENT,
                logged_in_at=datetime.now(UTC),
                courses=["FIZ101"],
            ),
            ttl_seconds=3_600,
        )
        ids[number] = telegram_id
    return ids


async def open_ending_in(redis: RedisStores, seconds: float, enrolled: list[str]) -> LiveSession:
    now = datetime.now(UTC)
    return await open_session(
        redis,
        teacher=TEACHER,
        start=now - timedelta(minutes=50),
        end=now + timedelta(seconds=seconds),
        enrolled=enrolled,
    )


async def finalize_until_gone(job: Finalizer, redis: RedisStores, attendance_id: uuid.UUID) -> None:
    async with asyncio.timeout(20):
        while await redis.sessions.get_attendance(attendance_id=attendance_id) is not None:
            await job.run_once()
            await asyncio.sleep(0.002)


async def stored_numbers(pg: Postgres, attendance_id: uuid.UUID) -> dict[str, bool]:
    records = await pg.attendance.get_attendance_records(attendance_id=attendance_id)
    return {r.student_number: r.is_attended for r in records}


async def test_check_in_from_a_clock_10_s_behind_after_the_claim_is_closed(
    pg_client: Postgres, redis_client: RedisStores
) -> None:
    await pg_client.accounts.add_users(users=[TEACHER, student_user("S1")])
    ids = await link_students(redis_client, ["S1"])
    attendance = await open_ending_in(redis_client, 1.0, ["S1"])
    aid = attendance.attendance_id
    # A finalizer whose clock runs ahead sees the session due; Redis does not grant the claim.
    ahead = await redis_client.finalization.claim_attendance(
        attendance_id=aid, owner="ahead", ttl_seconds=60
    )
    assert ahead is ClaimOutcome.OPEN
    await asyncio.sleep(1.1)
    assert (
        await redis_client.finalization.claim_attendance(
            attendance_id=aid, owner="worker", ttl_seconds=60
        )
        is ClaimOutcome.CLAIMED
    )

    behind = service(pg_client, redis_client, real_clock(timedelta(seconds=-10)))
    result = await behind.check_in(telegram_id=ids["S1"], code=attendance.code)

    assert result.status is CheckInStatus.ENDED
    assert await redis_client.sessions.count_attendance_records(attendance_id=aid) == 0


async def test_teacher_add_after_the_claim_is_refused_even_with_the_clock_behind(
    pg_client: Postgres, redis_client: RedisStores
) -> None:
    await pg_client.accounts.add_users(users=[TEACHER, student_user("S0001")])
    attendance = await open_ending_in(redis_client, 0.5, [])
    await asyncio.sleep(0.6)
    claim = await redis_client.finalization.claim_attendance(
        attendance_id=attendance.attendance_id, owner="worker", ttl_seconds=60
    )
    assert claim is ClaimOutcome.CLAIMED
    teacher = CachedAccount(
        telegram_id=1,
        school_number=TEACHER.user_school_number,
        full_name=TEACHER.user_full_name,
        role=Role.TEACHER,
        logged_in_at=datetime.now(UTC),
    )
    behind = service(pg_client, redis_client, real_clock(timedelta(seconds=-10)))
    with pytest.raises(SessionClosed):
        await behind.add_student(
            teacher=teacher, attendance_id=attendance.attendance_id, student_number="S0001"
        )
    aid = attendance.attendance_id
    assert await redis_client.sessions.count_attendance_records(attendance_id=aid) == 0


@pytest.mark.slow
async def test_check_ins_racing_the_finalizer_from_a_clock_10_s_behind_are_never_lost(
    pg_client: Postgres, redis_client: RedisStores
) -> None:
    students = [f"S{n:03d}" for n in range(40)]
    await pg_client.accounts.add_users(users=[TEACHER, *(student_user(s) for s in students)])
    ids = await link_students(redis_client, students)
    behind = service(pg_client, redis_client, real_clock(timedelta(seconds=-10)))
    confirmed_total = refused_total = 0
    for race in range(RACES):
        await redis_client.redis.delete(*(f"throttle:checkin:{i}" for i in ids.values()))
        attendance = await open_ending_in(redis_client, 0.1 + (race % 5) * 0.02, students)
        aid = attendance.attendance_id
        job = finalizer(pg_client, redis_client, real_clock())
        confirmed: list[str] = []

        async def students_send(
            code: str = attendance.code, confirmed: list[str] = confirmed
        ) -> None:
            for number in students:
                result = await behind.check_in(telegram_id=ids[number], code=code)
                if result.status in (CheckInStatus.OK_PRESENT, CheckInStatus.OK_PENDING):
                    confirmed.append(number)
                else:  # closed, or already removed (finalized): the code is unknown then
                    assert result.status in (CheckInStatus.ENDED, CheckInStatus.WRONG_CODE)
                await asyncio.sleep(0.005)

        await asyncio.gather(students_send(), finalize_until_gone(job, redis_client, aid))
        stored = await stored_numbers(pg_client, aid)
        lost = [n for n in confirmed if not stored.get(n)]
        assert lost == [], f"race {race}: told 'checked in', missing from PostgreSQL: {lost}"
        confirmed_total += len(confirmed)
        refused_total += len(students) - len(confirmed)
    # Both outcomes happened: the races really crossed the end.
    assert confirmed_total > 0
    assert refused_total > 0


@pytest.mark.slow
async def test_teacher_add_with_a_slow_postgresql_racing_the_finalizer_lands_or_is_refused(
    pg_dsn: str, pg_client: Postgres, redis_client: RedisStores
) -> None:
    numbers = [f"A{n:03d}" for n in range(RACES)]
    await pg_client.accounts.add_users(users=[TEACHER, *(student_user(n) for n in numbers)])
    teacher = CachedAccount(
        telegram_id=1,
        school_number=TEACHER.user_school_number,
        full_name=TEACHER.user_full_name,
        role=Role.TEACHER,
        logged_in_at=datetime.now(UTC),
    )
    outcomes = {"landed": 0, "refused": 0}
    # Every packet to and from PostgreSQL waits 15 ms: the add's two look-ups take ~60 ms+.
    async with pg_behind_proxy(pg_dsn, delay=0.015) as (slow_pg, _proxy):
        teachers = service(slow_pg, redis_client, real_clock())
        for race, number in enumerate(numbers):
            # The add starts 0-48 ms before the end; its write comes after the slow look-ups.
            attendance = await open_ending_in(redis_client, 0.05, [])
            aid = attendance.attendance_id
            job = finalizer(pg_client, redis_client, real_clock())
            added: list[str] = []

            async def teacher_adds(
                student: str = number,
                aid: uuid.UUID = aid,
                wait: float = (race % 4) * 0.012,
                added: list[str] = added,
            ) -> None:
                await asyncio.sleep(wait)
                try:
                    await teachers.add_student(
                        teacher=teacher, attendance_id=aid, student_number=student
                    )
                except (SessionClosed, SessionGone):
                    outcomes["refused"] += 1
                else:
                    added.append(student)

            await asyncio.gather(teacher_adds(), finalize_until_gone(job, redis_client, aid))
            stored = await stored_numbers(pg_client, aid)
            for student in added:
                assert stored.get(student) is True, f"race {race}: 'added', then lost"
                outcomes["landed"] += 1
    assert outcomes["landed"] + outcomes["refused"] == RACES
    assert outcomes["refused"] > 0
