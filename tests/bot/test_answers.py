"""Check-in answers (bot/answers.py) with the real flood budget in Redis and the fake Bot API."""

from __future__ import annotations

import asyncio
import time
from collections import Counter

import redis.asyncio as aioredis

from bot.answers import AnswerQueue
from bot.flood import RedisFloodBudget
from bot.outgoing import OutgoingMiddleware
from dal.redis.outbox import Outbox
from tests.fakes.telegram_server import FakeTelegram


async def test_a_flood_from_one_chat_does_not_delay_another_chats_answer(
    redis_raw: aioredis.Redis,
) -> None:
    """The old fault: 100 forwarded six-digit numbers from one chat queued 100 answers to
    it, and all 32 senders waited on that chat's 1 message/s slot (classmates waited ~98 s)."""
    async with FakeTelegram() as fake:
        flooder = fake.user(7000, "Flood")
        classmates = [fake.user(7100 + i, f"S{i}") for i in range(20)]
        bot = fake.bot()
        budget = RedisFloodBudget(redis_raw, bot_id=fake.bot_id)  # 30/s, 1/s per chat
        bot.session.middleware(OutgoingMiddleware(pacer=budget))
        answers = AnswerQueue(bot, Outbox(redis_raw))
        answers.start()
        try:
            for _ in range(100):
                answers.put(flooder.id, "Wrong code.", kind="WRONG")
            began = time.monotonic()
            for user in classmates:
                answers.put(user.id, f"Checked in {user.id}", kind="OK_PRESENT")

            def classmates_answered() -> bool:
                got = {m["chat"]["id"] for m in fake.sent_messages}
                return all(u.id in got for u in classmates)

            while not classmates_answered():
                assert time.monotonic() - began < 5.0, "a classmate's answer waited > 5 s"
                await asyncio.sleep(0.02)
            assert time.monotonic() - began < 2.0
            await asyncio.wait_for(answers.join(), 10)
        finally:
            await answers.stop(grace_seconds=0.2)
            await bot.session.close()
        to_flooder = Counter(m["text"] for m in fake.sent_messages if m["chat"]["id"] == flooder.id)
        # Repeats of one answer waiting for the same chat are one answer.
        assert to_flooder["Wrong code."] <= 2


async def test_a_throttled_sender_hears_too_many_attempts_once_per_window(
    redis_raw: aioredis.Redis,
) -> None:
    async with FakeTelegram() as fake:
        user = fake.user(7200, "Again")
        bot = fake.bot()
        bot.session.middleware(OutgoingMiddleware(pacer=RedisFloodBudget(redis_raw, bot_id=1)))
        answers = AnswerQueue(bot, Outbox(redis_raw))
        answers.start()
        try:
            for _ in range(4):  # one throttled attempt a second, each answered after the last
                answers.put(user.id, "Too many attempts.", kind="THROTTLED", quiet_seconds=60)
                await asyncio.wait_for(answers.join(), 5)
                await asyncio.sleep(0.3)
            answers.put(user.id, "Checked in.", kind="OK_PRESENT")
            await asyncio.wait_for(answers.join(), 5)
        finally:
            await answers.stop(grace_seconds=0.2)
            await bot.session.close()
        texts = [m["text"] for m in fake.sent_messages]
        assert texts == ["Too many attempts.", "Checked in."]


async def test_once_the_quiet_window_has_passed_the_sender_hears_it_again(
    redis_raw: aioredis.Redis,
) -> None:
    """Windows end on time, each chat's own: a chat whose window passed hears the answer again
    while another chat, still inside its window, does not."""
    async with FakeTelegram() as fake:
        early, late = fake.user(7201, "Early"), fake.user(7202, "Late")
        bot = fake.bot()
        bot.session.middleware(OutgoingMiddleware(pacer=RedisFloodBudget(redis_raw, bot_id=1)))
        answers = AnswerQueue(bot, Outbox(redis_raw))
        answers.start()
        try:
            answers.put(early.id, "Too many attempts.", kind="THROTTLED", quiet_seconds=1.0)
            await asyncio.sleep(0.6)
            answers.put(late.id, "Too many attempts.", kind="THROTTLED", quiet_seconds=1.0)
            await asyncio.sleep(0.5)  # early's window is over, late's has 0.5 s to go
            for user in (early, late):
                answers.put(user.id, "Too many attempts.", kind="THROTTLED", quiet_seconds=1.0)
            await asyncio.wait_for(answers.join(), 5)
        finally:
            await answers.stop(grace_seconds=0.2)
            await bot.session.close()
        sent = Counter(m["chat"]["id"] for m in fake.sent_messages)
        assert (sent[early.id], sent[late.id]) == (2, 1)
