"""One flood budget per bot token, shared by every replica through Redis.

Telegram counts messages per bot token, not per process: two replicas pacing themselves to
30/s each send 60/s together. `RedisFloodBudget` keeps the budget in Redis with the generic
cell rate algorithm (GCRA), one script call per message:

    flood:<bot id>:g            theoretical arrival time (TAT, ms) of the whole bot
    flood:<bot id>:c:<chat>     TAT of one chat (private chats ~1/s, groups ~20/min)
    flood:<bot id>:pause        until when (ms) every replica holds back after a 429

Two kinds of callers:
- *interactive* (a direct answer to a user's update) **reserves** the next free slot: the
  script moves the TATs forward and answers how long to wait; the caller sleeps that long and
  sends. Reservations queue in arrival order across all replicas. They reach at most
  `horizon` (2 s) ahead: beyond that the caller asks again later, so a process killed with a
  queue of answers leaves at most 2 s of reserved-but-unused budget behind.
- *bulk* (the outbox worker) **takes only a slot that is free now** (within 10 ms): when the
  budget's next slot is further (interactive answers reserved it, or the bot is at its rate) nothing
  is reserved and the answer is how long to wait before asking again. Bulk therefore uses only
  what interactive traffic leaves.

A 429's `retry_after` is written to the pause key, and both kinds wait it out on every replica.
The scripts (dal/redis/flood.py) read the clock with Redis's TIME, so replicas on different
hosts agree.

Pacing is set a little under the nominal rate (`margin`): Telegram and the local Bot API
server count arrivals, and network jitter can bring two sends closer than the reserved
spacing; 3 % headroom keeps a strict 30/s bucket from answering 429.

A reserved slot is a moment, not a right to send later. When a replica's event loop stalls
(a long garbage collection, a CPU-bound step, an overloaded host) while its senders sleep
towards their slots, they all wake together after the stall: sending then would put every
missed slot on top of the slots the other replicas hold now, a burst the budget never
granted. So a slot found more than one interval late is given up and a fresh one reserved
(at most `MAX_REBOOKS` times per message; the past slot simply went unused).
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import Sequence
from typing import Protocol

import redis.asyncio as aioredis
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from dal.redis.flood import ChatId, FloodCells

log = logging.getLogger(__name__)

# How often one message may give up a slot it woke too late for before it is sent anyway (a
# host so loaded that every wake-up is late still delivers, a little bunched).
MAX_REBOOKS = 3


class BudgetUnavailable(Exception):
    """The shared budget cannot be asked (Redis is down). The outgoing middleware then paces
    this process on its own limiters, so that answers such as "temporarily unavailable" still
    go out during a Redis outage."""


class Pacer(Protocol):
    """What the outgoing middleware asks before each message (bot/outgoing.py)."""

    async def acquire(self, chat_id: ChatId | None, *, bulk: bool, paid: bool = False) -> float:
        """Wait for a slot; returns the seconds waited. `BudgetUnavailable` when it cannot
        be asked. `paid`: a paid broadcast, outside the bot's rate (only the chat's counts)."""
        ...

    async def pause(self, chat_id: ChatId | None, seconds: float) -> None:
        """Telegram answered 429: hold everything back for `seconds`. `BudgetUnavailable`
        when it cannot be told."""
        ...


class RedisFloodBudget:
    """The shared budget (see the module docstring)."""

    def __init__(
        self,
        redis: aioredis.Redis,
        *,
        bot_id: int | str,
        global_rate: float = 30.0,
        global_burst: int = 1,
        per_chat_rate: float = 1.0,
        per_chat_burst: int = 3,
        group_rate: float = 20.0 / 60.0,
        group_burst: int = 3,
        margin: float = 0.03,
        horizon: float = 2.0,
        poll_max: float = 0.25,
    ) -> None:
        self._cells = FloodCells(redis, bot_id=bot_id)
        slow = 1.0 + margin
        self._global = (
            1000.0 * slow / global_rate,
            1000.0 * slow / global_rate * (global_burst - 1),
        )
        self._chat = (1000.0 / per_chat_rate, 1000.0 / per_chat_rate * (per_chat_burst - 1))
        self._group = (1000.0 / group_rate, 1000.0 / group_rate * (group_burst - 1))
        self.poll_max = poll_max
        self._poll_max = poll_max
        # A slot woken up for later than this is past (see the module docstring): one global
        # interval, and never under 20 ms so that ordinary wake-up jitter does not rebook.
        self._late = max(self._global[0] / 1000.0, 0.020)
        self.rebooked = 0  # slots given up because the loop woke too late for them
        # Bulk reserves only a slot that is (nearly) free now; "nearly" (10 ms) so that its
        # own wake-up lateness does not push the budget's schedule back slot after slot.
        self._answers = _Asker(self, horizon, batch=64)
        self._bulk = _Asker(self, 0.010, batch=16)
        # Paid broadcasts do not take the bot's slots (Telegram bills them instead): only the
        # chat's own limit and a 429 pause apply.
        self._paid = _Asker(self, 0.010, batch=16, paid=True)

    def _chat_limits(self, chat_id: ChatId | None) -> tuple[float, float]:
        if chat_id is None:
            return (0.0, 0.0)
        is_group = isinstance(chat_id, str) or chat_id < 0
        return self._group if is_group else self._chat

    async def _ask_many(
        self, chats: Sequence[ChatId | None], horizon: float, *, paid: bool = False
    ) -> list[tuple[bool, float, bool]]:
        gi, gt = (0.0, 1e12) if paid else self._global
        asks = []
        for chat_id in chats:
            ci, ct = self._chat_limits(chat_id)
            asks.append((chat_id, f"{ci:.3f}", f"{ct:.3f}"))
        try:
            flat = await self._cells.reserve(
                interval_ms=f"{gi:.3f}",
                tolerance_ms=f"{gt:.3f}",
                horizon_ms=f"{horizon * 1000:.0f}",
                chats=asks,
            )
        except (RedisConnectionError, RedisTimeoutError, OSError) as exc:
            raise BudgetUnavailable(f"flood budget unreachable: {type(exc).__name__}") from exc
        return [
            (bool(flat[i]), max(0.0, float(flat[i + 1]) / 1000.0), bool(flat[i + 2]))
            for i in range(0, len(flat), 3)
        ]

    async def acquire(self, chat_id: ChatId | None, *, bulk: bool, paid: bool = False) -> float:
        asker = self._paid if paid else self._bulk if bulk else self._answers
        loop = asyncio.get_running_loop()
        started = loop.time()
        rebooks = 0
        while True:
            granted, due = await asker.ask(chat_id)
            now = loop.time()
            if granted:
                if due > now:
                    await asyncio.sleep(due - now)
                    now = loop.time()
                if not paid and now - due > self._late and rebooks < MAX_REBOOKS:
                    rebooks += 1
                    self.rebooked += 1
                    continue
                return now - started
            # This chat is over its own limit: wait for it without holding up other chats.
            await asyncio.sleep(min(max(due - now - asker.horizon, 0.001), self._poll_max))

    async def booked_ahead(self) -> float:
        """Seconds until the budget's next free slot (0: room now). The status board backs its
        edits off while this stays high (bot/status_message.py)."""
        try:
            return await self._cells.booked_ms() / 1000.0
        except (RedisConnectionError, RedisTimeoutError, OSError) as exc:
            raise BudgetUnavailable(f"flood budget unreachable: {type(exc).__name__}") from exc

    async def pause(self, chat_id: ChatId | None, seconds: float) -> None:
        try:
            await self._cells.pause(chat_id=chat_id, seconds=f"{seconds:.3f}")
        except (RedisConnectionError, RedisTimeoutError, OSError) as exc:
            raise BudgetUnavailable(f"flood budget unreachable: {type(exc).__name__}") from exc


class _Asker:
    """Asks the budget for the slots of everyone waiting in this process, in batches.

    Askers queue here in arrival order; one task sends up to `batch` of them per script call.
    Those further than the horizon go back to the front of the queue and the task waits until
    the budget's next slot comes within the horizon (a 429 pause, or a long queue of answers).
    So 10,000 waiting answers cost one Redis call per batch of slots, not one call each.
    """

    def __init__(
        self, budget: RedisFloodBudget, horizon: float, *, batch: int, paid: bool = False
    ) -> None:
        self._budget = budget
        self._paid = paid
        self.horizon = horizon
        self._batch = batch
        self._pending: deque[tuple[ChatId | None, asyncio.Future[tuple[bool, float]]]] = deque()
        self._driver: asyncio.Task[None] | None = None

    def ask(self, chat_id: ChatId | None) -> asyncio.Future[tuple[bool, float]]:
        """(granted, due): a slot reserved at `due` (the event loop's clock, taken when the
        budget answered), or the chat's own limit makes the caller wait until about `due`
        before asking again."""
        future: asyncio.Future[tuple[bool, float]] = asyncio.get_running_loop().create_future()
        self._pending.append((chat_id, future))
        if self._driver is None or self._driver.done():
            self._driver = asyncio.create_task(self._drive())
        return future

    async def _drive(self) -> None:
        while self._pending:
            batch = [self._pending.popleft() for _ in range(min(self._batch, len(self._pending)))]
            batch = [(chat, future) for chat, future in batch if not future.done()]
            if not batch:
                continue
            try:
                answers = await self._budget._ask_many(
                    [c for c, _ in batch], self.horizon, paid=self._paid
                )
            except Exception as exc:  # Redis unreachable: every asker of the batch hears it
                for _chat, future in batch:
                    if not future.done():
                        future.set_exception(exc)
                continue
            answered = asyncio.get_running_loop().time()
            later: list[tuple[ChatId | None, asyncio.Future[tuple[bool, float]]]] = []
            soonest = None
            for (chat, future), (granted, wait, by_chat) in zip(batch, answers, strict=True):
                if future.done():  # the caller gave up (cancelled); a reserved slot is unused
                    continue
                if granted or by_chat:
                    future.set_result((granted, answered + wait))
                else:
                    later.append((chat, future))
                    soonest = wait if soonest is None else min(soonest, wait)
            if later and soonest is not None:
                self._pending.extendleft(reversed(later))
                await asyncio.sleep(min(max(soonest - self.horizon, 0.001), self._budget.poll_max))
