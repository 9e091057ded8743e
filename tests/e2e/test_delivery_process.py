"""Delivery that survives restarts, measured on the real process (`python -m bot`) against the
local Bot API server enforcing Telegram's 30 messages/s:

(a) a top-of-the-hour backlog: direct answers stay fast, SIGTERM exits 0 within 5 s, and after
    a restart every student has their result exactly once (<= 1 % twice);
(b) kill -9 in the middle of outbox delivery, restart: nothing lost;
(c) kill -9 while a handler holds a user's lock, restart: that user is answered within 3 s;
(d) two replicas in webhook mode behind a round-robin proxy, one Redis: <= 30 messages/s
    together, <= 1 429 per 100 sends, and no stale "attendance is open" notice;
(e) a graceful restart, and a rolling deploy of two webhook replicas, send no notice twice.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import redis.asyncio as aioredis

from dal.models import LiveRecord, LiveSession
from dal.redis.outbox import Outbox
from dal.redis.stores import RedisStores
from services.notice_codec import encode
from services.notify import Notice, Stale
from tests.fakes.telegram_server import FakeTelegram
from tests.support import (
    STUDENT_BASE,
    BotProcess,
    bot_env,
    called_again,
    poll_until,
    prepare_stores,
    webhook_replicas,
)

RESULT_TEXT = "📊 FIZ101"  # start of the final.present notices below

pytestmark = pytest.mark.slow


# --- helpers ---------------------------------------------------------------------------


def _result(i: int) -> Notice:
    return Notice(
        telegram_id=STUDENT_BASE + i,
        language="en",
        key="final.present",
        values={"lesson": "FIZ101 - Fizik I", "date": "01.12.2026 10:00"},
    )


async def _enqueue(redis: aioredis.Redis, notices: list[Notice]) -> None:
    outbox = Outbox(redis)
    await outbox.ensure_group()
    for start in range(0, len(notices), 200):
        await outbox.add([encode(n) for n in notices[start : start + 200]])


def _count_429(telegram: FakeTelegram) -> tuple[int, int]:
    calls = telegram.calls_to("sendMessage")
    return sum(1 for c in calls if c.status == 429), sum(1 for c in calls if c.ok)


def _results_by_student(telegram: FakeTelegram, n: int) -> Counter[int]:
    got: Counter[int] = Counter()
    for message in telegram.sent_messages:
        chat = message["chat"]["id"]
        if STUDENT_BASE <= chat < STUDENT_BASE + n and str(message.get("text", "")).startswith(
            RESULT_TEXT
        ):
            got[chat] += 1
    return got


async def _every_result_arrives(
    telegram: FakeTelegram, n: int, bot: BotProcess, redis: aioredis.Redis
) -> None:
    """Within 25 s of a restart every student has a result; if not, the failure says what
    Redis's consumer group and the bot's log show, for the next reader."""
    try:
        await poll_until(
            lambda: len(_results_by_student(telegram, n)) == n, 25, "every result after restart"
        )
    except AssertionError as exc:
        consumers = await redis.xinfo_consumers("outbox", "delivery")
        raise AssertionError(
            f"{exc}: {len(_results_by_student(telegram, n))}/{n} delivered; "
            f"consumers {consumers}; bot log:\n{bot.log.read_text()[-6000:]}"
        ) from None


# --- (b) kill -9 mid-delivery ----------------------------------------------------------


async def test_kill_9_mid_delivery_then_restart_loses_nothing(
    pg_dsn: str, redis_url: str, redis_raw: aioredis.Redis, tmp_path: Path
) -> None:
    n = 240
    await prepare_stores(pg_dsn, redis_url)
    async with FakeTelegram() as telegram:
        telegram.rate_limit(per_second=30)
        for i in range(n):
            telegram.user(STUDENT_BASE + i, f"S{i}")
        await _enqueue(redis_raw, [_result(i) for i in range(n)])
        bot = BotProcess(bot_env(telegram, pg_dsn, redis_url), tmp_path / "bot.log")
        try:
            await bot.start(telegram, called_again(telegram, "getUpdates"))
            await poll_until(lambda: len(telegram.sent_messages) >= 80, 20, "the first 80 results")
            await bot.kill()
            delivered_at_kill = len(_results_by_student(telegram, n))
            assert delivered_at_kill < n - 100, "delivery finished before the kill"

            await bot.start(telegram, called_again(telegram, "getUpdates"))
            await _every_result_arrives(telegram, n, bot, redis_raw)
            code, _ = await bot.terminate()
            assert code == 0, bot.log.read_text()
        finally:
            await bot.ensure_stopped()
        got = _results_by_student(telegram, n)
        twice = sum(1 for c in got.values() if c > 1)
        print(f"\nkill -9 after {delivered_at_kill}/{n}: all delivered, {twice} sent twice")
        assert set(got) == {STUDENT_BASE + i for i in range(n)}
        assert twice <= n // 100
        assert max(got.values()) <= 2
        assert await Outbox(redis_raw).backlog() == 0


# --- (a) the top of the hour: latency, SIGTERM, restart -----------------------------------


async def test_backlog_direct_answers_fast_sigterm_prompt_and_nothing_lost(
    pg_dsn: str, redis_url: str, redis_raw: aioredis.Redis, tmp_path: Path
) -> None:
    n = 360
    await prepare_stores(pg_dsn, redis_url)
    async with FakeTelegram() as telegram:
        # Strict accounting: 30/s with no more than two messages back to back.
        telegram.rate_limit(per_second=30, global_burst=2)
        for i in range(n):
            telegram.user(STUDENT_BASE + i, f"S{i}")
        probes = [telegram.user(900 + i, f"Teacher {i}") for i in range(12)]
        await _enqueue(redis_raw, [_result(i) for i in range(n)])
        bot = BotProcess(bot_env(telegram, pg_dsn, redis_url), tmp_path / "bot.log")
        try:
            await bot.start(telegram, called_again(telegram, "getUpdates"))
            await poll_until(lambda: len(telegram.sent_messages) >= 60, 15, "the backlog to flow")

            latencies: list[float] = []
            for user in probes:
                began = time.monotonic()
                await user.send("/start")
                await user.next_message(timeout=10)
                latencies.append(time.monotonic() - began)
                await asyncio.sleep(0.25)
            backlog_at_term = n - len(_results_by_student(telegram, n))
            assert backlog_at_term > 150, "the backlog ran out before SIGTERM"
            code, exit_seconds = await bot.terminate()
            assert code == 0, bot.log.read_text()

            await bot.start(telegram, called_again(telegram, "getUpdates"))
            await _every_result_arrives(telegram, n, bot, redis_raw)
            code, _ = await bot.terminate()
            assert code == 0
        finally:
            await bot.ensure_stopped()
        got = _results_by_student(telegram, n)
        twice = sum(1 for c in got.values() if c > 1)
        rejected, accepted = _count_429(telegram)
        latencies.sort()
        print(
            f"\ndirect answers during a {n}-notice backlog: max {latencies[-1]:.2f} s, "
            f"median {latencies[len(latencies) // 2]:.2f} s; SIGTERM with {backlog_at_term} "
            f"queued: exit 0 in {exit_seconds:.2f} s; {twice} twice; "
            f"429s {rejected} for {accepted} sends"
        )
        assert latencies[-1] <= 1.5
        assert exit_seconds <= 5.0
        assert set(got) == {STUDENT_BASE + i for i in range(n)}
        assert twice <= n // 100
        assert rejected <= max(1, accepted // 300)
        assert all(len(user.messages) == 1 for user in probes)


# --- (c) kill -9 while a handler holds the user's lock ------------------------------------


async def test_kill_9_while_a_handler_runs_does_not_lock_the_user_out(
    pg_dsn: str, redis_url: str, redis_raw: aioredis.Redis, tmp_path: Path
) -> None:
    await prepare_stores(pg_dsn, redis_url)
    async with FakeTelegram() as telegram:
        teacher = telegram.user(4242, "Teacher")
        bot = BotProcess(bot_env(telegram, pg_dsn, redis_url), tmp_path / "bot.log")
        try:
            await bot.start(telegram, called_again(telegram, "getUpdates"))
            # A reply is returned by its handler and sent after the user's lock is released
            # (handlers/replies.py): while /start's answer keeps failing, no lock is held.
            telegram.disconnect_next("sendMessage", 5)
            await teacher.send("/start")
            await telegram.wait_for_calls("sendMessage", 2, timeout=10)
            assert [key async for key in redis_raw.scan_iter(match="fsm:*:lock")] == []
            telegram.clear_faults()
            await teacher.wait_until(lambda: bool(teacher.unread), what="the answer to /start")
            # `/login NAME` deletes the message inside its handler, before anything else; that
            # call keeps failing (network, retried with backoff), so the handler runs on,
            # holding the user's lock, when the process is killed.
            telegram.disconnect_next("deleteMessage", 5)
            await teacher.send("/login someone")
            await telegram.wait_for_calls("deleteMessage", 2, timeout=10)
            locks = [key async for key in redis_raw.scan_iter(match="fsm:*:lock")]
            assert len(locks) == 1
            await bot.kill()
            telegram.clear_faults()
            assert await redis_raw.exists(locks[0])  # left behind by the dead process

            teacher.mark_read()
            await bot.start(telegram, called_again(telegram, "getUpdates"))
            began = time.monotonic()
            await teacher.send("/help")
            await teacher.wait_until(
                lambda: any("/login" in str(m.get("text")) for m in teacher.unread),
                timeout=3.0,
                what="the answer to /help",
            )
            answered = time.monotonic() - began
            code, _ = await bot.terminate()
            assert code == 0
        finally:
            await bot.ensure_stopped()
        print(f"\nafter kill -9 holding the lock: next command answered in {answered:.2f} s")
        assert answered <= 3.0


# --- (d) two replicas, webhook mode, round-robin proxy ------------------------------------


async def _open_session(redis: RedisStores, numbers: list[str]) -> uuid.UUID:
    now = datetime.now(UTC)
    session = await redis.sessions.open_attendance(
        attendance=LiveSession(
            attendance_id=uuid.uuid4(),
            teacher_school_number="T1",
            teacher_full_name="ÖĞRETMEN",
            lesson_name="FIZ101 - Fizik I",
            lesson_code="FIZ101",
            code="123456",
            start_time=now - timedelta(minutes=1),
            planned_end_time=now + timedelta(minutes=49),
        ),
        enrolled=numbers,
    )
    return session.attendance_id


async def test_two_webhook_replicas_share_the_flood_budget_and_drop_stale_notices(
    pg_dsn: str, redis_url: str, redis_raw: aioredis.Redis, tmp_path: Path
) -> None:
    students = 60
    await prepare_stores(pg_dsn, redis_url)
    redis = RedisStores.from_url(redis_url)
    try:
        numbers = [f"2024{i:04d}" for i in range(students)]
        attendance_id = await _open_session(redis, numbers)
        async with FakeTelegram() as telegram:
            telegram.rate_limit(per_second=30)
            users = [telegram.user(STUDENT_BASE + i, f"S{i}") for i in range(students)]
            # Half the class checked in before their "attendance is open" notice went out.
            for i in range(0, students, 2):
                await redis.sessions.add_attendance_record(
                    record=LiveRecord(
                        attendance_id=attendance_id,
                        student_number=numbers[i],
                        student_full_name=f"S{i}",
                        telegram_id=STUDENT_BASE + i,
                        is_attended=True,
                        attendance_time=datetime.now(UTC),
                    )
                )
            others = 150
            for i in range(others):
                telegram.user(STUDENT_BASE + 10_000 + i, f"O{i}")
            announcements = [
                Notice(
                    telegram_id=STUDENT_BASE + i,
                    language="en",
                    key="remind.open",
                    values={"lesson": "FIZ101 - Fizik I"},
                    drop_if=(
                        Stale.checked_in(attendance_id, numbers[i]),
                        Stale.session_over(attendance_id),
                    ),
                )
                for i in range(students)
            ]
            results = [
                Notice(
                    telegram_id=STUDENT_BASE + 10_000 + i,
                    language="en",
                    key="final.present",
                    values={"lesson": "MAT101", "date": "01.12.2026 09:00"},
                )
                for i in range(others)
            ]
            async with webhook_replicas(telegram, pg_dsn, redis_url, tmp_path) as replicas:
                await asyncio.sleep(0.5)  # both workers reading
                began = time.monotonic()
                await _enqueue(redis_raw, [*results[:75], *announcements, *results[75:]])
                for user in users:  # direct answers through both replicas meanwhile
                    await user.send("/start")
                    await asyncio.sleep(0.05)
                expected_sends = others + students // 2 + students
                await poll_until(
                    lambda: (
                        sum(1 for c in telegram.calls_to("sendMessage") if c.ok) >= expected_sends
                    ),
                    30,
                    "every message",
                )
                elapsed = time.monotonic() - began
                await asyncio.sleep(0.5)
                for replica in replicas:
                    code, exit_seconds = await replica.terminate()
                    assert code == 0, replica.log.read_text()
                    assert exit_seconds <= 5.0
            logs = [r.log.read_text() for r in replicas]
            assert all("webhook mode" in log for log in logs)
            calls = [c for c in telegram.calls_to("sendMessage") if c.at >= 0]
            ok = [c.at for c in calls if c.ok]
            rejected = sum(1 for c in calls if c.status == 429)
            busiest = max(sum(1 for t in ok if s <= t < s + 1.0) for s in ok)
            print(
                f"\ntwo replicas: {len(ok)} sends in {elapsed:.1f} s, busiest second {busiest}, "
                f"429s {rejected}"
            )
            announced = {
                m["chat"]["id"]
                for m in telegram.sent_messages
                if str(m.get("text", "")).startswith("📣")
            }
            assert announced == {STUDENT_BASE + i for i in range(1, students, 2)}
            assert all(
                sum(1 for m in u.messages if str(m.get("text", "")).startswith("📣")) <= 1
                for u in users
            )
            assert len(ok) == expected_sends
            assert busiest <= 31
            assert rejected <= max(1, len(ok) // 100)
    finally:
        await redis.close()


# --- a planned restart doubles nothing ---------------------------------


async def test_a_graceful_restart_sends_no_notice_twice(
    pg_dsn: str, redis_url: str, redis_raw: aioredis.Redis, tmp_path: Path
) -> None:
    """SIGTERM while 400 results go out at a strict 30/s, then a restart: the stopping worker
    finished or abandoned each send it had in flight and acknowledged what Telegram accepted,
    so the next consumer takes over only entries that were never sent. Each answer of the Bot
    API takes 1.2 s (longer than the send grace): the old worker cancelled its whole window of
    16 requests mid-flight, Telegram delivered them anyway, and the next consumer sent all 16
    again."""
    n = 400
    await prepare_stores(pg_dsn, redis_url)
    async with FakeTelegram(latency=1.2) as telegram:
        telegram.rate_limit(per_second=30, global_burst=2)
        for i in range(n):
            telegram.user(STUDENT_BASE + i, f"S{i}")
        await _enqueue(redis_raw, [_result(i) for i in range(n)])
        bot = BotProcess(bot_env(telegram, pg_dsn, redis_url), tmp_path / "bot.log")
        try:
            await bot.start(telegram, called_again(telegram, "getUpdates"))
            await poll_until(lambda: len(telegram.sent_messages) >= 40, 30, "the results to flow")
            code, _ = await bot.terminate()
            assert code == 0, bot.log.read_text()
            at_term = len(_results_by_student(telegram, n))
            first_log = bot.log.read_text()
            assert at_term < n - 100, "delivery finished before SIGTERM"
            telegram.latency = 0.0  # the restarted bot delivers the rest quickly
            await bot.start(telegram, called_again(telegram, "getUpdates"))
            await _every_result_arrives(telegram, n, bot, redis_raw)
            code, _ = await bot.terminate()
            assert code == 0
        finally:
            await bot.ensure_stopped()
        got = _results_by_student(telegram, n)
        twice = sum(1 for c in got.values() if c > 1)
        stopped = [line for line in first_log.splitlines() if "stopped" in line]
        print(f"\nSIGTERM after {at_term}/{n}: {twice} sent twice; {stopped[-1:]}")
        assert set(got) == {STUDENT_BASE + i for i in range(n)}
        assert twice == 0


async def test_a_rolling_deploy_of_two_webhook_replicas_sends_every_result_exactly_once(
    pg_dsn: str, redis_url: str, redis_raw: aioredis.Redis, tmp_path: Path
) -> None:
    """Two webhook replicas on one Redis deliver a top-of-the-hour backlog at a strict 30/s;
    replica A gets SIGTERM mid-delivery and is started again, then replica B the same: every
    student has exactly one result. Each Bot API answer takes 1.2 s, so each stop finds a
    window of requests already on their way to Telegram; those must be acknowledged by the
    stopping worker, not taken over and sent again by the replica that keeps running (it also
    keeps one replica alone slower than the backlog, so that some is left for the second
    stop while the first replica restarts). 400 results; the second stop comes as soon as 30
    more went out, to keep the test near 40 s."""
    n = 400
    await prepare_stores(pg_dsn, redis_url)
    async with FakeTelegram(latency=1.2) as telegram:
        telegram.rate_limit(per_second=30, global_burst=2)
        for i in range(n):
            telegram.user(STUDENT_BASE + i, f"S{i}")
        stops: list[int] = []
        async with webhook_replicas(telegram, pg_dsn, redis_url, tmp_path) as replicas:
            await _enqueue(redis_raw, [_result(i) for i in range(n)])  # both replicas up
            for replica in replicas:  # A, then B
                sent = len(_results_by_student(telegram, n))
                await poll_until(
                    lambda s=sent: len(_results_by_student(telegram, n)) >= s + 30,  # type: ignore[misc]
                    20,
                    f"the results to flow (stops so far after {stops})",
                )
                code, exit_seconds = await replica.terminate()
                assert code == 0, replica.log.read_text()
                assert exit_seconds <= 5.0
                stops.append(len(_results_by_student(telegram, n)))
                await replica.start(telegram, called_again(telegram, "setWebhook"))
            assert stops[-1] < n - 50, "delivery finished before the second stop"
            await _every_result_arrives(telegram, n, replicas[1], redis_raw)
            await asyncio.sleep(1.0)  # anything sent twice would arrive by now
            for replica in replicas:
                code, _ = await replica.terminate()
                assert code == 0
        got = _results_by_student(telegram, n)
        twice = sum(1 for c in got.values() if c > 1)
        stopped = [
            line
            for r in replicas
            for line in r.log.read_text().splitlines()
            if "outbox worker" in line and "stopped" in line
        ]
        print(f"\nrolling deploy, stops after {stops}/{n}: {twice} sent twice; {stopped}")
        assert set(got) == {STUDENT_BASE + i for i in range(n)}
        assert twice == 0
        assert await Outbox(redis_raw).backlog() == 0
