"""The finalizer's side of RedisStores (dal/redis/finalization.py) against a real Redis: due
sessions, exclusive claims, and the deletion of a finished session's keys."""

from __future__ import annotations

import time
from datetime import timedelta

import redis.asyncio as aioredis

from dal.redis.finalization import ClaimOutcome
from dal.redis.keys import DUE as DUE_KEY
from dal.redis.keys import attendance as attendance_key
from dal.redis.keys import claim as claim_key
from dal.redis.keys import code as code_key
from dal.redis.keys import enrolled as enrolled_key
from dal.redis.keys import records as records_key
from dal.redis.keys import teacher as teacher_key
from dal.redis.stores import RedisStores
from services.checkin_outcomes import CheckInStatus
from tests.dal.redis.support import (
    NOW,
    check_in,
    open_session,
)


async def test_due_ids_are_those_ended_by_now_earliest_first(client: RedisStores) -> None:
    base = NOW - timedelta(hours=1)
    late = await open_session(client, teacher="TA", start=base, minutes=120)
    early = await open_session(client, teacher="TB", start=base, minutes=20)
    middle = await open_session(client, teacher="TC", start=base, minutes=50)
    await client.sessions.finish_attendance(
        attendance_id=middle.attendance_id, end_time=base + timedelta(minutes=40)
    )

    at = base + timedelta(minutes=45)
    assert await client.sessions.get_due_attendance_ids(now=at) == [
        early.attendance_id,
        middle.attendance_id,
    ]
    assert await client.sessions.get_due_attendance_ids(now=at, limit=1) == [early.attendance_id]
    assert await client.sessions.get_due_attendance_ids(now=base + timedelta(hours=2)) == [
        early.attendance_id,
        middle.attendance_id,
        late.attendance_id,
    ]
    assert await client.sessions.get_due_attendance_ids(now=base) == []


async def test_claims_are_exclusive_expire_and_release_only_for_their_owner(
    client: RedisStores, redis_raw: aioredis.Redis
) -> None:
    still_open = (await open_session(client, teacher="T2")).attendance_id
    outcome = await client.finalization.claim_attendance(
        attendance_id=still_open, owner="a", ttl_seconds=120
    )
    assert outcome is ClaimOutcome.OPEN  # not ended by Redis's clock: no claim
    assert await redis_raw.exists(claim_key(still_open)) == 0

    aid = (await open_session(client, start=NOW - timedelta(hours=2))).attendance_id
    claim = client.finalization.claim_attendance
    assert (
        await claim(attendance_id=aid, owner="replica-a", ttl_seconds=120) is ClaimOutcome.CLAIMED
    )
    assert await claim(attendance_id=aid, owner="replica-b", ttl_seconds=120) is ClaimOutcome.HELD
    assert 0 < await redis_raw.ttl(claim_key(aid)) <= 120

    assert await client.finalization.release_claim(attendance_id=aid, owner="replica-b") is False
    assert await redis_raw.get(claim_key(aid)) == "replica-a"
    assert await client.finalization.release_claim(attendance_id=aid, owner="replica-a") is True
    assert (
        await claim(attendance_id=aid, owner="replica-b", ttl_seconds=120) is ClaimOutcome.CLAIMED
    )


async def test_delete_attendance_keys_removes_the_session_and_spares_others(
    client: RedisStores, redis_raw: aioredis.Redis
) -> None:
    doomed = await open_session(client, teacher="TA")
    kept = await open_session(client, teacher="TB")
    for session in (doomed, kept):
        await check_in(client, session.code, "S1")
        # planned end passed (the teacher pointer stays, as when nobody ended it)
        await redis_raw.zadd(DUE_KEY, {str(session.attendance_id): time.time() - 1})
        await client.finalization.claim_attendance(
            attendance_id=session.attendance_id, owner="o", ttl_seconds=60
        )
    kept_keys = {key async for key in redis_raw.scan_iter()}
    doomed_id = str(doomed.attendance_id)
    doomed_keys = {
        attendance_key(doomed_id),
        records_key(doomed_id),
        enrolled_key(doomed_id),
        claim_key(doomed_id),
        code_key(doomed.code),
        teacher_key("TA"),
    }
    assert doomed_keys <= kept_keys

    await client.finalization.delete_attendance_keys(attendance_id=doomed.attendance_id)

    remaining = {key async for key in redis_raw.scan_iter()}
    assert remaining == kept_keys - doomed_keys
    assert await redis_raw.zrange(DUE_KEY, 0, -1) == [str(kept.attendance_id)]
    assert await client.sessions.get_attendance(attendance_id=kept.attendance_id) == kept
    assert await client.sessions.count_attendance_records(attendance_id=kept.attendance_id) == 1
    # and the freed code is a wrong code now
    result = await check_in(client, doomed.code, "S2")
    assert result.status == CheckInStatus.WRONG_CODE


async def test_delete_keeps_code_and_teacher_keys_reused_by_a_newer_session(
    client: RedisStores, redis_raw: aioredis.Redis
) -> None:
    old = await open_session(client, teacher="TA")
    await redis_raw.set(code_key(old.code), "newer")
    await redis_raw.set(teacher_key("TA"), "newer")
    await client.finalization.delete_attendance_keys(attendance_id=old.attendance_id)
    assert await redis_raw.get(code_key(old.code)) == "newer"
    assert await redis_raw.get(teacher_key("TA")) == "newer"
    assert await redis_raw.exists(attendance_key(old.attendance_id)) == 0
