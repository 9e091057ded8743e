"""The sign-in page (bot/webapp/login.py) in a real headless Chromium (Debian's `chromium`
through Playwright's `executable_path`) against the running bot, the fake Bot API server and the
fake portal. The page is opened as Telegram opens it: PUBLIC_URL/app/login with the signed
launch data in the fragment (`#tgWebAppData=...`), with no Telegram JS SDK on the page."""

from __future__ import annotations

import asyncio
import json
import shutil
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import quote

import pytest
from aiohttp import web

from bot.webapp.initdata import sign_init_data
from bot.webapp.pages import CSP, plain
from services.login_queue import SignOnResult
from tests.fakes.aksis_server import FakeAksis
from tests.harness import PASSWORD, Running, running_bot
from tests.support import free_port
from ui.i18n import t, use_locale
from ui.login import page_confirmation, result_text

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
playwright_api = pytest.importorskip("playwright.async_api", reason="playwright not installed")

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(
        CHROMIUM is None,
        reason="no Chromium found (Debian: apt-get install chromium; .ci/run installs it)",
    ),
]
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
STUDENT = ("student1", "AYŞE YILDIZ", "2024001")
TEACHER = ("teacher1", "Doç. Dr. ELİF KARTAL")


@pytest.fixture
async def portal() -> AsyncIterator[FakeAksis]:
    async with FakeAksis() as fake:
        fake.add_student(STUDENT[0], PASSWORD, STUDENT[1], STUDENT[2])
        fake.add_teacher(TEACHER[0], PASSWORD, TEACHER[1], lessons=[])
        yield fake


@pytest.fixture
async def served(
    pg_dsn: str, redis_url: str, portal: FakeAksis
) -> AsyncIterator[tuple[Running, str]]:
    from bot.web import build_web

    port = free_port()
    base = f"http://127.0.0.1:{port}"
    async with running_bot(
        pg_dsn=pg_dsn, redis_url=redis_url, aksis=portal, public_url=base
    ) as bot:
        runner = web.AppRunner(build_web(bot.app))
        await runner.setup()
        await web.TCPSite(runner, "127.0.0.1", port).start()
        try:
            yield bot, base
        finally:
            await runner.cleanup()


@pytest.fixture
async def browser() -> AsyncIterator[Any]:
    async with playwright_api.async_playwright() as pw:
        chromium = await pw.chromium.launch(
            executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS
        )
        try:
            yield chromium
        finally:
            await chromium.close()


def _launch(
    token: str, user_id: int, lang: str, *, age: timedelta = timedelta(), name: str = "Ayşe"
) -> str:
    return sign_init_data(
        bot_token=token,
        user={"id": user_id, "first_name": name, "language_code": lang},
        auth_date=datetime.now(UTC) - age,
    )


def _page_url(base: str, init_data: str) -> str:
    return f"{base}/app/login#tgWebAppData={quote(init_data, safe='')}"


async def _sign_in(browser: Any, url: str, username: str, password: str) -> tuple[str, str, Any]:
    """Open the page, fill it in, submit; (verdict text, verdict class, the page)."""
    page = await browser.new_page()
    problems: list[str] = []
    # Script errors and CSP violations; an HTTP error answer (a refusal) is logged too: not one.
    page.on(
        "console",
        lambda m: (
            problems.append(m.text)
            if m.type == "error" and not m.text.startswith("Failed to load resource")
            else None
        ),
    )
    page.on("pageerror", lambda e: problems.append(str(e)))
    response = await page.goto(url)
    assert response is not None and response.status == 200
    assert response.headers["content-security-policy"] == CSP
    await page.wait_for_selector("body[data-ready='1']", timeout=5000)
    await page.fill("#username", username)
    await page.fill("#password", password)
    await page.click("#submit")
    # Selectors, not wait_for_function: the page's CSP forbids evaluating strings.
    await page.wait_for_selector("#verdict.ok, #verdict.bad", timeout=15000)
    text = (await page.inner_text("#verdict")).strip()
    kind = await page.get_attribute("#verdict", "class") or ""
    assert not problems, problems  # no script error, no CSP violation
    return text, kind, page


def _no_password_reached_telegram(bot: Running) -> None:
    for call in bot.telegram.calls:
        assert PASSWORD not in json.dumps(call.params, ensure_ascii=False, default=str), call.method


async def test_sign_in_through_the_page_links_the_account_and_no_message_carries_the_password(
    served: tuple[Running, str], browser: Any
) -> None:
    bot, base = served
    student = bot.user(301, "Ayşe", lang="tr")
    # /start offers the page's button; /login too, instead of asking in the chat.
    await student.send("/start")
    start = await student.next_message()
    markup = bot.telegram.reply_markup_of(start) or {}
    button = markup["inline_keyboard"][0][0]
    assert button["web_app"]["url"] == f"{base}/app/login"
    await student.send("/login")
    answer = await student.next_message()
    with use_locale("tr"):
        assert answer["text"] == plain(t("login.use_button"))
    # A password typed in the chat anyway is deleted, and the user pointed to the button.
    typed = await student.send(PASSWORD)
    again = await student.next_message()
    assert typed["message_id"] in bot.telegram.deleted_message_ids(student.id)
    assert bot.telegram.reply_markup_of(again) is not None

    init_data = _launch(bot.telegram.token, student.id, "tr")
    text, kind, page = await _sign_in(browser, _page_url(base, init_data), STUDENT[0], PASSWORD)
    expected = SignOnResult("ok", name=STUDENT[1], role="student", number=STUDENT[2])
    with use_locale("tr"):
        assert text == plain(result_text(expected))  # "✅ Bağlandı: AYŞE YILDIZ (öğrenci)…"
        confirmation = page_confirmation(expected)
    assert "ok" in kind and await page.is_hidden("#login")
    assert await page.get_attribute("html", "lang") == "tr"
    linked = await bot.app.pg.accounts.get_linked_user(telegram_id=student.id)
    assert linked is not None and linked.school_number == STUDENT[2]

    # One confirmation in the chat, with the name and role.
    await student.wait_until(
        lambda: any(m.get("text") == confirmation for m in student.messages),
        timeout=10,
        what="the confirmation",
    )
    named = [m for m in student.messages if STUDENT[1] in str(m.get("text"))]
    assert len(named) == 1
    _no_password_reached_telegram(bot)

    # The page opened with someone else's launch data shows nothing of this student.
    other = await browser.new_page()
    await other.goto(_page_url(base, _launch(bot.telegram.token, 999, "en", name="Mallory")))
    await other.wait_for_selector("body[data-ready='1']")
    html = await other.content()
    assert STUDENT[1] not in html and STUDENT[2] not in html


async def test_the_page_answers_in_english_and_a_wrong_password_links_nothing(
    served: tuple[Running, str], browser: Any
) -> None:
    bot, base = served
    teacher = bot.user(302, "Elif", lang="en")
    url = _page_url(base, _launch(bot.telegram.token, teacher.id, "en", name="Elif"))
    text, kind, page = await _sign_in(browser, url, TEACHER[0], "not-the-password")
    with use_locale("en"):
        assert text == plain(t("login.wrong"))
        assert await page.inner_text("h1") == t("webapp.login.title")
    assert "bad" in kind
    assert await bot.app.pg.accounts.get_linked_user(telegram_id=teacher.id) is None
    # Same page, right password now.
    await page.fill("#password", PASSWORD)
    await page.click("#submit")
    await page.wait_for_selector("#verdict.ok", timeout=15000)
    assert "Linked" in await page.inner_text("#verdict")
    linked = await bot.app.pg.accounts.get_linked_user(telegram_id=teacher.id)
    assert linked is not None and linked.role == "teacher"
    _no_password_reached_telegram(bot)


@pytest.mark.parametrize(
    ("case", "lang"),
    [("forged", "tr"), ("stale", "en"), ("other_bot", "tr"), ("forged", "en")],
)
async def test_launch_data_not_from_this_bot_now_is_refused_and_links_nothing(
    served: tuple[Running, str], browser: Any, case: str, lang: str
) -> None:
    bot, base = served
    victim = 303
    if case == "forged":  # launch data of user 304, its user id changed to the victim's
        init_data = _launch(bot.telegram.token, 304, lang).replace("304", str(victim))
    elif case == "stale":  # WEBAPP_AUTH_MAX_AGE_MINUTES is 60
        init_data = _launch(bot.telegram.token, victim, lang, age=timedelta(hours=3))
    else:  # signed by another bot's token
        init_data = _launch("123456:another-bots-token", victim, lang)
    text, kind, _ = await _sign_in(browser, _page_url(base, init_data), STUDENT[0], PASSWORD)
    key = "webapp.launch_stale" if case == "stale" else "webapp.launch_invalid"
    assert text == plain(t(key, locale=lang))
    assert "bad" in kind
    assert await bot.app.pg.accounts.get_linked_user(telegram_id=victim) is None
    assert await bot.app.pg.accounts.get_linked_user(telegram_id=304) is None
    assert bot.aksis is not None
    _no_password_reached_telegram(bot)


async def test_a_sign_on_in_line_survives_the_server_going_away_and_the_page_keeps_waiting(
    pg_dsn: str, redis_url: str, redis_raw: Any, portal: FakeAksis, browser: Any
) -> None:
    """The portal's minute is used up, so the page's sign-on waits in line. The web server then
    goes away for a few seconds (a restart): the page's polls get no answer, and it keeps
    polling instead of showing an error that would send the student to type everything
    again; once the turn comes, the page shows the account linked."""
    from bot.web import build_web
    from services.accounts import PORTAL_LOGINS_KEY

    port = free_port()
    base = f"http://127.0.0.1:{port}"
    async with running_bot(
        pg_dsn=pg_dsn, redis_url=redis_url, aksis=portal, public_url=base
    ) as bot:

        async def serve() -> web.AppRunner:
            runner = web.AppRunner(build_web(bot.app))
            await runner.setup()
            await web.TCPSite(runner, "127.0.0.1", port).start()
            return runner

        runner = await serve()
        page = await browser.new_page()
        await page.goto(_page_url(base, _launch(bot.telegram.token, 305, "en")))
        await page.wait_for_selector("body[data-ready='1']", timeout=5000)
        await page.fill("#username", STUDENT[0])
        await page.fill("#password", PASSWORD)
        await redis_raw.set(PORTAL_LOGINS_KEY, 10_000, ex=10)  # this minute's turns are taken
        await page.click("#submit")
        # "Signing in…" shows as a wait too, at once: the place in line comes with the answer.
        await page.wait_for_selector("#verdict.wait:has-text('1')", timeout=10_000)
        await runner.cleanup()  # the server goes away: the next polls fail
        await asyncio.sleep(4.5)
        assert await page.is_visible("#verdict.wait")
        runner = await serve()
        try:
            await page.wait_for_selector("#verdict.ok, #verdict.bad", timeout=30_000)
            assert "ok" in (await page.get_attribute("#verdict", "class") or "")
        finally:
            await runner.cleanup()
        linked = await bot.app.pg.accounts.get_linked_user(telegram_id=305)
        assert linked is not None and linked.school_number == STUDENT[2]
        _no_password_reached_telegram(bot)
