"""The account side of RedisStores (dal/redis/accounts.py) against a real Redis: user sessions
and the marks of a linked account."""

from __future__ import annotations

import redis.asyncio as aioredis

from dal.models import (
    CachedAccount,
    Role,
)
from dal.redis.accounts import AccountMarks, UserStore, session_ttl_seconds
from dal.redis.stores import RedisStores
from tests.dal.redis.support import (
    NOW,
    TURKISH,
)


def test_session_ttl_depends_on_role() -> None:
    assert session_ttl_seconds(Role.STUDENT, student_days=120, teacher_days=30) == 120 * 86_400
    assert session_ttl_seconds(Role.TEACHER, student_days=120, teacher_days=30) == 30 * 86_400


async def test_user_session_round_trips_turkish_names_with_ttl(
    client: RedisStores, redis_raw: aioredis.Redis
) -> None:
    session = CachedAccount(
        telegram_id=6_123_456_789_012,
        school_number="1306190001",
        full_name=TURKISH,
        role=Role.STUDENT,
        language="tr",
        logged_in_at=NOW,
    )
    await client.users.save_user_session(session=session, ttl_seconds=120 * 86_400)

    assert await client.users.get_user_session(telegram_id=session.telegram_id) == session
    ttl = await redis_raw.ttl(f"users:{session.telegram_id}")
    assert 120 * 86_400 - 5 <= ttl <= 120 * 86_400

    await client.users.delete_user_session(telegram_id=session.telegram_id)
    assert await client.users.get_user_session(telegram_id=session.telegram_id) is None


async def test_mark_keys_read_back_the_marks_the_store_writes(
    client: RedisStores, redis_raw: aioredis.Redis
) -> None:
    # The check-in's long way reads these keys in its own MGET (bot/fsm.py): they must be the
    # ones the store's writes set and clears, or a password typed late becomes a check-in.
    tid = 6_000_000_000_017

    async def read() -> AccountMarks:
        return UserStore.marks(await redis_raw.mget(*UserStore.mark_keys(tid)))

    assert await read() == AccountMarks(login_prompt=False, undeliverable=False)
    await client.users.set_login_prompt(telegram_id=tid, step="password", ttl_seconds=60)
    assert await read() == AccountMarks(login_prompt=True, undeliverable=False)
    await client.users.add_undeliverable(telegram_ids=[tid], ttl_seconds=60)
    assert await read() == AccountMarks(login_prompt=True, undeliverable=True)
    await client.users.clear_login_prompt(telegram_id=tid)
    await client.users.remove_undeliverable(telegram_id=tid)
    assert await read() == AccountMarks(login_prompt=False, undeliverable=False)
