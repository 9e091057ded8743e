"""Direct answers that a handler hands off instead of awaiting: a small in-process queue.

A check-in handler decides, puts its answer here and returns; it never waits for the flood
budget (bot/flood.py), so 10,000 check-ins arriving at once hold 10,000 small tuples (chat id,
text: a few hundred bytes each) instead of 10,000 suspended handlers with their updates and
middleware data (~35 KB each). A few sender tasks send them in order as *direct answers*: they
go before outbox notices.

At shutdown (`stop`) the senders get a short grace; whatever is still queued then goes into the
durable outbox (dal/redis/outbox.py), so a SIGTERM during a burst loses no answer.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging

from aiogram import Bot
from aiogram.exceptions import (
    TelegramAPIError,
    TelegramNetworkError,
    TelegramRetryAfter,
    TelegramServerError,
)

from bot.delivery import encode_text
from dal.redis.outbox import Outbox

log = logging.getLogger(__name__)


class AnswerQueue:
    def __init__(self, bot: Bot, outbox: Outbox, *, senders: int = 32) -> None:
        self._bot = bot
        self._outbox = outbox
        self._senders = senders
        self._queue: asyncio.Queue[tuple[int, str]] = asyncio.Queue()
        self._in_flight: dict[asyncio.Task[None], tuple[int, str] | None] = {}

    def __len__(self) -> int:
        return self._queue.qsize()

    def put(self, chat_id: int, text: str) -> None:
        self._queue.put_nowait((chat_id, text))

    async def join(self) -> None:
        """Until every answer queued so far has been handed to the Bot API (benchmarks)."""
        await self._queue.join()

    def start(self) -> None:
        for _ in range(self._senders):
            task = asyncio.create_task(self._send_loop())
            self._in_flight[task] = None

    async def _send_loop(self) -> None:
        me = asyncio.current_task()
        assert me is not None
        while True:
            item = await self._queue.get()
            self._in_flight[me] = item
            try:
                await self._bot.send_message(item[0], item[1])
            except (TelegramRetryAfter, TelegramNetworkError, TelegramServerError) as exc:
                # The middleware's retries ran out: the outbox keeps trying, durably.
                log.warning("answer to %s goes to the outbox after %s", item[0], exc)
                await self._outbox.add([encode_text(item[0], item[1])])
            except TelegramAPIError as exc:  # undeliverable: recorded by the middleware
                log.info("answer to %s not delivered: %s", item[0], exc)
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("answer to %s failed", item[0])
            finally:
                self._in_flight[me] = None
                self._queue.task_done()

    async def stop(self, grace_seconds: float = 1.0) -> None:
        """Send for up to `grace_seconds`; put the rest in the outbox."""
        if self._in_flight and self._queue.qsize():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._queue.join(), grace_seconds)
        left = [item for item in self._in_flight.values() if item is not None]
        for task in self._in_flight:
            task.cancel()
        await asyncio.gather(*self._in_flight, return_exceptions=True)
        self._in_flight.clear()
        while not self._queue.empty():
            left.append(self._queue.get_nowait())
        if left:
            await self._outbox.add([encode_text(chat_id, text) for chat_id, text in left])
            log.info("%d unsent answers moved to the outbox", len(left))
