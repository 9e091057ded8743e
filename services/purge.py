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

With `retention_days` set, each pass also forgets the accounts inactive that long (no login,
no attendance): their Telegram link, cached schedule and preferences in PostgreSQL, and their
`users:<telegram id>` key (`inactive`). Attendance records stay: they are the institution's.

The session key `attendances:{id}` itself is never deleted here: a session leaves Redis only
through finalization. Each check ("is the session gone?", "is the key still without expiry?",
"is the state still the one read?") runs inside the same script call as the delete, so a session
opened or a key rewritten between the SCAN and the delete is left alone.

Every Redis operation (the scans and the check-and-delete scripts) is a `RedisClient` method
(`scan_key_batches`, `scan_due_id_batches`, `drop_*`), which also turns connection failures
into `RedisUnavailable`; this module only decides which keys to examine and counts.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable, Collection, Sequence
from contextlib import aclosing
from dataclasses import asdict, dataclass
from datetime import UTC, datetime, timedelta
from typing import Final

from dal.errors import DatabaseUnavailable
from dal.pg import Database, RetentionStore
from dal.redis_client import RedisClient
from services.finalize import OutageLog

__all__ = ["PurgeReport", "Purger"]

log = logging.getLogger(__name__)

_SESSION_ID: Final = re.compile(r"\{([0-9a-fA-F-]{36})\}")
_FSM_PARTS: Final = frozenset({"state", "data"})


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
    inactive: int = 0  # linked accounts forgotten after RETENTION_DAYS without activity

    def counts(self) -> dict[str, int]:
        return {k: v for k, v in asdict(self).items() if isinstance(v, int) and k != "fsm_skipped"}

    @property
    def total(self) -> int:
        return sum(self.counts().values())


class Purger:
    """Removes stale Redis keys; `run_once()` is one scheduler tick."""

    def __init__(
        self,
        *,
        db: Database,
        retention: RetentionStore,
        redis: RedisClient,
        keep_fsm_states: Collection[str] = (),
        fsm_prefix: str = "fsm",
        batch: int = 500,
        retention_days: int | None = None,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self._db = db
        self._retention_store = retention
        self._redis = redis
        self._keep_states = sorted(keep_fsm_states)
        self._fsm_prefix = fsm_prefix
        self._batch = batch
        self._pg_outage = OutageLog("PostgreSQL (purge of FSM keys)", log)
        self._retention = None if retention_days is None else timedelta(days=retention_days)
        self._clock = clock

    async def run_once(self) -> PurgeReport:
        """One pass over the key space. Raises `RedisUnavailable` if Redis fails."""
        report = PurgeReport()
        redis, batch = self._redis, self._batch
        async for keys in redis.scan_key_batches(match="attendances:code:*", batch=batch):
            report.codes += await redis.drop_dangling_pointers(keys=keys)
        async for keys in redis.scan_key_batches(match="attendances:teacher:*", batch=batch):
            report.teacher_pointers += await redis.drop_dangling_pointers(keys=keys)
        async for keys in redis.scan_key_batches(match="attendance_records:*", batch=batch):
            report.records += await self._drop_session_parts(keys, suffix="")
        async for keys in redis.scan_key_batches(match="attendances:{*}:*", batch=batch):
            report.enrolled += await self._drop_session_parts(keys, suffix=":enrolled")
            report.claims += await self._drop_session_parts(keys, suffix=":claim")
        async for ids in redis.scan_due_id_batches(batch=batch):
            report.due += await redis.drop_due_orphans(ids=ids)
        async for keys in redis.scan_key_batches(match="throttle:*", batch=batch):
            report.throttles += await redis.drop_keys_without_expiry(keys=keys)
        async for keys in redis.scan_key_batches(match="once:*", batch=batch):
            report.dedupe += await redis.drop_keys_without_expiry(keys=keys)
        async for keys in redis.scan_key_batches(match="locks:*", batch=batch):
            report.locks += await redis.drop_keys_without_expiry(keys=keys)
        fsm_match = f"{self._fsm_prefix}:*"
        try:
            async with aclosing(redis.scan_key_batches(match=fsm_match, batch=batch)) as pages:
                async for keys in pages:
                    report.fsm += await self._drop_fsm(keys)
            if self._retention is not None:
                report.inactive = await self._forget_inactive()
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

    async def _forget_inactive(self) -> int:
        assert self._retention is not None
        with self._db.outage_as_unavailable():
            telegram_ids = await self._retention_store.forget_inactive_users(
                inactive_since=self._clock() - self._retention
            )
        for telegram_id in telegram_ids:
            await self._redis.delete_user_session(telegram_id=telegram_id)
        return len(telegram_ids)

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
        return await self._redis.drop_session_orphans(keys=chosen, session_ids=ids)

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
        with self._db.outage_as_unavailable():
            linked = await self._retention_store.get_linked_telegram_ids(
                telegram_ids=list(owners.values())
            )
        pairs = [
            (f"{base}:state", f"{base}:data")
            for base, user_id in owners.items()
            if user_id not in linked
        ]
        return await self._redis.drop_fsm_keys(pairs=pairs, keep_states=self._keep_states)
