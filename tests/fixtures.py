"""Fixtures every test directory can ask for by name, registered for the whole suite by
`pytest_plugins` in tests/conftest.py (no import in the test module):

- `pg_client`: a `Postgres` (dal.pg) on the run's database, tables truncated per test;
- `redis_client`: a `RedisStores` on the flushed test Redis database (ATTN_TEST_REDIS_DB);
- `empty_dsn`: a brand-new, unmigrated PostgreSQL database of the test's own;
- `portal`: the local Aksis with the class of tests/classroom.py (a module that needs another
  class defines its own `portal`, which pytest takes over this one).

The servers and the run's database (`pg_dsn`, `redis_url`, `redis_raw`) are in conftest.py.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from urllib.parse import urlsplit, urlunsplit

import asyncpg
import pytest
import redis.asyncio as aioredis

from dal.pg import Postgres
from dal.redis.stores import RedisStores
from tests.classroom import seat_class
from tests.fakes.aksis_server import FakeAksis


@pytest.fixture
async def pg_client(pg_dsn: str) -> AsyncIterator[Postgres]:
    client = await Postgres.connect(pg_dsn, max_size=8)
    await client.db.pool.execute(
        "TRUNCATE users, attendances, attendance_records, schedule_entries CASCADE"
    )
    try:
        yield client
    finally:
        await client.db.close()


@pytest.fixture
async def redis_client(redis_url: str, redis_raw: aioredis.Redis) -> AsyncIterator[RedisStores]:
    """`redis_raw` flushes the test database before and after the test."""
    client = RedisStores.from_url(redis_url, max_connections=32)
    try:
        yield client
    finally:
        await client.close()


def _with_database(dsn: str, database: str) -> str:
    return urlunsplit(urlsplit(dsn)._replace(path=f"/{database}"))


@pytest.fixture
async def empty_dsn(pg_dsn: str) -> AsyncIterator[str]:
    """A brand-new database of our own (the run's `pg_dsn` one is already migrated)."""
    name = f"attn_mig_{uuid.uuid4().hex[:12]}"
    admin = await asyncpg.connect(pg_dsn)
    try:
        await admin.execute(f'CREATE DATABASE "{name}"')
    finally:
        await admin.close()
    try:
        yield _with_database(pg_dsn, name)
    finally:
        admin = await asyncpg.connect(pg_dsn)
        try:
            await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        finally:
            await admin.close()


@pytest.fixture
async def portal() -> AsyncIterator[FakeAksis]:
    async with FakeAksis() as fake:
        seat_class(fake, datetime.now(UTC))
        yield fake
