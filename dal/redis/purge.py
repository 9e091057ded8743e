"""The purge's Redis side: batched scans and check-and-delete scripts (services/purge.py decides
which keys to examine, with the patterns and parsers of dal/redis/keys.py).

Each check runs in the same script call as its delete, so a key rewritten (or a session opened)
between the SCAN that found it and the delete is left alone.
"""

from __future__ import annotations

from collections.abc import AsyncGenerator, AsyncIterator, Sequence

import redis.asyncio as aioredis
from redis.commands.core import AsyncScript

from dal.redis import keys, scripts
from dal.redis.base import Store, batched, text

__all__ = ["PurgeStore"]


class PurgeStore(Store):
    """Scans (SCAN, ZSCAN; never KEYS) and the purge's scripts (lua/drop_*.lua)."""

    def __init__(self, redis: aioredis.Redis, *, url: str = "redis://") -> None:
        super().__init__(redis, url=url)
        self._drop_session_orphans_script = scripts.register(redis, "drop_session_orphans")
        self._drop_dangling_pointers_script = scripts.register(redis, "drop_dangling_pointers")
        self._drop_due_orphans_script = scripts.register(redis, "drop_due_orphans")
        self._drop_keys_without_expiry_script = scripts.register(redis, "drop_keys_without_expiry")
        self._drop_fsm_keys_script = scripts.register(redis, "drop_fsm_keys")

    async def scan_keys(self, *, match: str, count: int = 500) -> AsyncIterator[str]:
        """Keys matching `match`, by SCAN (never KEYS); a key may be yielded more than once."""
        with self._errors:
            async for key in self._redis.scan_iter(match=match, count=count):
                yield key

    async def scan_key_batches(
        self, *, match: str, batch: int = 500
    ) -> AsyncGenerator[list[str], None]:
        """Keys matching `match` in lists of up to `batch`, by SCAN (a key may repeat).

        Close it (`contextlib.aclosing`) when leaving the loop early.
        """
        async for chunk in batched(self.scan_keys(match=match, count=batch), batch):
            yield chunk

    async def scan_due_id_batches(self, *, batch: int = 500) -> AsyncGenerator[list[str], None]:
        """Members (session ids) of the due index in lists of up to `batch`, by ZSCAN."""
        async for chunk in batched(self._scan_due_ids(count=batch), batch):
            yield chunk

    async def _scan_due_ids(self, *, count: int) -> AsyncIterator[str]:
        with self._errors:
            async for member, _score in self._redis.zscan_iter(keys.DUE, count=count):
                yield text(member)

    async def drop_session_orphans(self, *, keys: Sequence[str], session_ids: Sequence[str]) -> int:
        """Delete the per-session keys whose session key (`keys.attendance(id)`) is gone.

        `keys[i]` belongs to the session `session_ids[i]`. Returns the number of keys deleted.
        """
        if len(keys) != len(session_ids):
            raise ValueError(f"{len(keys)} keys but {len(session_ids)} session ids")
        if not keys:
            return 0
        sessions = [_session_key(session_id) for session_id in session_ids]
        return await self._count_removed(self._drop_session_orphans_script, [*keys, *sessions])

    async def drop_dangling_pointers(self, *, keys: Sequence[str]) -> int:
        """Delete the pointer keys (code index, teacher's open session) whose session is gone.

        Returns the number of keys deleted; a missing key counts as nothing.
        """
        if not keys:
            return 0
        return await self._count_removed(self._drop_dangling_pointers_script, keys)

    async def drop_due_orphans(self, *, ids: Sequence[str]) -> int:
        """Remove from the due index the `ids` whose session key is gone; returns how many."""
        if not ids:
            return 0
        script_keys = [keys.DUE, *(_session_key(i) for i in ids)]
        return await self._count_removed(self._drop_due_orphans_script, script_keys, ids)

    async def drop_keys_without_expiry(self, *, keys: Sequence[str]) -> int:
        """Delete those of `keys` that exist without an expiry; returns how many."""
        if not keys:
            return 0
        return await self._count_removed(self._drop_keys_without_expiry_script, keys)

    async def drop_fsm_keys(
        self, *, pairs: Sequence[tuple[str, str]], keep_states: Sequence[str] = ()
    ) -> int:
        """Delete both keys of each FSM (state key, data key) pair, with one exception.

        A pair is kept while its state is one of `keep_states` and the state key still has an
        expiry (a conversation in progress). Returns the number of keys deleted.
        """
        script_keys = [key for pair in pairs for key in pair]
        if not script_keys:
            return 0
        return await self._count_removed(self._drop_fsm_keys_script, script_keys, keep_states)

    async def _count_removed(
        self, script: AsyncScript, script_keys: Sequence[str], args: Sequence[str] = ()
    ) -> int:
        """Run a purge script; it returns how many keys (or members) it removed."""
        with self._errors:
            removed = await script(keys=list(script_keys), args=list(args))
        return int(removed)


def _session_key(session_id: str) -> str:
    # `keys` is a keyword parameter of several methods above: the module is reached from here.
    return keys.attendance(session_id)
