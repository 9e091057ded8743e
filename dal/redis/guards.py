"""Guards in Redis: throttle counters, dedupe markers and the scheduler's job locks."""

from __future__ import annotations

import redis.asyncio as aioredis

from dal.redis import keys, scripts
from dal.redis.base import Store

__all__ = ["Guards"]


class Guards(Store):
    """Counters (`keys.throttle`), markers (`keys.once`) and locks (`keys.lock`)."""

    def __init__(self, redis: aioredis.Redis, *, url: str = "redis://") -> None:
        super().__init__(redis, url=url)
        self._hit_counter_script = scripts.register(redis, "hit_counter")
        self._compare_delete_script = scripts.register(redis, "compare_delete")
        self._compare_expire_script = scripts.register(redis, "compare_expire")

    # --- throttles and dedupe --------------------------------------------------------------

    async def hit_counter(self, *, key: str, window_seconds: int) -> int:
        """Count one hit; the window starts at the first hit. Returns the count so far."""
        with self._errors:
            count = await self._hit_counter_script(keys=[key], args=[window_seconds])
        return int(count)

    async def get_counter(self, *, key: str) -> tuple[int, int]:
        """(count, seconds until the window resets); (0, 0) when there is no counter."""
        with self._errors:
            async with self._redis.pipeline(transaction=False) as pipe:
                pipe.get(key)
                pipe.ttl(key)
                raw, ttl = await pipe.execute()
        if raw is None:
            return 0, 0
        return int(raw), max(int(ttl), 0)

    async def reset_counter(self, *, key: str) -> None:
        with self._errors:
            await self._redis.delete(key)

    async def mark_once(self, *, key: str, ttl_seconds: int) -> bool:
        """True the first time `key` is marked within `ttl_seconds`, False afterwards."""
        with self._errors:
            marked = await self._redis.set(key, "1", nx=True, ex=ttl_seconds)
        return bool(marked)

    # --- job locks -------------------------------------------------------------------------

    async def acquire_lock(self, *, name: str, owner: str, ttl_seconds: int) -> bool:
        with self._errors:
            acquired = await self._redis.set(keys.lock(name), owner, nx=True, ex=ttl_seconds)
        return bool(acquired)

    async def extend_lock(self, *, name: str, owner: str, ttl_seconds: int) -> bool:
        """Push the lock's expiry to `ttl_seconds` from now if `owner` still holds it."""
        with self._errors:
            extended: int = await self._compare_expire_script(
                keys=[keys.lock(name)], args=[owner, ttl_seconds]
            )
        return extended == 1

    async def release_lock(self, *, name: str, owner: str) -> bool:
        """Release the lock if `owner` holds it; True when it was released."""
        with self._errors:
            deleted: int = await self._compare_delete_script(keys=[keys.lock(name)], args=[owner])
        return deleted == 1
