"""RedisStores' connection against a real Redis: a live server answers, an unreachable one is
reported with its URL masked, and a task waiting for a connection is served in its turn."""

from __future__ import annotations

import asyncio
import time

import pytest
import redis.asyncio as aioredis

from dal.errors import RedisUnavailable
from dal.redis.connection import blocking_pool
from dal.redis.stores import RedisStores


async def test_ping_answers_on_a_live_server(client: RedisStores) -> None:
    await client.ping()
    assert await client.redis.ping()


async def test_unreachable_redis_raises_redis_unavailable_with_masked_url() -> None:
    url = "redis://attn:s3cret-pw@127.0.0.1:1/0"
    async with RedisStores.from_url(url, timeout=1.0) as dead:
        with pytest.raises(RedisUnavailable) as ping_error:
            await dead.ping()
        with pytest.raises(RedisUnavailable) as call_error:
            await dead.users.get_user_session(telegram_id=1)
    for error in (ping_error.value, call_error.value):
        assert "s3cret-pw" not in str(error)
        assert "attn:***@127.0.0.1:1" in str(error)


async def test_a_waiting_task_gets_a_connection_in_turn_while_busy_tasks_keep_asking(
    redis_url: str,
) -> None:
    # Four busy tasks (a burst of check-ins, each sending command after command) share two
    # connections with one more task that asks once. redis-py's own blocking pool lets every
    # releaser take its connection straight back, so the late task waited out the whole burst
    # and was told "No connection available"; in turn, it waits for about one command.
    pool = blocking_pool(redis_url, max_connections=2, timeout=1.0)
    client = aioredis.Redis.from_pool(pool)
    busy_until = time.monotonic() + 1.6

    async def busy() -> int:
        sent = 0
        while time.monotonic() < busy_until:
            await client.ping()
            sent += 1
        return sent

    try:
        await client.ping()
        burst = [asyncio.create_task(busy()) for _ in range(4)]
        await asyncio.sleep(0.1)
        began = time.monotonic()
        assert await client.ping()
        waited = time.monotonic() - began
        sent = await asyncio.gather(*burst)
    finally:
        await client.aclose()
    assert waited < 0.2
    assert min(sent) > 0.25 * max(sent)  # the busy tasks share the connections too
