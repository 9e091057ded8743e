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
from typing import Final, Protocol

import redis.asyncio as aioredis

log = logging.getLogger(__name__)

_GCRA_LUA: Final = """
-- KEYS: 1 global TAT, 2 chat TAT (or '' for none), 3 pause
-- ARGV: 1 global interval ms, 2 global tolerance ms, 3 chat interval ms,
--       4 chat tolerance ms, 5 horizon ms (0 for bulk)
-- Answers {granted, wait ms, by_chat}: granted 1 means a slot `wait` ms from now is reserved;
-- granted 0 means the next slot is further away than the horizon: nothing reserved, ask again
-- later. by_chat 1: the chat's own limit, not the bot's, sets the wait.
redis.replicate_commands()
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + tonumber(t[2]) / 1000
local gi, gt = tonumber(ARGV[1]), tonumber(ARGV[2])
local ci, ct = tonumber(ARGV[3]), tonumber(ARGV[4])
local g = tonumber(redis.call('GET', KEYS[1]) or '0')
local at = math.max(now, g - gt, tonumber(redis.call('GET', KEYS[3]) or '0'))
local c = 0
local by_chat = 0
if KEYS[2] ~= '' then
  c = tonumber(redis.call('GET', KEYS[2]) or '0')
  if c - ct > at then
    at = c - ct
    by_chat = 1
  end
end
-- Integer replies truncate: round waits up, so 0.3 ms is not read as "now".
if at - now > tonumber(ARGV[5]) then
  return {0, math.ceil(at - now), by_chat}
end
local ng = math.max(g, at) + gi
redis.call('SET', KEYS[1], ng, 'PX', math.ceil(ng - now + 1000))
if KEYS[2] ~= '' then
  local nc = math.max(c, at) + ci
  redis.call('SET', KEYS[2], nc, 'PX', math.ceil(nc - now + 1000))
end
return {1, math.ceil(at - now), by_chat}
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


class Pacer(Protocol):
    """What the outgoing middleware asks before each message (bot/outgoing.py)."""

    async def acquire(self, chat_id: ChatId | None, *, bulk: bool) -> float:
        """Wait for a slot; returns the seconds waited."""
        ...

    async def pause(self, chat_id: ChatId | None, seconds: float) -> None:
        """Telegram answered 429: hold everything back for `seconds`."""
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
        self._horizon = horizon
        self._bulk_lead = 0.010
        self._answer_turn = asyncio.Lock()
        self._bulk_turn = asyncio.Lock()
        self._poll_max = poll_max
        self._script = redis.register_script(_GCRA_LUA)
        self._pause_script = redis.register_script(_PAUSE_LUA)

    def _chat_key(self, chat_id: ChatId | None) -> str:
        return "" if chat_id is None else f"{self._prefix}c:{chat_id}"

    def _chat_limits(self, chat_id: ChatId | None) -> tuple[float, float]:
        if chat_id is None:
            return (0.0, 0.0)
        is_group = isinstance(chat_id, str) or chat_id < 0
        return self._group if is_group else self._chat

    async def _ask(self, chat_id: ChatId | None, horizon_ms: float) -> tuple[bool, float, bool]:
        ci, ct = self._chat_limits(chat_id)
        gi, gt = self._global
        granted, wait_ms, by_chat = await self._script(
            keys=[self._prefix + "g", self._chat_key(chat_id), self._prefix + "pause"],
            args=[f"{gi:.3f}", f"{gt:.3f}", f"{ci:.3f}", f"{ct:.3f}", f"{horizon_ms:.0f}"],
        )
        return bool(granted), max(0.0, float(wait_ms) / 1000.0), bool(by_chat)

    async def acquire(self, chat_id: ChatId | None, *, bulk: bool) -> float:
        # Bulk reserves only a slot that is (nearly) free now; "nearly" (10 ms) so that its
        # own wake-up lateness does not push the budget's schedule back slot after slot.
        horizon = self._bulk_lead if bulk else self._horizon
        # One asker per kind in this process talks to Redis; the others queue here in order,
        # so 10,000 waiting answers cost one Redis call per slot, not one each.
        turn = self._bulk_turn if bulk else self._answer_turn
        waited = 0.0
        while True:
            async with turn:
                while True:
                    granted, wait, by_chat = await self._ask(chat_id, horizon * 1000)
                    if granted or by_chat:
                        break
                    # Further than the horizon (for bulk: an answer may take the slot first).
                    step = min(max(wait - horizon, 0.001), self._poll_max)
                    await asyncio.sleep(step)
                    waited += step
            if granted:
                if wait > 0:
                    await asyncio.sleep(wait)
                return waited + wait
            # This chat is over its own limit: wait for it without holding up other chats.
            step = min(max(wait - horizon, 0.001), self._poll_max)
            await asyncio.sleep(step)
            waited += step

    async def pause(self, chat_id: ChatId | None, seconds: float) -> None:
        await self._pause_script(
            keys=[self._prefix + "pause", self._chat_key(chat_id)], args=[f"{seconds:.3f}"]
        )
