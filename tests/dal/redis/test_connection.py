"""RedisStores' connection against a real Redis: a live server answers, an unreachable one is
reported with its URL masked, and a task waiting for a connection is served in its turn."""

from __future__ import annotations

import asyncio
import time

import pytest
import redis.asyncio as aioredis
import redis.exceptions

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


async def test_a_write_to_a_server_that_stopped_reading_fails_after_the_socket_timeout() -> None:
    # The write is bounded by the connection's own timer (not redis-py's wait_for): a server
    # that accepts but never reads lets the kernel's buffers fill, and the command fails with
    # redis-py's timeout after socket_timeout instead of hanging the task; the next command
    # starts on a fresh connection rather than behind the half-written one.
    accepted: list[asyncio.StreamWriter] = []

    async def never_reads(_reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        accepted.append(writer)

    server = await asyncio.start_server(never_reads, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    # No handshake (RESP2, database 0, no name), so connecting itself needs no reply.
    pool = blocking_pool(
        f"redis://127.0.0.1:{port}/0",
        max_connections=1,
        socket_timeout=0.5,
        driver_info=None,
    )
    stalled = aioredis.Redis.from_pool(pool)
    try:
        began = time.monotonic()
        with pytest.raises(redis.exceptions.TimeoutError, match="writing to socket"):
            async with asyncio.timeout(10):
                await stalled.set("big", b"x" * 64_000_000)
        assert 0.4 < time.monotonic() - began < 5
        with pytest.raises(redis.exceptions.TimeoutError):  # a read timeout this time
            async with asyncio.timeout(10):
                await stalled.get("big")
        assert len(accepted) == 2  # the timed-out connection was dropped, not reused
    finally:
        await stalled.aclose()
        for writer in accepted:
            writer.close()
        server.close()
        await server.wait_closed()
