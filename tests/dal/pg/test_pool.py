"""`Database` (dal/pg/pool.py) against the real PostgreSQL server: connecting (an unreachable
server or a missing database reported in one line, the password masked), ping, and a close that
is bounded when a connection is never released."""

from __future__ import annotations

import asyncio
from urllib.parse import urlsplit, urlunsplit

import pytest

from dal.errors import DatabaseUnavailable, mask_url
from dal.pg import Postgres


async def test_unreachable_server_raises_one_line_with_masked_password() -> None:
    dsn = "postgresql://attn:hunter2-secret@127.0.0.1:1/attn"

    with pytest.raises(DatabaseUnavailable) as caught:
        await Postgres.connect(dsn, connect_timeout=2)

    message = str(caught.value)
    assert message.startswith("PostgreSQL unreachable at postgresql://attn:***@127.0.0.1:1/attn: ")
    assert "hunter2-secret" not in message
    assert "\n" not in message
    assert caught.value.__cause__ is None
    assert caught.value.__suppress_context__


async def test_missing_database_is_reported_as_unavailable(pg_dsn: str) -> None:
    dsn = urlunsplit(urlsplit(pg_dsn)._replace(path="/attn_no_such_db_x"))
    with pytest.raises(DatabaseUnavailable, match="attn_no_such_db_x"):
        await Postgres.connect(dsn)


def test_mask_url_hides_passwords_in_authority_and_query() -> None:
    assert mask_url("postgresql://u:p@h:5432/d") == "postgresql://u:***@h:5432/d"
    assert mask_url("postgresql://u@h/d") == "postgresql://u@h/d"
    assert "sekrit" not in mask_url("postgresql://h/d?user=u&password=sekrit")


async def test_ping_reports_a_server_that_is_gone() -> None:
    # min_size=0 opens no connection up front, so connect() relies on ping() to notice.
    with pytest.raises(DatabaseUnavailable, match=r"postgresql://attn:\*\*\*@127\.0\.0\.1:1/attn"):
        await Postgres.connect("postgresql://attn:pw@127.0.0.1:1/attn", min_size=0, migrate=False)


async def test_ping_and_pool(pg: Postgres) -> None:
    await pg.db.ping()
    assert await pg.db.pool.fetchval("SELECT max(version) FROM schema_migrations") >= 1


async def test_connect_without_migrating_still_checks_the_server(pg_dsn: str) -> None:
    client = await Postgres.connect(pg_dsn, min_size=0, migrate=False)
    try:
        await client.db.ping()
    finally:
        await client.db.close()


async def test_close_is_bounded_when_a_connection_is_never_released(pg_dsn: str) -> None:
    """Shutdown regression: asyncpg's pool.close() waits for every acquired connection, so a
    task still holding one kept the process (and a test's teardown) waiting for ever."""
    client = await Postgres.connect(pg_dsn, migrate=False)
    held = await client.db.pool.acquire()  # never released, as by a task stuck at shutdown
    began = asyncio.get_running_loop().time()
    await client.db.close(grace_seconds=0.5)
    assert asyncio.get_running_loop().time() - began < 3
    assert client.db.pool.is_closing()
    del held
