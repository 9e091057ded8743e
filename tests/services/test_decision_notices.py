"""The notices a decision causes (a teacher accepts, rejects or adds a student; a new term asks
everyone to log in again) are in the durable outbox when the decision returns: a process that
stops before delivering them, or Telegram answering 5xx meanwhile, loses none, and a decision
retried after a crash sends none twice."""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from bot.delivery import DeliveryWorker
from bot.notifier import OutboxNotifier
from bot.outgoing import OutgoingMiddleware
from dal.models import CachedAccount, Role, ScheduleEntry
from dal.pg import Postgres
from dal.redis.outbox import Outbox
from dal.redis.stores import RedisStores
from services.accounts import AccountService
from services.demo_aksis import DemoAksisClient, demo_school_number
from services.errors import AlreadyOnList
from tests.fakes.telegram_server import FakeTelegram
from tests.support import (
    build_test_services,
    link,
    open_session,
    student_user,
    teacher_user,
)
from ui.i18n import t

IST = ZoneInfo("Europe/Istanbul")
NOW = datetime.now(UTC).replace(microsecond=0)


@pytest.fixture
async def telegram() -> AsyncIterator[FakeTelegram]:
    async with FakeTelegram() as fake:
        yield fake


async def _deliver_after_a_failed_round(
    fake: FakeTelegram, outbox: Outbox, expected: int
) -> Counter[tuple[int, str]]:
    """A worker meets Telegram answering 502 and is stopped (the process restarts); the next
    worker delivers. Returns what each chat got."""
    bot = fake.bot()
    bot.session.middleware(OutgoingMiddleware(max_retries=1, backoff_base=0.01))
    try:
        fake.fail_next("sendMessage", 10_000, error_code=502, description="Bad Gateway")
        first = DeliveryWorker(bot, outbox, backoff_max=0.2)
        await first.start()
        await fake.wait_for_calls("sendMessage", 2 * expected, timeout=10)  # each tried twice
        await first.stop()
        assert first.sent == 0  # nothing got through before the restart
        # Telegram comes back only once the stopped worker's last retries have met the outage:
        # a retry still on its way when Telegram recovers is the at-least-once case (a request
        # with no answer may go twice), not what this test is about.
        quiet = fake.call_count("sendMessage")
        for _ in range(40):
            await asyncio.sleep(0.1)
            if fake.call_count("sendMessage") == quiet:
                break
            quiet = fake.call_count("sendMessage")
        fake.clear_faults()  # Telegram is back
        second = DeliveryWorker(bot, outbox, backoff_max=0.2)
        await second.start()
        try:
            await fake.wait_for_sent(expected, timeout=20)
            for _ in range(100):  # the last acknowledgement follows Telegram's answer
                if await outbox.backlog() == 0:
                    break
                await asyncio.sleep(0.05)
            assert await outbox.backlog() == 0
            await asyncio.sleep(0.3)  # and nothing more follows
        finally:
            await second.stop()
    finally:
        await bot.session.close()
    return Counter((int(m["chat"]["id"]), str(m["text"])) for m in fake.sent_messages)


async def test_accept_reject_and_add_notices_survive_a_restart_and_a_retry_once_each(
    pg_client: Postgres, redis_client: RedisStores, telegram: FakeTelegram
) -> None:
    teacher = teacher_user()
    students = {n: student_user(n) for n in ("2024001", "2024002", "2024003")}
    ids = {"2024001": 601, "2024002": 602, "2024003": 603}
    for number, user in students.items():
        await link(pg_client, user, ids[number])
        telegram.user(ids[number], number)
        await redis_client.users.save_user_session(
            session=CachedAccount(
                telegram_id=ids[number],
                school_number=number,
                full_name=user.user_full_name,
                role=Role.STUDENT,
                logged_in_at=NOW,
            ),
            ttl_seconds=3600,
        )
    session = await open_session(
        redis_client,
        teacher=teacher,
        start=NOW - timedelta(minutes=1),
        end=NOW + timedelta(minutes=50),
        enrolled=list(students),
    )
    outbox = Outbox(redis_client.redis)
    service = build_test_services(pg_client, redis_client, OutboxNotifier(outbox)).attendance
    who = CachedAccount(
        telegram_id=9,
        school_number=teacher.user_school_number,
        full_name=teacher.user_full_name,
        role=Role.TEACHER,
        logged_in_at=NOW,
    )
    for number in ("2024001", "2024002"):
        await service.check_in(telegram_id=ids[number], code=session.code)
    aid = session.attendance_id

    async def review(number: str, accept: bool) -> None:
        await service.review(
            teacher=who, attendance_id=aid, student_number=number, accept=accept, reason="late"
        )

    await review("2024001", False)
    await review("2024002", False)
    await review("2024002", True)  # the teacher changes their mind: told too
    await service.add_student(teacher=who, attendance_id=aid, student_number="2024003")
    # The same calls again, as a teacher retries when no "done" came back (the process died
    # right after the decision): nothing new for anyone.
    await review("2024001", False)
    with pytest.raises(AlreadyOnList):
        await service.add_student(teacher=who, attendance_id=aid, student_number="2024003")
    # The process dies between writing an acceptance and queuing its notice: the record says
    # accepted, nothing was queued. The teacher's retry finds nothing to change, and tells.
    rejected = await redis_client.sessions.get_attendance_record(
        attendance_id=aid, student_number="2024001"
    )
    assert rejected is not None
    await redis_client.sessions.update_attendance_record(
        record=rejected.model_copy(
            update={"is_attended": True, "fail_reason": None, "teacher_note": None}
        )
    )
    await review("2024001", True)
    await review("2024001", True)  # and a second click tells nothing more
    assert await outbox.backlog() == 5  # no process has delivered anything yet

    got = await _deliver_after_a_failed_round(telegram, outbox, expected=5)

    lesson = session.lesson_name
    assert got == Counter(
        {
            (601, t("student.rejected", locale="en", lesson=lesson, reason=" (late)")): 1,
            (601, t("student.accepted", locale="en", lesson=lesson)): 1,
            (602, t("student.rejected", locale="en", lesson=lesson, reason=" (late)")): 1,
            (602, t("student.accepted", locale="en", lesson=lesson)): 1,
            (603, t("student.checked_in_by_teacher", locale="en", lesson=lesson)): 1,
        }
    )


async def test_the_new_term_notice_survives_a_restart_and_a_retry_once_each(
    pg_client: Postgres, redis_client: RedisStores, telegram: FakeTelegram
) -> None:
    outbox = Outbox(redis_client.redis)
    accounts = build_test_services(pg_client, redis_client, OutboxNotifier(outbox)).accounts
    ids = {f"20240{i:02d}": 700 + i for i in range(1, 6)}
    for number, telegram_id in ids.items():
        await link(pg_client, student_user(number), telegram_id)
        telegram.user(telegram_id, number)
        await pg_client.schedules.replace_schedule(
            school_number=number,
            entries=[
                ScheduleEntry(
                    school_number=number,
                    start_time=NOW - timedelta(days=100),
                    end_time=NOW - timedelta(days=100, minutes=-50),
                    course_code="FIZ101",
                    course_name="Fizik I",
                    teachers="Dr. X",
                    teacher_key="x",
                    term="2025-1",
                )
            ],
        )
    await accounts._ask_stale_users_to_login("2025-2")
    # Asked again (the login that saw the new term is retried, or another one sees it).
    await accounts._ask_stale_users_to_login("2025-2")
    assert await outbox.backlog() == 5

    got = await _deliver_after_a_failed_round(telegram, outbox, expected=5)

    text = t("term.login_again", locale="en")
    assert got == Counter({(telegram_id, text): 1 for telegram_id in ids.values()})


async def test_the_account_moved_notice_is_queued_and_delivered_by_the_worker(
    pg_client: Postgres, redis_client: RedisStores, telegram: FakeTelegram
) -> None:
    """Signing in from a second Telegram account tells the first one. The service only queues
    the notice (nothing reaches Telegram while it signs in); the worker delivers it."""
    outbox = Outbox(redis_client.redis)
    accounts = AccountService(
        accounts=pg_client.accounts,
        schedules=pg_client.schedules,
        retention=pg_client.retention,
        user_store=redis_client.users,
        guards=redis_client.guards,
        aksis=DemoAksisClient(IST, staff_id_key="k" * 32),
        notifier=OutboxNotifier(outbox),
        throttle_key=b"t" * 32,
        student_ttl_days=120,
        teacher_ttl_days=30,
    )
    first, second = 801, 802
    telegram.user(first, "first")
    for telegram_id in (first, second):
        await accounts.login(
            telegram_id=telegram_id, language="en", username="demo_student_7", password="password"
        )
    assert telegram.sent_messages == []
    assert await outbox.backlog() == 1

    got = await _deliver_after_a_failed_round(telegram, outbox, expected=1)

    text = t("login.moved", locale="en", number=demo_school_number(7))
    assert got == Counter({(first, text): 1})
