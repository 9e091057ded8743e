"""Durable notices: `DeliveryWorker` sends what `OutboxNotifier` (bot/notice_buttons.py) put in the
Redis outbox.

Every message that is not the direct answer to an update (results, teacher summaries,
"attendance is open" / "closing soon", reminders, account-moved notices) goes through here:

    services --enqueue--> dal/redis/outbox.py (Redis Stream) --DeliveryWorker--> bot.send_message

The worker of each process reads a small window of entries (`window`, default 16) with
XREADGROUP, drops those whose `drop_if` condition now holds (one script call per batch), and
sends the rest as *bulk* (`bot.outgoing.BULK`): they take only the flood budget that direct
answers leave (bot/flood.py). A conditional notice is checked once more when its slot comes
(one script call per such send, at most the bulk rate), since a student may check in while the
notice waits behind a class's answers. An entry is acked after Telegram accepted it, or when it can
never be delivered (the chat blocked the bot, a bad request). A transient failure (Telegram
unreachable, 5xx, 429 after the middleware's own retries) puts it back at the end of the stream
and holds the worker back (1 s, doubling up to 30 s, reset by the next success), so an outage
of Telegram costs no notices and no busy loop; a notice is given up only after failing for
`give_up_seconds` (a day). Process memory holds at most `window` notices.

Crashes and restarts: each process is one consumer with a heartbeat key. Entries a dead
consumer had taken stay pending in Redis; a live worker takes them over within a couple of
heartbeats (and XAUTOCLAIM catches anything stuck for minutes). A resend after `kill -9`
is limited to the entries that were being sent at that moment.

Shutdown (`stop`): stop reading, and settle every send in flight one way or
the other before the consumer retires. Each send asks once more just before its request goes
to Telegram (the outgoing middleware's `still_wanted` hook, after its slot was granted); once
stopping, the answer is no, so a send that has not reached Telegram is *abandoned*: nothing was
sent, its entry stays pending and is taken over by another replica or the next start. A send
whose request already went out is never cancelled mid-request (it is given up to
`wire_grace_seconds`, far more than a Bot API round trip): Telegram's answer comes back and an
accepted message is acknowledged. So a planned restart or a rolling deploy sends nothing twice;
only a request that Telegram does not answer within that grace (or `kill -9`) may repeat.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import secrets
import socket
import time
from collections.abc import Awaitable, Callable, Sequence
from datetime import UTC, datetime
from typing import Any
from zoneinfo import ZoneInfo

from aiogram import Bot
from aiogram.exceptions import (
    TelegramAPIError,
    TelegramBadRequest,
    TelegramNetworkError,
    TelegramRetryAfter,
    TelegramServerError,
)
from aiogram.types import InlineKeyboardButton, InlineKeyboardMarkup, WebAppInfo

from bot.notice_buttons import callback_data, web_app_url
from bot.notifier import lanes_of, outbox_digest
from bot.outgoing import BULK, Bulk, NoLongerWanted, is_undeliverable
from dal.redis.outbox import Entry, Outbox, OutboxLanes
from services.notice_codec import Tries, conditions, decode, encode
from services.notify import Button, Moment, Notice, Percent
from services.pseudonyms import pseudonym
from ui.i18n import date_time_text, percent_number, t, time_text, use_locale

log = logging.getLogger(__name__)

# Telegram's limit on a photo's or document's caption (https://core.telegram.org/bots/api#sendphoto).
CAPTION_LIMIT = 1024


# --- rendering ------------------------------------------------------------------------


def render(
    notice: Notice, *, public_url: str | None = None
) -> tuple[str, InlineKeyboardMarkup | None]:
    """The notice's text and buttons in its recipient's language. A `web_app` button opens a
    page of the Mini App under `public_url`; without one it is left out (no page to open)."""
    if not notice.key:
        return str(notice.values["text"]), None
    markup = None
    rows = [
        [_button(b, notice.language, public_url)]
        for b in notice.buttons
        if b.action != "web_app" or public_url
    ]
    if rows:
        markup = InlineKeyboardMarkup(inline_keyboard=rows)
    with use_locale(notice.language):
        values: dict[str, Any] = {k: _shown(v) for k, v in notice.values.items()}
        return t(notice.key, **values), markup


def _button(button: Button, language: str, public_url: str | None) -> InlineKeyboardButton:
    text = t(button.label_key, locale=language)
    if button.action == "web_app" and public_url:
        # A web_app button works in private chats only, which is where notices go.
        # https://core.telegram.org/bots/api#inlinekeyboardbutton
        return InlineKeyboardButton(
            text=text, web_app=WebAppInfo(url=web_app_url(public_url, button))
        )
    return InlineKeyboardButton(text=text, callback_data=callback_data(button))


def _shown(value: object) -> object:
    """Times and percentages as the current locale writes them (Babel)."""
    if isinstance(value, Moment):
        tz = ZoneInfo(value.tz)
        return time_text(value.at, tz) if value.time_only else date_time_text(value.at, tz)
    if isinstance(value, Percent):
        return percent_number(value.value)
    return value


# --- the worker ------------------------------------------------------------------------


class _Abandoned(BaseException):
    """A send the stopping worker gave up before its request went out. A BaseException, so
    that the outgoing middleware's guard around the still-wanted check (which sends anyway
    when the check itself fails) lets it through, and no `except Exception` swallows it."""


# Lanes whose notices may go as paid broadcasts (bulk notices, not waiting direct answers).
PAID_LANES = ("urgent", "result", "bulk")
# How long paid broadcasts stay off after Telegram refused one.
PAID_REFUSAL_PAUSE_SECONDS = 600


def consumer_name() -> str:
    return f"{socket.gethostname()}-{os.getpid()}-{secrets.token_hex(3)}"


class DeliveryWorker:
    def __init__(
        self,
        bot: Bot,
        outbox: Outbox | OutboxLanes,
        *,
        window: int = 16,
        heartbeat_ms: int = 3000,
        stuck_ms: int = 300_000,
        give_up_seconds: float = 86_400.0,
        backoff_max: float = 30.0,
        name: str | None = None,
        clock: Callable[[], float] = time.time,
        public_url: str | None = None,
        paid_broadcast_after: float = 0.0,
    ) -> None:
        self._bot = bot
        self._public_url = public_url
        # Paid broadcasts once the oldest waiting notice is older than this (0: never); `_paid`
        # is re-read by the watch loop every second.
        self._paid_after = paid_broadcast_after
        self._paid = False
        # After Telegram refuses a paid broadcast (the bot is not allowed them, or its Stars ran
        # out), no paid sends until this moment (`clock` time).
        self._paid_refused_until = 0.0
        self._outbox = lanes_of(outbox)
        self._window = window
        self._heartbeat_ms = heartbeat_ms
        self._stuck_ms = stuck_ms
        self._give_up_seconds = give_up_seconds
        self._backoff_max = backoff_max
        self._clock = clock
        self.name = name or consumer_name()
        self._slots = asyncio.Semaphore(window)
        self._in_flight: dict[tuple[str, str], asyncio.Task[None]] = {}
        # Entries whose request is on its way to Telegram (past the last still-wanted check),
        # and those abandoned at that check because the worker is stopping.
        self._on_wire: set[tuple[str, str]] = set()
        self._abandoned = 0
        # Our own pending list holds entries to read again (taken over, or failed here):
        # read it first. `_takeovers` counts the times it was marked, so a read of it that
        # began before a takeover does not clear the mark the takeover set.
        self._own_pending = True
        self._takeovers = 0
        # After a transient failure new reads wait until `_resume_at` (loop time).
        self._failures = 0
        self._resume_at = 0.0
        self._stopping = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []
        self.sent = 0
        self.dropped_stale = 0

    async def start(self) -> None:
        await self._outbox.ensure_group()
        await self._outbox.heartbeat(self.name, self._heartbeat_ms)
        self._tasks = [
            asyncio.create_task(self._read_loop(), name="outbox-read"),
            asyncio.create_task(self._watch_loop(), name="outbox-watch"),
        ]

    async def stop(self, grace_seconds: float = 1.0, wire_grace_seconds: float = 2.0) -> None:
        """Stop reading; settle each send in flight (see the module docstring): within
        `grace_seconds` it is sent and acknowledged, or abandoned before its request went out
        (the entry stays pending, unsent); a request already on its way gets
        `wire_grace_seconds` more to be answered. Then the consumer retires."""
        self._stopping.set()
        for task in self._tasks:
            task.cancel()
        # The heartbeat goes on until the consumer retires: were it to lapse while sends are
        # settling (grace plus wire grace can outlast it), another replica would take over the
        # entries whose requests are on their way and send them a second time.
        keep_alive = asyncio.create_task(self._heartbeat_until_retired())
        try:
            abandoned, cut_off = await self._settle_in_flight(grace_seconds, wire_grace_seconds)
        finally:
            keep_alive.cancel()
            await asyncio.wait([keep_alive], timeout=1.0)
        with contextlib.suppress(Exception):
            await self._outbox.retire(self.name)
        log.info(
            "outbox worker %s stopped (%d unsent entries left to the next consumer, "
            "%d requests cut off unanswered)",
            self.name,
            abandoned,
            cut_off,
        )

    async def _heartbeat_until_retired(self) -> None:
        while True:
            with contextlib.suppress(Exception):
                await self._outbox.heartbeat(self.name, self._heartbeat_ms)
            await asyncio.sleep(self._heartbeat_ms / 3000.0)

    async def _settle_in_flight(
        self, grace_seconds: float, wire_grace_seconds: float
    ) -> tuple[int, int]:
        """Wait for (or cut off) the sends in flight; (entries abandoned, requests cut off)."""
        if self._tasks:  # bounded, and a cancellation of the caller is not swallowed
            await asyncio.wait(self._tasks, timeout=grace_seconds)
        in_flight = set(self._in_flight.values())
        cut_off = 0
        if in_flight:
            _done, pending = await asyncio.wait(in_flight, timeout=grace_seconds)
            # Still waiting for a slot: nothing went to Telegram, so cancelling sends nothing.
            waiting = {t for e, t in self._in_flight.items() if e not in self._on_wire}
            for task in pending & waiting:
                task.cancel()
            if pending:
                _done, late = await asyncio.wait(pending, timeout=wire_grace_seconds)
                for task in late:  # Telegram did not answer: this one may be sent again
                    task.cancel()
                cut_off = len(late)
                if late:
                    await asyncio.wait(late, timeout=1.0)
            abandoned = self._abandoned + len(pending & waiting)
        else:
            abandoned = self._abandoned
        return abandoned, cut_off

    # --- loops ---------------------------------------------------------------------------

    async def _watch_loop(self) -> None:
        """Heartbeat, and take over the entries of consumers that stopped or died."""
        period = self._heartbeat_ms / 3000.0
        rounds = 0
        while True:
            try:
                await self._outbox.heartbeat(self.name, self._heartbeat_ms)
                await self._outbox.release_due()  # digests whose hold has ended
                if self._paid_after > 0:
                    self._paid = self._clock() >= self._paid_refused_until and await self._behind()
                if await self._outbox.take_over_dead(self.name):
                    self._mark_own_pending()
                if rounds % 30 == 0 and await self._outbox.take_over_idle(
                    self.name, min_idle_ms=self._stuck_ms
                ):
                    self._mark_own_pending()
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("outbox watch failed; retrying")
            rounds += 1
            await asyncio.sleep(period)

    async def _read_loop(self) -> None:
        while True:
            try:
                await self._read_once()
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("outbox read failed; retrying in 1 s")
                await asyncio.sleep(1.0)

    async def _read_once(self) -> None:
        # Wait for a free slot first, so at most `window` entries are out of Redis.
        await self._slots.acquire()
        free = 1
        while free < self._window and not self._slots.locked():
            await self._slots.acquire()
            free += 1
        started = 0
        try:
            await self._held_back()
            if self._own_pending:
                marked = self._takeovers
                entries = await self._outbox.read(
                    self.name, free + len(self._in_flight), block_ms=None, own=True
                )
                entries = [e for e in entries if e.key not in self._in_flight][:free]
                if not entries and self._takeovers == marked:
                    self._own_pending = False
            else:
                entries = await self._outbox.read(self.name, free, block_ms=1000, own=False)
            started = await self._dispatch(entries)
        finally:
            for _ in range(free - started):  # each started send releases its own slot
                self._slots.release()
        # A wait on every lane may answer one entry more per lane than there were free slots:
        # take those slots back as their sends end, so the window holds.
        for _ in range(started - free):
            await self._slots.acquire()

    async def _dispatch(self, entries: Sequence[Entry]) -> int:
        """Drop what no longer applies, start a send for the rest; returns sends started."""
        if not entries:
            return 0
        decoded: list[tuple[Entry, Notice, Tries]] = []
        broken: list[Entry] = []
        for entry in entries:
            try:
                notice, tries = decode(entry.payload)
            except (ValueError, KeyError, IndexError, TypeError):
                log.error("outbox entry %s is not a notice; dropped", entry.id)
                broken.append(entry)
                continue
            decoded.append((entry, notice, tries))
        conditional = [(e, n) for e, n, _a in decoded if n.drop_if]
        stale: list[Entry] = []
        if conditional:
            verdicts = await self._outbox.stale([conditions(n.drop_if) for _e, n in conditional])
            stale = [e for (e, _n), gone in zip(conditional, verdicts, strict=True) if gone]
        if broken or stale:
            await self._outbox.ack([*broken, *stale])
            self.dropped_stale += len(stale)
        stale_keys = {e.key for e in stale}
        started = 0
        for entry, notice, tries in decoded:
            if entry.key in stale_keys:
                continue
            self._in_flight[entry.key] = asyncio.create_task(self._deliver(entry, notice, tries))
            started += 1
        return started

    async def _deliver(self, entry: Entry, notice: Notice, tries: Tries) -> None:
        token = BULK.set(Bulk(self._still_wanted_check(entry.key, notice)))
        try:
            await self._send(entry, notice, tries)
        except asyncio.CancelledError:
            raise  # shutting down: the entry stays pending and is taken over
        except Exception:
            log.exception("outbox entry %s failed; it stays pending", entry.id)
            self._mark_own_pending()
            self._hold_back()
        finally:
            BULK.reset(token)
            self._on_wire.discard(entry.key)
            self._in_flight.pop(entry.key, None)
            self._slots.release()

    def _still_wanted_check(
        self, entry_key: tuple[str, str], notice: Notice
    ) -> Callable[[], Awaitable[bool]]:
        """Asked by the outgoing middleware just before each request goes to Telegram."""
        drop_if = conditions(notice.drop_if) if notice.drop_if else None

        async def still_wanted() -> bool:
            if self._stopping.is_set():
                raise _Abandoned  # never reached Telegram: left pending for the next consumer
            if drop_if is not None and (await self._outbox.stale([drop_if]))[0]:
                return False
            if self._stopping.is_set():
                raise _Abandoned
            self._on_wire.add(entry_key)
            return True

        return still_wanted

    async def _compose_digest(self, notice: Notice) -> tuple[int, str, InlineKeyboardMarkup | None]:
        """(how many notices the digest holds, their texts as one message, the buttons of a
        lone one)."""
        payloads = await self._outbox.digest_items(notice.digest, notice.telegram_id)
        parts: list[tuple[str, InlineKeyboardMarkup | None]] = []
        for payload in payloads:
            try:
                parts.append(render(decode(payload)[0], public_url=self._public_url))
            except (ValueError, KeyError, IndexError, TypeError) as exc:
                log.error(
                    "a %s digest notice cannot be rendered (%r); left out", notice.digest, exc
                )
        if len(parts) == 1:
            return len(payloads), parts[0][0], parts[0][1]
        return len(payloads), "\n\n".join(text for text, _markup in parts), None

    async def _settle(self, entry: Entry, notice: Notice, count: int) -> None:
        """Done with the entry; a digest's notices that it covered are done too."""
        if notice.digest and not notice.key:
            await self._outbox.digest_sent(entry, outbox_digest(notice), count)
        await self._outbox.ack([entry])

    async def _send(self, entry: Entry, notice: Notice, tries: Tries) -> None:
        count = 0
        try:
            if notice.digest and not notice.key:
                count, text, markup = await self._compose_digest(notice)
                if not text:  # nothing left in it (sent by a resend, or erased)
                    await self._settle(entry, notice, count)
                    return
            else:
                text, markup = render(notice, public_url=self._public_url)
        except (KeyError, ValueError, IndexError) as exc:
            log.error("notice %s cannot be rendered (%r); dropped", notice.key, exc)
            await self._outbox.ack([entry])
            return
        try:
            await self._send_one(notice, text, markup)
        except (TelegramRetryAfter, TelegramNetworkError, TelegramServerError) as exc:
            # The middleware has retried already: Telegram is down or overloaded. Back at the
            # end of the stream, and the worker holds back; given up only after a day.
            now = self._clock()
            tries = tries.failed(now)
            if now - tries.since >= self._give_up_seconds:
                log.error(
                    "notice %s to %s given up after failing %d times since %s: %s",
                    notice.key or "(text)",
                    pseudonym(notice.telegram_id),
                    tries.count,
                    datetime.fromtimestamp(tries.since, UTC).isoformat(timespec="seconds"),
                    exc,
                )
                await self._settle(entry, notice, count)
            else:
                await self._outbox.requeue(
                    self.name, [Entry(entry.id, encode(notice, tries), entry.stream)]
                )
            self._hold_back()
            return
        except _Abandoned:  # stopping: not sent, stays pending (taken over by the next)
            self._abandoned += 1
            return
        except NoLongerWanted:  # went stale while it waited for its slot
            await self._outbox.ack([entry])
            self.dropped_stale += 1
            return
        except TelegramAPIError as exc:  # undeliverable or refused: recorded by the middleware
            log.info(
                "notice %s not delivered to %s: %s", notice.key, pseudonym(notice.telegram_id), exc
            )
            await self._settle(entry, notice, count)
            return
        await self._settle(entry, notice, count)
        self.sent += 1
        self._failures = 0

    async def _send_one(
        self, notice: Notice, text: str, markup: InlineKeyboardMarkup | None
    ) -> None:
        """One request: the text, or the attached file (by Telegram's `file_id`) with the text
        as its caption. A caption longer than Telegram takes goes as a message of its own,
        after the file, with the buttons."""
        file = notice.attachment
        paid = True if self._paid else None  # a paid broadcast (see `paid_broadcast_after`)
        if file is None:
            try:
                await self._bot.send_message(
                    notice.telegram_id, text, reply_markup=markup, allow_paid_broadcast=paid
                )
            except TelegramBadRequest as exc:
                if not paid or is_undeliverable(exc):
                    raise
                # Refused as a paid broadcast, not as a message: sent again within the free
                # budget, and no paid sends for a while.
                self._refuse_paid(exc)
                await self._bot.send_message(notice.telegram_id, text, reply_markup=markup)
            return
        fits = len(text) <= CAPTION_LIMIT
        caption, caption_markup = (text, markup) if fits else (None, None)
        if file.kind == "photo":
            await self._bot.send_photo(
                notice.telegram_id, file.file_id, caption=caption, reply_markup=caption_markup
            )
        else:
            await self._bot.send_document(
                notice.telegram_id, file.file_id, caption=caption, reply_markup=caption_markup
            )
        if not fits:
            await self._bot.send_message(notice.telegram_id, text, reply_markup=markup)

    # --- bookkeeping ---------------------------------------------------------------------

    async def _behind(self) -> bool:
        """The oldest notice waiting (answers aside) is older than `paid_broadcast_after`."""
        oldest = await self._outbox.oldest_ms(PAID_LANES)
        return oldest is not None and self._clock() - oldest / 1000.0 > self._paid_after

    def _refuse_paid(self, exc: TelegramBadRequest) -> None:
        if self._paid:
            log.warning(
                "Telegram refused a paid broadcast (%s); notices go at the free rate for %d s",
                exc.message,
                PAID_REFUSAL_PAUSE_SECONDS,
            )
        self._paid = False
        self._paid_refused_until = self._clock() + PAID_REFUSAL_PAUSE_SECONDS

    def _mark_own_pending(self) -> None:
        self._own_pending = True
        self._takeovers += 1

    def _hold_back(self) -> None:
        """A transient failure: new reads wait 1 s, doubling with each further failure up to
        `backoff_max`, until a send succeeds again."""
        delay = min(self._backoff_max, 2.0 ** min(self._failures, 16))
        self._failures += 1
        loop = asyncio.get_running_loop()
        self._resume_at = max(self._resume_at, loop.time() + delay)

    async def _held_back(self) -> None:
        delay = self._resume_at - asyncio.get_running_loop().time()
        if delay > 0:
            await asyncio.sleep(delay)
