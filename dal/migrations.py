"""Versioned schema migrations: `dal/migrations/NNNN_name.sql`, applied in order.

Each file runs in its own transaction and is recorded in `schema_migrations`; files already
recorded are skipped, so applying is idempotent. Every transaction of a run (the ledger's
creation, then each file) first takes a transaction-level PostgreSQL advisory lock
(`pg_advisory_xact_lock`) and re-reads the ledger under it, so several replicas (or a migrate
job and a replica) starting together apply each file once: the others wait for that
transaction, then find the file recorded. The lock ends with its transaction, never with the
session, so the runner also works through PgBouncer in transaction pooling mode, where two
statements outside a transaction may reach different server connections.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Sequence
from dataclasses import dataclass
from importlib import resources
from typing import TypeAlias

import asyncpg
from asyncpg.pool import PoolConnectionProxy

__all__ = [
    "MIGRATIONS_LOCK_KEY",
    "Migration",
    "apply_migrations",
    "load_migrations",
    "pending_migrations",
]

logger = logging.getLogger(__name__)

# Fixed advisory-lock key for "schema migrations of ATTN" (ASCII "ATTNMIGR" as a bigint).
MIGRATIONS_LOCK_KEY = int.from_bytes(b"ATTNMIGR", "big", signed=True)

_FILE_NAME = re.compile(r"^(?P<version>\d{4})_(?P<name>[a-z0-9_]+)\.sql$")

_CREATE_LEDGER = """
CREATE TABLE IF NOT EXISTS schema_migrations (
    version    integer     PRIMARY KEY,
    name       text        NOT NULL,
    applied_at timestamptz NOT NULL DEFAULT now()
)
"""

Connectable: TypeAlias = (
    "asyncpg.Pool[asyncpg.Record] | asyncpg.Connection[asyncpg.Record]"
    " | PoolConnectionProxy[asyncpg.Record]"
)
_Conn: TypeAlias = "asyncpg.Connection[asyncpg.Record] | PoolConnectionProxy[asyncpg.Record]"


@dataclass(frozen=True, slots=True)
class Migration:
    version: int
    name: str
    sql: str


def load_migrations() -> list[Migration]:
    """The migration files shipped as package data of `dal`, ordered by version."""
    folder = resources.files("dal").joinpath("migrations")
    migrations: list[Migration] = []
    for entry in folder.iterdir():
        match = _FILE_NAME.match(entry.name)
        if match is None:
            if entry.name.endswith(".sql"):
                raise ValueError(f"migration file {entry.name!r} is not named NNNN_name.sql")
            continue
        migrations.append(
            Migration(
                version=int(match["version"]),
                name=match["name"],
                sql=entry.read_text(encoding="utf-8"),
            )
        )
    migrations.sort(key=lambda m: m.version)
    _check_versions(migrations)
    return migrations


def _check_versions(migrations: Sequence[Migration]) -> None:
    seen: set[int] = set()
    for migration in migrations:
        if migration.version <= 0:
            raise ValueError(f"migration version must be positive: {migration.version}")
        if migration.version in seen:
            raise ValueError(f"two migrations share version {migration.version:04d}")
        seen.add(migration.version)


async def apply_migrations(
    pool_or_conn: Connectable, *, migrations: Sequence[Migration] | None = None
) -> int:
    """Apply every pending migration and return the schema version now in force.

    `migrations` defaults to the files in `dal/migrations/`; tests pass their own.
    """
    pending = list(migrations) if migrations is not None else load_migrations()
    pending.sort(key=lambda m: m.version)
    _check_versions(pending)
    if isinstance(pool_or_conn, asyncpg.Pool):
        async with pool_or_conn.acquire() as conn:
            return await _apply(conn, pending)
    return await _apply(pool_or_conn, pending)


async def _apply(conn: _Conn, migrations: Sequence[Migration]) -> int:
    if conn.is_in_transaction():
        # Our per-file transactions would nest as savepoints of the caller's, and a failed file
        # could not be rolled back on its own: refuse instead.
        raise RuntimeError("apply_migrations needs a connection outside any transaction")
    async with conn.transaction():
        await conn.execute("SELECT pg_advisory_xact_lock($1)", MIGRATIONS_LOCK_KEY)
        await conn.execute(_CREATE_LEDGER)
        rows = await conn.fetch("SELECT version FROM schema_migrations")
    applied: set[int] = {row["version"] for row in rows}
    for migration in migrations:
        if migration.version in applied:
            continue
        async with conn.transaction():
            await conn.execute("SELECT pg_advisory_xact_lock($1)", MIGRATIONS_LOCK_KEY)
            # Another runner may have applied it while we waited for the lock.
            done = await conn.fetchval(
                "SELECT EXISTS (SELECT 1 FROM schema_migrations WHERE version = $1)",
                migration.version,
            )
            if not done:
                logger.info("applying migration %04d_%s", migration.version, migration.name)
                await conn.execute(migration.sql)
                await conn.execute(
                    "INSERT INTO schema_migrations (version, name, applied_at)"
                    " VALUES ($1, $2, now())",
                    migration.version,
                    migration.name,
                )
        applied.add(migration.version)
    version: int = await conn.fetchval("SELECT coalesce(max(version), 0) FROM schema_migrations")
    known = max((m.version for m in migrations), default=0)
    if version > known:
        logger.warning(
            "database schema version %d is newer than this code knows (%d)", version, known
        )
    return version


async def pending_migrations(
    conn: _Conn, *, migrations: Sequence[Migration] | None = None
) -> tuple[int, list[Migration]]:
    """(the schema version in force, the migrations not yet applied), changing nothing: for
    `python -m bot check` and a replica started with MIGRATE_ON_START=false."""
    known = list(migrations) if migrations is not None else load_migrations()
    exists = await conn.fetchval("SELECT to_regclass('schema_migrations') IS NOT NULL")
    if not exists:
        return 0, known
    rows = await conn.fetch("SELECT version FROM schema_migrations")
    applied = {int(row["version"]) for row in rows}
    return max(applied, default=0), [m for m in known if m.version not in applied]
