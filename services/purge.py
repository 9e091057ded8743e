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
`users:<telegram id>` and `users:<telegram id>:undeliverable` keys (`inactive`); and excuse
requests decided that long ago. Attendance records stay: they are the institution's.

The session key `attendances:{id}` itself is never deleted here: a session leaves Redis only
through finalization. Each check ("is the session gone?", "is the key still without expiry?",
"is the state still the one read?") runs inside the same script call as the delete, so a session
opened or a key rewritten between the SCAN and the delete is left alone.

Every Redis operation (the scans and the check-and-delete scripts) is a `PurgeStore` method
(`scan_key_batches`, `scan_due_id_batches`, `drop_*`), which also turns connection failures
into `RedisUnavailable`; key patterns and the reading of key names are dal/redis/keys.py's;
this module only decides which keys to examine and counts.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Collection, Sequence
from contextlib import aclosing
from dataclasses import asdict, dataclass
from datetime import UTC, datetime, timedelta

from dal.errors import DatabaseUnavailable
from dal.pg import Database, ExcuseStore, RetentionStore
from dal.redis import keys
from dal.redis.accounts import UserStore
from dal.redis.purge import PurgeStore
from services.outage import OutageLog

__all__ = ["PurgeReport", "Purger"]

log = logging.getLogger(__name__)


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
        purge: PurgeStore,
        user_store: UserStore,
        keep_fsm_states: Collection[str] = (),
        fsm_prefix: str = "fsm",
        batch: int = 500,
        retention_days: int | None = None,
        excuses: ExcuseStore | None = None,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self._db = db
        self._retention_store = retention
        self._purge = purge
        self._user_store = user_store
        self._keep_states = sorted(keep_fsm_states)
        self._fsm_prefix = fsm_prefix
        self._batch = batch
        self._pg_outage = OutageLog("PostgreSQL (purge of FSM keys)", log)
        self._retention = None if retention_days is None else timedelta(days=retention_days)
        self._clock = clock
        self._excuses = excuses

    async def run_once(self) -> PurgeReport:
        """One pass over the key space. Raises `RedisUnavailable` if Redis fails."""
        report = PurgeReport()
        store, batch = self._purge, self._batch
        async for found in store.scan_key_batches(match=keys.CODE_PATTERN, batch=batch):
            report.codes += await store.drop_dangling_pointers(keys=found)
        async for found in store.scan_key_batches(match=keys.TEACHER_PATTERN, batch=batch):
            report.teacher_pointers += await store.drop_dangling_pointers(keys=found)
        async for found in store.scan_key_batches(match=keys.RECORDS_PATTERN, batch=batch):
            report.records += await self._drop_session_parts(found, suffix="")
        async for found in store.scan_key_batches(match=keys.SESSION_PARTS_PATTERN, batch=batch):
            report.enrolled += await self._drop_session_parts(found, suffix=":enrolled")
            report.claims += await self._drop_session_parts(found, suffix=":claim")
        async for ids in store.scan_due_id_batches(batch=batch):
            report.due += await store.drop_due_orphans(ids=ids)
        async for found in store.scan_key_batches(match=keys.THROTTLE_PATTERN, batch=batch):
            report.throttles += await store.drop_keys_without_expiry(keys=found)
        async for found in store.scan_key_batches(match=keys.ONCE_PATTERN, batch=batch):
            report.dedupe += await store.drop_keys_without_expiry(keys=found)
        async for found in store.scan_key_batches(match=keys.LOCK_PATTERN, batch=batch):
            report.locks += await store.drop_keys_without_expiry(keys=found)
        fsm_match = keys.fsm_pattern(self._fsm_prefix)
        try:
            async with aclosing(store.scan_key_batches(match=fsm_match, batch=batch)) as pages:
                async for found in pages:
                    report.fsm += await self._drop_fsm(found)
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
            cutoff = self._clock() - self._retention
            telegram_ids = await self._retention_store.forget_inactive_users(inactive_since=cutoff)
            if self._excuses is not None:  # their reasons and documents: personal data
                await self._excuses.delete_decided_before(before=cutoff)
        for telegram_id in telegram_ids:
            await self._user_store.forget_account(telegram_id=telegram_id)
        return len(telegram_ids)

    async def _drop_session_parts(self, found: Sequence[str], *, suffix: str) -> int:
        """Drop the keys ending in `suffix` (exactly) whose session key is gone."""
        chosen: list[str] = []
        ids: list[str] = []
        for key in found:
            part = keys.session_part(key)
            if part is None or part[1] != suffix:
                continue
            chosen.append(key)
            ids.append(part[0])
        return await self._purge.drop_session_orphans(keys=chosen, session_ids=ids)

    async def _drop_fsm(self, found: Sequence[str]) -> int:
        """FSM keys `<prefix>:<chat>[:<thread>]:<user>:(state|data)` of unlinked accounts."""
        owners: dict[str, int] = {}  # key base -> Telegram user id
        for key in found:
            owner = keys.fsm_owner(key)
            if owner is not None:  # aiogram's per-user locks expire by themselves
                owners[owner[0]] = owner[1]
        if not owners:
            return 0
        with self._db.outage_as_unavailable():
            linked = await self._retention_store.get_linked_telegram_ids(
                telegram_ids=list(owners.values())
            )
        pairs = [keys.fsm_pair(base) for base, user_id in owners.items() if user_id not in linked]
        return await self._purge.drop_fsm_keys(pairs=pairs, keep_states=self._keep_states)
