"""Shared test fixtures: a throwaway PostgreSQL database and a private Redis keyspace.

The servers are the ones at DATABASE_URL / REDIS_URL (the Makefile's `scripts/services.py`
starts embedded ones when nothing answers there). Each test run creates its own database and
drops it at the end; Redis tests use the database number ATTN_TEST_REDIS_DB (15 unless told)
and flush it before each test that asks for it.

The fixtures built on these (`pg_client`, `redis_client`, `empty_dsn`) are in tests/fixtures.py,
registered here by `pytest_plugins`: a test asks for a fixture by name, never imports one.
"""

from __future__ import annotations

import asyncio
import os
import uuid
from collections.abc import AsyncIterator
from urllib.parse import urlsplit, urlunsplit

import asyncpg
import pytest
import redis.asyncio as aioredis

from dal.redis.connection import blocking_pool

pytest_plugins = ["tests.fixtures"]

ADMIN_DSN = os.environ.get("DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/postgres")
BASE_REDIS_URL = os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/0")


def _worker_redis_db() -> int:
    """The Redis database of this test process: ATTN_TEST_REDIS_DB (15 unless told), counted down
    by the pytest-xdist worker number, so parallel workers never flush each other's keys."""
    base = int(os.environ.get("ATTN_TEST_REDIS_DB", "15"))
    worker = os.environ.get("PYTEST_XDIST_WORKER", "")  # "gw0", "gw1", ... under `pytest -n`
    index = int(worker[2:]) if worker.startswith("gw") else 0
    if index > base:
        raise RuntimeError(f"pytest worker {worker} has no Redis database below {base}")
    return base - index


TEST_REDIS_DB = _worker_redis_db()
# Test modules and the processes they start read the variable, not this module.
os.environ["ATTN_TEST_REDIS_DB"] = str(TEST_REDIS_DB)


def _with_database(dsn: str, database: str) -> str:
    parts = urlsplit(dsn)
    return urlunsplit(parts._replace(path=f"/{database}"))


def _with_redis_db(url: str, db: int) -> str:
    parts = urlsplit(url)
    return urlunsplit(parts._replace(path=f"/{db}"))


STORE_FIXTURES = frozenset({"pg_dsn", "redis_url"})


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Mark every test that reaches PostgreSQL or Redis `stores`.

    `make test` runs the whole suite against the configured servers, then the `stores` tests once
    more against servers started from the wheels (the oldest versions the project supports), so
    a fresh machine's path and a newer-only command are both caught.
    """
    for item in items:
        if STORE_FIXTURES & set(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.stores)


@pytest.fixture(scope="session")
async def pg_dsn() -> AsyncIterator[str]:
    """DSN of a fresh, empty database that lives for the whole test run."""
    name = f"attn_test_{uuid.uuid4().hex[:12]}"
    admin = await asyncpg.connect(_with_database(ADMIN_DSN, "postgres"))
    try:
        await admin.execute(f'CREATE DATABASE "{name}"')
    finally:
        await admin.close()
    yield _with_database(ADMIN_DSN, name)
    admin = await asyncpg.connect(_with_database(ADMIN_DSN, "postgres"))
    try:
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await admin.close()


@pytest.fixture(scope="session")
def redis_url() -> str:
    """URL of the Redis database reserved for tests."""
    return _with_redis_db(BASE_REDIS_URL, TEST_REDIS_DB)


@pytest.fixture
async def redis_raw(redis_url: str) -> AsyncIterator[aioredis.Redis]:
    """A plain Redis client on the flushed test keyspace, over the project's pool (whose
    connections never lose a cancellation: dal/redis/connection.py), since tests hand it to
    the workers and locks under test."""
    client = aioredis.Redis.from_pool(blocking_pool(redis_url, decode_responses=True))
    await client.flushdb()
    try:
        yield client
    finally:
        await client.flushdb()
        await client.aclose()


@pytest.fixture(autouse=True)
async def _no_task_left_running() -> AsyncIterator[None]:
    """A test must not leave work running in the event loop, which the whole session shares:
    a delivery loop left behind by one test would read the next test's outbox (it did, and
    sent a student's result three times). Tasks get one second to finish after the test."""
    before = asyncio.all_tasks()
    yield
    left = {t for t in asyncio.all_tasks() - before if t is not asyncio.current_task()}
    if left:
        await asyncio.wait(left, timeout=1.0)
    running = [t for t in left if not t.done()]
    for task in running:
        task.cancel()
    assert not running, f"the test left tasks running: {running}"
