"""The projector page in a real headless Chromium: Debian's `chromium` driven by
Playwright for Python through `executable_path` (no browser download). The page is read as a
classroom screen shows it: the code's text, and the QR code decoded from a screenshot."""

from __future__ import annotations

import io
import re
import shutil
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web

from tests.fakes.aksis_server import FakeAksis, portal_lesson
from tests.harness import PASSWORD, Running, reply, running_bot
from tests.support import free_port

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
playwright_api = pytest.importorskip("playwright.async_api", reason="playwright not installed")
expect = playwright_api.expect
zxingcpp = pytest.importorskip("zxingcpp", reason="zxing-cpp not installed")
Image = pytest.importorskip("PIL.Image", reason="Pillow not installed")

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(
        CHROMIUM is None,
        reason="no Chromium found (Debian: apt-get install chromium; .ci/run installs it)",
    ),
]

TEACHER_NAME = "Doç. Dr. ELİF KARTAL"
ANCHOR = (41.0122, 28.9760)
PROJECTOR = re.compile(r"(http://127\.0\.0\.1:\d+/p/[0-9a-f]{72})")
SCREEN = re.compile(r"/p/[0-9a-f]{72}$")


class OffsetClock:
    def __init__(self) -> None:
        self.offset = timedelta()

    def __call__(self) -> datetime:
        return datetime.now(UTC) + self.offset


@pytest.fixture
async def portal() -> AsyncIterator[FakeAksis]:
    async with FakeAksis() as fake:
        lesson = portal_lesson(datetime.now(UTC) - timedelta(minutes=5), hocalar=TEACHER_NAME)
        fake.add_teacher("teacher1", PASSWORD, TEACHER_NAME, lessons=[lesson])
        fake.add_student("student1", PASSWORD, "AYŞE YILDIZ", "2024001", lessons=[lesson])
        yield fake


def _decode_qr(png: bytes) -> list[str]:
    image = Image.open(io.BytesIO(png))
    return [result.text for result in zxingcpp.read_barcodes(image)]


async def _served(bot: Running, port: int) -> web.AppRunner:
    from bot.web import build_web

    runner = web.AppRunner(build_web(bot.app))
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    return runner


async def test_projector_page_in_headless_chromium(
    pg_dsn: str, redis_url: str, portal: FakeAksis, tmp_path: Path
) -> None:
    port = free_port()
    clock = OffsetClock()
    async with running_bot(
        pg_dsn=pg_dsn,
        redis_url=redis_url,
        aksis=portal,
        clock=clock,
        public_url=f"http://127.0.0.1:{port}",
        chat_login="on",  # the tests link accounts through the chat
        security_level_default=3,
        code_rotation_seconds=30,
    ) as bot:
        runner = await _served(bot, port)
        try:
            await _play(bot, clock, tmp_path)
        finally:
            await runner.cleanup()


async def _play(bot: Running, clock: OffsetClock, out: Path) -> None:
    teacher, student = bot.user(100, "Elif"), bot.user(200, "Ayşe")
    await bot.login(teacher, "teacher1")
    await bot.login(student, "student1")
    code = await bot.start_session(teacher)
    status = next(m for m in teacher.messages if code in str(m.get("text")))
    match = PROJECTOR.search(str(status.get("text")))
    assert match, status.get("text")
    url = match.group(1)
    await reply(teacher)  # the request for the teacher's location
    await teacher.send_location(*ANCHOR)
    await reply(teacher)

    async with playwright_api.async_playwright() as pw:
        browser = await pw.chromium.launch(
            executable_path=CHROMIUM, headless=True, args=["--no-sandbox"]
        )
        try:
            page = await browser.new_page(viewport={"width": 1280, "height": 720})
            response = await page.goto(url)
            assert response is not None and response.status == 200
            assert (await page.inner_text("#code")).strip() == code
            html = await page.content()
            assert "AYŞE" not in html and "2024001" not in html  # no student names
            # The way in: the bot's name, and at level 3 a QR code opening the Mini App's
            # check-in screen (the code is typed from the screen) and a countdown.
            assert "@attn_test_bot" in await page.inner_text("body")
            png = await page.locator("#qr").screenshot()
            assert _decode_qr(png) == ["https://t.me/attn_test_bot?startapp=ci"]
            # The page's CSP forbids eval: waits use locators, which run in Playwright's world.
            await expect(page.locator("#countdown")).to_have_text(
                re.compile(r"^(2[1-9]|30)$"), timeout=5000
            )
            assert await page.locator("#rotation").is_visible()
            await page.screenshot(path=str(out / "projector.png"), full_page=True)

            # A check-in shows in the count without a reload.
            await student.send(code)
            await reply(student)
            await student.send_location(*ANCHOR, horizontal_accuracy=10)
            assert "Location confirmed" in str((await reply(student)).get("text"))
            await expect(page.locator("#present")).to_have_text("1", timeout=5000)

            # A rotation shows the new code and a QR code of its link within seconds.
            clock.offset += timedelta(seconds=31)
            await expect(page.locator("#code")).not_to_have_text(code, timeout=6000)
            new_code = (await page.inner_text("#code")).strip()
            session = await bot.app.attendance.open_session(teacher=await _teacher(bot, teacher.id))
            assert session is not None and new_code == session.code != code

            # Once the session ends: 404, for the page and its data.
            await teacher.send("/end_session")
            await reply(teacher)
            response = await page.goto(url)
            assert response is not None and response.status == 404
            async with aiohttp.ClientSession() as http:
                async with http.get(url + "/state") as state:
                    assert state.status == 404
                async with http.get(url[:-1] + ("0" if url[-1] != "0" else "1")) as forged:
                    assert forged.status == 404
        finally:
            await browser.close()


async def _teacher(bot: Running, telegram_id: int) -> Any:
    user = await bot.app.redis.users.get_user_session(telegram_id=telegram_id)
    assert user is not None
    return user


async def test_a_photographed_projector_address_stops_working(
    pg_dsn: str, redis_url: str, portal: FakeAksis
) -> None:
    """The address a classroom screen shows is renewed by the page and expires a
    minute after it was issued, while the screen keeps showing the current code."""
    port = free_port()
    clock = OffsetClock()
    async with running_bot(
        pg_dsn=pg_dsn,
        redis_url=redis_url,
        aksis=portal,
        clock=clock,
        public_url=f"http://127.0.0.1:{port}",
        chat_login="on",  # the tests link accounts through the chat
        security_level_default=1,
    ) as bot:
        runner = await _served(bot, port)
        try:
            teacher = bot.user(100, "Elif")
            await bot.login(teacher, "teacher1")
            code = await bot.start_session(teacher)
            status = next(m for m in teacher.messages if code in str(m.get("text")))
            match = PROJECTOR.search(str(status.get("text")))
            assert match, status.get("text")
            async with playwright_api.async_playwright() as pw:
                browser = await pw.chromium.launch(
                    executable_path=CHROMIUM, headless=True, args=["--no-sandbox"]
                )
                try:
                    page = await browser.new_page()
                    await page.goto(match.group(1))
                    photographed = page.url
                    assert SCREEN.search(photographed), photographed
                    # Level 1: the QR code carries the code for the page to fill in.
                    png = await page.locator("#qr").screenshot()
                    assert _decode_qr(png) == [f"https://t.me/attn_test_bot?startapp=ci_{code}"]
                    assert not await page.locator("#rotation").is_visible()
                    async with aiohttp.ClientSession() as http:
                        async with http.get(photographed + "/state") as state:
                            assert state.status == 200
                            assert (await state.json())["code"] == code
                        for _ in range(4):  # 80 s in steps the page follows
                            before = page.url
                            clock.offset += timedelta(seconds=20)
                            await expect(page).not_to_have_url(before, timeout=5000)
                        async with http.get(photographed + "/state") as state:
                            assert state.status == 404
                        async with http.get(photographed) as old_page:
                            assert old_page.status == 404
                        async with http.get(page.url + "/state") as state:
                            assert state.status == 200
                    assert (await page.inner_text("#code")).strip() == code
                finally:
                    await browser.close()
        finally:
            await runner.cleanup()


async def test_a_photographed_launch_link_stops_working_and_the_status_message_renews_it(
    pg_dsn: str, redis_url: str, portal: FakeAksis
) -> None:
    """The teacher's launch link is valid for minutes, not for the session: a photograph of it
    (or of the teacher's message) opens nothing once LAUNCH_LINK_SECONDS have passed, while the
    status message carries a fresh link that opens the projector screen in Chromium."""
    from bot.projector import LAUNCH_LINK_SECONDS

    port = free_port()
    clock = OffsetClock()
    async with running_bot(
        pg_dsn=pg_dsn,
        redis_url=redis_url,
        aksis=portal,
        clock=clock,
        public_url=f"http://127.0.0.1:{port}",
        chat_login="on",  # the tests link accounts through the chat
        security_level_default=1,
    ) as bot:
        runner = await _served(bot, port)
        try:
            teacher = bot.user(100, "Elif")
            await bot.login(teacher, "teacher1")
            code = await bot.start_session(teacher)

            def status_link() -> str | None:
                status = next(m for m in teacher.messages if code in str(m.get("text")))
                match = PROJECTOR.search(str(status.get("text")))
                return match.group(1) if match else None

            photographed = status_link()
            assert photographed is not None
            async with aiohttp.ClientSession() as http:
                async with http.get(photographed, allow_redirects=False) as answer:
                    assert answer.status == 303  # to a screen address
                clock.offset += timedelta(seconds=LAUNCH_LINK_SECONDS + 1)
                async with http.get(photographed, allow_redirects=False) as answer:
                    assert answer.status == 404
                    assert "location" not in answer.headers
                    assert code not in await answer.text()
                # The expired link's visit had the status message edited with a fresh link.
                await teacher.wait_until(
                    lambda: status_link() not in (None, photographed),
                    timeout=10,
                    what="a fresh projector link in the status message",
                )
            fresh = status_link()
            assert fresh is not None
            async with playwright_api.async_playwright() as pw:
                browser = await pw.chromium.launch(
                    executable_path=CHROMIUM, headless=True, args=["--no-sandbox"]
                )
                try:
                    page = await browser.new_page()
                    response = await page.goto(fresh)
                    assert response is not None and response.status == 200
                    assert SCREEN.search(page.url), page.url
                    assert (await page.inner_text("#code")).strip() == code
                    old = await browser.new_page()
                    response = await old.goto(photographed)
                    assert response is not None and response.status == 404
                    assert code not in await old.content()
                finally:
                    await browser.close()
        finally:
            await runner.cleanup()
