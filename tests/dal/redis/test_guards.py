"""Throttles, dedupe marks, job locks and key scans of RedisStores (dal/redis/guards.py)
against a real Redis."""

from __future__ import annotations

import redis.asyncio as aioredis

from dal.redis.stores import RedisStores


async def test_counter_window_starts_at_first_hit(
    client: RedisStores, redis_raw: aioredis.Redis
) -> None:
    key = "throttle:login:123"
    assert await client.guards.get_counter(key=key) == (0, 0)
    assert await client.guards.hit_counter(key=key, window_seconds=300) == 1
    await redis_raw.expire(key, 100)  # time passes: a later hit must not restart the window
    assert await client.guards.hit_counter(key=key, window_seconds=300) == 2
    count, ttl = await client.guards.get_counter(key=key)
    assert count == 2
    assert 0 < ttl <= 100
    await client.guards.reset_counter(key=key)
    assert await client.guards.get_counter(key=key) == (0, 0)


async def test_mark_once_is_true_only_the_first_time(
    client: RedisStores, redis_raw: aioredis.Redis
) -> None:
    key = "once:reminder:S1:2025-03-10T09:00"
    assert await client.guards.mark_once(key=key, ttl_seconds=3600) is True
    assert await client.guards.mark_once(key=key, ttl_seconds=3600) is False
    assert 3590 <= await redis_raw.ttl(key) <= 3600


async def test_job_lock_is_exclusive_and_owner_only(
    client: RedisStores, redis_raw: aioredis.Redis
) -> None:
    assert await client.guards.acquire_lock(name="finalize", owner="a", ttl_seconds=30) is True
    assert await client.guards.acquire_lock(name="finalize", owner="b", ttl_seconds=30) is False
    assert 0 < await redis_raw.ttl("locks:finalize") <= 30
    assert await client.guards.release_lock(name="finalize", owner="b") is False
    assert await client.guards.acquire_lock(name="finalize", owner="b", ttl_seconds=30) is False
    assert await client.guards.release_lock(name="finalize", owner="a") is True
    assert await client.guards.acquire_lock(name="finalize", owner="b", ttl_seconds=30) is True


async def test_scan_keys_finds_every_match_without_others(
    client: RedisStores, redis_raw: aioredis.Redis
) -> None:
    for n in range(1200):
        await redis_raw.set(f"users:{n}", "{}")
    await redis_raw.set("throttle:checkin:1", "1")
    found = [key async for key in client.purge.scan_keys(match="users:*", count=100)]
    assert set(found) == {f"users:{n}" for n in range(1200)}
