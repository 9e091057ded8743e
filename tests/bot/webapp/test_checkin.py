"""The check-in page's endpoints over HTTP (bot/webapp/checkin.py), against the running bot:
the rules of the chat flow hold for the page (one wrong-code throttle, the location rule), and
what a page would never send changes nothing."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any

import aiohttp
import pytest
from aiohttp import web

from bot.webapp.initdata import sign_init_data
from tests.fakes.aksis_server import FakeAksis, portal_lesson
from tests.harness import PASSWORD, Running, reply, running_bot
from tests.support import free_port

pytestmark = [pytest.mark.slow]

TEACHER_NAME = "Doç. Dr. ELİF KARTAL"
ANCHOR = (41.0122, 28.9760)


@pytest.fixture
async def portal() -> AsyncIterator[FakeAksis]:
    async with FakeAksis() as fake:
        lesson = portal_lesson(datetime.now(UTC), hocalar=TEACHER_NAME)
        fake.add_teacher("teacher1", PASSWORD, TEACHER_NAME, lessons=[lesson])
        fake.add_student("student1", PASSWORD, "AYŞE YILDIZ", "2024001", lessons=[lesson])
        yield fake


@pytest.fixture
async def served(
    pg_dsn: str, redis_url: str, portal: FakeAksis, request: pytest.FixtureRequest
) -> AsyncIterator[Running]:
    from bot.web import build_web

    port = free_port()
    level = getattr(request, "param", 1)
    async with running_bot(
        pg_dsn=pg_dsn,
        redis_url=redis_url,
        aksis=portal,
        public_url=f"http://127.0.0.1:{port}",
        chat_login="on",  # the tests link accounts through the chat
        security_level_default=level,
    ) as bot:
        runner = web.AppRunner(build_web(bot.app))
        await runner.setup()
        await web.TCPSite(runner, "127.0.0.1", port).start()
        try:
            yield bot
        finally:
            await runner.cleanup()


def _init_data(bot: Running, user_id: int = 201, *, token: str | None = None) -> str:
    assert bot.settings.bot_token is not None
    return sign_init_data(
        bot_token=token or bot.settings.bot_token.get_secret_value(),
        user={"id": user_id, "first_name": "Ayşe", "language_code": "en"},
        auth_date=datetime.now(UTC),
    )


async def _post(bot: Running, path: str, body: dict[str, Any]) -> tuple[int, dict[str, Any]]:
    async with (
        aiohttp.ClientSession() as http,
        http.post(f"{bot.settings.public_url}{path}", json=body) as response,
    ):
        return response.status, await response.json()


async def _class(bot: Running, *, anchored: bool = False) -> str:
    teacher, student = bot.user(100, "Elif"), bot.user(201, "Ayşe")
    await bot.login(teacher, "teacher1")
    await bot.login(student, "student1")
    code = await bot.start_session(teacher)
    if anchored:
        await reply(teacher)  # the request for the teacher's location
        await teacher.send_location(*ANCHOR)
        await reply(teacher)
    return code


async def _record(bot: Running) -> Any:
    teacher = await bot.app.redis.users.get_user_session(telegram_id=100)
    assert teacher is not None
    session = await bot.app.attendance.open_session(teacher=teacher)
    assert session is not None
    return await bot.app.redis.sessions.get_attendance_record(
        attendance_id=session.attendance_id, student_number="2024001"
    )


async def test_wrong_codes_on_the_page_and_in_chat_share_one_throttle(served: Running) -> None:
    bot = served
    code = await _class(bot)
    wrong = f"{(int(code) + 1) % 1_000_000:06d}"
    for _ in range(5):
        status, answer = await _post(
            bot, "/app/api/checkin", {"init_data": _init_data(bot), "code": wrong}
        )
        assert (status, answer["kind"]) == (200, "wrong")
    status, answer = await _post(
        bot, "/app/api/checkin", {"init_data": _init_data(bot), "code": code}
    )
    assert answer["kind"] == "throttled", answer
    # The chat twin is throttled by the same counter: the right code does not get through.
    student = bot.telegram.user(201, "Ayşe", "en")
    await student.send(code)
    assert "Too many wrong codes" in str((await reply(student)).get("text"))
    assert await _record(bot) is None


async def test_launch_data_of_another_bot_checks_nobody_in(served: Running) -> None:
    bot = served
    code = await _class(bot)
    forged = _init_data(bot, token="999999:another-bots-token")
    status, answer = await _post(bot, "/app/api/checkin", {"init_data": forged, "code": code})
    assert status == 401 and answer["ok"] is False
    assert await _record(bot) is None


async def test_page_requests_are_rate_limited_per_account(served: Running) -> None:
    bot = served
    code = await _class(bot)
    statuses = []
    for _ in range(31):
        status, _ = await _post(
            bot, "/app/api/checkin", {"init_data": _init_data(bot), "code": code}
        )
        statuses.append(status)
    assert statuses[:30] == [200] * 30
    assert statuses[30] == 429


@pytest.mark.parametrize("served", [2], indirect=True)
async def test_a_location_the_page_would_never_send_changes_nothing(served: Running) -> None:
    bot = served
    code = await _class(bot, anchored=True)
    status, answer = await _post(
        bot, "/app/api/checkin", {"init_data": _init_data(bot), "code": code}
    )
    assert (status, answer["kind"]) == (200, "location")
    for bad in (
        {"latitude": 999, "longitude": ANCHOR[1], "accuracy": 10, "age_ms": 0},
        {"latitude": "NaN", "longitude": ANCHOR[1], "accuracy": 10, "age_ms": 0},
        {"latitude": ANCHOR[0], "longitude": ANCHOR[1], "accuracy": -1, "age_ms": 0},
        {"latitude": ANCHOR[0], "longitude": ANCHOR[1], "accuracy": 10},
        {"error": "because"},
    ):
        status, answer = await _post(
            bot, "/app/api/checkin/location", {"init_data": _init_data(bot), **bad}
        )
        assert status == 400 and answer["ok"] is False, bad
    record = await _record(bot)
    assert (record.is_attended, record.fail_reason) == (False, "LOCATION_MISSING")
    # A position read long ago is stale, by the chat's rule: pending review.
    status, answer = await _post(
        bot,
        "/app/api/checkin/location",
        {
            "init_data": _init_data(bot),
            "latitude": ANCHOR[0],
            "longitude": ANCHOR[1],
            "accuracy": 10,
            "age_ms": 1e308,  # read long ago (and a number no date arithmetic can take)
        },
    )
    assert (status, answer["kind"]) == (200, "pending")
    record = await _record(bot)
    assert (record.is_attended, record.fail_reason) == (False, "LOCATION_STALE")


@pytest.mark.parametrize("served", [2], indirect=True)
async def test_a_page_without_a_position_leaves_the_check_in_pending_and_says_why(
    served: Running,
) -> None:
    bot = served
    code = await _class(bot, anchored=True)
    denied = {"init_data": _init_data(bot), "error": "denied"}
    # Before any code: nothing waits for a location, and the page is told so.
    status, answer = await _post(bot, "/app/api/checkin/location", denied)
    assert (status, answer["kind"], answer["lesson"]) == (200, "no_wait", "")
    assert answer["text"].startswith("No check-in is waiting for a location.")
    status, answer = await _post(
        bot, "/app/api/checkin", {"init_data": _init_data(bot), "code": code}
    )
    assert (status, answer["kind"]) == (200, "location")
    lesson = answer["lesson"]
    assert lesson
    status, answer = await _post(bot, "/app/api/checkin/location", denied)
    assert (status, answer["kind"], answer["lesson"]) == (200, "pending", lesson)
    assert answer["text"] == (
        f"🕓 Recorded for {lesson}, but no location, so your teacher will review it."
    )
    record = await _record(bot)
    assert (record.is_attended, record.fail_reason) == (False, "LOCATION_MISSING")
