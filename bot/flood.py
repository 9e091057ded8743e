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
The script reads the clock with Redis's TIME, so replicas on different hosts agree.

Pacing is set a little under the nominal rate (`margin`): Telegram and the local Bot API
server count arrivals, and network jitter can bring two sends closer than the reserved
spacing; 3 % headroom keeps a strict 30/s bucket from answering 429.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import Sequence
from typing import Final, Protocol

import redis.asyncio as aioredis
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

log = logging.getLogger(__name__)

_GCRA_LUA: Final = """
-- KEYS: 1 global TAT, 2 pause
-- ARGV: 1 global interval ms, 2 global tolerance ms, 3 horizon ms, then per asker three values:
--       chat TAT key ('' for none), chat interval ms, chat tolerance ms
-- Answers, per asker in order, {granted, wait ms, by_chat}: granted 1 means a slot `wait` ms
-- from now is reserved; granted 0 means the next slot is further away than the horizon: nothing
-- reserved, ask again later. by_chat 1: the chat's own limit, not the bot's, sets the wait.
-- (Chat keys come as arguments: a single Redis server, as in dal/redis_client.py.)
redis.replicate_commands()
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + tonumber(t[2]) / 1000
local gi, gt, h = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3])
local g = tonumber(redis.call('GET', KEYS[1]) or '0')
local pause = tonumber(redis.call('GET', KEYS[2]) or '0')
local out = {}
local moved = false
for i = 4, #ARGV, 3 do
  local key, ci, ct = ARGV[i], tonumber(ARGV[i + 1]), tonumber(ARGV[i + 2])
  local at = math.max(now, g - gt, pause)
  local c, by_chat = 0, 0
  if key ~= '' then
    c = tonumber(redis.call('GET', key) or '0')
    if c - ct > at then
      at = c - ct
      by_chat = 1
    end
  end
  -- Integer replies truncate: round waits up, so 0.3 ms is not read as "now".
  if at - now > h then
    out[#out + 1] = 0
  else
    g = math.max(g, at) + gi
    moved = true
    if key ~= '' then
      local nc = math.max(c, at) + ci
      redis.call('SET', key, nc, 'PX', math.ceil(nc - now + 1000))
    end
    out[#out + 1] = 1
  end
  out[#out + 1] = math.ceil(at - now)
  out[#out + 1] = by_chat
end
if moved then
  redis.call('SET', KEYS[1], g, 'PX', math.ceil(g - now + 1000))
end
return out
"""

_PAUSE_LUA: Final = """
-- KEYS: 1 pause, 2 chat TAT (or ''); ARGV: 1 seconds
redis.replicate_commands()
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + tonumber(t[2]) / 1000
local untl = now + math.floor(tonumber(ARGV[1]) * 1000)
local cur = tonumber(redis.call('GET', KEYS[1]) or '0')
if untl > cur then
  redis.call('SET', KEYS[1], untl, 'PX', untl - now + 1000)
end
if KEYS[2] ~= '' then
  local c = tonumber(redis.call('GET', KEYS[2]) or '0')
  if untl > c then redis.call('SET', KEYS[2], untl, 'PX', untl - now + 1000) end
end
return untl - now
"""

ChatId = int | str


class BudgetUnavailable(Exception):
    """The shared budget cannot be asked (Redis is down). The outgoing middleware then paces
    this process on its own limiters, so that answers such as "temporarily unavailable" still
    go out during a Redis outage."""


class Pacer(Protocol):
    """What the outgoing middleware asks before each message (bot/outgoing.py)."""

    async def acquire(self, chat_id: ChatId | None, *, bulk: bool) -> float:
        """Wait for a slot; returns the seconds waited. `BudgetUnavailable` when it cannot
        be asked."""
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
        self._redis = redis
        self._prefix = f"flood:{bot_id}:"
        slow = 1.0 + margin
        self._global = (
            1000.0 * slow / global_rate,
            1000.0 * slow / global_rate * (global_burst - 1),
        )
        self._chat = (1000.0 / per_chat_rate, 1000.0 / per_chat_rate * (per_chat_burst - 1))
        self._group = (1000.0 / group_rate, 1000.0 / group_rate * (group_burst - 1))
        self.poll_max = poll_max
        self._poll_max = poll_max
        # Bulk reserves only a slot that is (nearly) free now; "nearly" (10 ms) so that its
        # own wake-up lateness does not push the budget's schedule back slot after slot.
        self._answers = _Asker(self, horizon, batch=64)
        self._bulk = _Asker(self, 0.010, batch=16)
        self._script = redis.register_script(_GCRA_LUA)
        self._pause_script = redis.register_script(_PAUSE_LUA)

    def _chat_key(self, chat_id: ChatId | None) -> str:
        return "" if chat_id is None else f"{self._prefix}c:{chat_id}"

    def _chat_limits(self, chat_id: ChatId | None) -> tuple[float, float]:
        if chat_id is None:
            return (0.0, 0.0)
        is_group = isinstance(chat_id, str) or chat_id < 0
        return self._group if is_group else self._chat

    async def _ask_many(
        self, chats: Sequence[ChatId | None], horizon: float
    ) -> list[tuple[bool, float, bool]]:
        gi, gt = self._global
        args: list[str] = [f"{gi:.3f}", f"{gt:.3f}", f"{horizon * 1000:.0f}"]
        for chat_id in chats:
            ci, ct = self._chat_limits(chat_id)
            args += [self._chat_key(chat_id), f"{ci:.3f}", f"{ct:.3f}"]
        try:
            flat = await self._script(
                keys=[self._prefix + "g", self._prefix + "pause"], args=args
            )
        except (RedisConnectionError, RedisTimeoutError, OSError) as exc:
            raise BudgetUnavailable(f"flood budget unreachable: {type(exc).__name__}") from exc
        return [
            (bool(flat[i]), max(0.0, float(flat[i + 1]) / 1000.0), bool(flat[i + 2]))
            for i in range(0, len(flat), 3)
        ]

    async def acquire(self, chat_id: ChatId | None, *, bulk: bool) -> float:
        asker = self._bulk if bulk else self._answers
        waited = 0.0
        while True:
            granted, wait = await asker.ask(chat_id)
            if granted:
                if wait > 0:
                    await asyncio.sleep(wait)
                return waited + wait
            # This chat is over its own limit: wait for it without holding up other chats.
            step = min(max(wait - asker.horizon, 0.001), self._poll_max)
            await asyncio.sleep(step)
            waited += step

    async def pause(self, chat_id: ChatId | None, seconds: float) -> None:
        try:
            await self._pause_script(
                keys=[self._prefix + "pause", self._chat_key(chat_id)], args=[f"{seconds:.3f}"]
            )
        except (RedisConnectionError, RedisTimeoutError, OSError) as exc:
            raise BudgetUnavailable(f"flood budget unreachable: {type(exc).__name__}") from exc


class _Asker:
    """Asks the budget for the slots of everyone waiting in this process, in batches.

    Askers queue here in arrival order; one task sends up to `batch` of them per script call.
    Those further than the horizon go back to the front of the queue and the task waits until
    the budget's next slot comes within the horizon (a 429 pause, or a long queue of answers).
    So 10,000 waiting answers cost one Redis call per batch of slots, not one call each.
    """

    def __init__(self, budget: RedisFloodBudget, horizon: float, *, batch: int) -> None:
        self._budget = budget
        self.horizon = horizon
        self._batch = batch
        self._pending: deque[tuple[ChatId | None, asyncio.Future[tuple[bool, float]]]] = deque()
        self._driver: asyncio.Task[None] | None = None

    def ask(self, chat_id: ChatId | None) -> asyncio.Future[tuple[bool, float]]:
        """(granted, wait): a slot reserved `wait` s from now, or the chat's own limit makes
        the caller wait about `wait` before asking again."""
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
                answers = await self._budget._ask_many([c for c, _ in batch], self.horizon)
            except Exception as exc:  # Redis unreachable: every asker of the batch hears it
                for _chat, future in batch:
                    if not future.done():
                        future.set_exception(exc)
                continue
            later: list[tuple[ChatId | None, asyncio.Future[tuple[bool, float]]]] = []
            soonest = None
            for (chat, future), (granted, wait, by_chat) in zip(batch, answers, strict=True):
                if future.done():  # the caller gave up (cancelled); a reserved slot is unused
                    continue
                if granted or by_chat:
                    future.set_result((granted, wait))
                else:
                    later.append((chat, future))
                    soonest = wait if soonest is None else min(soonest, wait)
            if later and soonest is not None:
                self._pending.extendleft(reversed(later))
                await asyncio.sleep(min(max(soonest - self.horizon, 0.001), self._budget.poll_max))
