"""Direct answers that a handler hands off instead of awaiting: a small in-process queue.

A check-in handler decides, puts its answer here and returns; it never waits for the flood
budget (bot/flood.py), so 10,000 check-ins arriving at once hold 10,000 small tuples (chat id,
text: a few hundred bytes each) instead of 10,000 suspended handlers with their updates and
middleware data (~35 KB each). A few sender tasks send them as *direct answers*: they go before
outbox notices.

One sub-queue per chat: the senders take *chats* in turn, one answer at a
time, and a chat is held by at most one sender, so a chat that waits for its own 1 message/s
slot (someone forwarding 100 six-digit numbers) holds one sender, never all of them. A chat
keeps at most `per_chat` answers waiting; an answer of a kind already waiting for that chat
(another wrong code) replaces it instead of queueing behind it, and one given `quiet_seconds`
(the "too many attempts" answer) is not repeated to that chat within that time.

At shutdown (`stop`) the senders get a short grace; whatever is still queued then goes into the
durable outbox (dal/redis/outbox.py), in its first lane (ANSWER, drained before every notice),
so a SIGTERM during a burst loses no answer.
"""

from __future__ import annotations

import asyncio
import contextlib
import heapq
import logging
import time
from collections import deque
from dataclasses import dataclass

from aiogram import Bot
from aiogram.exceptions import (
    TelegramAPIError,
    TelegramNetworkError,
    TelegramRetryAfter,
    TelegramServerError,
)

from dal.redis.outbox import Outbox, OutboxLanes
from services.notice_codec import encode_text
from services.notify import ANSWER

log = logging.getLogger(__name__)


@dataclass(slots=True)
class _Answer:
    text: str
    kind: str | None


class AnswerQueue:
    def __init__(
        self, bot: Bot, outbox: Outbox | OutboxLanes, *, senders: int = 32, per_chat: int = 5
    ) -> None:
        self._bot = bot
        self._outbox = outbox if isinstance(outbox, OutboxLanes) else OutboxLanes.single(outbox)
        self._senders = senders
        self._per_chat = per_chat
        # chat -> its waiting answers; a chat is in `_chats` while it has answers waiting or
        # one being sent, and in `_ready` (once) while it waits for a sender.
        self._chats: dict[int, deque[_Answer]] = {}
        self._ready: asyncio.Queue[int] = asyncio.Queue()
        self._quiet: dict[tuple[int, str], float] = {}  # (chat, kind) -> monotonic deadline
        # The same deadlines, soonest first, so that the passed ones are forgotten a few at a
        # time (rebuilding the dict past 10,000 entries blocked the loop: 10.5 s for 20,000
        # throttled chats within a minute).
        self._quiet_ends: list[tuple[float, tuple[int, str]]] = []
        self._unfinished = 0
        self._idle = asyncio.Event()
        self._idle.set()
        self._in_flight: dict[asyncio.Task[None], tuple[int, str] | None] = {}
        self.coalesced = 0
        self.dropped = 0

    def __len__(self) -> int:
        return sum(len(waiting) for waiting in self._chats.values())

    def put(
        self, chat_id: int, text: str, *, kind: str | None = None, quiet_seconds: float = 0.0
    ) -> None:
        """Queue an answer. `kind` names what it answers (a check-in outcome): a waiting answer
        of the same kind to the same chat is replaced. With `quiet_seconds`, an answer of this
        kind already sent to this chat in that time is not sent again."""
        now = time.monotonic()
        if kind is not None and quiet_seconds > 0:
            ends = self._quiet_ends
            while ends and ends[0][0] <= now:
                deadline, passed = heapq.heappop(ends)
                if self._quiet.get(passed) == deadline:
                    del self._quiet[passed]
            key = (chat_id, kind)
            if self._quiet.get(key, 0.0) > now:
                self.coalesced += 1
                return
            self._quiet[key] = now + quiet_seconds
            heapq.heappush(ends, (now + quiet_seconds, key))
        waiting = self._chats.get(chat_id)
        if waiting is None:
            self._chats[chat_id] = deque([_Answer(text, kind)])
            self._ready.put_nowait(chat_id)
            self._count(+1)
            return
        if kind is not None:
            for answer in waiting:
                if answer.kind == kind:
                    answer.text = text  # the newer answer of that kind, in the older's place
                    self.coalesced += 1
                    return
        if len(waiting) >= self._per_chat:
            self.dropped += 1
            return
        waiting.append(_Answer(text, kind))
        self._count(+1)

    def _count(self, delta: int) -> None:
        self._unfinished += delta
        if self._unfinished:
            self._idle.clear()
        else:
            self._idle.set()

    async def join(self) -> None:
        """Until every answer queued so far has been handed to the Bot API (benchmarks)."""
        await self._idle.wait()

    def start(self) -> None:
        for _ in range(self._senders):
            task = asyncio.create_task(self._send_loop())
            self._in_flight[task] = None

    async def _send_loop(self) -> None:
        me = asyncio.current_task()
        assert me is not None
        while True:
            chat_id = await self._ready.get()
            waiting = self._chats[chat_id]
            answer = waiting.popleft()
            self._in_flight[me] = (chat_id, answer.text)
            try:
                await self._bot.send_message(chat_id, answer.text)
            except (TelegramRetryAfter, TelegramNetworkError, TelegramServerError) as exc:
                # The middleware's retries ran out: the outbox keeps trying, durably.
                log.warning("an answer goes to the outbox after %s", exc)
                await self._outbox.add([(ANSWER, encode_text(chat_id, answer.text))])
            except TelegramAPIError as exc:  # undeliverable: recorded by the middleware
                log.info("an answer was not delivered: %s", exc)
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("an answer failed")
            finally:
                self._in_flight[me] = None
                if waiting:
                    self._ready.put_nowait(chat_id)  # its next answer, after the other chats
                else:
                    del self._chats[chat_id]
                self._count(-1)

    async def stop(self, grace_seconds: float = 1.0) -> None:
        """Send for up to `grace_seconds`; put the rest in the outbox."""
        if self._in_flight and self._unfinished:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._idle.wait(), grace_seconds)
        left = [item for item in self._in_flight.values() if item is not None]
        for task in self._in_flight:
            task.cancel()
        await asyncio.gather(*self._in_flight, return_exceptions=True)
        self._in_flight.clear()
        for chat_id, waiting in self._chats.items():
            left.extend((chat_id, answer.text) for answer in waiting)
        self._chats.clear()
        while not self._ready.empty():
            self._ready.get_nowait()
        if left:
            await self._outbox.add([(ANSWER, encode_text(chat_id, text)) for chat_id, text in left])
            log.info("%d unsent answers moved to the outbox", len(left))
