"""What an operator relies on: JSON log lines free of secrets, `/metrics` that counts what
happened, and health answers that tell liveness from readiness."""

from __future__ import annotations

import asyncio
import contextlib
import io
import json
import logging
import os
import subprocess
import sys
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import aiohttp
import asyncpg
import pytest
from aiohttp import web
from prometheus_client.parser import text_string_to_metric_families

from bot.app import App, build_app
from bot.config import Settings, load_settings
from bot.logs import build_handler, user_hash
from bot.web import build_web
from services.notify import Notice
from tests.fakes.aksis_server import FakeAksis, portal_lesson
from tests.harness import PASSWORD, Running, flush_redis, reply, reset_database, running_bot
from tests.support import open_session, teacher_user

TEACHER = ("hoca.kartal", "Doç. Dr. ELİF KARTAL")
STUDENTS = [
    ("ayse.yildiz", "AYŞE YILDIZ", "2024101"),
    ("ismail.isik", "İSMAİL IŞIK", "2024102"),
    ("cagri.ozgur", "ÇAĞRI ÖZGÜR", "2024103"),
]
# Telegram ids long enough that finding one in a log line is no coincidence.
TEACHER_ID = 7_301_000_001
STUDENT_IDS = [7_301_000_101, 7_301_000_102, 7_301_000_103]
WEBHOOK_SECRET = "webhook-secret-of-the-logging-test_0123456789"
METRICS_TOKEN = "metrics-token-4f9c2e"


@contextlib.asynccontextmanager
async def class_portal() -> AsyncIterator[FakeAksis]:
    """The local Aksis with TEACHER's lesson on now and STUDENTS enrolled in it."""
    async with FakeAksis() as fake:
        now = datetime.now(UTC)
        lesson = portal_lesson(now - timedelta(minutes=5), minutes=60, hocalar=TEACHER[1])
        fake.add_teacher(TEACHER[0], PASSWORD, TEACHER[1], lessons=[lesson])
        for username, name, number in STUDENTS:
            fake.add_student(username, PASSWORD, name, number, lessons=[lesson])
        yield fake


@pytest.fixture
async def portal() -> AsyncIterator[FakeAksis]:
    async with class_portal() as fake:
        yield fake


@contextlib.contextmanager
def captured_logs(settings: Settings, buffer: io.StringIO) -> Iterator[None]:
    """The product's own handler (bot.logs) on the root logger at DEBUG, into `buffer`."""
    handler = build_handler(settings, buffer)
    root = logging.getLogger()
    level = root.level
    root.addHandler(handler)
    root.setLevel(logging.DEBUG)
    try:
        yield
    finally:
        root.removeHandler(handler)
        root.setLevel(level)


@contextlib.asynccontextmanager
async def serving(app: App) -> AsyncIterator[str]:
    runner = web.AppRunner(build_web(app))
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    try:
        yield f"http://127.0.0.1:{runner.addresses[0][1]}"
    finally:
        await runner.cleanup()


def _message_update(update_id: int, user_id: int, text: str) -> dict[str, Any]:
    return {
        "update_id": update_id,
        "message": {
            "message_id": update_id,
            "date": int(datetime.now(UTC).timestamp()),
            "chat": {"id": user_id, "type": "private", "first_name": "Web"},
            "from": {"id": user_id, "is_bot": False, "first_name": "Web", "language_code": "en"},
            "text": text,
        },
    }


async def _login_class(bot: Running) -> tuple[Any, list[Any], str]:
    teacher = bot.user(TEACHER_ID, "Elif", "tr")
    students = [
        bot.user(uid, name.split()[0])
        for uid, (_, name, _) in zip(STUDENT_IDS, STUDENTS, strict=True)
    ]
    answer = await bot.login(teacher, TEACHER[0])
    assert "ELİF KARTAL" in str(answer.get("text"))
    for user, (username, name, _) in zip(students, STUDENTS, strict=True):
        answer = await bot.login(user, username)
        assert name in str(answer.get("text"))
    code = await bot.start_session(teacher)
    return teacher, students, code


async def test_json_logs_at_debug_carry_context_and_no_secret(
    pg_dsn: str, redis_url: str, portal: FakeAksis
) -> None:
    buffer = io.StringIO()
    async with running_bot(
        pg_dsn=pg_dsn, redis_url=redis_url, aksis=portal, log_format="json"
    ) as bot:
        settings = bot.settings
        with captured_logs(settings, buffer):
            _teacher, students, code = await _login_class(bot)
            await students[0].send(code)  # a check-in through long polling
            assert "checked in" in str((await reply(students[0])).get("text")).lower()
        # The same stores, now served by a webhook replica. Polling stops first: Telegram
        # serves no getUpdates while a webhook is set.
        await bot.app.dispatcher.stop_polling()
        webhook_settings = load_settings(
            **{
                **settings.model_dump(),
                "webhook_url": "https://attn.example.edu/tg/hook",
                "webhook_secret": WEBHOOK_SECRET,
            }
        )
        with captured_logs(webhook_settings, buffer):
            async with build_app(webhook_settings) as hooked, serving(hooked) as base:
                try:
                    status = await bot.telegram.post_update_to(
                        f"{base}/tg/hook",
                        _message_update(900_001, STUDENT_IDS[1], code),
                        secret=WEBHOOK_SECRET,
                    )
                    assert status == 200
                    answer = await reply(students[1])
                    assert "checked in" in str(answer.get("text")).lower()
                finally:
                    await hooked.bot.session.close()

    lines = buffer.getvalue().splitlines()
    assert len(lines) > 20
    records = [json.loads(line) for line in lines]  # every line is one JSON object
    assert all({"@timestamp", "log.level", "log.logger", "message"} <= set(r) for r in records)

    secrets = {
        "bot token": settings.bot_token.get_secret_value() if settings.bot_token else "",
        "webhook secret": WEBHOOK_SECRET,
        "password": PASSWORD,
        "secret key": settings.secret_key.get_secret_value(),
        "staff id key": settings.staff_id_key.get_secret_value(),
        **{f"portal user name {u}": u for u, _, _ in [(TEACHER[0], "", ""), *STUDENTS]},
        **{f"telegram id {i}": str(i) for i in [TEACHER_ID, *STUDENT_IDS]},
    }
    assert all(secrets.values())
    text = buffer.getvalue()
    leaked = {what: value for what, value in secrets.items() if value in text}
    assert leaked == {}, [line for line in lines if any(v in line for v in leaked.values())][:5]

    # Lines logged while an update was handled name it and the sender's pseudonym; the
    # webhook replica's update is among them.
    key = settings.secret_key.get_secret_value().encode()
    with_update = [r for r in records if "attn.update_id" in r]
    assert with_update, "no line carried an update id"
    assert any(r["attn.update_id"] == 900_001 for r in with_update)
    pseudonyms = {user_hash(uid, key) for uid in [TEACHER_ID, *STUDENT_IDS]}
    assert {r.get("user.id") for r in with_update} & pseudonyms
    assert all(r.get("user.id") in pseudonyms | {None} for r in with_update)
    # Scheduler ticks log under their job's name.
    assert any(r.get("attn.job") == "finalize" for r in records) or any(
        r.get("attn.job") == "reminders" for r in records
    )


def _samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    found: dict[tuple[str, tuple[tuple[str, str], ...]], float] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            found[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return found


def _value(samples: dict[Any, float], name: str, **labels: str) -> float:
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)


async def _scrape(base: str, token: str | None = METRICS_TOKEN) -> dict[Any, float]:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    async with (
        aiohttp.ClientSession() as http,
        http.get(f"{base}/metrics", headers=headers) as response,
    ):
        assert response.status == 200, await response.text()
        assert response.headers["Content-Type"].startswith("text/plain")
        return _samples(await response.text())


async def test_metrics_count_a_scripted_class(
    pg_dsn: str, redis_url: str, portal: FakeAksis
) -> None:
    async with (
        running_bot(
            pg_dsn=pg_dsn,
            redis_url=redis_url,
            aksis=portal,
            metrics_token=METRICS_TOKEN,
            finalize_interval_seconds=1,
        ) as bot,
        serving(bot.app) as base,
    ):
        async with aiohttp.ClientSession() as http:
            async with http.get(f"{base}/metrics") as response:
                assert response.status == 401
            wrong = {"Authorization": "Bearer guess"}
            async with http.get(f"{base}/metrics", headers=wrong) as response:
                assert response.status == 401

        teacher, students, code = await _login_class(bot)
        for student in students:
            await student.send(code)
            assert "checked in" in str((await reply(student)).get("text")).lower()
        await students[0].send(code)  # again: a duplicate
        await reply(students[0])
        wrong_code = "000000" if code != "000000" else "111111"
        await students[1].send(wrong_code)
        await reply(students[1])

        live = await _scrape(base)
        assert _value(live, "attn_checkins_total", outcome="ok_present") == 3
        assert _value(live, "attn_checkins_total", outcome="duplicate") == 1
        assert _value(live, "attn_checkins_total", outcome="wrong_code") == 1
        assert _value(live, "attn_open_sessions") == 1
        assert _value(live, "attn_sessions_awaiting_finalization") == 0
        assert _value(live, "attn_portal_logins_total", outcome="ok") == 4
        assert _value(live, "attn_portal_login_seconds_count") == 4
        assert _value(live, "attn_store_up", store="redis") == 1
        assert _value(live, "attn_store_up", store="postgres") == 1
        # 5 code messages plus the logins' user names and passwords are plain messages.
        assert _value(live, "attn_updates_total", kind="message") >= 5 + 2 * 4
        assert _value(live, "attn_updates_total", kind="command") >= 5
        handled = sum(
            v for (name, _), v in live.items() if name == "attn_update_duration_seconds_count"
        )
        assert handled == sum(v for (name, _), v in live.items() if name == "attn_updates_total")

        await teacher.send("/end_session")
        await reply(teacher)
        conn = await asyncpg.connect(pg_dsn)
        try:
            for _ in range(200):
                if await conn.fetchval("SELECT count(*) FROM attendance_records") == 3:
                    break
                await asyncio.sleep(0.1)
            else:
                pytest.fail("the session was never finalized")
        finally:
            await conn.close()
        for _ in range(50):
            after = await _scrape(base)
            # Counted once the sheet is written; the session leaves the due index a step later
            # (its Redis keys go only after the notices are queued).
            if (
                _value(after, "attn_finalized_records_total") >= 3
                and _value(after, "attn_sessions_awaiting_finalization") == 0
            ):
                break
            await asyncio.sleep(0.1)
        assert _value(after, "attn_finalized_sessions_total") == 1
        assert _value(after, "attn_finalized_records_total") == 3
        assert _value(after, "attn_open_sessions") == 0
        assert _value(after, "attn_sessions_awaiting_finalization") == 0
        assert _value(after, "attn_finalization_lag_seconds") == 0
        assert _value(after, "attn_job_runs_total", job="finalize", outcome="ok") >= 1
        assert _value(after, "attn_checkins_total", outcome="ok_present") == 3


async def test_finalization_lag_is_read_from_redis_at_scrape_time(
    pg_dsn: str, redis_url: str
) -> None:
    """A session that ended two minutes ago and is still in Redis (no replica finalized it)
    shows as lag, whichever replica is scraped."""
    await reset_database(pg_dsn)
    await flush_redis(redis_url)
    settings = load_settings(
        bot_token="123456:" + "x" * 35, database_url=pg_dsn, redis_url=redis_url, aksis_mode="demo"
    )
    # The app is built but never started: no scheduler runs, as on a replica whose
    # finalization is stuck.
    async with build_app(settings) as app:
        now = datetime.now(UTC)
        session = await open_session(
            app.redis,
            teacher=teacher_user(),
            start=now - timedelta(minutes=60),
            end=now + timedelta(minutes=5),
            enrolled=[],
        )
        await app.redis.sessions.finish_attendance(
            attendance_id=session.attendance_id, end_time=now - timedelta(minutes=2)
        )
        async with serving(app) as base:
            samples = await _scrape(base, token=None)
        await app.bot.session.close()
    assert _value(samples, "attn_sessions_awaiting_finalization") == 1
    assert _value(samples, "attn_open_sessions") == 0
    assert 115 <= _value(samples, "attn_finalization_lag_seconds") <= 180


async def test_outbox_depth_and_age_are_read_at_scrape_time(pg_dsn: str, redis_url: str) -> None:
    """Notices nobody delivers (the app is built but its worker never started) show as outbox
    depth and age on /metrics; once they are confirmed the gauges fall back to zero."""
    await reset_database(pg_dsn)
    await flush_redis(redis_url)
    settings = load_settings(
        bot_token="123456:" + "x" * 35, database_url=pg_dsn, redis_url=redis_url, aksis_mode="demo"
    )
    async with build_app(settings) as app:
        await app.outbox.ensure_group()
        await app.notifier.enqueue(
            [Notice(telegram_id=7000 + n, language="en", key="help.student") for n in range(3)]
        )
        await asyncio.sleep(1.1)
        async with serving(app) as base:
            waiting = await _scrape(base, token=None)
            taken = await app.outbox.read("scrape-test", 10, block_ms=100, own=False)
            await app.outbox.ack(taken)
            emptied = await _scrape(base, token=None)
        await app.bot.session.close()
    assert _value(waiting, "attn_outbox_depth") == 3
    assert _value(waiting, "attn_outbox_in_flight") == 0
    assert 1.0 <= _value(waiting, "attn_outbox_oldest_age_seconds") <= 30
    assert len(taken) == 3
    assert _value(emptied, "attn_outbox_depth") == 0
    assert _value(emptied, "attn_outbox_oldest_age_seconds") == 0


async def test_health_tells_liveness_from_readiness(pg_dsn: str, redis_url: str) -> None:
    async with (
        running_bot(pg_dsn=pg_dsn, redis_url=redis_url, aksis_mode="demo") as bot,
        serving(bot.app) as base,
        aiohttp.ClientSession() as http,
    ):
        for path in ("/health", "/health/ready"):
            async with http.get(f"{base}{path}") as response:
                assert response.status == 200
                assert await response.json() == {"status": "ok", "postgres": "ok", "redis": "ok"}
        async with http.get(f"{base}/health/live") as response:
            assert response.status == 200
            assert await response.json() == {"status": "ok"}


@pytest.mark.parametrize("log_format", ["text", "json"])
def test_a_secret_that_reaches_a_log_call_is_masked(log_format: str) -> None:
    """Defence in depth: should a library put the token or a store password into a message
    (a request URL in an exception, a DSN), the line carries *** instead."""
    token = "123456789:AAH" + "k" * 32
    settings = load_settings(
        bot_token=token,
        database_url="postgresql://attn:db-pass-ord@db.example.edu:5432/attn",
        log_format=log_format,
        aksis_mode="demo",
    )
    buffer = io.StringIO()
    handler = build_handler(settings, buffer)
    logger = logging.getLogger("tests.masking")
    logger.addHandler(handler)
    logger.propagate = False
    try:
        logger.warning("POST https://api.telegram.org/bot%s/sendMessage failed", token)
        logger.warning("connect to postgresql://attn:db-pass-ord@db.example.edu/attn failed")
        logger.warning("another token 987654321:%s", "Z" * 35)
    finally:
        logger.removeHandler(handler)
        logger.propagate = True
    output = buffer.getvalue()
    assert token not in output and "db-pass-ord" not in output and "Z" * 35 not in output
    assert output.count("***") == 3
    if log_format == "json":
        assert [json.loads(line)["log.level"] for line in output.splitlines()] == ["WARNING"] * 3
    else:
        assert "WARNING tests.masking: POST https://api.telegram.org/bot***/sendMessage" in output


def test_log_format_and_level_come_from_the_environment() -> None:
    """`python -m bot` calls setup_logging with the settings: LOG_FORMAT=json and
    LOG_LEVEL=DEBUG from the environment give DEBUG lines as JSON on stderr."""
    script = (
        "import logging\n"
        "from bot.config import load_settings\n"
        "from bot.logs import job_context, setup_logging\n"
        "setup_logging(load_settings())\n"
        "with job_context('purge'):\n"
        "    logging.getLogger('attn.check').debug('tick')\n"
        "logging.getLogger('attn.check').info('plain')\n"
    )
    env = {**os.environ, "LOG_FORMAT": "json", "LOG_LEVEL": "DEBUG", "AKSIS_MODE": "demo"}
    done = subprocess.run(
        [sys.executable, "-c", script], env=env, capture_output=True, text=True, check=True
    )
    lines = [json.loads(line) for line in done.stderr.splitlines()]
    assert [(x["log.level"], x["message"], x.get("attn.job")) for x in lines] == [
        ("DEBUG", "tick", "purge"),
        ("INFO", "plain", None),
    ]
    env = {**os.environ, "LOG_FORMAT": "text", "LOG_LEVEL": "INFO", "AKSIS_MODE": "demo"}
    done = subprocess.run(
        [sys.executable, "-c", script], env=env, capture_output=True, text=True, check=True
    )
    assert done.stderr.splitlines()[0].endswith(" INFO attn.check: plain")
    assert len(done.stderr.splitlines()) == 1
