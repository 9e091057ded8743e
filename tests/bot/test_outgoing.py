"""The outgoing path paces, retries and reports, measured against a rate-limited FakeTelegram."""

from __future__ import annotations

import asyncio
import itertools
import time
from collections import Counter
from collections.abc import AsyncIterator

import pytest
from aiogram import Bot, Dispatcher
from aiogram.exceptions import TelegramBadRequest, TelegramForbiddenError, TelegramRetryAfter
from aiogram.filters import CommandStart
from aiogram.types import Message

from bot.outgoing import OutgoingMiddleware
from tests.fakes.telegram_server import FakeTelegram


@pytest.fixture
async def fake() -> AsyncIterator[FakeTelegram]:
    server = FakeTelegram()
    await server.start()
    try:
        yield server
    finally:
        await server.stop()


@pytest.fixture
async def bot(fake: FakeTelegram) -> AsyncIterator[Bot]:
    client = fake.bot()
    try:
        yield client
    finally:
        await client.session.close()


class Undeliverable:
    """Records on_undeliverable calls."""

    def __init__(self) -> None:
        self.calls: list[tuple[int | str, str, str]] = []

    async def __call__(self, chat_id: int | str, method_name: str, description: str) -> None:
        self.calls.append((chat_id, method_name, description))


def _attach(bot: Bot, **kwargs: object) -> OutgoingMiddleware:
    outgoing = OutgoingMiddleware(**kwargs)  # type: ignore[arg-type]
    bot.session.middleware(outgoing)
    return outgoing


async def test_429_is_retried_after_retry_after_and_delivered_once(
    bot: Bot, fake: FakeTelegram
) -> None:
    outgoing = _attach(bot)
    alice = fake.user(1001, "Alice")
    fake.fail_next("sendMessage", 2, retry_after=1)

    started = time.monotonic()
    sent = await bot.send_message(alice.id, "Checked in")
    elapsed = time.monotonic() - started

    assert sent.text == "Checked in"
    assert [m["text"] for m in alice.messages] == ["Checked in"]
    calls = fake.calls_to("sendMessage")
    assert [c.status for c in calls] == [429, 429, 200]
    assert calls[1].at - calls[0].at >= 0.95  # waited retry_after before each retry
    assert calls[2].at - calls[1].at >= 0.95
    assert elapsed >= 1.95
    assert outgoing.stats.retried_429 == 2
    assert outgoing.stats.sent == 1


async def test_retries_are_bounded(bot: Bot, fake: FakeTelegram) -> None:
    outgoing = _attach(bot, max_retries=1)
    fake.user(1001, "Alice")
    fake.fail_next("sendMessage", 5, retry_after=1)
    with pytest.raises(TelegramRetryAfter):
        await bot.send_message(1001, "x")
    assert fake.call_count("sendMessage") == 2
    assert outgoing.stats.sent == 0


async def test_a_429_pauses_the_rest_of_the_burst(bot: Bot, fake: FakeTelegram) -> None:
    _attach(bot)
    users = [fake.user(3000 + i, f"S{i}") for i in range(6)]
    fake.fail_next("sendMessage", 1, retry_after=1)
    first = asyncio.create_task(bot.send_message(users[0].id, "first"))
    await fake.wait_for_calls("sendMessage", 1)
    rejected_at = fake.calls_to("sendMessage")[0].at
    await asyncio.sleep(0.05)  # the 429 has been read by now
    await asyncio.gather(first, *(bot.send_message(u.id, "next") for u in users[1:]))

    later = fake.calls_to("sendMessage")[1:]
    assert len(later) == 6
    assert all(c.ok for c in later)
    # nobody else was sent into the flood window
    assert min(c.at for c in later) - rejected_at >= 0.95


@pytest.mark.slow
async def test_500_replies_under_a_30_per_second_limit_all_arrive_once(
    bot: Bot, fake: FakeTelegram
) -> None:
    outgoing = _attach(bot, global_rate=30.0)
    fake.rate_limit(per_second=30)
    users = [fake.user(10_000 + i, f"Student {i}") for i in range(500)]

    started = time.monotonic()
    await asyncio.gather(*(bot.send_message(u.id, f"Recorded {u.id}") for u in users))
    elapsed = time.monotonic() - started

    delivered = Counter((m["chat"]["id"], m["text"]) for m in fake.sent_messages)
    assert len(delivered) == 500
    assert set(delivered.values()) == {1}
    ideal = 500 / 30
    print(  # reported figure: pytest -s shows it
        f"\n500 replies at 30/s: {elapsed:.2f} s (ideal {ideal:.2f} s), "
        f"429 retries {outgoing.stats.retried_429}, waited {outgoing.stats.waited_seconds:.0f} s"
    )
    assert outgoing.stats.sent == 500
    assert outgoing.stats.retried_429 == 0  # pacing kept the bot under the limit
    assert ideal * 0.9 <= elapsed < 25


async def test_too_fast_a_limiter_still_delivers_everything_once(
    bot: Bot, fake: FakeTelegram
) -> None:
    # Misconfigured pacing (200/s against Telegram's 30/s): 429s happen, nothing is lost or
    # duplicated.
    outgoing = _attach(bot, global_rate=200.0, global_burst=200)
    fake.rate_limit(per_second=30)
    users = [fake.user(20_000 + i, f"S{i}") for i in range(60)]
    await asyncio.gather(*(bot.send_message(u.id, "hello") for u in users))

    assert Counter(m["chat"]["id"] for m in fake.sent_messages) == Counter(u.id for u in users)
    assert outgoing.stats.retried_429 > 0
    assert outgoing.stats.sent == 60


async def test_one_chat_is_paced_in_order_after_a_burst(bot: Bot, fake: FakeTelegram) -> None:
    outgoing = _attach(bot, per_chat_rate=5.0, per_chat_burst=2)
    fake.rate_limit(per_second=30, per_chat_per_second=5, per_chat_burst=3)
    alice = fake.user(1001, "Alice")

    await asyncio.gather(*(bot.send_message(alice.id, str(i)) for i in range(10)))

    assert [m["text"] for m in alice.messages] == [str(i) for i in range(10)]  # fair: FIFO
    times = [c.at for c in fake.calls_to("sendMessage")]
    assert times[1] - times[0] < 0.1  # the burst
    gaps = [b - a for a, b in itertools.pairwise(times[1:])]
    assert min(gaps) >= 0.15  # then ~1/rate apart
    assert times[-1] - times[0] >= 8 * 0.2 * 0.95
    assert outgoing.stats.retried_429 == 0


async def test_blocked_chat_is_reported_once_and_not_retried(bot: Bot, fake: FakeTelegram) -> None:
    report = Undeliverable()
    outgoing = _attach(bot, on_undeliverable=report)
    fake.user(1001, "Alice")
    fake.forbid_chat(1001)

    with pytest.raises(TelegramForbiddenError):
        await bot.send_message(1001, "Reminder: Math 101 starts in 10 minutes")

    assert report.calls == [(1001, "sendMessage", "Forbidden: bot was blocked by the user")]
    assert fake.call_count("sendMessage") == 1
    assert outgoing.stats.failed_permanent == 1
    assert outgoing.stats.retried_429 == outgoing.stats.retried_network == 0

    # every refusal is reported, and raised to the caller
    with pytest.raises(TelegramForbiddenError):
        await bot.send_message(1001, "again")
    assert len(report.calls) == 2


async def test_chat_not_found_is_undeliverable_but_other_bad_requests_are_not(
    bot: Bot, fake: FakeTelegram
) -> None:
    report = Undeliverable()
    _attach(bot, on_undeliverable=report)
    with pytest.raises(TelegramBadRequest, match="chat not found"):
        await bot.send_message(777, "never started the bot")
    assert report.calls == [(777, "sendMessage", "Bad Request: chat not found")]

    alice = fake.user(1001, "Alice")
    sent = await bot.send_message(alice.id, "same")
    with pytest.raises(TelegramBadRequest, match="not modified"):
        await bot.edit_message_text(text="same", chat_id=alice.id, message_id=sent.message_id)
    assert len(report.calls) == 1
    assert fake.call_count("editMessageText") == 1


async def test_network_and_server_errors_are_retried_with_backoff(
    bot: Bot, fake: FakeTelegram
) -> None:
    outgoing = _attach(bot, backoff_base=0.05)
    alice = fake.user(1001, "Alice")
    fake.disconnect_next("sendMessage", 1)
    fake.fail_next("sendMessage", 1, error_code=502)

    sent = await bot.send_message(alice.id, "hello")

    assert sent.text == "hello"
    calls = fake.calls_to("sendMessage")
    assert [c.status for c in calls] == [599, 502, 200]
    assert calls[2].at - calls[1].at >= 2 * (calls[1].at - calls[0].at) * 0.8  # exponential
    assert [m["text"] for m in alice.messages] == ["hello"]
    assert outgoing.stats.retried_network == 2


async def test_handler_replies_go_through_the_middleware(bot: Bot, fake: FakeTelegram) -> None:
    outgoing = _attach(bot)
    dp = Dispatcher()

    @dp.message(CommandStart())
    async def start(message: Message) -> None:
        await message.answer("Welcome to ATTN")

    fake.fail_next("sendMessage", 1, retry_after=1)
    polling = asyncio.create_task(
        dp.start_polling(bot, handle_signals=False, close_bot_session=False, polling_timeout=1)
    )
    try:
        alice = fake.user(1001, "Alice")
        await alice.send("/start")
        assert (await alice.next_message(timeout=5))["text"] == "Welcome to ATTN"
        assert outgoing.stats.retried_429 == 1
    finally:
        await dp.stop_polling()
        await polling
