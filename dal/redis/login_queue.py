"""The portal sign-on queue in Redis: sign-ons beyond the portal's pace wait here, shared by
every replica and kept across restarts (services/login_queue.py decides what goes in).

A ticket is a hash (`keys.login_ticket`) with an expiry; its id waits in `loginq:waiting`
in arrival order. `claim` takes the head atomically together with a turn of the portal's
per-minute counter (the one `AccountService` counts direct sign-ons on), so a turn is never
used without a sign-on nor a sign-on started beyond the pace; a claim lapses after its
seconds (the replica died) and the ticket goes back to the head of the line. `finish` ends the
claim, drops the sealed credentials and keeps the result for the page to read.
"""

from __future__ import annotations

import redis.asyncio as aioredis

from dal.redis import keys, scripts
from dal.redis.base import Store

__all__ = ["LoginQueueStore"]


class LoginQueueStore(Store):
    def __init__(self, redis: aioredis.Redis, *, url: str = "redis://") -> None:
        super().__init__(redis, url=url)
        self._add_script = scripts.register(redis, "login_queue_add")
        self._claim_script = scripts.register(redis, "login_queue_claim")
        self._finish_script = scripts.register(redis, "login_queue_finish")

    async def add(self, *, ticket_id: str, fields: dict[str, str], ttl_seconds: int) -> int:
        """Queue a ticket at the end of the line; its 1-based place."""
        args: list[str | int] = [ticket_id, ttl_seconds]
        for name, value in fields.items():
            args += [name, value]
        with self._errors:
            place = await self._add_script(
                keys=[keys.LOGIN_SEQ, keys.LOGIN_WAITING, keys.login_ticket(ticket_id)], args=args
            )
        return int(place)

    async def claim(
        self,
        *,
        counter_key: str,
        per_window: int,
        window_seconds: int,
        claim_seconds: int,
        limit: int,
    ) -> list[str]:
        """Ticket ids taken from the head of the line, one portal turn each."""
        with self._errors:
            claimed = await self._claim_script(
                keys=[keys.LOGIN_WAITING, keys.LOGIN_CLAIMED, counter_key],
                args=[per_window, window_seconds, claim_seconds, limit],
            )
        return [str(x) for x in claimed]

    async def finish(self, *, ticket_id: str, result: str, ttl_seconds: int) -> bool:
        """End this caller's claim with `result`; False when the claim had lapsed."""
        with self._errors:
            done = await self._finish_script(
                keys=[keys.LOGIN_CLAIMED, keys.login_ticket(ticket_id)],
                args=[ticket_id, result, ttl_seconds],
            )
        return int(done) == 1

    async def release(self, *, ticket_id: str) -> None:
        """Give up this caller's claim now (the process is stopping mid sign-on): it lapses at
        once, so the next `claim` puts the ticket back at the head of the line instead of
        after the claim's seconds. Nothing happens to a claim already finished."""
        with self._errors:
            await self._redis.zadd(keys.LOGIN_CLAIMED, {ticket_id: 0}, xx=True)

    async def get(self, *, ticket_id: str) -> dict[str, str]:
        """The ticket's fields; empty when it has expired."""
        with self._errors:
            raw = await self._redis.hgetall(keys.login_ticket(ticket_id))
        return {str(k): str(v) for k, v in raw.items()}

    async def set_field(self, *, ticket_id: str, name: str, value: str) -> None:
        with self._errors:
            await self._redis.hset(keys.login_ticket(ticket_id), name, value)

    async def place(self, *, ticket_id: str) -> int | None:
        """1-based place in line; 0 while being signed on; None when not queued (done)."""
        with self._errors:
            async with self._redis.pipeline(transaction=False) as pipe:
                pipe.zrank(keys.LOGIN_WAITING, ticket_id)
                pipe.zscore(keys.LOGIN_CLAIMED, ticket_id)
                rank, claimed = await pipe.execute()
        if rank is not None:
            return int(rank) + 1
        return 0 if claimed is not None else None

    async def waiting_count(self) -> int:
        with self._errors:
            return int(await self._redis.zcard(keys.LOGIN_WAITING))

    async def waiting(self, *, limit: int) -> list[str]:
        """The first `limit` ticket ids in line, in order."""
        with self._errors:
            ids = await self._redis.zrange(keys.LOGIN_WAITING, 0, limit - 1)
        return [str(x) for x in ids]
