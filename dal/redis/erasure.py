"""Redis's part of an erasure request (`attn forget-user`, dal/pg/erasure.py for PostgreSQL).

Every key whose name carries the person's Telegram id or school number as one `:` part goes
(their linked-account copy, its undeliverable marker, login prompt, location wait, throttle
counters, conversation state, flood-budget slot of their chat, dedupe markers naming them), and
every outbox entry addressed to them or spelling their number or name. Live sessions are not
touched: `live_sessions_of` finds the ones that still hold the person, and the caller refuses
until finalization has moved them to PostgreSQL.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from typing import Any

import redis.asyncio as aioredis

from dal.models import CachedAccount, LiveSession
from dal.pg.erasure import erase_slot_key
from dal.redis import keys
from dal.redis.outbox import Outbox, OutboxLanes

__all__ = ["RedisErasure"]

# Keys never deleted by name: live sessions (refused beforehand), the outbox stream (entries
# are removed one by one), job locks.
_KEPT_PREFIXES = (keys.SESSION_PREFIX, keys.RECORDS_PREFIX, keys.OUTBOX_STREAM, "locks:")


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


class RedisErasure:
    def __init__(self, redis: aioredis.Redis, outbox: Outbox | OutboxLanes) -> None:
        self._redis = redis
        self._outboxes = outbox.outboxes if isinstance(outbox, OutboxLanes) else [outbox]

    async def live_sessions_of(self, *, school_number: str) -> list[str]:
        """Ids of the sessions not yet finalized that the person teaches, is enrolled in or
        checked in to."""
        found: list[str] = []
        members: list[Any] = list(await self._redis.zrange(keys.DUE, 0, -1))
        for raw in members:
            session_id = _text(raw)
            async with self._redis.pipeline(transaction=False) as pipe:
                pipe.get(keys.attendance(session_id))
                pipe.hexists(keys.records(session_id), school_number)
                pipe.sismember(keys.enrolled(session_id), school_number)
                data, checked_in, enrolled = await pipe.execute()
            teaches = (
                data is not None
                and LiveSession.model_validate_json(data).teacher_school_number == school_number
            )
            if teaches or checked_in or enrolled:
                found.append(session_id)
        return found

    async def erase(
        self,
        *,
        school_number: str,
        telegram_id: int | None,
        texts: Iterable[str] = (),
        name_key: str = "",
    ) -> tuple[int, int]:
        """Delete the person's keys and outbox entries, and take a teacher's `name_key` out of
        the lesson slots cached in other accounts' copies; (keys deleted, entries dropped)."""
        parts = {school_number} | ({str(telegram_id)} if telegram_id is not None else set())
        doomed: list[str] = []
        cached: list[str] = []
        async for raw in self._redis.scan_iter(count=1000):
            key = _text(raw)
            if key.startswith(_KEPT_PREFIXES):
                continue
            if parts & set(key.split(":")):
                doomed.append(key)
            elif key.startswith("users:") and key.count(":") == 1:
                cached.append(key)
        if name_key:
            for key in cached:
                await self._erase_slots(key, name_key)
        for start in range(0, len(doomed), 500):
            await self._redis.delete(*doomed[start : start + 500])
        spelled = [t for t in {school_number, *texts} if t]
        return len(doomed), await self._drop_entries(telegram_id, spelled)

    async def _erase_slots(self, key: str, name_key: str) -> None:
        data = await self._redis.get(key)
        if data is None or name_key not in _text(data):
            return
        user = CachedAccount.model_validate_json(data)
        slots = [erase_slot_key(slot, name_key) for slot in user.slots]
        if slots != user.slots:
            updated = user.model_copy(update={"slots": slots}).model_dump_json()
            await self._redis.set(key, updated, keepttl=True, xx=True)

    async def _drop_entries(self, telegram_id: int | None, spelled: list[str]) -> int:
        total = 0
        for outbox in self._outboxes:  # every lane
            total += await self._drop_lane_entries(outbox, telegram_id, spelled)
        return total

    async def _drop_lane_entries(
        self, outbox: Outbox, telegram_id: int | None, spelled: list[str]
    ) -> int:
        dropped: list[str] = []
        start = "-"
        while True:
            page: list[Any] = list(
                await self._redis.xrange(outbox.stream, start, "+", count=500) or ()
            )
            for raw_id, fields in page:
                entry_id = _text(raw_id)
                payload = _text((fields or {}).get(b"n", (fields or {}).get("n", b"")))
                try:
                    recipient = json.loads(payload).get("t")
                except (ValueError, AttributeError):
                    recipient = None
                if (telegram_id is not None and recipient == telegram_id) or any(
                    s in payload for s in spelled
                ):
                    dropped.append(entry_id)
            if len(page) < 500:
                break
            start = "(" + _text(page[-1][0])
        await outbox.ack(dropped)
        return len(dropped)
