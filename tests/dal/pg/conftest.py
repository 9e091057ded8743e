"""The `pg` fixture of the PostgreSQL store tests: the project's stores (`Postgres`, dal/pg) on
the run's database (`pg_dsn`, tests/conftest.py), its tables truncated before each test."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from dal.pg import Postgres


@pytest.fixture
async def pg(pg_dsn: str) -> AsyncIterator[Postgres]:
    client = await Postgres.connect(pg_dsn, max_size=4)
    await client.db.pool.execute(
        "TRUNCATE users, attendances, attendance_records, schedule_entries CASCADE"
    )
    try:
        yield client
    finally:
        await client.db.close()
