"""The one outgoing path to the Bot API: pacing, retries and undeliverable chats.

`OutgoingMiddleware` is an aiogram session request middleware, so every call made through the
bot (handler replies, edits, reminders, finalization summaries) goes through it:

    outgoing = OutgoingMiddleware(on_undeliverable=record_blocked_chat)
    bot.session.middleware(outgoing)

Telegram's limits (https://core.telegram.org/bots/faq#my-bot-is-hitting-limits-how-do-i-avoid-this):
about 30 messages per second overall, about 1 per second to one chat (short bursts pass) and
about 20 per minute to one group; edits count too. Beyond them the API answers 429 with
`retry_after` and aiogram raises `TelegramRetryAfter` without retrying.

With a `pacer` (bot/flood.py: the Redis budget shared by every replica) the middleware asks it
for each message's slot instead of its in-process limiters, and reports 429s to it so that every
replica pauses. Calls made while `BULK` is set (the outbox worker) are bulk: they take only the
budget that direct answers leave, and one whose `still_wanted` check says no once its slot
comes is dropped there (`NoLongerWanted`) instead of sent. While the shared budget cannot be
reached (Redis down), the middleware falls back to its in-process limiters rather than refusing
to send: the answers that matter most then ("temporarily unavailable") still go out, at this
process's own rate.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from contextvars import ContextVar
from dataclasses import dataclass
from typing import TYPE_CHECKING

from aiogram.client.session.middlewares.base import (
    BaseRequestMiddleware,
    NextRequestMiddlewareType,
)
from aiogram.exceptions import (
    TelegramAPIError,
    TelegramBadRequest,
    TelegramEntityTooLarge,
    TelegramForbiddenError,
    TelegramNetworkError,
    TelegramNotFound,
    TelegramRetryAfter,
    TelegramServerError,
)
from aiogram.methods.base import TelegramType

from bot.flood import BudgetUnavailable, Pacer
from services.pseudonyms import pseudonym

if TYPE_CHECKING:
    from aiogram import Bot
    from aiogram.methods import Response, TelegramMethod

logger = logging.getLogger(__name__)


ChatId = int | str
OnUndeliverable = Callable[[ChatId, str, str], Awaitable[None]]
"""`on_undeliverable(chat_id, method_name, description)`."""

StillWanted = Callable[[], Awaitable[bool]]


@dataclass(frozen=True, slots=True)
class Bulk:
    """How the outbox worker sends: with only the budget that direct answers leave, and, when
    `still_wanted` is given, only if it still says yes once the slot is granted (an "attendance
    is open" notice can go stale while it waits for its turn behind a class's check-ins)."""

    still_wanted: StillWanted | None = None


BULK: ContextVar[Bulk | None] = ContextVar("attn_bulk_send", default=None)
"""Set by the outbox worker around its sends: they yield to direct answers."""


class NoLongerWanted(Exception):
    """A bulk send was dropped at its turn because `Bulk.still_wanted()` said no; nothing was
    sent to Telegram."""


# Methods that put a message into a chat or change one: the ones Telegram rate-limits.
PACED_METHODS = frozenset(
    {
        "sendMessage",
        "editMessageText",
        "editMessageCaption",
        "editMessageMedia",
        "editMessageReplyMarkup",
        "editMessageLiveLocation",
        "stopMessageLiveLocation",
        "sendDocument",
        "sendPhoto",
        "sendAudio",
        "sendVideo",
        "sendVideoNote",
        "sendVoice",
        "sendAnimation",
        "sendSticker",
        "sendMediaGroup",
        "sendLocation",
        "sendVenue",
        "sendContact",
        "sendPoll",
        "sendDice",
        "sendInvoice",
        "sendPaidMedia",
        "copyMessage",
        "copyMessages",
        "forwardMessage",
        "forwardMessages",
    }
)

# Descriptions of 400/404 answers that mean "this chat cannot receive messages" (403 always does).
_UNDELIVERABLE_MARKERS = (
    "chat not found",
    "user not found",
    "user is deactivated",
    "bot was blocked",
    "bot was kicked",
    "bot can't initiate conversation",
    "bot can't send messages to bots",
    "peer_id_invalid",
    "have no rights to send",
    "not enough rights to send",
    "chat_write_forbidden",
)


def is_undeliverable(exc: BaseException) -> bool:
    """True for errors that retrying cannot fix: the chat blocked, left or never existed."""
    if isinstance(exc, TelegramForbiddenError):
        return True
    if isinstance(exc, TelegramBadRequest | TelegramNotFound):
        description = exc.message.lower()
        return any(marker in description for marker in _UNDELIVERABLE_MARKERS)
    return False


@dataclass
class OutgoingStats:
    sent: int = 0  # successful paced (message) calls
    retried_429: int = 0
    retried_network: int = 0
    failed_permanent: int = 0
    dropped: int = 0  # bulk sends no longer wanted at their turn (not sent)
    # Summed over calls (concurrent waits add up): limiter queues, 429 pauses, backoff.
    waited_seconds: float = 0.0


class RateLimiter:
    """`rate` acquisitions per second sustained, up to `burst` back to back.

    Generic cell rate algorithm: `_tat` is when the limiter would be fully rested. Waiters
    queue on an asyncio.Lock, which wakes them in arrival order; the holder sleeps exactly
    until its slot, so there is no polling and a pause applies to everyone still queued.
    """

    def __init__(self, rate: float, burst: int = 1) -> None:
        if rate <= 0 or burst < 1:
            raise ValueError("rate must be > 0 and burst >= 1")
        self._interval = 1.0 / rate
        self._tolerance = (burst - 1) * self._interval
        self._tat = 0.0
        self._paused_until = 0.0
        self._lock = asyncio.Lock()

    def pause(self, seconds: float) -> None:
        """Let nothing through for `seconds` from now."""
        until = asyncio.get_running_loop().time() + seconds
        self._paused_until = max(self._paused_until, until)

    def is_idle(self, now: float) -> bool:
        return not self._lock.locked() and self._tat <= now and self._paused_until <= now

    async def acquire(self, then: RateLimiter | None = None) -> None:
        """Wait for a slot; with `then`, also take a slot of that limiter before counting ours.

        Holding our slot while waiting for `then` makes our spacing measure actual send times.
        """
        loop = asyncio.get_running_loop()
        async with self._lock:
            while True:
                now = loop.time()
                ready_at = max(self._tat - self._tolerance, self._paused_until)
                if ready_at <= now:
                    break
                await asyncio.sleep(ready_at - now)  # re-checked: a pause may have moved it
            if then is not None:
                await then.acquire()
            self._tat = max(self._tat, loop.time()) + self._interval


class OutgoingMiddleware(BaseRequestMiddleware):
    """Paces, retries and reports every Bot API call of the session it is registered on."""

    def __init__(
        self,
        *,
        global_rate: float = 30.0,
        global_burst: int = 5,
        per_chat_rate: float = 1.0,
        per_chat_burst: int = 3,
        group_rate: float = 20.0 / 60.0,
        group_burst: int = 3,
        max_retries: int = 5,
        max_retry_after: float = 60.0,
        backoff_base: float = 0.5,
        backoff_max: float = 8.0,
        on_undeliverable: OnUndeliverable | None = None,
        pacer: Pacer | None = None,
    ) -> None:
        self.stats = OutgoingStats()
        self._pacer = pacer
        self._global = RateLimiter(global_rate, global_burst)
        self._per_chat = (per_chat_rate, per_chat_burst)
        self._per_group = (group_rate, group_burst)
        self._chats: dict[ChatId, RateLimiter] = {}
        self._prune_at = 1024
        self._max_retries = max_retries
        self._max_retry_after = max_retry_after
        self._backoff_base = backoff_base
        self._backoff_max = backoff_max
        self._on_undeliverable = on_undeliverable
        self._budget_down_logged = float("-inf")

    async def __call__(
        self,
        make_request: NextRequestMiddlewareType[TelegramType],
        bot: Bot,
        method: TelegramMethod[TelegramType],
    ) -> Response[TelegramType]:
        name = method.__api_method__
        if name == "getUpdates":
            # The dispatcher's polling loop has its own backoff, and a long poll must not
            # be held behind message pacing.
            return await make_request(bot, method)
        paced = name in PACED_METHODS
        chat_id = getattr(method, "chat_id", None)
        if not isinstance(chat_id, int | str):
            chat_id = None
        retries = 0
        bulk = BULK.get()
        # A paid broadcast (Bot API 7.11) is outside the bot's 30/s; only the chat's limit holds.
        paid = bulk is not None and bool(getattr(method, "allow_paid_broadcast", None))
        if paced and bulk is not None and bulk.still_wanted is not None:
            # Asked before the slot too: a notice that went stale while it was queued (the
            # student checked in) must not take a slot of the budget only to be dropped at it.
            await self._check_still_wanted(bulk.still_wanted, name, chat_id)
        while True:
            if paced:
                await self._pace(chat_id, paid=paid)
            if bulk is not None and bulk.still_wanted is not None:
                await self._check_still_wanted(bulk.still_wanted, name, chat_id)
            try:
                response = await make_request(bot, method)
            except TelegramRetryAfter as exc:
                if retries >= self._max_retries or exc.retry_after > self._max_retry_after:
                    await self._pause(paced, chat_id, exc.retry_after)
                    raise
                retries += 1
                self.stats.retried_429 += 1
                logger.warning(
                    "%s to chat %s hit flood control; retrying in %s s",
                    name,
                    pseudonym(chat_id),
                    exc.retry_after,
                )
                if paced:
                    # Pause the shared limiter so the rest of a burst waits too instead of
                    # collecting 429s of its own; _pace() then waits out the pause.
                    await self._pause(paced, chat_id, exc.retry_after)
                else:
                    await self._sleep(exc.retry_after)
            except (TelegramServerError, TelegramNetworkError) as exc:
                # A timed-out send may have reached Telegram: retrying risks a duplicate
                # message, which beats a lost reply for this bot's use.
                if isinstance(exc, TelegramEntityTooLarge) or retries >= self._max_retries:
                    raise
                delay = min(self._backoff_max, self._backoff_base * 2**retries)
                retries += 1
                self.stats.retried_network += 1
                logger.warning("%s failed (%s); retrying in %.1f s", name, exc, delay)
                await self._sleep(delay)
            except TelegramAPIError as exc:
                if is_undeliverable(exc):
                    await self._report_undeliverable(chat_id, name, exc.message)
                raise
            else:
                if paced:
                    self.stats.sent += 1
                return response

    async def _check_still_wanted(
        self, still_wanted: StillWanted, name: str, chat_id: ChatId | None
    ) -> None:
        try:
            wanted = await still_wanted()
        except Exception:  # the check cannot be made (Redis down): a stale notice beats a lost one
            logger.warning(
                "%s to chat %s: cannot tell if still wanted; sending", name, pseudonym(chat_id)
            )
            return
        if not wanted:
            self.stats.dropped += 1
            raise NoLongerWanted(f"{name} to chat {pseudonym(chat_id)} no longer wanted")

    async def _pace(self, chat_id: ChatId | None, *, paid: bool = False) -> None:
        if self._pacer is not None:
            try:
                bulk = BULK.get() is not None
                self.stats.waited_seconds += await self._pacer.acquire(
                    chat_id, bulk=bulk, paid=paid
                )
                return
            except BudgetUnavailable as exc:
                self._budget_down(exc)
        loop = asyncio.get_running_loop()
        started = loop.time()
        if paid and chat_id is not None:  # beyond the bot's 30/s, within the chat's own limit
            await self._chat_limiter(chat_id).acquire()
        elif chat_id is None:  # inline-message edits have no chat to pace
            await self._global.acquire()
        else:
            await self._chat_limiter(chat_id).acquire(then=self._global)
        self.stats.waited_seconds += loop.time() - started

    async def _pause(self, paced: bool, chat_id: ChatId | None, seconds: float) -> None:
        if not paced:
            return
        if self._pacer is not None:
            try:
                await self._pacer.pause(chat_id, seconds)
                return
            except BudgetUnavailable as exc:
                self._budget_down(exc)
        self._global.pause(seconds)
        if chat_id is not None:
            self._chat_limiter(chat_id).pause(seconds)

    def _budget_down(self, exc: BudgetUnavailable) -> None:
        """Log the fallback to local pacing at most once a minute."""
        now = asyncio.get_running_loop().time()
        if now - self._budget_down_logged >= 60.0:
            self._budget_down_logged = now
            logger.warning("%s; pacing this process on its own until it answers again", exc)

    async def _sleep(self, seconds: float) -> None:
        await asyncio.sleep(seconds)
        self.stats.waited_seconds += seconds

    def _chat_limiter(self, chat_id: ChatId) -> RateLimiter:
        limiter = self._chats.get(chat_id)
        if limiter is None:
            if len(self._chats) >= self._prune_at:
                now = asyncio.get_running_loop().time()
                self._chats = {k: v for k, v in self._chats.items() if not v.is_idle(now)}
                self._prune_at = max(1024, 2 * len(self._chats))
            is_group = isinstance(chat_id, str) or chat_id < 0
            rate, burst = self._per_group if is_group else self._per_chat
            limiter = RateLimiter(rate, burst)
            self._chats[chat_id] = limiter
        return limiter

    async def _report_undeliverable(
        self, chat_id: ChatId | None, method_name: str, description: str
    ) -> None:
        self.stats.failed_permanent += 1
        logger.info(
            "chat %s is undeliverable (%s): %s", pseudonym(chat_id), method_name, description
        )
        if self._on_undeliverable is None or chat_id is None:
            return
        try:
            await self._on_undeliverable(chat_id, method_name, description)
        except Exception:
            # The caller still gets the original Telegram error; the report failure is logged.
            logger.exception("on_undeliverable callback failed for chat %s", pseudonym(chat_id))
