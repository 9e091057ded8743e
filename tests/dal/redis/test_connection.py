"""RedisStores' connection against a real Redis: a live server answers, an unreachable one is
reported with its URL masked."""

from __future__ import annotations

import pytest

from dal.errors import RedisUnavailable
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
