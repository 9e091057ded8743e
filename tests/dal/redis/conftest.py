"""The `client` fixture of the RedisStores tests: the project's stores on the flushed test
database (`redis_raw` flushes it before and after each test)."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
import redis.asyncio as aioredis

from dal.redis.stores import RedisStores


@pytest.fixture
async def client(redis_url: str, redis_raw: aioredis.Redis) -> AsyncIterator[RedisStores]:
    async with RedisStores.from_url(redis_url, max_connections=16) as c:
        yield c
