"""The Redis connection pool of the process: cancellation never lost, writes without a task each.

Python 3.11's `asyncio.wait_for` returns the inner call's result, and swallows the caller's
cancellation, when both happen in the same turn of the event loop (CPython gh-86296, fixed in
3.12 where `wait_for` is built on `asyncio.timeout`). redis-py wraps every socket write in
`wait_for(..., socket_timeout)`, and a write usually completes at once, so a task cancelled
while it sends a command (a delivery loop at shutdown, a lock's renewal when its handler
returns) carried on as if nothing had happened: measured, a loop of SET and EXISTS cancelled
at random moments kept running on the first try. The loops of bot/ would then renew a lock
forever or keep reading the outbox after their worker stopped.

`CancelSafe` sends without `wait_for`, which on 3.11 runs every write as a task of its own
that the caller waits two turns of the loop for, with a timer. A write the kernel takes at once
(nearly all of them: a command is a few hundred bytes) cannot wait, so it needs no timer; only
when something stays buffered is the drain bounded by `asyncio.timeout(socket_timeout)`, in the
task itself, which never loses a cancellation. A write that cannot finish (a server that stopped
reading) still fails after `socket_timeout` with redis-py's own errors, and the connection is
dropped. Measured in the check-in benchmark (one core, one process, 12 pairs of rounds in turn):
1,790 check-ins/s against 1,683 with redis-py's send, +5.5 % (median of the pairs' ratios).
And if the task was asked to cancel while the command was being sent, the send raises
`CancelledError` once it returns. The command has reached Redis by then; its reply is left
unread and the connection is dropped, as redis-py does for any interrupted command, so the next
user of the pool never reads a stale reply.

With a `SentinelTarget` (REDIS_SENTINELS, REDIS_SENTINEL_MASTER) the same pool is built over
redis-py's Sentinel classes: a blocking pool whose connections are both `CancelSafe` and
Sentinel-managed (each asks the sentinels for the master's address when it connects), speaking
RESP2 to the master and to the sentinels alike.

Waiting for a connection is first come, first served (`FairBlockingPool`). redis-py's
`BlockingConnectionPool` wakes a waiter when a connection is released, but the waiter must then
take the pool's lock again, and a task that asks in the meantime (most often the releaser
itself, on its next command) takes the connection first; the woken waiter goes back to the end
of the line. Under a burst of more tasks than connections a few of them lost every time, until
the pool's timeout answered "No connection available": measured in the check-in benchmark, 36
of 100 concurrent check-ins on a loaded host.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import redis.asyncio as aioredis
from redis.asyncio.connection import (
    AbstractConnection,
    Connection,
    SSLConnection,
    UnixDomainSocketConnection,
    parse_url,
)
from redis.asyncio.retry import Retry
from redis.asyncio.sentinel import (
    Sentinel,
    SentinelConnectionPool,
    SentinelManagedConnection,
    SentinelManagedSSLConnection,
)
from redis.backoff import NoBackoff
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import MaxConnectionsError
from redis.exceptions import TimeoutError as RedisTimeoutError

__all__ = ["RESP_PROTOCOL", "FairBlockingPool", "SentinelTarget", "blocking_pool", "client"]

# The Redis protocol every connection of the project speaks, chosen here rather than by the
# library: redis-py 8.2 started trying RESP3 first (HELLO 3) and, against a server without
# HELLO, logged a warning before falling back, which changed the bot's start-up output. The
# project reads plain replies (strings, lists, hashes flattened by redis-py) and uses no RESP3
# push or attribute type (no client-side caching), so RESP2 is what it speaks on every server
# from the embedded 6.2 up, and no HELLO is ever sent.
RESP_PROTOCOL = 2


class CancelSafe(AbstractConnection):
    """Mixin: a command's write bounded by one timer, not `wait_for`, and a cancellation
    requested while it was sent raised, not lost (see the module docstring)."""

    async def send_packed_command(
        self, command: bytes | str | Iterable[bytes], check_health: bool = True
    ) -> None:
        task = asyncio.current_task()
        asked = task.cancelling() if task is not None else 0
        # As redis-py's own send (connect, health check, encoding, errors), with the timer.
        if not self.is_connected:
            await self.connect_check_health(check_health=False)
        if check_health:
            await self.check_health()  # type: ignore[no-untyped-call]
        if isinstance(command, str):
            command = command.encode()
        if isinstance(command, bytes):
            command = [command]
        try:
            await self._write(command)
        except TimeoutError as exc:  # asyncio's timer, or the OS's ETIMEDOUT (errno set)
            await self.disconnect(nowait=True)
            if exc.errno is not None:  # the connection is dead, not slow
                raise RedisConnectionError(
                    f"Error {exc.errno} while writing to socket. {exc.strerror}."
                ) from exc
            raise RedisTimeoutError("Timeout writing to socket") from None
        except OSError as exc:
            await self.disconnect(nowait=True)
            number, message = (exc.args[0], exc.args[1]) if len(exc.args) > 1 else ("UNKNOWN", exc)
            raise RedisConnectionError(
                f"Error {number} while writing to socket. {message}."
            ) from exc
        except BaseException:
            await self.disconnect(nowait=True)  # part of a command may have been written
            raise
        if task is not None and task.cancelling() > asked:
            await self.disconnect(nowait=True)  # the reply will not be read
            raise asyncio.CancelledError

    async def _write(self, command: Iterable[bytes]) -> None:
        writer = self._writer
        if writer is None or writer.transport.is_closing():
            raise RedisConnectionError("Connection closed by the server before write")
        writer.writelines(command)
        if self.socket_timeout and writer.transport.get_write_buffer_size():
            # The kernel did not take it all at once: the drain may wait for the server.
            async with asyncio.timeout(self.socket_timeout):
                await writer.drain()
        else:
            await writer.drain()  # nothing buffered: returns at once (raises if the peer left)


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


class CancelSafeSentinelConnection(CancelSafe, SentinelManagedConnection):
    pass


class CancelSafeSentinelSSLConnection(CancelSafe, SentinelManagedSSLConnection):
    pass


_SENTINEL_BY_SCHEME: dict[str, type[AbstractConnection]] = {
    "redis": CancelSafeSentinelConnection,
    "rediss": CancelSafeSentinelSSLConnection,
}


class FairBlockingPool(aioredis.BlockingConnectionPool):
    """A `BlockingConnectionPool` that serves waiting tasks in the order they asked (see the
    module docstring). A turn is taken from a FIFO semaphore of `max_connections` before the
    pool is asked, so the pool itself never makes anyone wait, and given back when the
    connection is released; `timeout` bounds the wait for a turn as it bounded the pool's.
    With a turn held the hand-out skips the blocking pool's own wait and timer: measured
    (64 tasks sending PING on one core), 10,600 commands/s against 9,300 through redis-py's
    blocking pool, which at 100 tasks over 64 connections told some "No connection
    available" within its 5 s timeout on an idle machine."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        # asyncio.Semaphore queues a new caller behind every waiter not yet served (3.11.1+),
        # so a releaser asking again gets in line like everyone else.
        self._turns = asyncio.Semaphore(self.max_connections)
        self._holding: set[AbstractConnection] = set()

    async def get_connection(self, *args: Any, **kwargs: Any) -> AbstractConnection:
        if self._turns.locked():
            try:
                async with asyncio.timeout(self.timeout):
                    await self._turns.acquire()
            except TimeoutError:
                raise aioredis.ConnectionError("No connection available.") from None
        else:  # a turn is free: taken at once, without arming a timer
            await self._turns.acquire()
        try:
            try:
                # With a turn held a connection is free: the plain pool's hand-out, without
                # the blocking pool's second wait and timer.
                connection: AbstractConnection = await aioredis.ConnectionPool.get_connection(self)  # type: ignore[no-untyped-call]
            except MaxConnectionsError:
                # a connection whose release finishes in the background (after a cancellation)
                connection = await super().get_connection()  # type: ignore[no-untyped-call]
        except BaseException:
            self._turns.release()
            raise
        self._holding.add(connection)
        return connection

    async def release(self, connection: AbstractConnection) -> None:
        try:
            await super().release(connection)
        finally:
            # Once per connection handed out, whatever redis-py does on the way (a release
            # finished in the background after a cancellation, a pool reset by Sentinel).
            if connection in self._holding:
                self._holding.discard(connection)
                self._turns.release()


@dataclass(frozen=True, slots=True)
class SentinelTarget:
    """A master found through Redis Sentinel: the sentinels' addresses, the name they monitor
    it under, and the password of the sentinels themselves (None: they ask for none).

    With a target, the Redis URL's host and port are not used: its scheme (redis:// or
    rediss:// for TLS), user, password and database apply to the master the sentinels name."""

    sentinels: tuple[tuple[str, int], ...]
    master: str
    password: str | None = None

    def where(self, url: str) -> str:
        """How messages name the server: `url` with the master's name for its address, and
        the sentinels asked (the password, if any, is masked by the caller as for any URL)."""
        parts = urlsplit(url)
        userinfo = parts.netloc.rsplit("@", 1)[0] + "@" if "@" in parts.netloc else ""
        nodes = ",".join(f"{host}:{port}" for host, port in self.sentinels)
        named = urlunsplit(parts._replace(netloc=f"{userinfo}{self.master}"))
        return f"{named} (Sentinel master via {nodes})"


class SentinelBlockingPool(SentinelConnectionPool, FairBlockingPool):
    """The master's pool through Sentinel that waits for a free connection like
    `blocking_pool`'s. Each new connection asks the sentinels for the master's address; one
    that finds the old master demoted (READONLY) drops itself, so the next command reconnects
    to the new one. Closing the pool also closes its connections to the sentinels."""

    async def aclose(self) -> None:
        try:
            await super().aclose()
        finally:
            await self.sentinel_manager.aclose()


def _sentinel_pool(
    url: str, target: SentinelTarget, options: dict[str, Any]
) -> SentinelBlockingPool:
    scheme = urlsplit(url).scheme
    connection_class = _SENTINEL_BY_SCHEME.get(scheme)
    if connection_class is None:
        raise ValueError(f"Sentinel needs a redis:// or rediss:// URL, not {scheme!r}")
    if not target.sentinels:
        raise ValueError("Sentinel needs at least one sentinel address")
    connect = dict(parse_url(url))
    for unused in ("host", "port", "connection_class"):
        connect.pop(unused, None)
    timeout = options.get("socket_timeout") or options.get("socket_connect_timeout") or 5.0
    # The sentinels' own clients: the same cancel-safe RESP2 connections, at most two each
    # (master discovery asks one sentinel at a time), no retry (discovery moves on to the next
    # sentinel itself).
    manager = Sentinel([])
    manager.sentinels = [
        aioredis.Redis.from_pool(
            aioredis.BlockingConnectionPool(
                host=host,
                port=port,
                password=target.password,
                connection_class=CancelSafeConnection,
                protocol=RESP_PROTOCOL,
                max_connections=2,
                timeout=timeout,
                socket_timeout=timeout,
                socket_connect_timeout=timeout,
                retry=Retry(NoBackoff(), 0),
            )
        )
        for host, port in target.sentinels
    ]
    return SentinelBlockingPool(  # type: ignore[no-untyped-call]
        target.master,
        manager,
        connection_class=connection_class,
        is_master=True,
        **{**connect, **options},
    )


def blocking_pool(
    url: str, *, sentinel: SentinelTarget | None = None, **options: Any
) -> FairBlockingPool:
    """A `FairBlockingPool` for `url` (redis://, rediss:// or unix://) whose connections
    are `CancelSafe` and speak `RESP_PROTOCOL`; `options` as for
    `BlockingConnectionPool.from_url`. With `sentinel`, the pool's connections go to the master
    the sentinels name (and follow it when they promote a replica)."""
    if options.setdefault("protocol", RESP_PROTOCOL) != RESP_PROTOCOL:
        raise ValueError(f"the project speaks RESP{RESP_PROTOCOL} only")
    if sentinel is not None:
        return _sentinel_pool(url, sentinel, options)
    scheme = urlsplit(url).scheme
    connection_class = _BY_SCHEME.get(scheme)
    if connection_class is None:
        raise ValueError(f"unsupported Redis URL scheme {scheme!r} (redis, rediss or unix)")
    return FairBlockingPool.from_url(url, connection_class=connection_class, **options)


def client(url: str, *, sentinel: SentinelTarget | None = None, **options: Any) -> aioredis.Redis:
    """A client that owns its own `blocking_pool` (closing it disconnects the pool): for
    scripts, tools and tests that need one connection or a few."""
    return aioredis.Redis.from_pool(blocking_pool(url, sentinel=sentinel, **options))
