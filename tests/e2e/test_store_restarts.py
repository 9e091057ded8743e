"""The bot survives a restart of Redis or PostgreSQL without being restarted itself.

Each test runs its own throwaway server (tests/throwaway.py), stops it in the middle of a class
and starts it again: while it is down users are told to try again in a moment and nothing is
half-written; once it is back the bot recovers by itself within seconds.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import aiohttp
import asyncpg
import pytest
from aiohttp import web

from bot.app import App
from bot.web import build_web
from dal.redis.connection import client as redis_client
from tests.fakes.aksis_server import FakeAksis, portal_lesson
from tests.harness import PASSWORD, Running, reply, running_bot
from tests.throwaway import ThrowawayPostgres, ThrowawayRedis
from ui.i18n import t

pytestmark = pytest.mark.slow

TEACHER = ("hoca.kartal", "Doç. Dr. ELİF KARTAL")
STUDENTS = [
    ("ayse.yildiz", "AYŞE YILDIZ", "2024201", "en"),
    ("ismail.isik", "İSMAİL IŞIK", "2024202", "en"),
    ("cagri.ozgur", "ÇAĞRI ÖZGÜR", "2024203", "tr"),
]


@pytest.fixture
async def portal() -> AsyncIterator[FakeAksis]:
    async with FakeAksis() as fake:
        now = datetime.now(UTC)
        lesson = portal_lesson(now - timedelta(minutes=5), minutes=60, hocalar=TEACHER[1])
        fake.add_teacher(TEACHER[0], PASSWORD, TEACHER[1], lessons=[lesson])
        for username, name, number, _ in STUDENTS:
            fake.add_student(username, PASSWORD, name, number, lessons=[lesson])
        yield fake


async def _class(bot: Running) -> tuple[object, list[object], str]:
    teacher = bot.user(8_100, "Elif", "tr")
    students = [
        bot.user(8_200 + i, name.split()[0], lang) for i, (_, name, _, lang) in enumerate(STUDENTS)
    ]
    await bot.login(teacher, TEACHER[0])
    for user, (username, *_rest) in zip(students, STUDENTS, strict=True):
        await bot.login(user, username)
    return teacher, students, await bot.start_session(teacher)


async def _ready(app: App) -> tuple[int, dict[str, object]]:
    runner = web.AppRunner(build_web(app))
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    try:
        base = f"http://127.0.0.1:{runner.addresses[0][1]}"
        async with aiohttp.ClientSession() as http:
            async with http.get(f"{base}/health/live") as live:
                assert live.status == 200  # the process is fine whatever the stores do
            async with http.get(f"{base}/health/ready") as response:
                return response.status, await response.json()
    finally:
        await runner.cleanup()


async def test_redis_restart_during_an_open_session(
    pg_dsn: str, portal: FakeAksis, tmp_path: Path
) -> None:
    server = ThrowawayRedis(tmp_path / "redis")
    await server.start()
    try:
        async with running_bot(pg_dsn=pg_dsn, redis_url=server.url, aksis=portal) as bot:
            _teacher, students, code = await _class(bot)
            first, second, third = students
            await first.send(code)
            assert "checked in" in str((await reply(first)).get("text"))

            await server.stop()
            down = {"status": "down", "postgres": "ok", "redis": "down"}
            assert await _ready(bot.app) == (503, down)
            await second.send(code)
            assert (await reply(second)).get("text") == t("error.unavailable", locale="en")
            await third.send(code)
            assert (await reply(third)).get("text") == t("error.unavailable", locale="tr")

            await server.start()
            raw = redis_client(server.url, decode_responses=True)
            try:
                records = [k async for k in raw.scan_iter(match="attendance_records:*")]
                assert len(records) == 1
                # Nothing of the refused check-ins was written.
                assert await raw.hlen(records[0]) == 1
            finally:
                await raw.aclose()
            # Recovered by itself: no restart of the bot, a few seconds at most.
            for attempt in range(20):
                await second.send(code)
                text = str((await reply(second)).get("text"))
                if "checked in" in text:
                    break
                assert text == t("error.unavailable", locale="en"), text
                assert attempt < 19, "the bot did not recover"
                await asyncio.sleep(0.5)
            await third.send(code)
            assert "katıldınız" in str((await reply(third)).get("text"))
            assert await _ready(bot.app) == (200, {"status": "ok", "postgres": "ok", "redis": "ok"})
            attendance = await bot.app.redis.sessions.get_attendance_id_by_code(code=code)
            assert attendance is not None
            assert (
                await bot.app.redis.sessions.count_attendance_records(attendance_id=attendance) == 3
            )
    finally:
        await server.stop()


async def test_postgres_restart_during_finalization(
    redis_url: str, portal: FakeAksis, tmp_path: Path
) -> None:
    server = ThrowawayPostgres(tmp_path / "pg")
    await server.start()
    try:
        async with running_bot(
            pg_dsn=server.dsn, redis_url=redis_url, aksis=portal, finalize_interval_seconds=1
        ) as bot:
            teacher, students, code = await _class(bot)
            for student in students:
                await student.send(code)
                await reply(student)
            attendance_id = await bot.app.redis.sessions.get_attendance_id_by_code(code=code)
            assert attendance_id is not None

            await server.stop()
            down = {"status": "down", "postgres": "down", "redis": "ok"}
            assert await _ready(bot.app) == (503, down)
            await teacher.send("/end_session")  # ends it in Redis; PostgreSQL is not needed
            await teacher.next_message()
            # Several finalization ticks pass while PostgreSQL is down: the session stays.
            await asyncio.sleep(8)
            live = bot.app.redis.sessions
            assert await live.get_attendance(attendance_id=attendance_id) is not None
            assert await live.count_attendance_records(attendance_id=attendance_id) == 3
            # A PostgreSQL-backed command is refused politely meanwhile.
            await students[0].send("/my_attendance")
            assert (await reply(students[0])).get("text") == t("error.unavailable", locale="en")

            await server.start()
            conn = await asyncpg.connect(server.dsn)
            try:
                for _ in range(150):
                    saved = await conn.fetchval(
                        "SELECT count(*) FROM attendance_records WHERE attendance_id = $1",
                        attendance_id,
                    )
                    if saved == 3:
                        break
                    await asyncio.sleep(0.1)
                else:
                    pytest.fail("finalization did not complete after PostgreSQL came back")
            finally:
                await conn.close()
            for _ in range(50):
                if await bot.app.redis.sessions.get_attendance(attendance_id=attendance_id) is None:
                    break
                await asyncio.sleep(0.1)
            else:
                pytest.fail("the session was saved but left in Redis")
            assert await _ready(bot.app) == (200, {"status": "ok", "postgres": "ok", "redis": "ok"})
    finally:
        await server.destroy()
