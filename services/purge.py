"""Purge of stale Redis keys: debris that nothing would ever read or remove.

Every pass walks the key space with SCAN (never KEYS) and removes, in batches of one round
trip each:

- `codes`: `attendances:code:<code>` pointing at a session that no longer exists;
- `teacher_pointers`: `attendances:teacher:<number>` pointing at a session that is gone;
- `records`, `enrolled`, `claims`: per-session structures (`attendance_records:{id}`,
  `attendances:{id}:enrolled`, `attendances:{id}:claim`) whose session key is gone;
- `due`: members of `attendances:due` whose session key is gone;
- `throttles`, `dedupe`, `locks`: `throttle:*`, `once:*` and `locks:*` keys without an expiry.
  Redis drops such keys itself when they expire; one that lost its expiry (a counter
  incremented by hand, a crash between INCR and EXPIRE in an older version) would throttle
  or silence someone forever;
- `fsm`: aiogram FSM state/data of Telegram accounts that are not linked to any user, except a
  login conversation in progress (the one conversation an unlinked account can be in).

The session key `attendances:{id}` itself is never deleted here: a session leaves Redis only
through finalization. Each check ("is the session gone?", "is the key still without expiry?",
"is the state still the one read?") runs inside the same Lua call as the delete, so a session
opened or a key rewritten between the SCAN and the delete is left alone.

The checks need scripts over arbitrary keys, which `dal.redis_client.RedisClient` does not
offer; they live in `_PurgeStore` below, on the client's connection pool. (They would sit
better in `dal/redis_client.py`; see the report of issue 5.)
"""

from __future__ import annotations

import logging
import re
from collections.abc import AsyncGenerator, AsyncIterator, Collection, Sequence
from contextlib import aclosing
from dataclasses import asdict, dataclass
from typing import Final

from redis.commands.core import AsyncScript
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from dal.errors import DatabaseUnavailable, RedisUnavailable
from dal.postgres import AsyncPostgresClient
from dal.redis_client import DUE_KEY, RedisClient
from services.finalize import OutageLog

__all__ = ["PurgeReport", "Purger"]

log = logging.getLogger(__name__)

_SESSION_ID: Final = re.compile(r"\{([0-9a-fA-F-]{36})\}")
_FSM_PARTS: Final = frozenset({"state", "data"})

# KEYS: candidate keys. ARGV: the session id of each key, in the same order.
_DROP_IF_SESSION_GONE_LUA: Final = """
local removed = 0
for i, key in ipairs(KEYS) do
  if redis.call('EXISTS', 'attendances:{' .. ARGV[i] .. '}') == 0 then
    removed = removed + redis.call('DEL', key)
  end
end
return removed
"""

# KEYS: pointer keys whose value is a session id (code index, teacher's open session).
_DROP_DANGLING_POINTERS_LUA: Final = """
local removed = 0
for _, key in ipairs(KEYS) do
  local id = redis.call('GET', key)
  if id and redis.call('EXISTS', 'attendances:{' .. id .. '}') == 0 then
    removed = removed + redis.call('DEL', key)
  end
end
return removed
"""

# KEYS: 1 the due index. ARGV: members (session ids).
_DROP_DUE_ORPHANS_LUA: Final = """
local removed = 0
for _, id in ipairs(ARGV) do
  if redis.call('EXISTS', 'attendances:{' .. id .. '}') == 0 then
    removed = removed + redis.call('ZREM', KEYS[1], id)
  end
end
return removed
"""

# KEYS: keys that must carry an expiry.
_DROP_WITHOUT_EXPIRY_LUA: Final = """
local removed = 0
for _, key in ipairs(KEYS) do
  if redis.call('TTL', key) == -1 then
    removed = removed + redis.call('DEL', key)
  end
end
return removed
"""

# KEYS: pairs (state key, data key) of unlinked accounts. ARGV: states to keep while they
# still have an expiry (a login in progress). Returns the number of keys deleted.
_DROP_FSM_LUA: Final = """
local keep = {}
for _, state in ipairs(ARGV) do
  keep[state] = true
end
local removed = 0
for i = 1, #KEYS, 2 do
  local state = redis.call('GET', KEYS[i])
  if not (state and keep[state] and redis.call('TTL', KEYS[i]) > 0) then
    removed = removed + redis.call('DEL', KEYS[i], KEYS[i + 1])
  end
end
return removed
"""


@dataclass(slots=True)
class PurgeReport:
    """Keys removed by one pass, by kind."""

    codes: int = 0
    teacher_pointers: int = 0
    records: int = 0
    enrolled: int = 0
    claims: int = 0
    due: int = 0
    throttles: int = 0
    dedupe: int = 0
    locks: int = 0
    fsm: int = 0
    fsm_skipped: bool = False  # PostgreSQL was unavailable: FSM keys were not examined

    def counts(self) -> dict[str, int]:
        return {k: v for k, v in asdict(self).items() if isinstance(v, int) and k != "fsm_skipped"}

    @property
    def total(self) -> int:
        return sum(self.counts().values())


class _PurgeStore:
    """The purge's Redis scripts, on the connection pool of a `RedisClient`."""

    def __init__(self, client: RedisClient) -> None:
        self._client = client
        raw = client.redis
        self._raw = raw
        self._session_gone = raw.register_script(_DROP_IF_SESSION_GONE_LUA)
        self._pointers = raw.register_script(_DROP_DANGLING_POINTERS_LUA)
        self._due = raw.register_script(_DROP_DUE_ORPHANS_LUA)
        self._no_expiry = raw.register_script(_DROP_WITHOUT_EXPIRY_LUA)
        self._fsm = raw.register_script(_DROP_FSM_LUA)

    async def scan(self, *, match: str, batch: int) -> AsyncGenerator[list[str], None]:
        """Keys matching `match` in lists of up to `batch` (SCAN may repeat a key)."""
        chunk: list[str] = []
        async for key in self._client.scan_keys(match=match, count=batch):
            chunk.append(key)
            if len(chunk) >= batch:
                yield chunk
                chunk = []
        if chunk:
            yield chunk

    async def due_members(self, *, batch: int) -> AsyncIterator[list[str]]:
        chunk: list[str] = []
        try:
            async for member, _score in self._raw.zscan_iter(DUE_KEY, count=batch):
                chunk.append(str(member))
                if len(chunk) >= batch:
                    yield chunk
                    chunk = []
        except (RedisConnectionError, RedisTimeoutError) as exc:
            raise RedisUnavailable(f"Redis unavailable during purge: {exc}") from exc
        if chunk:
            yield chunk

    async def _run(self, script: AsyncScript, keys: Sequence[str], args: Sequence[str]) -> int:
        if not keys and not args:
            return 0
        try:
            removed = await script(keys=list(keys), args=list(args))
        except (RedisConnectionError, RedisTimeoutError) as exc:
            raise RedisUnavailable(f"Redis unavailable during purge: {exc}") from exc
        return int(removed)

    async def drop_if_session_gone(self, *, keys: Sequence[str], session_ids: Sequence[str]) -> int:
        return await self._run(self._session_gone, keys, session_ids)

    async def drop_dangling_pointers(self, *, keys: Sequence[str]) -> int:
        return await self._run(self._pointers, keys, ())

    async def drop_due_orphans(self, *, members: Sequence[str]) -> int:
        if not members:
            return 0
        return await self._run(self._due, [DUE_KEY], members)

    async def drop_without_expiry(self, *, keys: Sequence[str]) -> int:
        return await self._run(self._no_expiry, keys, ())

    async def drop_fsm(
        self, *, pairs: Sequence[tuple[str, str]], keep_states: Sequence[str]
    ) -> int:
        keys = [key for pair in pairs for key in pair]
        if not keys:
            return 0
        return await self._run(self._fsm, keys, keep_states)


class Purger:
    """Removes stale Redis keys; `run_once()` is one scheduler tick."""

    def __init__(
        self,
        *,
        pg: AsyncPostgresClient,
        redis: RedisClient,
        keep_fsm_states: Collection[str] = (),
        fsm_prefix: str = "fsm",
        batch: int = 500,
    ) -> None:
        self._pg = pg
        self._store = _PurgeStore(redis)
        self._keep_states = sorted(keep_fsm_states)
        self._fsm_prefix = fsm_prefix
        self._batch = batch
        self._pg_outage = OutageLog("PostgreSQL (purge of FSM keys)", log)

    async def run_once(self) -> PurgeReport:
        """One pass over the key space. Raises `RedisUnavailable` if Redis fails."""
        report = PurgeReport()
        store, batch = self._store, self._batch
        async for keys in store.scan(match="attendances:code:*", batch=batch):
            report.codes += await store.drop_dangling_pointers(keys=keys)
        async for keys in store.scan(match="attendances:teacher:*", batch=batch):
            report.teacher_pointers += await store.drop_dangling_pointers(keys=keys)
        async for keys in store.scan(match="attendance_records:*", batch=batch):
            report.records += await self._drop_session_parts(keys, suffix="")
        async for keys in store.scan(match="attendances:{*}:*", batch=batch):
            report.enrolled += await self._drop_session_parts(keys, suffix=":enrolled")
            report.claims += await self._drop_session_parts(keys, suffix=":claim")
        async for members in store.due_members(batch=batch):
            report.due += await store.drop_due_orphans(members=members)
        async for keys in store.scan(match="throttle:*", batch=batch):
            report.throttles += await store.drop_without_expiry(keys=keys)
        async for keys in store.scan(match="once:*", batch=batch):
            report.dedupe += await store.drop_without_expiry(keys=keys)
        async for keys in store.scan(match="locks:*", batch=batch):
            report.locks += await store.drop_without_expiry(keys=keys)
        try:
            async with aclosing(store.scan(match=f"{self._fsm_prefix}:*", batch=batch)) as pages:
                async for keys in pages:
                    report.fsm += await self._drop_fsm(keys)
        except DatabaseUnavailable as exc:
            self._pg_outage.failed(exc)
            report.fsm_skipped = True
        else:
            self._pg_outage.succeeded()
        if report.total:
            log.info(
                "purged %d stale Redis key(s): %s",
                report.total,
                ", ".join(f"{kind} {count}" for kind, count in report.counts().items() if count),
            )
        else:
            log.debug("purge found no stale Redis keys")
        return report

    async def _drop_session_parts(self, keys: Sequence[str], *, suffix: str) -> int:
        """Drop the keys ending in `suffix` (exactly) whose session key is gone."""
        chosen: list[str] = []
        ids: list[str] = []
        for key in keys:
            match = _SESSION_ID.search(key)
            if match is None or key[match.end() :] != suffix:
                continue
            chosen.append(key)
            ids.append(match.group(1))
        return await self._store.drop_if_session_gone(keys=chosen, session_ids=ids)

    async def _drop_fsm(self, keys: Sequence[str]) -> int:
        """FSM keys `<prefix>:<chat>[:<thread>]:<user>:(state|data)` of unlinked accounts."""
        owners: dict[str, int] = {}  # key base -> Telegram user id
        for key in keys:
            parts = key.split(":")
            if len(parts) < 4 or parts[-1] not in _FSM_PARTS:
                continue  # aiogram's per-user locks expire by themselves
            try:
                owners[":".join(parts[:-1])] = int(parts[-2])
            except ValueError:
                continue
        if not owners:
            return 0
        with self._pg.outage_as_unavailable():
            linked = await self._pg.get_linked_telegram_ids(telegram_ids=list(owners.values()))
        pairs = [
            (f"{base}:state", f"{base}:data")
            for base, user_id in owners.items()
            if user_id not in linked
        ]
        return await self._store.drop_fsm(pairs=pairs, keep_states=self._keep_states)
