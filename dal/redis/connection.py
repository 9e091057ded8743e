"""The Redis connection pool of the process, with cancellation that is never lost.

Python 3.11's `asyncio.wait_for` returns the inner call's result, and swallows the caller's
cancellation, when both happen in the same turn of the event loop (CPython gh-86296, fixed in
3.12 where `wait_for` is built on `asyncio.timeout`). redis-py wraps every socket write in
`wait_for(..., socket_timeout)`, and a write usually completes at once, so a task cancelled
while it sends a command (a delivery loop at shutdown, a lock's renewal when its handler
returns) carried on as if nothing had happened: measured, a loop of SET and EXISTS cancelled
at random moments kept running on the first try. The loops of bot/ would then renew a lock
forever or keep reading the outbox after their worker stopped.

`CancelSafe` puts the cancellation back: if the task was asked to cancel while the command was
being sent, the send raises `CancelledError` once it returns. The command has reached Redis by
then; its reply is left unread and the connection is dropped, as redis-py does for any
interrupted command, so the next user of the pool never reads a stale reply.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable
from typing import Any
from urllib.parse import urlsplit

import redis.asyncio as aioredis
from redis.asyncio.connection import (
    AbstractConnection,
    Connection,
    SSLConnection,
    UnixDomainSocketConnection,
)

__all__ = ["RESP_PROTOCOL", "blocking_pool", "client"]

# The Redis protocol every connection of the project speaks, chosen here rather than by the
# library: redis-py 8.2 started trying RESP3 first (HELLO 3) and, against a server without
# HELLO, logged a warning before falling back, which changed the bot's start-up output. The
# project reads plain replies (strings, lists, hashes flattened by redis-py) and uses no RESP3
# push or attribute type (no client-side caching), so RESP2 is what it speaks on every server
# from the embedded 6.2 up, and no HELLO is ever sent.
RESP_PROTOCOL = 2


class CancelSafe(AbstractConnection):
    """Mixin: a cancellation requested while a command was sent is raised, not lost."""

    async def send_packed_command(
        self, command: bytes | str | Iterable[bytes], check_health: bool = True
    ) -> None:
        task = asyncio.current_task()
        asked = task.cancelling() if task is not None else 0
        await super().send_packed_command(command, check_health)
        if task is not None and task.cancelling() > asked:
            await self.disconnect(nowait=True)  # the reply will not be read
            raise asyncio.CancelledError


class CancelSafeConnection(CancelSafe, Connection):
    pass


class CancelSafeSSLConnection(CancelSafe, SSLConnection):
    pass


class CancelSafeUnixConnection(CancelSafe, UnixDomainSocketConnection):
    pass


_BY_SCHEME: dict[str, type[AbstractConnection]] = {
    "redis": CancelSafeConnection,
    "rediss": CancelSafeSSLConnection,
    "unix": CancelSafeUnixConnection,
}


def blocking_pool(url: str, **options: Any) -> aioredis.BlockingConnectionPool:
    """A `BlockingConnectionPool` for `url` (redis://, rediss:// or unix://) whose connections
    are `CancelSafe` and speak `RESP_PROTOCOL`; `options` as for
    `BlockingConnectionPool.from_url`."""
    if options.setdefault("protocol", RESP_PROTOCOL) != RESP_PROTOCOL:
        raise ValueError(f"the project speaks RESP{RESP_PROTOCOL} only")
    scheme = urlsplit(url).scheme
    connection_class = _BY_SCHEME.get(scheme)
    if connection_class is None:
        raise ValueError(f"unsupported Redis URL scheme {scheme!r} (redis, rediss or unix)")
    return aioredis.BlockingConnectionPool.from_url(
        url, connection_class=connection_class, **options
    )


def client(url: str, **options: Any) -> aioredis.Redis:
    """A client that owns its own `blocking_pool` (closing it disconnects the pool): for
    scripts, tools and tests that need one connection or a few."""
    return aioredis.Redis.from_pool(blocking_pool(url, **options))
