"""The durable outbox: notices waiting to be sent, in a Redis Stream read by a consumer group.

    outbox                      stream; each entry `n` = one notice, an opaque string (its
                                form is services/notice_codec.py's; this module never reads it)
    outbox group `delivery`     one consumer per bot process; an entry read by a consumer stays
                                in the group's pending list (PEL) until that consumer acks it
    outbox:alive:<consumer>     heartbeat of a live consumer (PX expiry, renewed every second)

Why a Stream with a consumer group rather than a list or a queue library: the pending list is
exactly "taken but not yet confirmed", kept by Redis itself, with who took it and since when.
A process killed mid-delivery leaves its entries there; any other process (or the same one after
a restart) takes them over with XCLAIM (consumers whose heartbeat has expired) or XAUTOCLAIM
(anything idle far too long), so nothing is lost and nothing needs a second bookkeeping
structure. XADD, XREADGROUP, XACK, XCLAIM and XAUTOCLAIM are all in Redis 6.2. A list with
BLMOVE needs its own "processing" lists per consumer and scans to recover them; RQ/arq/Celery
bring a job model, pickling and their own workers for what is one stream and a loop here.

Delivery is at least once: an entry is acked (XACK + XDEL, one MULTI) only after Telegram
accepted the message, so a crash between the two resends at most the entries that were in
flight (a small window per process). Entries are never trimmed by length: every one is acked
or deliberately dropped (stale, undeliverable, or past its attempts).

`add(..., once=key)` sets a dedupe marker and appends the entries in one Lua script, so a step
that is retried after a crash enqueues its notices exactly once.

Staleness conditions are handed in by the caller as opaque strings too (one per entry, spelled
by services/notice_codec.py), and evaluated for a whole batch in one script
(lua/outbox_check_stale.lua), against the session keys of dal/redis/keys.py.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Final

import redis.asyncio as aioredis
from redis.exceptions import ResponseError

from dal.redis import keys, scripts

logger = logging.getLogger(__name__)

STREAM: Final = keys.OUTBOX_STREAM
GROUP: Final = keys.OUTBOX_GROUP
# The value of a plain once-marker (`add(..., once=...)` without a state).
ONCE_MARKED: Final = "1"


@dataclass(frozen=True, slots=True)
class Entry:
    """One stream entry: its stream id (the delivery id) and its payload."""

    id: str
    payload: str
    stream: str = STREAM  # the lane's stream it was read from (ids are unique per stream)

    @property
    def key(self) -> tuple[str, str]:
        return (self.stream, self.id)


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


def _entries(raw: Any, stream: str) -> tuple[list[Entry], list[str]]:
    """(the entries, the ids of pending entries whose message was deleted meanwhile)."""
    out: list[Entry] = []
    gone: list[str] = []
    for entry_id, fields in raw or ():
        payload = fields.get(b"n", fields.get("n")) if fields else None
        if payload is None:  # deleted while pending: nothing left to deliver
            gone.append(_text(entry_id))
        else:
            out.append(Entry(_text(entry_id), _text(payload), stream))
    return out, gone


class Outbox:
    """The stream and its consumer group (see the module docstring)."""

    def __init__(self, redis: aioredis.Redis, *, stream: str = STREAM, group: str = GROUP) -> None:
        self._redis = redis
        self.stream = stream
        self.group = group
        self._add_once = scripts.register(redis, "outbox_add_once")
        self._check_stale = scripts.register(redis, "outbox_check_stale")
        self._requeue = scripts.register(redis, "outbox_requeue")

    async def ensure_group(self) -> None:
        """Create the consumer group (from the stream's start, so nothing added earlier is
        skipped) and the stream if missing."""
        try:
            await self._redis.xgroup_create(self.stream, self.group, id="0", mkstream=True)
        except ResponseError as exc:
            if "BUSYGROUP" not in str(exc):
                raise

    async def add(
        self, payloads: Sequence[str], *, once: str | None = None, once_ttl: int = 0
    ) -> bool:
        """Append the payloads; with `once`, only if that marker was not set (and set it)."""
        if once is not None:
            ttl = max(1, once_ttl)
            added = await self._add_once(keys=[once, self.stream], args=[ttl, *payloads])
            return bool(added)
        if payloads:
            async with self._redis.pipeline(transaction=True) as pipe:
                for payload in payloads:
                    pipe.xadd(self.stream, {"n": payload})
                await pipe.execute()
        return True

    async def read(
        self, consumer: str, count: int, *, block_ms: int | None, own: bool
    ) -> list[Entry]:
        """New entries for `consumer` (moved to its pending list), or with `own` the ones
        already pending for it (taken over from a dead consumer, or read before a restart)."""
        streams: dict[Any, Any] = {self.stream: "0" if own else ">"}
        while True:
            try:
                answer = await self._redis.xreadgroup(
                    self.group, consumer, streams, count=count, block=block_ms
                )
            except ResponseError as exc:
                if not _group_gone(exc):
                    raise
                await self.ensure_group()  # Redis lost the stream (restart without persistence)
                answer = await self._redis.xreadgroup(
                    self.group, consumer, streams, count=count, block=block_ms
                )
            entries: list[Entry] = []
            gone: list[str] = []
            for item in answer or ():
                found, deleted = _entries(item[1], self.stream)
                entries.extend(found)
                gone.extend(deleted)
            if not gone:
                return entries
            # Out of the pending list, or they would come first in every read of it.
            await self._redis.xack(self.stream, self.group, *gone)
            if entries or not own:
                return entries
            # A page of the pending list that held only deleted entries: read the next one.

    async def ack(self, ids: Sequence[str | Entry]) -> None:
        """Done with these entries (delivered or dropped): out of the pending list and stream."""
        plain = [i.id if isinstance(i, Entry) else i for i in ids]
        if not plain:
            return
        async with self._redis.pipeline(transaction=True) as pipe:
            pipe.xack(self.stream, self.group, *plain)
            pipe.xdel(self.stream, *plain)
            await pipe.execute()

    async def requeue(self, consumer: str, entries: Sequence[Entry]) -> int:
        """Put entries back at the end of the stream (new ids) and drop the taken copies, each
        only while still pending for `consumer` (one script call). Returns how many moved."""
        if not entries:
            return 0
        args: list[str] = [self.group, consumer]
        for entry in entries:
            args += [entry.id, entry.payload]
        moved = await self._requeue(keys=[self.stream], args=args)
        return int(moved)

    async def stale(self, conditions: Sequence[str]) -> list[bool]:
        """For each JSON list of conditions: does one of them hold? (One script call.)"""
        if not conditions:
            return []
        answer = await self._check_stale(keys=[keys.DUE], args=list(conditions))
        return [bool(x) for x in answer]

    # --- consumers --------------------------------------------------------------------

    async def heartbeat(self, consumer: str, ttl_ms: int) -> None:
        await self._redis.set(keys.outbox_alive(consumer), "1", px=ttl_ms)

    async def retire(self, consumer: str) -> None:
        """This consumer stops: its heartbeat goes, so its pending entries are taken over at
        once by any live consumer (or by the next process to start)."""
        await self._redis.delete(keys.outbox_alive(consumer))

    async def take_over_dead(self, consumer: str, *, batch: int = 100) -> int:
        """Move the pending entries of consumers without a heartbeat to `consumer`; forget
        those consumers. Returns how many entries were taken."""
        taken = 0
        try:
            infos = await self._redis.xinfo_consumers(self.stream, self.group)
        except ResponseError as exc:
            if not _group_gone(exc):
                raise
            await self.ensure_group()  # a new group has no consumers to take over from
            return 0
        for info in infos:
            name = _text(info["name"])
            if name == consumer or await self._redis.exists(keys.outbox_alive(name)):
                continue
            while True:
                pending = await self._redis.xpending_range(
                    self.stream, self.group, min="-", max="+", count=batch, consumername=name
                )
                if not pending:
                    break
                ids: list[int | bytes | str | memoryview[int]] = [p["message_id"] for p in pending]
                await self._redis.xclaim(
                    self.stream,
                    self.group,
                    consumer,
                    min_idle_time=0,
                    message_ids=ids,
                    justid=True,
                )
                taken += len(ids)
            await self._redis.xgroup_delconsumer(self.stream, self.group, name)
            logger.info("took over %d outbox entries of stopped consumer %s", taken, name)
        return taken

    async def take_over_idle(self, consumer: str, *, min_idle_ms: int, count: int = 100) -> int:
        """XAUTOCLAIM: anything pending longer than `min_idle_ms` (a consumer that is alive but
        stuck) moves to `consumer`."""
        try:
            answer = await self._redis.xautoclaim(
                self.stream,
                self.group,
                consumer,
                min_idle_time=min_idle_ms,
                start_id="0-0",
                count=count,
                justid=True,
            )
        except ResponseError as exc:
            if not _group_gone(exc):
                raise
            await self.ensure_group()
            return 0
        claimed = answer[1] if len(answer) > 1 else []
        return len(claimed)

    # --- inspection (tests, bench, status) ---------------------------------------------

    async def backlog(self) -> int:
        """Entries not yet delivered: in the stream, pending or not."""
        length: int = await self._redis.xlen(self.stream)
        return length

    async def overview(self) -> tuple[int, int, int | None]:
        """(entries not yet delivered, of which taken by a worker and not yet confirmed, the
        epoch milliseconds at which the oldest of them was added — None when empty).

        Acknowledged entries are deleted, so the stream's first entry is the oldest one still
        waiting; its id starts with the time Redis added it. One round trip, for /metrics.
        """
        async with self._redis.pipeline(transaction=False) as pipe:
            pipe.xlen(self.stream)
            pipe.xrange(self.stream, "-", "+", count=1)
            length, first = await pipe.execute()
        try:
            in_flight = await self.pending()
        except ResponseError:
            in_flight = 0
        oldest = int(_text(first[0][0]).split("-", 1)[0]) if first else None
        return int(length), in_flight, oldest

    async def pending(self) -> int:
        try:
            summary = await self._redis.xpending(self.stream, self.group)
        except ResponseError:
            return 0
        return int(summary["pending"])


Digest = tuple[str, int, str]
"""(kind, telegram id, the payload of the entry that sends it): notices of one kind to one
recipient that go out as one message."""
Item = tuple[str, str] | tuple[str, str, Digest | None]
"""(lane, payload) or (lane, payload, digest) for `OutboxLanes.add`."""
DIGEST_HOLD_MS: Final = 3_600_000

LANES: Final = ("answer", "urgent", "result", "bulk")
"""The lanes in the order the worker drains them (services.notify names them for callers)."""
DEFAULT_LANE: Final = "bulk"


def lane_stream(lane: str, stream: str = STREAM) -> str:
    """The stream of a lane: the default lane keeps the plain name (entries queued before there
    were lanes are still read), the others get a suffix."""
    return stream if lane == DEFAULT_LANE else f"{stream}:{lane}"


class OutboxLanes:
    """The outbox as prioritised lanes, one stream (and consumer group) each.

    Every notice shares the bot's one flood budget; the lanes decide whose turn a free slot is.
    `read` takes from the first lane that has anything (direct answers that had to wait, then
    time-critical notices, then results, then everything else), so a backlog of 20,000 results
    never holds up an "attendance is open". One stream per lane rather than a priority field:
    a stream can only be read in the order it was written, and XREADGROUP on several streams
    is one call when the worker waits for work.

    Built over one `Outbox` (`single`), every lane is that one stream: the order is then
    first in, first out, as before lanes.
    """

    def __init__(
        self,
        redis: aioredis.Redis,
        *,
        stream: str = STREAM,
        group: str = GROUP,
        lanes: dict[str, Outbox] | None = None,
        digest_hold_ms: int = DIGEST_HOLD_MS,
    ) -> None:
        self._redis = redis
        self.digest_hold_ms = digest_hold_ms
        self.group = group
        self.lanes: dict[str, Outbox] = lanes or {
            lane: Outbox(redis, stream=lane_stream(lane, stream), group=group) for lane in LANES
        }
        self.default = self.lanes[DEFAULT_LANE]
        self.stream = self.default.stream
        seen: dict[str, Outbox] = {}
        for outbox in self.lanes.values():
            seen.setdefault(outbox.stream, outbox)
        self.outboxes = list(seen.values())  # distinct streams, in draining order
        self._by_stream = seen
        self._add_lanes = scripts.register(redis, "outbox_add_lanes")
        self._digest_sent = scripts.register(redis, "outbox_digest_sent")
        self._release = scripts.register(redis, "outbox_release")

    @classmethod
    def single(cls, outbox: Outbox, *, digest_hold_ms: int = DIGEST_HOLD_MS) -> OutboxLanes:
        return cls(
            outbox._redis,
            group=outbox.group,
            lanes=dict.fromkeys(LANES, outbox),
            digest_hold_ms=digest_hold_ms,
        )

    def lane(self, name: str) -> Outbox:
        try:
            return self.lanes[name]
        except KeyError:
            raise ValueError(f"unknown outbox lane {name!r}") from None

    async def ensure_group(self) -> None:
        for outbox in self.outboxes:
            await outbox.ensure_group()

    async def add(
        self,
        items: Sequence[Item],
        *,
        once: str | None = None,
        once_ttl: int = 0,
        once_state: str | None = None,
    ) -> bool:
        """Append the items, each to its lane; with `once`, only if that marker does not hold
        `once_state` already (and set it to that), every lane in the same atomic step. With the
        default state this is "only once"; with a state that names what the notices tell
        (a teacher's decision), a retried step tells it once and a new state is told.

        An item with a digest (kind, telegram id, sender) joins that recipient's digest instead: the
        notices of one kind waiting for one person go out as one message (`digest_items`), and
        after one has gone, the next waits until `digest_hold_ms` has passed (one result
        message per student per hour, however many of their sessions ended)."""
        if once is not None or any(len(item) > 2 and item[2] for item in items):
            script_keys: list[str] = [once or "", keys.OUTBOX_LATER]
            args: list[str | int] = [max(1, once_ttl), once_state or ONCE_MARKED]

            def index(key: str) -> int:
                if key not in script_keys:
                    script_keys.append(key)
                return script_keys.index(key) + 1

            for item in items:
                lane, payload = item[0], item[1]
                digest = item[2] if len(item) > 2 else None
                stream = index(self.lane(lane).stream)
                if digest is None:
                    args += [stream, payload, 0, 0, 0, ""]
                    continue
                kind, telegram_id, sender = digest
                listed, marker, hold = keys.digest(kind, telegram_id)
                args += [stream, payload, index(listed), index(marker), index(hold), sender]
            added = await self._add_lanes(keys=script_keys, args=args)
            return bool(added)
        if items:
            async with self._redis.pipeline(transaction=True) as pipe:
                for item in items:
                    pipe.xadd(self.lane(item[0]).stream, {"n": item[1]})
                await pipe.execute()
        return True

    async def read(
        self, consumer: str, count: int, *, block_ms: int | None, own: bool
    ) -> list[Entry]:
        """Up to `count` entries, from the first lanes first (see the class docstring). When
        every lane is empty, waits up to `block_ms` for any of them: that read may answer
        one entry of each lane that got one meanwhile."""
        entries: list[Entry] = []
        for outbox in self.outboxes:
            if len(entries) >= count:
                break
            entries += await outbox.read(consumer, count - len(entries), block_ms=None, own=own)
        if entries or own or not block_ms:
            return entries
        return await self._wait_any(consumer, block_ms)

    async def _wait_any(self, consumer: str, block_ms: int) -> list[Entry]:
        streams: dict[Any, Any] = {o.stream: ">" for o in self.outboxes}
        try:
            answer: Any = await self._redis.xreadgroup(
                self.group, consumer, streams, count=1, block=block_ms
            )
        except ResponseError as exc:
            if not _group_gone(exc):
                raise
            await self.ensure_group()
            return []
        entries: list[Entry] = []
        for name, raw in answer or ():
            found, gone = _entries(raw, _text(name))
            entries += found
            if gone:
                await self._redis.xack(_text(name), self.group, *gone)
        return entries

    def _group(self, entries: Sequence[Entry]) -> dict[Outbox, list[Entry]]:
        grouped: dict[Outbox, list[Entry]] = {}
        for entry in entries:
            grouped.setdefault(self._by_stream.get(entry.stream, self.default), []).append(entry)
        return grouped

    async def ack(self, entries: Sequence[Entry]) -> None:
        for outbox, some in self._group(entries).items():
            await outbox.ack(some)

    async def requeue(self, consumer: str, entries: Sequence[Entry]) -> int:
        moved = 0
        for outbox, some in self._group(entries).items():
            moved += await outbox.requeue(consumer, some)
        return moved

    async def stale(self, conditions: Sequence[str]) -> list[bool]:
        return await self.default.stale(conditions)

    async def heartbeat(self, consumer: str, ttl_ms: int) -> None:
        await self.default.heartbeat(consumer, ttl_ms)

    async def retire(self, consumer: str) -> None:
        await self.default.retire(consumer)

    async def take_over_dead(self, consumer: str, *, batch: int = 100) -> int:
        taken = 0
        for outbox in self.outboxes:
            taken += await outbox.take_over_dead(consumer, batch=batch)
        return taken

    async def take_over_idle(self, consumer: str, *, min_idle_ms: int, count: int = 100) -> int:
        taken = 0
        for outbox in self.outboxes:
            taken += await outbox.take_over_idle(consumer, min_idle_ms=min_idle_ms, count=count)
        return taken

    async def backlog(self) -> int:
        return sum([await outbox.backlog() for outbox in self.outboxes])

    async def overview(self) -> tuple[int, int, int | None]:
        """Summed over the lanes; the oldest is the oldest entry of any lane."""
        depth, in_flight, oldest = 0, 0, None
        for outbox in self.outboxes:
            d, f, o = await outbox.overview()
            depth, in_flight = depth + d, in_flight + f
            if o is not None:
                oldest = o if oldest is None else min(oldest, o)
        return depth, in_flight, oldest

    async def oldest_ms(self, lanes: Sequence[str]) -> int | None:
        """Epoch ms at which the oldest entry still waiting in these lanes was added."""
        oldest = None
        for name in lanes:
            first: Any = await self._redis.xrange(self.lane(name).stream, "-", "+", count=1)
            if first:
                at = int(_text(first[0][0]).split("-", 1)[0])
                oldest = at if oldest is None else min(oldest, at)
        return oldest

    async def pending(self) -> int:
        return sum([await outbox.pending() for outbox in self.outboxes])

    # --- digests ---------------------------------------------------------------------------

    async def digest_items(self, kind: str, telegram_id: int) -> list[str]:
        """The payloads of the notices waiting in this digest, oldest first."""
        listed, _marker, _hold = keys.digest(kind, telegram_id)
        raw: list[Any] = await self._redis.lrange(listed, 0, -1)
        return [_text(x) for x in raw]

    async def digest_sent(self, entry: Entry, digest: Digest, count: int) -> None:
        """The first `count` notices of the digest went out (0: there was nothing to send):
        the hold starts, and whatever joined meanwhile is due when it ends (its sender entry,
        `digest[2]`, is queued again then)."""
        kind, telegram_id, sender = digest
        listed, marker, hold = keys.digest(kind, telegram_id)
        await self._digest_sent(
            keys=[listed, marker, hold, keys.OUTBOX_LATER],
            args=[count, self.digest_hold_ms, entry.stream, sender],
        )

    async def release_due(self, *, batch: int = 500) -> int:
        """Delayed entries whose time has come into their lanes (one script call)."""
        return int(await self._release(keys=[keys.OUTBOX_LATER], args=[batch]))


def _group_gone(exc: ResponseError) -> bool:
    """The stream or its group no longer exists: Redis restarted without persistence, or the
    keyspace was flushed (a read blocked at that moment is answered UNBLOCKED). `ensure_group`
    recreates both; entries added since are read from 0."""
    text = str(exc)
    return "NOGROUP" in text or "no such key" in text or "UNBLOCKED" in text
