"""A task cancelled in the middle of a Redis command stops (dal/redis/connection.py).

Python 3.11's `asyncio.wait_for`, which redis-py puts around every socket write, loses a
cancellation that arrives as the write completes. Without `CancelSafe` the first loop below
went on running after `cancel()`, as the outbox worker's loops and the per-user lock's renewal
did at shutdown and when a handler returned.
"""

from __future__ import annotations

import asyncio
import random

import redis.asyncio as aioredis

from dal.redis.stores import RedisStores


async def _busy(redis: aioredis.Redis, key: str) -> None:
    while True:
        await redis.set(key, "1", px=5_000)
        await redis.exists(key)


async def test_a_task_cancelled_mid_command_stops_and_the_pool_stays_sound(
    redis_url: str, redis_raw: aioredis.Redis
) -> None:
    stores = RedisStores.from_url(redis_url, max_connections=4)
    rng = random.Random(7)
    try:
        for attempt in range(300):
            task = asyncio.create_task(_busy(stores.redis, f"busy:{attempt % 4}"))
            await asyncio.sleep(rng.random() * 0.004)
            task.cancel()
            done, _ = await asyncio.wait([task], timeout=2.0)
            assert done, f"attempt {attempt}: the cancelled task is still running"
            assert task.cancelled()
        # No connection returned to the pool holds an unread reply: every answer is its own.
        for i in range(50):
            await stores.redis.set(f"check:{i}", str(i))
        assert [await stores.redis.get(f"check:{i}") for i in range(50)] == [
            str(i) for i in range(50)
        ]
    finally:
        await stores.close()
