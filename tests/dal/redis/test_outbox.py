"""The durable outbox (dal/redis/outbox.py), the shared flood budget (bot/flood.py) and the renewing
per-user locks (bot/locks.py) against the real Redis."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections import Counter
from datetime import UTC, datetime, timedelta

import pytest
import redis.asyncio as aioredis
from aiogram.fsm.storage.base import StorageKey
from aiogram.fsm.storage.redis import DefaultKeyBuilder

from bot.flood import RedisFloodBudget
from bot.locks import RenewingRedisEventIsolation
from dal.models import LiveRecord, LiveSession
from dal.redis.outbox import Entry, Outbox, OutboxLanes
from dal.redis.stores import RedisStores
from services.notice_codec import Tries, conditions, decode, digest_entry, encode, encode_text
from services.notify import Attachment, Button, Moment, Notice, Percent, Stale
from services.pseudonyms import pseudonym
from tests.support import poll_until


def _notice(i: int, *drop_if: Stale) -> Notice:
    return Notice(
        telegram_id=10_000_000_000 + i,  # past 2**32: must survive the round trip exactly
        language="tr",
        key="final.present",
        values={"lesson": "FİZ101 - Fizik I", "date": "01.12.2026"},
        buttons=(Button("button.start_attendance", "start_lesson", ("FIZ101", 1764576000)),),
        drop_if=drop_if,
    )


async def test_marker_and_entries_are_enqueued_together_once(redis_raw: aioredis.Redis) -> None:
    outbox = Outbox(redis_raw)
    payloads = [encode(_notice(i)) for i in range(3)]

    assert await outbox.add(payloads, once="once:final:x", once_ttl=60) is True
    assert await outbox.add(payloads, once="once:final:x", once_ttl=60) is False  # a rerun

    assert await outbox.backlog() == 3
    assert 0 < await redis_raw.ttl("once:final:x") <= 60
    await outbox.ensure_group()
    entries = await outbox.read("c1", 10, block_ms=None, own=False)
    assert [decode(e.payload)[0] for e in entries] == [_notice(i) for i in range(3)]


async def test_a_marker_with_a_state_tells_each_new_state_and_a_repeated_one_never(
    redis_raw: aioredis.Redis,
) -> None:
    """A teacher accepts, the step is retried (after a crash, or a second click), then they
    reject, then accept again: the student hears accepted, rejected, accepted; never the same
    decision twice in a row, and the retry of a decision that was not queued yet is queued."""
    lanes = OutboxLanes(redis_raw)
    marker = "once:review:x"
    told = [
        await lanes.add([("result", state)], once=marker, once_ttl=60, once_state=state)
        for state in ("accepted", "accepted", "rejected", "accepted", "accepted")
    ]
    assert told == [True, False, True, True, False]
    assert await lanes.backlog() == 3
    assert await redis_raw.get(marker) == "accepted"
    # A plain marker still means once, whatever was queued under it.
    assert await lanes.add([("result", "x")], once="once:plain", once_ttl=60) is True
    assert await lanes.add([("result", "x")], once="once:plain", once_ttl=60) is False


async def test_a_dead_consumers_entries_are_taken_over_and_nothing_else(
    redis_raw: aioredis.Redis,
) -> None:
    outbox = Outbox(redis_raw)
    await outbox.ensure_group()
    await outbox.add([encode(_notice(i)) for i in range(10)])
    await outbox.heartbeat("alive", 60_000)
    await outbox.heartbeat("dead", 60_000)
    mine = await outbox.read("alive", 3, block_ms=None, own=False)
    theirs = await outbox.read("dead", 4, block_ms=None, own=False)
    await outbox.ack([mine[0].id])  # delivered

    assert await outbox.take_over_dead("alive") == 0  # "dead" still has its heartbeat
    await redis_raw.delete("outbox:alive:dead")  # kill -9: the heartbeat expires
    assert await outbox.take_over_dead("alive") == 4

    pending = await outbox.read("alive", 100, block_ms=None, own=True)
    assert [e.id for e in pending] == [e.id for e in mine[1:] + theirs]
    fresh = await outbox.read("alive", 100, block_ms=None, own=False)
    assert len(fresh) == 3  # the entries nobody had read yet
    assert await outbox.pending() == 2 + 4 + 3
    assert await outbox.backlog() == 9


async def test_requeue_moves_an_entry_to_the_back(redis_raw: aioredis.Redis) -> None:
    outbox = Outbox(redis_raw)
    await outbox.ensure_group()
    await outbox.add([encode(_notice(0)), encode(_notice(1))])
    first, _second = await outbox.read("c", 2, block_ms=None, own=False)
    assert await outbox.requeue("c", [first]) == 1
    assert await outbox.pending() == 1
    (again,) = await outbox.read("c", 5, block_ms=None, own=False)
    assert again.payload == first.payload and again.id != first.id


async def test_requeue_leaves_an_entry_another_consumer_took_over(
    redis_raw: aioredis.Redis,
) -> None:
    """A worker that stalled past its heartbeat fails its send afterwards: the entry, taken over
    and being sent by another worker, must not be put back a second time (it would arrive
    twice)."""
    outbox = Outbox(redis_raw)
    await outbox.ensure_group()
    await outbox.add([encode(_notice(0))])
    (entry,) = await outbox.read("stalled", 1, block_ms=None, own=False)
    assert await outbox.take_over_dead("alive") == 1  # "stalled" has no heartbeat

    assert await outbox.requeue("stalled", [entry]) == 0
    assert await outbox.backlog() == 1
    assert [e.id for e in await outbox.read("alive", 5, block_ms=None, own=True)] == [entry.id]


async def test_stale_conditions_are_evaluated_in_one_call(redis_client: RedisStores) -> None:
    now = datetime.now(UTC)

    async def open_session(teacher: str, lesson: str) -> uuid.UUID:
        session = await redis_client.sessions.open_attendance(
            attendance=LiveSession(
                attendance_id=uuid.uuid4(),
                teacher_school_number=teacher,
                teacher_full_name="ÖĞRETMEN",
                lesson_name="Fizik I",
                lesson_code=lesson,
                code="000000",
                start_time=now - timedelta(minutes=5),
                planned_end_time=now + timedelta(minutes=45),
            ),
            enrolled=["S1", "S2"],
        )
        return session.attendance_id

    running = await open_session("T1", "FIZ101")
    ended = await open_session("T2", "MAT101")
    await redis_client.sessions.finish_attendance(
        attendance_id=ended, end_time=now - timedelta(seconds=1)
    )
    await redis_client.sessions.add_attendance_record(
        record=LiveRecord(
            attendance_id=running,
            student_number="S1",
            student_full_name="ÖĞRENCİ",
            is_attended=True,
            attendance_time=now,
        )
    )
    outbox = Outbox(redis_client.redis)
    cases = [
        ((Stale.checked_in(running, "S1"),), True),
        ((Stale.checked_in(running, "S2"),), False),
        ((Stale.session_over(running),), False),
        ((Stale.session_over(ended),), True),
        ((Stale.session_over(uuid.uuid4()),), True),  # finalized: keys gone
        ((Stale.checked_in(running, "S2"), Stale.session_over(running)), False),
        ((Stale.checked_in(ended, "S2"), Stale.session_over(ended)), True),
        ((Stale.lesson_opened("T1", "FIZ101"),), True),
        ((Stale.lesson_opened("T1", "KIM101"),), False),  # another lesson of that teacher
        ((Stale.lesson_opened("T2", "MAT101"),), False),  # ended, not open
        ((Stale.lesson_opened("T9", "FIZ101"),), False),
    ]
    verdicts = await outbox.stale([conditions(conds) for conds, _ in cases])
    assert verdicts == [expected for _, expected in cases]


async def test_two_replicas_share_one_budget_and_bulk_yields(redis_raw: aioredis.Redis) -> None:
    rate = 50.0
    a = RedisFloodBudget(redis_raw, bot_id=1, global_rate=rate, per_chat_rate=1000, margin=0)
    b = RedisFloodBudget(redis_raw, bot_id=1, global_rate=rate, per_chat_rate=1000, margin=0)
    stamps: list[tuple[str, float]] = []

    async def send(budget: RedisFloodBudget, chat: int, bulk: bool) -> None:
        await budget.acquire(chat, bulk=bulk)
        stamps.append(("bulk" if bulk else "direct", time.monotonic()))

    began = time.monotonic()
    bulk = [asyncio.create_task(send(b, 1000 + i, True)) for i in range(10)]
    await asyncio.sleep(0.05)  # the bulk sender is busy when the direct answers arrive
    await asyncio.gather(*(send(r, i, False) for i, r in enumerate([a, b] * 20)))
    direct_done = time.monotonic() - began
    await asyncio.gather(*bulk)

    times = sorted(t for _, t in stamps)
    assert len(times) == 50
    # 50 sends from two replicas at 50/s together: about a second, never faster
    assert times[-1] - times[0] >= 49 / rate * 0.95
    assert len([t for t in times if t - times[0] < 0.5]) <= 0.5 * rate + 2
    # the 40 direct answers went first: bulk used only what they left
    kinds = [k for k, _ in sorted(stamps, key=lambda x: x[1])]
    first, last = kinds.index("direct"), len(kinds) - 1 - kinds[::-1].index("direct")
    assert kinds[first : last + 1].count("bulk") <= 1
    assert direct_done < 40 / rate + 0.5


async def test_a_stalled_replica_gives_up_its_past_slots_instead_of_bursting(
    redis_raw: aioredis.Redis,
) -> None:
    # Replica a's senders sleep towards their slots when its event loop stalls (a long GC, an
    # overloaded host): waking together afterwards, they must not all send at once on top of
    # the slots replica b holds by then; the budget never granted that burst.
    rate = 30.0
    bot = uuid.uuid4().hex
    a = RedisFloodBudget(redis_raw, bot_id=bot, global_rate=rate, per_chat_rate=1000, margin=0)
    b = RedisFloodBudget(redis_raw, bot_id=bot, global_rate=rate, per_chat_rate=1000, margin=0)
    stamps: list[float] = []

    async def send(budget: RedisFloodBudget, chat: int) -> None:
        await budget.acquire(chat, bulk=False)
        stamps.append(time.monotonic())

    first = [asyncio.create_task(send(a, i)) for i in range(20)]
    await asyncio.sleep(0.05)  # a's slots are reserved; its senders sleep towards them
    time.sleep(0.4)  # the loop stalls past a dozen of them
    await asyncio.gather(*first, *(send(b, 100 + i) for i in range(20)))

    stamps.sort()
    assert len(stamps) == 40
    assert a.rebooked > 0
    # no more in any 0.2 s than the rate allows (one slot of jitter either side); without
    # giving past slots up, the dozen woken together are sent in the same millisecond
    busiest_fifth = max(len([t for t in stamps if s <= t < s + 0.2]) for s in stamps)
    assert busiest_fifth <= 0.2 * rate + 2
    busiest_second = max(len([t for t in stamps if s <= t < s + 1.0]) for s in stamps)
    assert busiest_second <= rate + 2


async def test_a_429_pauses_every_replica(redis_raw: aioredis.Redis) -> None:
    a = RedisFloodBudget(redis_raw, bot_id=2, global_rate=1000, per_chat_rate=1000)
    b = RedisFloodBudget(redis_raw, bot_id=2, global_rate=1000, per_chat_rate=1000)
    await a.pause(5, 0.6)  # replica a got "retry after" for chat 5
    began = time.monotonic()
    await b.acquire(6, bulk=False)
    assert time.monotonic() - began >= 0.55
    began = time.monotonic()
    await b.acquire(7, bulk=True)
    assert time.monotonic() - began < 0.1


async def test_per_user_lock_is_renewed_while_held_and_short_after_a_crash(
    redis_raw: aioredis.Redis,
) -> None:
    isolation = RenewingRedisEventIsolation(
        redis=redis_raw, key_builder=DefaultKeyBuilder(prefix="fsm"), ttl=0.6
    )
    key = StorageKey(bot_id=1, chat_id=42, user_id=42)
    name = "fsm:42:42:lock"
    async with isolation.lock(key):
        await asyncio.sleep(1.5)  # a slow handler: longer than the lock's ttl
        assert await redis_raw.exists(name)
        assert 0 < await redis_raw.pttl(name) <= 600
    assert not await redis_raw.exists(name)

    # A crash leaves the key behind, unrenewed: the next update waits at most its ttl.
    await redis_raw.set(name, "dead-owner", px=600)
    began = time.monotonic()
    async with isolation.lock(key):
        assert time.monotonic() - began < 0.8


def test_a_queued_notice_is_small() -> None:
    payload = encode(_notice(1, Stale.checked_in(uuid.uuid4(), "2024123456")))
    assert len(payload.encode()) < 400


async def test_answers_reserve_at_most_the_horizon_ahead(redis_raw: aioredis.Redis) -> None:
    budget = RedisFloodBudget(
        redis_raw, bot_id=3, global_rate=50, per_chat_rate=1000, margin=0, horizon=0.5
    )
    queued = [asyncio.create_task(budget.acquire(i, bulk=False)) for i in range(100)]  # 2 s
    await asyncio.sleep(0.2)
    seconds, micros = await redis_raw.time()
    ahead_ms = float(await redis_raw.get("flood:3:g")) - (seconds * 1000 + micros / 1000)
    assert 300 <= ahead_ms <= 500 + 20 + 1
    for task in queued:  # the process dies with its answers still queued
        task.cancel()
    await asyncio.gather(*queued, return_exceptions=True)
    began = time.monotonic()
    await budget.acquire(1000, bulk=False)  # a restarted process is not held up for 2 s
    assert time.monotonic() - began <= 0.55


async def test_answers_left_at_shutdown_go_to_the_outbox_and_arrive_once(
    redis_raw: aioredis.Redis,
) -> None:
    from bot.answers import AnswerQueue
    from bot.delivery import DeliveryWorker
    from bot.outgoing import OutgoingMiddleware
    from tests.fakes.telegram_server import FakeTelegram

    async with FakeTelegram() as fake:
        users = [fake.user(5000 + i, f"S{i}") for i in range(30)]
        bot = fake.bot()
        budget = RedisFloodBudget(redis_raw, bot_id=fake.bot_id, global_rate=20, margin=0)
        bot.session.middleware(OutgoingMiddleware(pacer=budget))
        outbox = Outbox(redis_raw)
        answers = AnswerQueue(bot, outbox, senders=4)
        answers.start()
        for user in users:
            answers.put(user.id, f"Checked in {user.id}")
        await asyncio.sleep(0.3)
        began = time.monotonic()
        await answers.stop(grace_seconds=0.2)  # SIGTERM in the middle of the burst
        assert time.monotonic() - began < 1.0
        sent_before = len(fake.sent_messages)
        assert 0 < sent_before < 30
        assert await outbox.backlog() >= 30 - sent_before

        worker = DeliveryWorker(bot, outbox)  # the next process
        await worker.start()
        try:  # every user answered (a count of 30 messages may include a repeat)
            await poll_until(
                lambda: {m["chat"]["id"] for m in fake.sent_messages} >= {u.id for u in users},
                10,
                "every answer",
            )
        finally:
            await worker.stop()
            await bot.session.close()
        got = Counter((m["chat"]["id"], m["text"]) for m in fake.sent_messages)
        assert set(got) == {(u.id, f"Checked in {u.id}") for u in users}
        assert sum(got.values()) - 30 <= 4  # at most the sends cut off in flight repeat
        assert await outbox.backlog() == 0


async def test_an_open_notice_is_dropped_when_its_student_checks_in_while_it_waits(
    redis_client: RedisStores,
) -> None:
    """The batch check passes (nobody is in yet); the class then checks in while the notices
    wait for bulk slots: none of them reaches a student who is already in."""
    from bot.delivery import DeliveryWorker
    from bot.outgoing import OutgoingMiddleware
    from tests.fakes.telegram_server import FakeTelegram

    now = datetime.now(UTC)
    session = await redis_client.sessions.open_attendance(
        attendance=LiveSession(
            attendance_id=uuid.uuid4(),
            teacher_school_number="T1",
            teacher_full_name="ÖĞRETMEN",
            lesson_name="Fizik I",
            lesson_code="FIZ101",
            code="000000",
            start_time=now - timedelta(minutes=1),
            planned_end_time=now + timedelta(minutes=45),
        ),
        enrolled=[f"S{i}" for i in range(12)],
    )
    running = session.attendance_id
    async with FakeTelegram() as fake:
        users = [fake.user(6000 + i, f"S{i}") for i in range(12)]
        bot = fake.bot()
        redis = redis_client.redis
        # 4 messages/s: the 12 notices of one batch need 3 s of slots.
        budget = RedisFloodBudget(redis, bot_id=fake.bot_id, global_rate=4, margin=0)
        bot.session.middleware(OutgoingMiddleware(pacer=budget))
        outbox = Outbox(redis)
        notices = [
            Notice(
                u.id,
                "en",
                "remind.open",
                {"lesson": "Fizik I"},
                drop_if=(Stale.checked_in(running, f"S{i}"),),
            )
            for i, u in enumerate(users)
        ]
        await outbox.add([encode(n) for n in notices])
        worker = DeliveryWorker(bot, outbox)
        await worker.start()
        try:
            await fake.wait_for_sent(1, timeout=5)
            for i in range(12):  # the whole class checks in
                await redis_client.sessions.add_attendance_record(
                    record=LiveRecord(
                        attendance_id=running,
                        student_number=f"S{i}",
                        student_full_name="ÖĞRENCİ",
                        is_attended=True,
                        attendance_time=datetime.now(UTC),
                    )
                )
            sent_before = len(fake.sent_messages)
            deadline = time.monotonic() + 8
            while await outbox.backlog() and time.monotonic() < deadline:
                await asyncio.sleep(0.1)
        finally:
            await worker.stop()
            await bot.session.close()
        assert await outbox.backlog() == 0
        # One send may have passed its check just before the check-ins.
        assert len(fake.sent_messages) <= sent_before + 1
        assert len(fake.sent_messages) + worker.dropped_stale == 12
        assert worker.dropped_stale >= 12 - sent_before - 1 > 0


async def test_the_worker_recreates_its_group_after_redis_lost_the_outbox(
    redis_raw: aioredis.Redis, caplog: pytest.LogCaptureFixture
) -> None:
    """Redis restarted without persistence (here: the keyspace flushed under a running worker):
    notices queued afterwards are still delivered, without a restart of the bot, and without
    an error in the log (Redis 7 answers the read blocked at that moment with UNBLOCKED, 6.2
    with NOGROUP on the next read; both mean "recreate the group")."""
    from bot.delivery import DeliveryWorker
    from tests.fakes.telegram_server import FakeTelegram

    async with FakeTelegram() as fake:
        user = fake.user(7001, "S1")
        bot = fake.bot()
        outbox = Outbox(redis_raw)
        worker = DeliveryWorker(bot, outbox, heartbeat_ms=300)
        await worker.start()
        try:
            await outbox.add([encode(Notice(user.id, "en", "", {"text": "before"}))])
            await fake.wait_for_sent(1, timeout=5)
            await redis_raw.flushdb()
            await asyncio.sleep(0.5)  # the read loop and the watch loop meet the missing group
            notice = Notice(user.id, "en", "", {"text": "after the restart"})
            await outbox.add([encode(notice)])
            await fake.wait_for_sent(2, timeout=5)
        finally:
            await worker.stop()
            await bot.session.close()
    assert fake.sent_messages[-1]["text"] == "after the restart"
    assert await outbox.backlog() == 0
    assert "outbox read failed" not in caplog.text


def _text_notice(chat_id: int) -> str:
    return encode(Notice(chat_id, "en", "", {"text": f"result {chat_id}"}))


async def test_entries_deleted_while_pending_leave_the_pending_list(
    redis_raw: aioredis.Redis,
) -> None:
    """A pending entry whose message is gone (deleted by hand, or trimmed) must not stand at
    the head of the pending list forever, hiding the entries behind it from a reread."""
    outbox = Outbox(redis_raw)
    await outbox.ensure_group()
    await outbox.add([encode(_notice(i)) for i in range(5)])
    taken = await outbox.read("w", 5, block_ms=None, own=False)
    await redis_raw.xdel(outbox.stream, *[e.id for e in taken[:3]])

    again = await outbox.read("w", 2, block_ms=None, own=True)  # a page of deleted ones first
    assert again and again[0].id == taken[3].id
    assert await outbox.pending() == 2  # the deleted three are out


async def test_a_takeover_during_a_reread_of_the_pending_list_is_not_forgotten(
    redis_raw: aioredis.Redis,
) -> None:
    """The watch loop takes over a dead consumer's entries while the read loop is rereading its
    own pending list (the read began before the takeover and comes back empty): the taken
    entries must still be read and sent, not left pending until the stuck-entry sweep."""
    from bot.delivery import DeliveryWorker
    from tests.fakes.telegram_server import FakeTelegram

    taken_over = asyncio.Event()

    class RacingOutbox(Outbox):
        rereads = 0

        async def read(
            self, consumer: str, count: int, *, block_ms: int | None, own: bool
        ) -> list[Entry]:
            entries = await super().read(consumer, count, block_ms=block_ms, own=own)
            if own and self.rereads == 0:
                self.rereads += 1
                await taken_over.wait()  # answered before the takeover, returned after it
            return entries

        async def take_over_dead(self, consumer: str, *, batch: int = 100) -> int:
            taken = await super().take_over_dead(consumer, batch=batch)
            if taken:
                taken_over.set()
            return taken

    async with FakeTelegram() as fake:
        users = [fake.user(7100 + i, f"S{i}") for i in range(3)]
        outbox = RacingOutbox(redis_raw)
        await outbox.ensure_group()
        await outbox.add([_text_notice(u.id) for u in users])
        assert len(await outbox.read("killed", 10, block_ms=None, own=False)) == 3  # no heartbeat
        bot = fake.bot()
        worker = DeliveryWorker(bot, outbox, heartbeat_ms=300)
        await worker.start()
        try:
            await fake.wait_for_sent(3, timeout=5)
        finally:
            await worker.stop()
            await bot.session.close()
    assert sorted(m["chat"]["id"] for m in fake.sent_messages) == [u.id for u in users]
    assert await outbox.backlog() == 0


async def test_telegram_down_for_a_while_loses_no_notice(redis_raw: aioredis.Redis) -> None:
    """Telegram answers 502 for longer than the middleware's retries and several rounds of
    the worker's: every notice still arrives once, after the outage, and the worker held back
    between rounds instead of spinning on the failing API."""
    from bot.delivery import DeliveryWorker
    from bot.outgoing import OutgoingMiddleware
    from tests.fakes.telegram_server import FakeTelegram

    async with FakeTelegram() as fake:
        users = [fake.user(7200 + i, f"S{i}") for i in range(10)]
        bot = fake.bot()
        bot.session.middleware(OutgoingMiddleware(max_retries=1, backoff_base=0.01))
        outbox = Outbox(redis_raw)
        await outbox.ensure_group()
        fake.fail_next("sendMessage", 160, error_code=502, description="Bad Gateway")
        await outbox.add([_text_notice(u.id) for u in users])
        worker = DeliveryWorker(bot, outbox, backoff_max=0.3)
        began = time.monotonic()
        await worker.start()
        try:
            await fake.wait_for_sent(10, timeout=30)
        finally:
            await worker.stop()
            await bot.session.close()
        took = time.monotonic() - began
    got = Counter(m["chat"]["id"] for m in fake.sent_messages)
    assert got == Counter(u.id for u in users)
    assert await outbox.backlog() == 0
    # 160 failures at 2 calls per notice per round: 8 rounds, each followed by a hold-back.
    assert took >= 7 * 0.3


async def test_a_notice_failing_for_a_day_is_given_up_and_logged(
    redis_raw: aioredis.Redis, caplog: pytest.LogCaptureFixture
) -> None:
    from bot.delivery import DeliveryWorker
    from bot.outgoing import OutgoingMiddleware
    from tests.fakes.telegram_server import FakeTelegram

    now = [1_800_000_000.0]
    async with FakeTelegram() as fake:
        user = fake.user(7300, "S1")
        bot = fake.bot()
        bot.session.middleware(OutgoingMiddleware(max_retries=0))
        outbox = Outbox(redis_raw)
        await outbox.ensure_group()
        fake.fail_next("sendMessage", 1000, error_code=500)
        await outbox.add([encode(Notice(user.id, "en", "", {"text": "result"}))])
        worker = DeliveryWorker(bot, outbox, backoff_max=0.05, clock=lambda: now[0])
        await worker.start()
        try:
            await fake.wait_for_calls("sendMessage", 2, timeout=5)
            assert await outbox.backlog() == 1  # failing, kept
            now[0] += 86_400  # a day of outage later
            await poll_until(lambda: "given up" in caplog.text, 5, "the notice given up")
        finally:
            await worker.stop()
            await bot.session.close()
    assert fake.sent_messages == []
    assert await outbox.backlog() == 0
    # The chat by its pseudonym only (never the Telegram id) in the log line.
    assert f"to {pseudonym(7300)} given up after failing" in caplog.text


# Entries exactly as the codec wrote them before it moved beside the notice type: entries
# queued by a running bot must still be read the same after a deploy.
_SESSION = "0b7e4c2a-1f6e-4a57-9d1c-3f1c2b9a8e01"
_QUEUED_NOTICE = (
    '{"t":4711,"l":"tr","k":"result.absent","v":{"lesson":"FİZ101 - Fizik I",'
    '"date":{"$m":"2025-03-10T06:00:00+00:00","z":"Europe/Istanbul"},'
    '"time":{"$m":"2025-03-10T06:00:00+00:00","z":"Europe/Istanbul","o":1},'
    '"rate":{"$p":12.5},"left":2},'
    '"b":[["button.excuse","excuse",["0b7e4c2a-1f6e-4a57-9d1c-3f1c2b9a8e01",3]],'
    '["button.open","web_app",[]]],'
    '"d":[["checked_in","0b7e4c2a-1f6e-4a57-9d1c-3f1c2b9a8e01","S2"],'
    '["session_over","0b7e4c2a-1f6e-4a57-9d1c-3f1c2b9a8e01"],["lesson_opened","T1","FIZ101"]],'
    '"m":["pdf","BQACAgIAAxkB"],"a":2,"f":1741586400.123}'
)


def _queued_notice() -> Notice:
    at = datetime(2025, 3, 10, 6, 0, tzinfo=UTC)
    return Notice(
        telegram_id=4711,
        language="tr",
        key="result.absent",
        values={
            "lesson": "FİZ101 - Fizik I",
            "date": Moment(at, "Europe/Istanbul"),
            "time": Moment(at, "Europe/Istanbul", time_only=True),
            "rate": Percent(12.5),
            "left": 2,
        },
        buttons=(
            Button("button.excuse", "excuse", (_SESSION, 3)),
            Button("button.open", "web_app", ()),
        ),
        drop_if=(
            Stale.checked_in(_SESSION, "S2"),
            Stale.session_over(_SESSION),
            Stale.lesson_opened("T1", "FIZ101"),
        ),
        attachment=Attachment("pdf", "BQACAgIAAxkB"),
    )


async def test_an_entry_queued_by_the_previous_codec_is_read_the_same(
    redis_raw: aioredis.Redis,
) -> None:
    outbox = Outbox(redis_raw)
    await outbox.ensure_group()
    await outbox.add([_QUEUED_NOTICE, '{"t":4711,"g":"results"}', '{"t":4711,"x":"Yoklama açık"}'])
    entries = await outbox.read("c1", 10, block_ms=None, own=False)

    notice, tries = decode(entries[0].payload)
    assert notice == _queued_notice()
    assert tries == Tries(2, 1741586400.123)
    # A transient failure puts it back re-encoded: byte for byte what was queued.
    assert encode(notice, tries) == _QUEUED_NOTICE
    assert decode(entries[1].payload)[0] == Notice(4711, "", "", digest="results")
    assert encode(Notice(4711, "", "", digest="results")) == digest_entry("results", 4711)
    assert digest_entry("results", 4711) == entries[1].payload
    assert decode(entries[2].payload)[0] == Notice(4711, "", "", {"text": "Yoklama açık"})
    assert encode_text(4711, "Yoklama açık") == entries[2].payload
    # Its conditions, as the staleness script reads them: the session is gone, so it is dropped;
    # a lesson of another teacher alone does not drop it.
    assert await outbox.stale(
        [conditions(notice.drop_if), conditions((Stale.lesson_opened("T9", "FIZ101"),))]
    ) == [True, False]
