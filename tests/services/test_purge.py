"""The purge of stale Redis keys: debris goes, anything of a live session stays."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

import redis.asyncio as aioredis

from dal.models import LiveSession
from dal.pg import Postgres
from dal.redis.keys import claim as claim_key
from dal.redis.stores import RedisStores
from tests.support import (
    build_test_services,
    link,
    open_session,
    pg_behind_proxy,
    put_records,
    record,
    session_keys,
    student_user,
    teacher_user,
)

NOW = datetime.now(UTC)


async def seed_live(redis: RedisStores) -> list[LiveSession]:
    """An open session and one ended but not yet finalized, each with records and a claim."""
    live: list[LiveSession] = []
    for n, (start, end) in enumerate(
        [
            (NOW - timedelta(minutes=5), NOW + timedelta(hours=1)),  # open
            (NOW - timedelta(hours=2), NOW - timedelta(hours=1)),  # ended, not yet finalized
        ]
    ):
        teacher = teacher_user(f"T{n}", f"Hoca {n}")
        attendance = await open_session(
            redis, teacher=teacher, start=start, end=end, enrolled=["S1", "S2"]
        )
        await put_records(redis, [record(attendance, "S1")])
        # Set directly: Redis grants no claim on the open one (it would be a worker's, kept).
        await redis.redis.set(claim_key(attendance.attendance_id), "worker", ex=300)
        live.append(attendance)
    return live


async def seed_stale(raw: aioredis.Redis) -> None:
    gone = [str(uuid.uuid4()) for _ in range(3)]
    await raw.set("attendances:code:111111", gone[0])
    await raw.set("attendances:code:222222", gone[1])
    await raw.set("attendances:teacher:T9", gone[0])
    await raw.hset(f"attendance_records:{{{gone[0]}}}", "S1", '{"student_number": "S1"}')
    await raw.hset(f"attendance_records:{{{gone[2]}}}", "S2", '{"student_number": "S2"}')
    await raw.sadd(f"attendances:{{{gone[0]}}}:enrolled", "S1", "S2")
    await raw.set(f"attendances:{{{gone[1]}}}:claim", "dead-worker", ex=300)
    await raw.zadd("attendances:due", {gone[2]: (NOW + timedelta(hours=1)).timestamp()})
    await raw.zadd("attendances:due", {gone[1]: (NOW - timedelta(hours=1)).timestamp()})
    # counters and markers that lost their expiry, next to healthy ones
    await raw.set("throttle:checkin:1", 5)
    await raw.set("throttle:login:abc", 3)
    await raw.set("throttle:checkin:2", 2, ex=60)
    await raw.set("once:final:x", 1)
    await raw.set("once:remind:closing:y", 1, ex=600)
    await raw.set("locks:job:finalize", "replica-gone")
    await raw.set("locks:job:purge", "replica-up", ex=600)


async def seed_fsm(pg: Postgres, raw: aioredis.Redis) -> set[str]:
    """FSM keys; returns the ones that must survive."""
    await link(pg, teacher_user("T5"), 500)
    await raw.set("fsm:500:500:state", "AddForm:number", ex=900)  # linked: kept
    await raw.set("fsm:500:500:data", '{"aid": "x"}', ex=900)
    await raw.set("fsm:600:600:state", "LoginForm:password", ex=900)  # logging in: kept
    await raw.set("fsm:600:600:data", '{"u": "sealed"}', ex=900)
    await raw.set("fsm:601:601:state", "RejectForm:reason", ex=900)  # unlinked since: gone
    await raw.set("fsm:601:601:data", '{"aid": "x", "sn": "S1"}', ex=900)
    await raw.set("fsm:602:602:data", '{"aid": "x"}')  # data without a state: gone
    await raw.set("fsm:603:603:state", "LoginForm:username")  # login state, no expiry: gone
    await raw.set("fsm:-100123:605:state", "AddForm:number", ex=900)  # group chat: gone
    await raw.set("fsm:604:604:lock", "token", ex=60)  # aiogram's lock: its own expiry
    return {
        "fsm:500:500:state",
        "fsm:500:500:data",
        "fsm:600:600:state",
        "fsm:600:600:data",
        "fsm:604:604:lock",
    }


async def test_stale_keys_of_each_kind_are_removed_and_live_sessions_survive(
    pg_client: Postgres, redis_client: RedisStores, redis_raw: aioredis.Redis
) -> None:
    live = await seed_live(redis_client)
    live_keys = [await session_keys(redis_raw, a) for a in live]
    await seed_stale(redis_raw)
    kept_fsm = await seed_fsm(pg_client, redis_raw)
    purger = build_test_services(pg_client, redis_client, purger={"batch": 3}).purger

    report = await purger.run_once()

    assert report.counts() == {
        "codes": 2,
        "teacher_pointers": 1,
        "records": 2,
        "enrolled": 1,
        "claims": 1,
        "due": 2,
        "throttles": 2,
        "dedupe": 1,
        "locks": 1,
        "fsm": 5,
        "inactive": 0,  # no retention period given
    }
    assert not report.fsm_skipped
    for attendance, keys_before in zip(live, live_keys, strict=True):
        # session, records, enrolled, claim, code, teacher and due entries all still there
        assert len(keys_before) == 7
        assert await session_keys(redis_raw, attendance) == keys_before
    remaining = set(await redis_raw.keys("*"))
    assert kept_fsm <= remaining
    assert {"throttle:checkin:2", "once:remind:closing:y", "locks:job:purge"} <= remaining
    assert not {k for k in remaining if k.startswith("fsm:")} - kept_fsm
    assert await redis_raw.zcard("attendances:due") == 2

    again = await purger.run_once()
    assert again.total == 0


async def test_without_postgres_fsm_keys_are_left_alone_and_the_rest_is_purged(
    pg_client: Postgres,
    pg_dsn: str,
    redis_client: RedisStores,
    redis_raw: aioredis.Redis,
) -> None:
    await seed_stale(redis_raw)
    await seed_fsm(pg_client, redis_raw)
    fsm_before = sorted(await redis_raw.keys("fsm:*"))
    async with pg_behind_proxy(pg_dsn) as (pg, proxy):
        await proxy.cut()
        report = await build_test_services(pg, redis_client).purger.run_once()

    assert report.fsm_skipped
    assert report.fsm == 0
    assert report.codes == 2 and report.throttles == 2
    assert sorted(await redis_raw.keys("fsm:*")) == fsm_before


async def test_a_live_session_is_never_purged_even_with_nothing_else_pointing_at_it(
    pg_client: Postgres, redis_client: RedisStores, redis_raw: aioredis.Redis
) -> None:
    live = await seed_live(redis_client)
    # The code and teacher pointers of a finished session are gone (as after /end_session and
    # a code re-use); the session itself still awaits finalization.
    attendance = live[1]
    await redis_raw.delete(f"attendances:code:{attendance.code}")
    before = sorted(await redis_raw.keys("*"))

    report = await build_test_services(pg_client, redis_client).purger.run_once()

    assert report.total == 0
    assert sorted(await redis_raw.keys("*")) == before


async def test_get_linked_telegram_ids_returns_only_linked_accounts(
    pg_client: Postgres,
) -> None:
    # dal/pg/retention.py: the purge's batch lookup.
    await link(pg_client, student_user("S1"), 501)
    await link(pg_client, teacher_user("T1"), 502)
    await link(pg_client, student_user("S3"), 503)
    await pg_client.retention.forget_telegram_user(telegram_id=503)  # /logout

    assert await pg_client.retention.get_linked_telegram_ids(
        telegram_ids=[501, 502, 503, 504, 501]
    ) == {
        501,
        502,
    }
    assert await pg_client.retention.get_linked_telegram_ids(telegram_ids=[]) == set()
