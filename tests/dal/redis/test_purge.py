"""The purge's Redis side (dal/redis/purge.py) against a real Redis: batched scans and the
check-and-delete scripts remove debris and spare anything of a live session."""

from __future__ import annotations

from uuid import uuid4

import pytest
import redis.asyncio as aioredis

from dal.errors import RedisUnavailable
from dal.redis.keys import DUE as DUE_KEY
from dal.redis.keys import claim as claim_key
from dal.redis.keys import code as code_key
from dal.redis.keys import enrolled as enrolled_key
from dal.redis.keys import records as records_key
from dal.redis.keys import teacher as teacher_key
from dal.redis.stores import RedisStores
from tests.dal.redis.support import (
    NOW,
    open_session,
)


async def test_scan_key_batches_cover_every_match_in_bounded_batches(
    client: RedisStores, redis_raw: aioredis.Redis
) -> None:
    wanted = {f"once:test:{n}" for n in range(25)}
    await redis_raw.mset({key: "1" for key in wanted} | {"throttle:checkin:1": "1"})
    batches = [b async for b in client.purge.scan_key_batches(match="once:*", batch=7)]
    assert batches and all(1 <= len(b) <= 7 for b in batches)
    assert {key for b in batches for key in b} == wanted
    assert [b async for b in client.purge.scan_key_batches(match="nothing:*", batch=7)] == []
    with pytest.raises(ValueError, match="batch size"):
        [b async for b in client.purge.scan_key_batches(match="once:*", batch=0)]


async def test_scan_due_id_batches_list_every_due_member(client: RedisStores) -> None:
    opened = [await open_session(client, teacher=f"T{n}") for n in range(5)]
    batches = [b async for b in client.purge.scan_due_id_batches(batch=2)]
    assert all(1 <= len(b) <= 2 for b in batches)
    assert {i for b in batches for i in b} == {str(a.attendance_id) for a in opened}


async def test_drop_session_orphans_deletes_only_parts_of_gone_sessions(
    client: RedisStores, redis_raw: aioredis.Redis
) -> None:
    live = await open_session(client)
    gone = str(uuid4())
    await redis_raw.sadd(enrolled_key(gone), "S1")
    await redis_raw.hset(records_key(gone), "S1", "{}")
    await redis_raw.set(claim_key(live.attendance_id), "worker", ex=60)
    live_id = live.attendance_id
    keys = [enrolled_key(gone), records_key(gone), claim_key(gone)]
    keys += [enrolled_key(live_id), claim_key(live_id)]
    ids = [gone, gone, gone, str(live_id), str(live_id)]

    # the claim key of the gone session does not exist: it counts as nothing
    assert await client.purge.drop_session_orphans(keys=keys, session_ids=ids) == 2
    assert await redis_raw.exists(enrolled_key(gone), records_key(gone)) == 0
    assert await redis_raw.smembers(enrolled_key(live_id)) == {"S1", "S2"}
    assert await redis_raw.get(claim_key(live_id)) == "worker"
    assert await client.purge.drop_session_orphans(keys=[], session_ids=[]) == 0
    with pytest.raises(ValueError, match="1 keys but 0 session ids"):
        await client.purge.drop_session_orphans(keys=[records_key(gone)], session_ids=[])


async def test_drop_dangling_pointers_spares_pointers_to_live_sessions(
    client: RedisStores, redis_raw: aioredis.Redis
) -> None:
    live = await open_session(client, teacher="TL", code="123456")
    await redis_raw.set(code_key("654321"), str(uuid4()))
    await redis_raw.set(teacher_key("TG"), str(uuid4()))
    keys = [code_key("123456"), teacher_key("TL"), code_key("654321"), teacher_key("TG")]

    assert await client.purge.drop_dangling_pointers(keys=[*keys, code_key("000001")]) == 2
    assert await redis_raw.get(code_key("123456")) == str(live.attendance_id)
    assert await redis_raw.get(teacher_key("TL")) == str(live.attendance_id)
    assert await redis_raw.exists(code_key("654321"), teacher_key("TG")) == 0
    assert await client.purge.drop_dangling_pointers(keys=keys) == 0


async def test_drop_due_orphans_removes_only_ids_of_gone_sessions(
    client: RedisStores, redis_raw: aioredis.Redis
) -> None:
    live = await open_session(client)
    gone = str(uuid4())
    await redis_raw.zadd(DUE_KEY, {gone: NOW.timestamp()})

    assert (
        await client.purge.drop_due_orphans(ids=[str(live.attendance_id), gone, str(uuid4())]) == 1
    )
    assert await redis_raw.zrange(DUE_KEY, 0, -1) == [str(live.attendance_id)]
    assert await client.purge.drop_due_orphans(ids=[]) == 0


async def test_drop_keys_without_expiry_spares_keys_that_expire(
    client: RedisStores, redis_raw: aioredis.Redis
) -> None:
    await redis_raw.set("throttle:checkin:1", 5)
    await redis_raw.set("throttle:checkin:2", 2, ex=60)
    await redis_raw.set("locks:job:x", "gone-replica")

    keys = ["throttle:checkin:1", "throttle:checkin:2", "locks:job:x", "once:missing"]
    assert await client.purge.drop_keys_without_expiry(keys=keys) == 2
    assert await redis_raw.keys("*") == ["throttle:checkin:2"]
    assert await client.purge.drop_keys_without_expiry(keys=[]) == 0


async def test_drop_fsm_keys_keeps_only_kept_states_that_still_expire(
    client: RedisStores, redis_raw: aioredis.Redis
) -> None:
    await redis_raw.set("fsm:1:1:state", "LoginForm:password", ex=900)  # kept
    await redis_raw.set("fsm:1:1:data", "{}", ex=900)
    await redis_raw.set("fsm:2:2:state", "LoginForm:username")  # kept state, no expiry: gone
    await redis_raw.set("fsm:3:3:state", "RejectForm:reason", ex=900)  # other state: gone
    await redis_raw.set("fsm:3:3:data", "{}", ex=900)
    await redis_raw.set("fsm:4:4:data", "{}")  # data without a state: gone
    pairs = [(f"fsm:{n}:{n}:state", f"fsm:{n}:{n}:data") for n in range(1, 5)]
    keep = ["LoginForm:username", "LoginForm:password"]

    assert await client.purge.drop_fsm_keys(pairs=pairs, keep_states=keep) == 4
    assert sorted(await redis_raw.keys("*")) == ["fsm:1:1:data", "fsm:1:1:state"]
    assert await client.purge.drop_fsm_keys(pairs=pairs) == 2  # nothing kept without keep_states
    assert await client.purge.drop_fsm_keys(pairs=[], keep_states=keep) == 0


@pytest.mark.parametrize(
    ("method", "kwargs"),
    [
        ("scan_key_batches", {"match": "once:*"}),
        ("scan_due_id_batches", {}),
        ("drop_session_orphans", {"keys": ["k"], "session_ids": ["id"]}),
        ("drop_dangling_pointers", {"keys": ["k"]}),
        ("drop_due_orphans", {"ids": ["id"]}),
        ("drop_keys_without_expiry", {"keys": ["k"]}),
        ("drop_fsm_keys", {"pairs": [("s", "d")], "keep_states": ["x"]}),
    ],
)
async def test_purge_methods_raise_redis_unavailable_when_redis_is_down(
    method: str, kwargs: dict[str, object]
) -> None:
    async with RedisStores.from_url("redis://127.0.0.1:1/0", timeout=1.0) as dead:
        outcome = getattr(dead.purge, method)(**kwargs)
        with pytest.raises(RedisUnavailable):
            await (anext(outcome) if hasattr(outcome, "__anext__") else outcome)
