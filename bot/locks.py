"""Per-user event isolation whose Redis lock outlives a crash by seconds, not a minute.

aiogram's `RedisEventIsolation` takes `fsm:<bot>:<chat>:<user>:lock` with a 60 s timeout for
each update of a user in a conversation. After `kill -9` the lock stays until it expires, so a
restarted bot ignores that user for up to a minute. Here the lock lives `ttl` seconds (3 by
default) and a task renews it every `ttl / 3` while the handler runs: a live handler keeps its
lock for as long as it needs, a dead process's lock is gone within `ttl`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncGenerator

from aiogram.fsm.storage.base import StorageKey
from aiogram.fsm.storage.redis import RedisEventIsolation
from redis.asyncio.lock import Lock
from redis.exceptions import LockError, RedisError

from services.pseudonyms import pseudonym

log = logging.getLogger(__name__)


class RenewingRedisEventIsolation(RedisEventIsolation):
    def __init__(self, *args: object, ttl: float = 3.0, **kwargs: object) -> None:
        super().__init__(*args, **kwargs)  # type: ignore[arg-type]
        self.ttl = ttl

    @contextlib.asynccontextmanager
    async def lock(self, key: StorageKey) -> AsyncGenerator[None, None]:
        name = self.key_builder.build(key, "lock")
        lock = Lock(self.redis, name, timeout=self.ttl, sleep=0.05)
        await lock.acquire()
        # The lock's name holds the raw ids; lines name the user by pseudonym (worked out only
        # for a line that is written: most locked updates log nothing).
        who = key.user_id
        renewal = asyncio.create_task(self._renew(lock, who))
        try:
            yield None
        finally:
            renewal.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await renewal
            try:
                await lock.release()
            except LockError:
                pass
            except RedisError as exc:
                # The handler is done; its returned reply is sent after this (handlers/replies.py)
                # and must not be lost because the store went away (e.g. closed at shutdown).
                # The lock expires by itself within `ttl`.
                log.warning("could not release the per-user lock of %s: %s", pseudonym(who), exc)

    async def _renew(self, lock: Lock, who: int) -> None:
        while True:
            await asyncio.sleep(self.ttl / 3)
            try:
                await lock.reacquire()
            except LockError:
                log.warning(
                    "the per-user lock of %s was lost while its handler ran", pseudonym(who)
                )
                return
            except Exception:  # a Redis hiccup: try again at the next beat
                log.warning(
                    "could not renew the per-user lock of %s", pseudonym(who), exc_info=True
                )
