"""`Database`: the asyncpg pool every PostgreSQL store of ATTN shares.

It opens the pool (checking the server version and, by default, bringing the schema up to
date), answers health checks, closes the pool within a grace period, and tells an outage from
other errors for the background jobs. The stores (`dal.pg.accounts`, `...attendance`, ...)
read and write through it.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from typing import Final, TypeAlias

import asyncpg
from asyncpg.pool import PoolConnectionProxy

from dal.errors import DatabaseUnavailable, UnsupportedServer, mask_url
from dal.migrations import apply_migrations

__all__ = ["MIN_POSTGRES_MAJOR", "Conn", "Database"]

logger = logging.getLogger(__name__)

# Oldest PostgreSQL major version the project supports: CI runs against the machine's 15 and the
# embedded 18.
MIN_POSTGRES_MAJOR: Final = 15

# A connection taken from the pool (inside `Database.transaction()`).
Conn: TypeAlias = "PoolConnectionProxy[asyncpg.Record]"

# What a failed connect or a lost server looks like from asyncpg.
_UNAVAILABLE_ERRORS: Final = (
    OSError,
    TimeoutError,
    asyncpg.PostgresConnectionError,
    asyncpg.InterfaceError,
    asyncpg.CannotConnectNowError,
    asyncpg.InvalidCatalogNameError,
    asyncpg.InvalidAuthorizationSpecificationError,
    asyncpg.TooManyConnectionsError,
)
_CONNECT_ERRORS: Final = (*_UNAVAILABLE_ERRORS, asyncpg.PostgresError, ValueError)
# A server that went away mid-use (shut down, crashed) besides one that cannot be reached:
# for `outage_as_unavailable()` (background jobs).
_OUTAGE_ERRORS: Final = (
    *_UNAVAILABLE_ERRORS,
    asyncpg.AdminShutdownError,
    asyncpg.CrashShutdownError,
)

_PING_TIMEOUT_SECONDS: Final = 5.0


class Database:
    """The shared pool. Build it with `await Database.connect(dsn)`."""

    def __init__(self, pool: asyncpg.Pool[asyncpg.Record], *, masked_dsn: str) -> None:
        self._pool = pool
        self._masked_dsn = masked_dsn

    @classmethod
    async def connect(
        cls,
        dsn: str,
        *,
        min_size: int = 1,
        max_size: int = 10,
        migrate: bool = True,
        connect_timeout: float = 10.0,
    ) -> Database:
        """Open the pool and (by default) bring the schema up to date.

        Raises `DatabaseUnavailable` with a one-line message naming the URL, password masked.
        """
        masked = mask_url(dsn)
        try:
            pool = await asyncpg.create_pool(
                dsn, min_size=min_size, max_size=max_size, timeout=connect_timeout
            )
        except _CONNECT_ERRORS as exc:
            # `from None`: the operator needs the one line, not asyncpg's connect internals.
            raise DatabaseUnavailable.unreachable(dsn, exc) from None
        client = cls(pool, masked_dsn=masked)
        try:
            await client._require_supported_version(dsn)
            if migrate:
                version = await apply_migrations(pool)
                logger.info("PostgreSQL at %s, schema version %d", masked, version)
            else:
                await client.ping()
        except BaseException:
            await pool.close()
            raise
        return client

    async def _require_supported_version(self, dsn: str) -> None:
        """Raise `UnsupportedServer` when the server is older than MIN_POSTGRES_MAJOR."""
        try:
            async with asyncio.timeout(_PING_TIMEOUT_SECONDS), self._pool.acquire() as conn:
                major = conn.get_server_version().major
                shown = str(getattr(conn.get_settings(), "server_version", major)).split(" ")[0]
        except _UNAVAILABLE_ERRORS as exc:
            raise DatabaseUnavailable.unreachable(self._masked_dsn, exc) from None
        if major < MIN_POSTGRES_MAJOR:
            raise UnsupportedServer(
                server="PostgreSQL", url=dsn, found=shown, oldest=str(MIN_POSTGRES_MAJOR)
            )

    async def close(self, grace_seconds: float = 5.0) -> None:
        """Close the pool. asyncpg waits for every acquired connection to be released; a task
        still holding one at shutdown must not keep the process alive, so after `grace_seconds`
        seconds the remaining connections are terminated."""
        try:
            async with asyncio.timeout(grace_seconds):
                await self._pool.close()
        except TimeoutError:
            logger.warning(
                "PostgreSQL pool did not close within %.0f s; terminating it", grace_seconds
            )
            self._pool.terminate()

    @property
    def pool(self) -> asyncpg.Pool[asyncpg.Record]:
        return self._pool

    async def ping(self) -> None:
        """Round trip to the server; raises `DatabaseUnavailable` when it does not answer
        within a few seconds (waiting for a free pool connection included)."""
        try:
            async with asyncio.timeout(_PING_TIMEOUT_SECONDS):
                await self._pool.fetchval("SELECT 1")
        except _UNAVAILABLE_ERRORS as exc:
            raise DatabaseUnavailable.unreachable(self._masked_dsn, exc) from None

    @contextmanager
    def outage_as_unavailable(self) -> Iterator[None]:
        """Inside the block, a lost or unreachable server raises `DatabaseUnavailable`.

        Background jobs must tell an outage (keep Redis as it is, retry next tick) from a
        bad session (log it, go on with the others); the other methods let asyncpg's
        connection errors through as they are.
        """
        try:
            yield
        except _OUTAGE_ERRORS as exc:
            raise DatabaseUnavailable.unreachable(self._masked_dsn, exc) from exc

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[Conn]:
        """A pooled connection inside a transaction, committed when the block ends."""
        async with self._pool.acquire() as conn, conn.transaction():
            yield conn
