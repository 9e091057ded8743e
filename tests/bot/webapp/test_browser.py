"""The Mini App's check-in and figures pages in a real headless Chromium (Debian's
`chromium` through Playwright's `executable_path`), against the running bot with the fake Bot
API and the fake portal. The page is opened as Telegram opens it: `PUBLIC_URL/app/...` with the
launch data, signed with the bot's token, in the fragment (`#tgWebAppData=...`)."""

from __future__ import annotations

import asyncio
import shutil
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any
from urllib.parse import quote

import pytest
from aiohttp import web

from bot.webapp.initdata import sign_init_data
from tests.fakes.aksis_server import FakeAksis, portal_lesson
from tests.harness import PASSWORD, Running, reply, running_bot
from tests.support import free_port

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
playwright_api = pytest.importorskip("playwright.async_api", reason="playwright not installed")
expect = playwright_api.expect

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(
        CHROMIUM is None,
        reason="no Chromium found (Debian: apt-get install chromium; .ci/run installs it)",
    ),
]

TEACHER_NAME = "Doç. Dr. ELİF KARTAL"
ANCHOR = {"latitude": 41.0122, "longitude": 28.9760}
FAR = {"latitude": 41.0422, "longitude": 28.9760}  # ~3 km north
BROWSER_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


@pytest.fixture
async def portal() -> AsyncIterator[FakeAksis]:
    async with FakeAksis() as fake:
        lesson = portal_lesson(datetime.now(UTC), hocalar=TEACHER_NAME)
        fake.add_teacher("teacher1", PASSWORD, TEACHER_NAME, lessons=[lesson])
        fake.add_student("student1", PASSWORD, "AYŞE YILDIZ", "2024001", lessons=[lesson])
        fake.add_student("student2", PASSWORD, "İSMAİL KAYA", "2024002", lessons=[lesson])
        fake.add_student("student3", PASSWORD, "CAN DEMİR", "2024003", lessons=[lesson])
        yield fake


def page_url(bot: Running, path: str, user_id: int, lang: str, start: str | None = None) -> str:
    init_data = sign_init_data(
        bot_token=bot.settings.bot_token.get_secret_value(),  # type: ignore[union-attr]
        user={"id": user_id, "first_name": "Student", "language_code": lang},
        auth_date=datetime.now(UTC),
        start_param=start,
    )
    return f"{bot.settings.public_url}{path}#tgWebAppData={quote(init_data)}&tgWebAppVersion=8.0"


async def _served(bot: Running, port: int) -> web.AppRunner:
    from bot.web import build_web

    runner = web.AppRunner(build_web(bot.app))
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    return runner


@pytest.fixture
async def browser() -> AsyncIterator[Any]:
    async with playwright_api.async_playwright() as pw:
        launched = await pw.chromium.launch(executable_path=CHROMIUM, args=BROWSER_ARGS)
        try:
            yield launched
        finally:
            await launched.close()


def _answers_to(bot: Running, chat_id: int) -> list[str]:
    """What the bot sent this chat, "attendance is open" notices left out."""
    texts = [
        str(c.params.get("text")) for c in bot.telegram.calls_to("sendMessage", chat_id=chat_id)
    ]
    return [text for text in texts if not text.startswith("📣")]


async def _record(bot: Running, teacher_id: int, number: str) -> Any:
    user = await bot.app.redis.users.get_user_session(telegram_id=teacher_id)
    assert user is not None
    session = await bot.app.attendance.open_session(teacher=user)
    assert session is not None
    return session, await bot.app.redis.sessions.get_attendance_record(
        attendance_id=session.attendance_id, student_number=number
    )


async def test_check_in_page_at_level_1_records_what_the_chat_records_and_sends_nothing(
    pg_dsn: str, redis_url: str, portal: FakeAksis, browser: Any
) -> None:
    port = free_port()
    async with running_bot(
        pg_dsn=pg_dsn,
        redis_url=redis_url,
        aksis=portal,
        public_url=f"http://127.0.0.1:{port}",
        chat_login="on",  # the tests link accounts through the chat
    ) as bot:
        runner = await _served(bot, port)
        try:
            teacher, chat = bot.user(100, "Elif"), bot.user(202, "İsmail")
            await bot.login(teacher, "teacher1")
            await bot.login(bot.user(201, "Ayşe", "tr"), "student1")
            await bot.login(chat, "student2")
            code = await bot.start_session(teacher)

            # One student in chat, one on the page (Turkish), in the same class.
            await chat.send(code)
            assert "checked in" in str((await reply(chat)).get("text"))
            before = _answers_to(bot, 201)
            page = await browser.new_page()
            url = page_url(bot, "/app/checkin", 201, "tr", start=f"ci_{code}")
            await page.goto(url)
            await expect(page.locator("#code")).to_have_value(code)  # filled from the QR
            await expect(page.locator("#submit")).to_have_text("Yoklamaya katıl")
            await page.click("#submit")
            verdict = page.locator("#verdict")
            await expect(verdict).to_have_attribute("data-kind", "ok", timeout=10_000)
            text = await verdict.inner_text()
            assert "dersine" in text and "itibarıyla katıldınız" in text, text
            assert "DATA STRUCTURES" in await page.inner_text("#lesson")

            _, by_page = await _record(bot, 100, "2024001")
            _, by_chat = await _record(bot, 100, "2024002")
            assert by_page is not None and by_chat is not None
            assert (
                (by_page.is_attended, by_page.fail_reason, by_page.source)
                == (
                    by_chat.is_attended,
                    by_chat.fail_reason,
                    by_chat.source,
                )
                == (True, None, by_chat.source)
            )
            assert by_page.telegram_id == 201

            # A second try on the page is told so, in English for an English user.
            await bot.login(bot.user(203, "Can"), "student3")
            before_can = _answers_to(bot, 203)
            english = await browser.new_page()
            await english.goto(page_url(bot, "/app/checkin", 201, "en", start=f"ci_{code}"))
            await english.click("#submit")
            await expect(english.locator("#verdict")).to_have_attribute(
                "data-kind", "duplicate", timeout=10_000
            )
            assert "already checked in" in await english.inner_text("#verdict")
            # A wrong code, in English.
            english = await browser.new_page()
            await english.goto(page_url(bot, "/app/checkin", 203, "en"))
            await english.fill("#code", "000001" if code != "000001" else "000002")
            await english.click("#submit")
            await expect(english.locator("#verdict")).to_have_attribute(
                "data-kind", "wrong", timeout=10_000
            )
            assert "does not match" in await english.inner_text("#verdict")

            # No bot message carried any of these verdicts.
            await asyncio.sleep(1.0)
            assert _answers_to(bot, 201) == before
            assert _answers_to(bot, 203) == before_can
        finally:
            await runner.cleanup()


async def test_check_in_page_at_level_3_takes_the_typed_code_and_the_device_location(
    pg_dsn: str, redis_url: str, portal: FakeAksis, browser: Any
) -> None:
    port = free_port()
    async with running_bot(
        pg_dsn=pg_dsn,
        redis_url=redis_url,
        aksis=portal,
        public_url=f"http://127.0.0.1:{port}",
        chat_login="on",  # the tests link accounts through the chat
        security_level_default=3,
    ) as bot:
        runner = await _served(bot, port)
        try:
            teacher, chat = bot.user(100, "Elif"), bot.user(202, "İsmail")
            await bot.login(teacher, "teacher1")
            await bot.login(bot.user(201, "Ayşe"), "student1")
            await bot.login(chat, "student2")
            await bot.login(bot.user(203, "Can"), "student3")
            await bot.start_session(teacher)
            await reply(teacher)  # the request for the teacher's location
            await teacher.send_location(ANCHOR["latitude"], ANCHOR["longitude"])
            await reply(teacher)
            session, _ = await _record(bot, 100, "-")
            before = {uid: _answers_to(bot, uid) for uid in (201, 203)}

            # In the room: the code typed from the screen, the position from the device.
            here = await browser.new_context(geolocation=ANCHOR, permissions=["geolocation"])
            page = await here.new_page()
            await page.goto(page_url(bot, "/app/checkin", 201, "en", start="ci"))
            await expect(page.locator("#code")).to_have_value("")
            await page.fill("#code", session.code)
            await page.click("#submit")
            verdict = page.locator("#verdict")
            await expect(verdict).to_have_attribute("data-kind", "ok", timeout=15_000)
            assert "Location confirmed" in await verdict.inner_text()

            # Far away, in Turkish: recorded, pending review, and why.
            away = await browser.new_context(geolocation=FAR, permissions=["geolocation"])
            far_page = await away.new_page()
            await far_page.goto(page_url(bot, "/app/checkin", 203, "tr", start="ci"))
            await far_page.fill("#code", session.code)
            await far_page.click("#submit")
            await expect(far_page.locator("#verdict")).to_have_attribute(
                "data-kind", "pending", timeout=15_000
            )
            assert "öğretmeniniz" in (await far_page.inner_text("#verdict")).lower()

            # The chat flow in the same class records the same as the page.
            await chat.send(session.code)
            await reply(chat)
            await chat.send_location(
                ANCHOR["latitude"], ANCHOR["longitude"], horizontal_accuracy=15
            )
            assert "Location confirmed" in str((await reply(chat)).get("text"))
            _, by_page = await _record(bot, 100, "2024001")
            _, by_chat = await _record(bot, 100, "2024002")
            _, too_far = await _record(bot, 100, "2024003")
            assert by_page is not None and by_chat is not None and too_far is not None
            assert (by_page.is_attended, by_page.fail_reason) == (True, None)
            assert (by_chat.is_attended, by_chat.fail_reason) == (True, None)
            assert (too_far.is_attended, too_far.fail_reason) == (False, "LOCATION_TOO_FAR")
            await asyncio.sleep(1.0)
            assert {uid: _answers_to(bot, uid) for uid in (201, 203)} == before
        finally:
            await runner.cleanup()


async def test_a_location_the_page_could_not_get_leaves_the_check_in_pending(
    pg_dsn: str, redis_url: str, portal: FakeAksis, browser: Any
) -> None:
    port = free_port()
    async with running_bot(
        pg_dsn=pg_dsn,
        redis_url=redis_url,
        aksis=portal,
        public_url=f"http://127.0.0.1:{port}",
        chat_login="on",  # the tests link accounts through the chat
        security_level_default=2,
    ) as bot:
        runner = await _served(bot, port)
        try:
            teacher = bot.user(100, "Elif")
            await bot.login(teacher, "teacher1")
            await bot.login(bot.user(201, "Ayşe"), "student1")
            code = await bot.start_session(teacher)
            await reply(teacher)
            await teacher.send_location(ANCHOR["latitude"], ANCHOR["longitude"])
            await reply(teacher)
            denied = await browser.new_context()  # no geolocation permission
            page = await denied.new_page()
            await page.goto(page_url(bot, "/app/checkin", 201, "en", start=f"ci_{code}"))
            await expect(page.locator("#code")).to_have_value(code)  # level 2: filled in
            await page.click("#submit")
            verdict = page.locator("#verdict")
            await expect(verdict).to_have_attribute("data-kind", "pending", timeout=15_000)
            assert "no location" in await verdict.inner_text()
            _, record = await _record(bot, 100, "2024001")
            assert record is not None
            assert (record.is_attended, record.fail_reason) == (False, "LOCATION_MISSING")
        finally:
            await runner.cleanup()


async def _finalized(bot: Running, n: int) -> None:
    teacher = await bot.app.redis.users.get_user_session(telegram_id=100)
    assert teacher is not None
    for _ in range(200):
        saved = await bot.app.pg.reports.get_attendances(
            teacher_school_number=teacher.school_number
        )
        if len(saved) >= n:
            return
        await asyncio.sleep(0.1)
    raise AssertionError(f"{n} sessions were not finalized")


async def test_figures_page_shows_the_students_own_percentage(
    pg_dsn: str, redis_url: str, portal: FakeAksis, browser: Any
) -> None:
    port = free_port()
    async with running_bot(
        pg_dsn=pg_dsn,
        redis_url=redis_url,
        aksis=portal,
        public_url=f"http://127.0.0.1:{port}",
        chat_login="on",  # the tests link accounts through the chat
        finalize_interval_seconds=1,
    ) as bot:
        runner = await _served(bot, port)
        try:
            teacher, ayse = bot.user(100, "Elif"), bot.user(201, "Ayşe", "tr")
            await bot.login(teacher, "teacher1")
            await bot.login(ayse, "student1")
            await bot.login(bot.user(202, "İsmail"), "student2")
            # The "attendance is open" notice opens the check-in page.
            code = await bot.start_session(teacher)
            notice = await ayse.wait_until(
                lambda: any(str(m.get("text", "")).startswith("📣") for m in ayse.messages),
                timeout=10,
                what="the notice",
            )
            del notice
            opened = next(m for m in ayse.messages if str(m.get("text", "")).startswith("📣"))
            buttons = bot.telegram.reply_markup_of(opened)
            assert buttons is not None
            assert buttons["inline_keyboard"][0][0]["web_app"]["url"] == (
                f"{bot.settings.public_url}/app/checkin"
            )
            page = await browser.new_page()
            await page.goto(page_url(bot, "/app/checkin", 201, "tr", start=f"ci_{code}"))
            await page.click("#submit")
            await expect(page.locator("#verdict")).to_have_attribute(
                "data-kind", "ok", timeout=10_000
            )
            await teacher.send("/end_session")
            await reply(teacher)
            await _finalized(bot, 1)
            # The teacher's summary comes through the outbox after the sheet is saved: taken
            # first, so the next /start_session's answer is the next message.
            await teacher.wait_until(
                lambda: any("📊" in str(m.get("text", "")) for m in teacher.messages),
                timeout=10,
                what="the teacher's summary",
            )
            await bot.start_session(teacher)  # a second session Ayşe misses
            await teacher.send("/end_session")
            await reply(teacher)
            await _finalized(bot, 2)

            # /my_attendance offers the page.
            ayse.mark_read()
            await ayse.send("/my_attendance")
            listing = await ayse.wait_until(
                lambda: any("1/2" in str(m.get("text")) for m in ayse.messages),
                timeout=10,
                what="/my_attendance",
            )
            del listing
            mine = next(m for m in ayse.messages if "1/2" in str(m.get("text")))
            keyboard = bot.telegram.reply_markup_of(mine)
            assert keyboard is not None
            urls = [
                b.get("web_app", {}).get("url") for row in keyboard["inline_keyboard"] for b in row
            ]
            assert f"{bot.settings.public_url}/app/figures" in urls

            await page.goto(page_url(bot, "/app/figures", 201, "tr"))
            course = page.locator(".course")
            await expect(course).to_have_count(1, timeout=10_000)
            assert await page.inner_text("#title") == "Devam durumunuz"
            assert "1 / 2" in await course.inner_text()
            assert await course.locator(".percent").inner_text() == "%50"
            width = await course.locator(".bar > span").evaluate("node => node.style.width")
            assert width == "50%"
            assert await course.locator("ul.rows li").count() == 2
            assert "AYŞE" not in await page.content() and "2024002" not in await page.content()

            # Another student sees only their own figures, in English. (A new page each time:
            # a URL that differs only in its fragment does not load the page again.)
            page = await browser.new_page()
            await page.goto(page_url(bot, "/app/figures", 202, "en"))
            await expect(page.locator(".course")).to_have_count(1, timeout=10_000)
            assert await page.locator(".course .percent").inner_text() == "0%"
            assert await page.inner_text("#title") == "Your attendance"
            # Someone with no linked account sees no one's figures.
            page = await browser.new_page()
            await page.goto(page_url(bot, "/app/figures", 999, "en"))
            await expect(page.locator("#message")).to_contain_text("/login", timeout=10_000)
            assert await page.locator(".course").count() == 0
        finally:
            await runner.cleanup()
