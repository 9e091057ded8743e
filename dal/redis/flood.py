"""The cells of the shared flood budget (GCRA, policy and pacing in bot/flood.py):

    flood:<bot id>:g            theoretical arrival time (TAT, ms) of the whole bot
    flood:<bot id>:c:<chat>     TAT of one chat
    flood:<bot id>:pause        until when (ms) every replica holds back after a 429

Both scripts read Redis's clock (`redis_now()`), so replicas on different hosts agree. Errors
are the driver's own: the caller turns them into its `BudgetUnavailable`.
"""

from __future__ import annotations

from collections.abc import Sequence

import redis.asyncio as aioredis

from dal.redis import keys, scripts

__all__ = ["ChatId", "FloodCells"]

ChatId = int | str


class FloodCells:
    """One bot token's budget cells (lua/flood_reserve.lua, lua/flood_pause.lua)."""

    def __init__(self, redis: aioredis.Redis, *, bot_id: int | str) -> None:
        self._redis = redis
        self._prefix = keys.flood_prefix(bot_id)
        self._reserve = scripts.register(redis, "flood_reserve")
        self._pause = scripts.register(redis, "flood_pause")

    def _chat_key(self, chat_id: ChatId | None) -> str:
        return "" if chat_id is None else f"{self._prefix}c:{chat_id}"

    async def reserve(
        self,
        *,
        interval_ms: str,
        tolerance_ms: str,
        horizon_ms: str,
        chats: Sequence[tuple[ChatId | None, str, str]],
    ) -> list[int]:
        """One reservation per (chat, chat interval ms, chat tolerance ms); the flat answer of
        lua/flood_reserve.lua: granted, wait ms, by_chat for each, in order."""
        script_keys = [self._prefix + "g", self._prefix + "pause"]
        args = [interval_ms, tolerance_ms, horizon_ms]
        for chat_id, chat_interval, chat_tolerance in chats:
            script_keys.append(self._chat_key(chat_id))
            args += [chat_interval, chat_tolerance]
        answer: list[int] = await self._reserve(keys=script_keys, args=args)
        return answer

    async def booked_ms(self) -> float:
        """How far (ms) the bot's next free slot lies ahead of Redis's clock: reserved answers,
        or a 429 pause. 0 when the budget has room now."""
        async with self._redis.pipeline(transaction=False) as pipe:
            pipe.get(self._prefix + "g")
            pipe.get(self._prefix + "pause")
            pipe.time()
            tat, pause, (seconds, micros) = await pipe.execute()
        now = seconds * 1000.0 + micros / 1000.0
        return float(max(0.0, float(tat or 0) - now, float(pause or 0) - now))

    async def pause(self, *, chat_id: ChatId | None, seconds: str) -> None:
        """Hold every replica back for `seconds` (and the chat, when given)."""
        await self._pause(keys=[self._prefix + "pause", self._chat_key(chat_id)], args=[seconds])
