"""The Telegram budget plan: who gets the bot's ~30 messages a second first.

Against the local fake Bot API and the real Redis: the outbox lanes (dal/redis/outbox.py),
drained in order by the delivery worker (bot/delivery.py) within the one flood budget
(bot/flood.py)."""

from __future__ import annotations

import asyncio
import time
from typing import Any, cast
from uuid import UUID, uuid4

import redis.asyncio as aioredis

from bot.delivery import DeliveryWorker
from bot.flood import RedisFloodBudget
from bot.notifier import OutboxNotifier
from bot.outgoing import OutgoingMiddleware
from bot.status_message import StatusBoard
from dal.redis.outbox import OutboxLanes
from services.notice_codec import decode, encode
from services.notify import ANSWER, RESULT, URGENT, Notice
from tests.fakes.telegram_server import FakeTelegram
from tests.support import poll_until
from ui.i18n import t


def _result(chat: int) -> Notice:
    return Notice(
        chat, "en", "final.present", {"lesson": "FIZ101", "date": "01.12.2026"}, lane=RESULT
    )


def _open(chat: int) -> Notice:
    return Notice(chat, "en", "remind.open", {"lesson": "MAT101"}, lane=URGENT)


async def test_attendance_open_notices_overtake_a_backlog_of_results(
    redis_raw: aioredis.Redis,
) -> None:
    """40 results wait; then a session opens: its "attendance is open" notices and an answer
    that had to wait go out next, not after the 40 results (first in, first out would send
    them last)."""
    async with FakeTelegram() as fake:
        results = [fake.user(7000 + i, f"R{i}").id for i in range(40)]
        opens = [fake.user(8000 + i, f"O{i}").id for i in range(5)]
        answered = fake.user(9000, "A").id
        bot = fake.bot()
        budget = RedisFloodBudget(redis_raw, bot_id=fake.bot_id, global_rate=10, margin=0)
        bot.session.middleware(OutgoingMiddleware(pacer=budget))
        lanes = OutboxLanes(redis_raw)
        notifier = OutboxNotifier(lanes)
        await notifier.enqueue([_result(chat) for chat in results])
        worker = DeliveryWorker(bot, lanes, window=4)
        await worker.start()
        try:
            await poll_until(lambda: len(fake.sent_messages) >= 3, 10, "the first results")
            await notifier.enqueue([_open(chat) for chat in opens])
            await notifier.enqueue([Notice(answered, "", "", {"text": "✅"}, lane=ANSWER)])
            await poll_until(lambda: len(fake.sent_messages) >= 46, 20, "every notice")
        finally:
            await worker.stop()
            await bot.session.close()
        order = [m["chat"]["id"] for m in fake.sent_messages]
        seen_at = len([c for c in order if c in results][:3])
        # Once queued, the six waited at most for the sends already in the worker's window.
        prompt = order[: seen_at + 4 + 6 + 1]
        assert set(opens) | {answered} <= set(prompt), order
        assert sorted(order) == sorted([*results, *opens, answered])
        assert await lanes.backlog() == 0


async def test_a_once_marker_covers_notices_of_several_lanes(redis_raw: aioredis.Redis) -> None:
    """A finalized session queues its teacher's summary and its results atomically, in their
    lanes; a rerun after a crash queues nothing again."""
    lanes = OutboxLanes(redis_raw)
    notifier = OutboxNotifier(lanes)
    batch = [_result(1), _open(2), Notice(3, "en", "help.student")]
    assert await notifier.enqueue(batch, once="once:x", once_ttl=60) is True
    assert await notifier.enqueue(batch, once="once:x", once_ttl=60) is False
    assert {lane: await lanes.lane(lane).backlog() for lane in ("urgent", "result", "bulk")} == {
        "urgent": 1,
        "result": 1,
        "bulk": 1,
    }
    await lanes.ensure_group()
    taken = await lanes.read("c", 10, block_ms=None, own=False)
    assert [decode(e.payload)[0].telegram_id for e in taken] == [2, 1, 3]  # lane order
    assert [e.payload for e in taken][1] == encode(_result(1))
    assert await lanes.read("c", 10, block_ms=50, own=False) == []


class _CountingBoard(StatusBoard):
    """The status loop as it runs; only the edit itself is counted instead of sent."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.edits = 0

    async def refresh(self, attendance_id: UUID) -> None:
        self._dirty.discard(attendance_id)
        self._last_edit[attendance_id] = time.monotonic()
        self.edits += 1


class _NoRotations:
    async def rotate_codes(self) -> list[object]:
        return []


async def _edits_while(board: _CountingBoard, seconds: float) -> int:
    session = uuid4()
    board._last_edit[session] = 0.0
    before = board.edits
    board.start()
    try:
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            board.touch(session)  # a check-in every 20 ms
            await asyncio.sleep(0.02)
    finally:
        await board.stop()
    return board.edits - before


async def test_status_edits_back_off_while_answers_fill_the_budget(
    redis_raw: aioredis.Redis,
) -> None:
    """A live count is edited every `min_interval` while the budget has room, and far less
    often while answers have booked it ahead; it speeds up again once they are out."""
    budget = RedisFloodBudget(redis_raw, bot_id=f"plan-{uuid4().hex[:6]}", global_rate=30)

    def board() -> _CountingBoard:
        return _CountingBoard(
            bot=cast(Any, None),
            attendance=cast(Any, _NoRotations()),
            min_interval=0.1,
            tick=0.05,
            pressure=budget.booked_ahead,
            max_interval=2.0,
        )

    idle = await _edits_while(board(), 1.5)
    assert idle >= 8  # ~every 0.1 s

    async def answers() -> None:  # 150 answers at 30/s: the budget booked 2 s ahead for 5 s
        await asyncio.gather(*(budget.acquire(None, bulk=False) for _ in range(150)))

    burst = asyncio.create_task(answers())
    await asyncio.sleep(0.3)
    busy_board = board()
    busy = await _edits_while(busy_board, 1.5)
    assert busy <= 4, busy
    assert busy_board.interval >= 1.0
    await burst
    assert await _edits_while(busy_board, 1.5) >= 5  # room again: back towards 0.1 s


async def test_a_students_results_go_out_as_one_message_an_hour(
    redis_raw: aioredis.Redis,
) -> None:
    """Two of a student's sessions ended: one message tells both results. A third result
    within the hold (2 s here, an hour in production) waits for its end, then comes alone."""

    def result(chat: int, lesson: str) -> Notice:
        return Notice(
            chat,
            "en",
            "final.absent",
            {"lesson": lesson, "date": "01.12.2026"},
            lane=RESULT,
            digest="result",
        )

    async with FakeTelegram() as fake:
        one, other = fake.user(7100, "S1").id, fake.user(7101, "S2").id
        bot = fake.bot()
        bot.session.middleware(OutgoingMiddleware())
        lanes = OutboxLanes(redis_raw, digest_hold_ms=2000)
        notifier = OutboxNotifier(lanes)
        await notifier.enqueue([result(one, "FIZ101"), result(other, "FIZ101")])
        await notifier.enqueue([result(one, "MAT102")])
        worker = DeliveryWorker(bot, lanes)
        await worker.start()
        try:
            await poll_until(lambda: len(fake.sent_messages) >= 2, 10, "the first results")
            first_at = time.monotonic()
            await notifier.enqueue([result(one, "KIM103")])
            await asyncio.sleep(1.0)
            assert len(fake.sent_messages) == 2  # on hold
            await poll_until(lambda: len(fake.sent_messages) >= 3, 10, "the held result")
            held_for = time.monotonic() - first_at
        finally:
            await worker.stop()
            await bot.session.close()
        texts = [(m["chat"]["id"], str(m["text"])) for m in fake.sent_messages]
        to_one = [text for chat, text in texts if chat == one]
        assert len(to_one) == 2, texts
        assert "FIZ101" in to_one[0] and "MAT102" in to_one[0] and "KIM103" not in to_one[0]
        assert "KIM103" in to_one[1] and "FIZ101" not in to_one[1]
        assert [text for chat, text in texts if chat == other] == [
            t("final.absent", locale="en", lesson="FIZ101", date="01.12.2026")
        ]
        assert held_for >= 1.5
        assert await lanes.backlog() == 0
        assert await redis_raw.zcard("outbox:later") == 0
        assert not await redis_raw.exists("digest:result:7100", "digest:result:7100:w")


async def test_paid_broadcast_once_the_oldest_notice_waited_too_long(
    redis_raw: aioredis.Redis,
) -> None:
    """With TELEGRAM_PAID_BROADCAST_AFTER_SECONDS set, notices go at the free rate until the
    oldest has waited that long; then as paid broadcasts, beyond the bot's rate (for Stars),
    and the backlog clears far sooner than the free rate allows. Off by default."""
    async with FakeTelegram() as fake:
        chats = [fake.user(7200 + i, f"P{i}").id for i in range(60)]
        fake.rate_limit(per_second=10, global_burst=2)
        bot = fake.bot()
        budget = RedisFloodBudget(redis_raw, bot_id=fake.bot_id, global_rate=10)
        bot.session.middleware(OutgoingMiddleware(pacer=budget))
        lanes = OutboxLanes(redis_raw)
        await OutboxNotifier(lanes).enqueue([_result(chat) for chat in chats])
        worker = DeliveryWorker(bot, lanes, paid_broadcast_after=1.0)
        began = time.monotonic()
        await worker.start()
        try:
            await poll_until(lambda: len(fake.sent_messages) >= 60, 10, "every result")
            elapsed = time.monotonic() - began
        finally:
            await worker.stop()
            await bot.session.close()
        sends = [c for c in fake.calls if c.method.lower() == "sendmessage"]
        paid = [c for c in sends if c.params.get("allow_paid_broadcast")]
        assert all(c.ok for c in sends)  # no 429: paid sends are outside the 10/s
        assert not any(c.params.get("allow_paid_broadcast") for c in sends[:5])  # free at first
        assert len(paid) >= 30
        assert elapsed < 60 / 10 * 0.6  # the free rate alone needs 6 s

        # Off (the default): every send at the free rate, none billed.
        fake.calls.clear()
        bot = fake.bot()
        bot.session.middleware(OutgoingMiddleware(pacer=budget))
        await OutboxNotifier(lanes).enqueue([_result(chat) for chat in chats[:15]])
        worker = DeliveryWorker(bot, lanes)
        await worker.start()
        try:
            await poll_until(lambda: len(fake.calls) >= 15, 10, "the free sends")
        finally:
            await worker.stop()
            await bot.session.close()
        assert not any(c.params.get("allow_paid_broadcast") for c in fake.calls)


async def test_a_refused_paid_broadcast_is_sent_free_and_paid_sends_stop(
    redis_raw: aioredis.Redis,
) -> None:
    """A bot Telegram does not allow paid broadcasts (or whose Stars ran out) loses nothing by
    setting TELEGRAM_PAID_BROADCAST_AFTER_SECONDS: each refused notice goes again at the free
    rate, every student gets their result once, and the worker stops asking to pay."""
    async with FakeTelegram() as fake:
        chats = [fake.user(7300 + i, f"Q{i}").id for i in range(40)]
        fake.rate_limit(per_second=10, global_burst=2)
        fake.refuse_paid_broadcasts()
        bot = fake.bot()
        budget = RedisFloodBudget(redis_raw, bot_id=fake.bot_id, global_rate=10)
        bot.session.middleware(OutgoingMiddleware(pacer=budget))
        lanes = OutboxLanes(redis_raw)
        await OutboxNotifier(lanes).enqueue([_result(chat) for chat in chats])
        worker = DeliveryWorker(bot, lanes, paid_broadcast_after=0.5)
        await worker.start()
        try:
            await poll_until(lambda: len(fake.sent_messages) >= 40, 15, "every result")
            await asyncio.sleep(0.5)  # nothing further on its way
        finally:
            await worker.stop()
            await bot.session.close()
        sends = [c for c in fake.calls if c.method.lower() == "sendmessage"]
        refused = [c for c in sends if c.params.get("allow_paid_broadcast")]
        delivered = sorted(c.params["chat_id"] for c in sends if c.ok)
        assert delivered == sorted(chats)  # each once, none lost
        assert refused, "the worker never tried a paid broadcast"
        assert not any(c.ok for c in refused)
        # Once refused, the rest went free: at most the sends already in flight were refused.
        assert len(refused) <= 16
        assert await lanes.backlog() == 0


WORKER_LOOPS = {"outbox-read", "outbox-watch"}


async def test_no_request_reaches_telegram_after_stop_returns(redis_raw: aioredis.Redis) -> None:
    """A replica stopped at any moment (its sends waiting for the shared budget in Redis, or on
    their way) sends nothing once `stop()` has returned, and its loops have ended: on Python
    3.11 a cancellation swallowed inside a Redis call (`wait_for`, see dal/redis/connection.py)
    left the read loop running, reading and sending notices the next replica sends too
    (measured: this test fails at the first stop without `CancelSafe`). Between the stopped
    workers and their successor every result arrives, none lost."""
    async with FakeTelegram() as fake:
        chats = [fake.user(7400 + i, f"S{i}").id for i in range(60)]
        fake.rate_limit(per_second=40)
        lanes = OutboxLanes(redis_raw)
        await OutboxNotifier(lanes).enqueue([_result(chat) for chat in chats])
        for stop_after in (0.0, 0.05, 0.11, 0.23, 0.37):
            bot = fake.bot()
            budget = RedisFloodBudget(redis_raw, bot_id=fake.bot_id, global_rate=30)
            bot.session.middleware(OutgoingMiddleware(pacer=budget))
            worker = DeliveryWorker(bot, lanes, window=16, heartbeat_ms=600)
            await worker.start()
            await asyncio.sleep(stop_after)
            await worker.stop(grace_seconds=0.05, wire_grace_seconds=0.3)
            seen = len(fake.calls)
            await asyncio.sleep(0.4)
            await bot.session.close()
            assert len(fake.calls) == seen, f"a request after stop() (stopped at {stop_after})"
            running = [t.get_name() for t in asyncio.all_tasks() if t.get_name() in WORKER_LOOPS]
            assert not running, f"{running} still running after stop() (at {stop_after})"
        bot = fake.bot()
        bot.session.middleware(OutgoingMiddleware(pacer=RedisFloodBudget(redis_raw, bot_id=1)))
        worker = DeliveryWorker(bot, lanes, heartbeat_ms=600)
        await worker.start()
        try:
            await poll_until(
                lambda: {m["chat"]["id"] for m in fake.sent_messages} >= set(chats), 30, "all"
            )
        finally:
            await worker.stop()
            await bot.session.close()
        assert await lanes.backlog() == 0
