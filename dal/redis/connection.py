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

__all__ = ["blocking_pool"]


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
    are `CancelSafe`; `options` as for `BlockingConnectionPool.from_url`."""
    scheme = urlsplit(url).scheme
    connection_class = _BY_SCHEME.get(scheme)
    if connection_class is None:
        raise ValueError(f"unsupported Redis URL scheme {scheme!r} (redis, rediss or unix)")
    return aioredis.BlockingConnectionPool.from_url(
        url, connection_class=connection_class, **options
    )
