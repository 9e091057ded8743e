"""Privacy by design: /privacy in both languages, /logout that forgets the account's cached
data at once, and the purge that forgets accounts inactive for RETENTION_DAYS."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import asyncpg
import pytest

from dal.models import Attendance, AttendanceRecord, ScheduleEntry
from dal.pg import ExcuseStatus, Postgres
from dal.redis.connection import client as redis_client
from dal.redis.stores import RedisStores
from services.accounts import AccountService
from services.demo_aksis import DemoAksisClient
from tests.fakes.aksis_server import FakeAksis, portal_lesson
from tests.harness import PASSWORD, reply, running_bot
from tests.support import (
    RecordingNotifier,
    build_test_services,
    link,
    student_user,
    teacher_user,
)
from ui.i18n import t

STUDENT = ("ayse.yildiz", "AYŞE YILDIZ", "2024301")
STUDENT_ID = 7_402_000_001


@pytest.fixture
async def portal() -> AsyncIterator[FakeAksis]:
    async with FakeAksis() as fake:
        now = datetime.now(UTC)
        fake.add_student(STUDENT[0], PASSWORD, STUDENT[1], STUDENT[2], lessons=[portal_lesson(now)])
        yield fake


async def test_privacy_notice_in_both_languages_and_in_the_menu(
    pg_dsn: str, redis_url: str
) -> None:
    async with running_bot(
        pg_dsn=pg_dsn, redis_url=redis_url, aksis_mode="demo", retention_days=200
    ) as bot:
        english, turkish = bot.user(501, "Ann", "en"), bot.user(502, "Ayşe", "tr")
        await english.send("/privacy")
        text_en = str((await reply(english)).get("text"))
        await turkish.send("/privacy")
        text_tr = str((await reply(turkish)).get("text"))
        menu = {lang: bot.telegram.commands.get(("default", lang), []) for lang in ("", "tr")}
    assert "What ATTN keeps about you" in text_en and "/logout" in text_en
    assert "200 days" in text_en  # RETENTION_DAYS, as configured
    assert "password is never stored" in text_en
    assert "ATTN sizinle ilgili neleri saklar" in text_tr and "/logout" in text_tr
    assert "200 gün" in text_tr
    assert text_en != text_tr
    assert {"command": "privacy", "description": t("cmd.privacy", locale="en")} in menu[""]
    assert {"command": "privacy", "description": t("cmd.privacy", locale="tr")} in menu["tr"]


async def _everything_in_redis(url: str) -> dict[str, str]:
    """Every key with its value rendered as text (all types the bot writes)."""
    raw = redis_client(url, decode_responses=True)
    found: dict[str, str] = {}
    try:
        async for key in raw.scan_iter(match="*"):
            kind = await raw.type(key)
            if kind == "string":
                value: object = await raw.get(key)
            elif kind == "hash":
                value = await raw.hgetall(key)
            elif kind == "set":
                value = await raw.smembers(key)
            elif kind == "zset":
                value = await raw.zrange(key, 0, -1)
            elif kind == "list":
                value = await raw.lrange(key, 0, -1)
            else:
                value = kind
            found[key] = str(value)
    finally:
        await raw.aclose()
    return found


async def test_logout_leaves_no_personal_data_in_redis_or_the_schedule(
    pg_dsn: str, redis_url: str, portal: FakeAksis
) -> None:
    async with running_bot(pg_dsn=pg_dsn, redis_url=redis_url, aksis=portal) as bot:
        user = bot.user(STUDENT_ID, "Ayşe", "tr")
        # A failed attempt first: the login throttle keeps a counter for this account.
        await bot.login(user, STUDENT[0], password="wrong-password")
        answer = await bot.login(user, STUDENT[0])
        assert STUDENT[1] in str(answer.get("text"))
        await user.send("/reminders")  # off: a preference of this account
        await reply(user)
        await user.send("/receipts")  # on: another one, kept in Redis
        assert str((await reply(user)).get("text")) == t(
            "receipts.now", locale="tr", state=t("on", locale="tr")
        )
        assert f"prefs:receipts:{STUDENT[2]}" in await _everything_in_redis(redis_url)
        conn = await asyncpg.connect(pg_dsn)
        try:
            before = await conn.fetchrow(
                "SELECT telegram_id, language, reminders_enabled FROM users"
                " WHERE user_school_number = $1",
                STUDENT[2],
            )
            assert tuple(before) == (STUDENT_ID, "tr", False)
            assert await conn.fetchval(
                "SELECT count(*) FROM schedule_entries WHERE school_number = $1", STUDENT[2]
            )
            stored = await _everything_in_redis(redis_url)
            assert any(str(STUDENT_ID) in k or str(STUDENT_ID) in v for k, v in stored.items())

            await user.send("/logout")
            assert str((await reply(user)).get("text")) == t("logout.ok", locale="tr")
            await asyncio.sleep(0.2)  # let the FSM middleware finish with the update

            left = {
                key: value
                for key, value in (await _everything_in_redis(redis_url)).items()
                if any(s in key or s in value for s in (str(STUDENT_ID), STUDENT[2], STUDENT[1]))
            }
            # The shared flood budget's per-chat pacing slot (bot/flood.py) names the chat and
            # lives for a few seconds after the last message to it: allowed, if it is that.
            raw = redis_client(redis_url, decode_responses=True)
            try:
                for key in [k for k in left if k.startswith("flood:")]:
                    assert 0 < await raw.pttl(key) <= 5000, key
                    del left[key]
                # Login throttles survive /logout (else /logout would reset them);
                # they expire by themselves, within the hour of the sign-on ceiling.
                for key in [k for k in left if k.startswith("throttle:")]:
                    assert 0 < await raw.pttl(key) <= 3_600_000, key
                    del left[key]
            finally:
                await raw.aclose()
            assert left == {}
            assert (
                await conn.fetchval(
                    "SELECT count(*) FROM schedule_entries WHERE school_number = $1", STUDENT[2]
                )
                == 0
            )
            after = await conn.fetchrow(
                "SELECT telegram_id, linked_at, language, reminders_enabled FROM users"
                " WHERE user_school_number = $1",
                STUDENT[2],
            )
            assert tuple(after) == (None, None, "en", True)
        finally:
            await conn.close()
        # Logged out means unknown: the bot asks for a login again.
        await user.send("/me")
        assert "/login" in str((await reply(user)).get("text"))


def _entry(number: str, start: datetime) -> ScheduleEntry:
    return ScheduleEntry(
        school_number=number,
        start_time=start,
        end_time=start + timedelta(minutes=50),
        course_code="FIZ101",
        course_name="Fizik I",
        teachers="Dr. X",
        teacher_key="x",
    )


async def test_purge_forgets_accounts_inactive_for_the_retention_period(
    pg_client: Postgres, redis_client: RedisStores
) -> None:
    now = datetime.now(UTC)
    long_ago = now - timedelta(days=400)
    users = {
        "idle": (student_user("S100"), 9_001),  # no login, no attendance for 400 days
        "recent_login": (student_user("S200"), 9_002),
        "recent_attendance": (student_user("S300"), 9_003),  # old login, attended lately
        "idle_teacher": (teacher_user("T100"), 9_004),
        "teaching": (teacher_user("T200"), 9_005),  # old login, opened a session lately
    }
    for user, telegram_id in users.values():
        await link(pg_client, user, telegram_id, language="tr", reminders=False)
        await pg_client.schedules.replace_schedule(
            school_number=user.user_school_number, entries=[_entry(user.user_school_number, now)]
        )
    await pg_client.db.pool.execute(
        "UPDATE users SET linked_at = $1 WHERE user_school_number <> 'S200'", long_ago
    )
    # Attendance saved long ago for the idle ones, lately for the active ones.
    for teacher, start, number in (
        (users["idle_teacher"][0], long_ago, "S100"),
        (users["teaching"][0], now - timedelta(days=3), "S300"),
    ):
        attendance = Attendance(
            attendance_id=uuid.uuid4(),
            teacher_school_number=teacher.user_school_number,
            lesson_name="FIZ101 - Fizik I",
            start_time=start,
            end_time=start + timedelta(minutes=50),
        )
        await pg_client.attendance.persist_session(
            users=[],
            attendance=attendance,
            records=[
                AttendanceRecord(
                    attendance_id=attendance.attendance_id,
                    student_number=number,
                    is_attended=True,
                    attendance_time=start + timedelta(minutes=2),
                )
            ],
        )
    for _, telegram_id in users.values():
        await redis_client.redis.set(f"users:{telegram_id}", "{}")
    # Excuse requests (reasons, document file ids): one decided long ago, one recent.
    for number, reason in (("S100", "eski rapor"), ("S300", "yeni rapor")):
        request = await pg_client.excuses.add_request(
            student_number=number,
            attendance_id=None,
            lesson_code="FIZ101",
            lesson_name="FIZ101 - Fizik I",
            lesson_start=now,
            teacher_school_number="T200",
            reason=reason,
            file_id="AgPHOTO",
            file_kind="photo",
        )
        await pg_client.excuses.decide(
            request_id=request.request_id,
            status=ExcuseStatus.REJECTED,
            decided_by="T200",
            reason="hayır",
        )
    await pg_client.db.pool.execute(
        "UPDATE excuse_requests SET decided_at = $1 WHERE reason = 'eski rapor'", long_ago
    )
    # Marked undeliverable (a mark that outlives the retention, as an older version left it,
    # without expiry): forgotten with the idle account only.
    await redis_client.users.add_undeliverable(
        telegram_ids=[t for _, t in users.values()], ttl_seconds=10 * 365 * 86_400
    )

    report = await build_test_services(pg_client, redis_client).purger.run_once()
    kept = await pg_client.db.pool.fetch("SELECT reason FROM excuse_requests")
    assert [r["reason"] for r in kept] == ["yeni rapor"]

    assert report.inactive == 2
    rows = {
        r["user_school_number"]: r
        for r in await pg_client.db.pool.fetch(
            "SELECT user_school_number, user_full_name, telegram_id, language,"
            " reminders_enabled FROM users"
        )
    }
    schedules = {
        r["school_number"]
        for r in await pg_client.db.pool.fetch(
            "SELECT DISTINCT school_number FROM schedule_entries"
        )
    }
    for name in ("idle", "idle_teacher"):
        user, telegram_id = users[name]
        row = rows[user.user_school_number]
        assert (row["telegram_id"], row["language"], row["reminders_enabled"]) == (None, "en", True)
        assert row["user_full_name"] == user.user_full_name  # the register still names them
        assert user.user_school_number not in schedules
        assert await redis_client.redis.exists(f"users:{telegram_id}") == 0
        assert await redis_client.redis.exists(f"users:{telegram_id}:undeliverable") == 0
    for name in ("recent_login", "recent_attendance", "teaching"):
        user, telegram_id = users[name]
        assert rows[user.user_school_number]["telegram_id"] == telegram_id
        assert user.user_school_number in schedules
        assert await redis_client.redis.exists(f"users:{telegram_id}") == 1
        assert await redis_client.redis.exists(f"users:{telegram_id}:undeliverable") == 1
    # The institution's records stay.
    assert await pg_client.db.pool.fetchval("SELECT count(*) FROM attendance_records") == 2


async def test_undeliverable_mark_expires_with_retention_and_goes_with_a_forgotten_account(
    pg_client: Postgres, redis_client: RedisStores
) -> None:
    """The mark of a chat that blocked the bot lives no longer than retention keeps the
    account (RETENTION_DAYS), at the moment it is made and when it is reloaded at start-up, and
    the retention purge removes it with the account."""
    accounts = AccountService(
        accounts=pg_client.accounts,
        schedules=pg_client.schedules,
        retention=pg_client.retention,
        user_store=redis_client.users,
        guards=redis_client.guards,
        aksis=DemoAksisClient(ZoneInfo("Europe/Istanbul"), staff_id_key="k" * 32),
        notifier=RecordingNotifier(),
        throttle_key=b"t" * 32,
        student_ttl_days=120,
        teacher_ttl_days=30,
        undeliverable_ttl_days=200,
    )
    idle, active = student_user("S100"), student_user("S200")
    await link(pg_client, idle, 9_001)
    await link(pg_client, active, 9_002)
    await accounts.mark_undeliverable(telegram_id=9_001, reason="Forbidden: bot was blocked")
    await accounts.mark_undeliverable(telegram_id=9_002, reason="Forbidden: bot was blocked")
    ttl = await redis_client.redis.ttl("users:9001:undeliverable")
    assert 200 * 86_400 - 60 < ttl <= 200 * 86_400
    await redis_client.redis.persist("users:9002:undeliverable")  # as an older version left it
    assert await accounts.load_undeliverable() == 2  # start-up: the marks get their expiry
    assert 0 < await redis_client.redis.ttl("users:9002:undeliverable") <= 200 * 86_400

    await pg_client.db.pool.execute(
        "UPDATE users SET linked_at = $1 WHERE user_school_number = 'S100'",
        datetime.now(UTC) - timedelta(days=400),
    )
    await redis_client.redis.set("users:9001", "{}")
    report = await build_test_services(pg_client, redis_client).purger.run_once()

    assert report.inactive == 1
    assert await redis_client.redis.exists("users:9001", "users:9001:undeliverable") == 0
    assert await redis_client.redis.exists("users:9002:undeliverable") == 1  # still active
