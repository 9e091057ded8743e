"""Handlers' replies and buttons: a reply is sent after the per-user lock is released, once, in
polling and in webhook mode; button payloads fit Telegram's 64 bytes; a button that no longer
parses gets a clear answer; a refusal still answers the press with its reason."""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import aiohttp
import pytest
from aiogram.filters.callback_data import CallbackData
from aiogram.fsm.middleware import FSMContextMiddleware
from aiogram.fsm.storage.base import StorageKey
from aiogram.fsm.storage.redis import RedisStorage
from aiohttp import web

from bot.app import App, build_app
from bot.config import load_settings
from bot.web import build_web
from services.attendance import SCHOOL_NUMBER
from services.reports import course_token
from tests.client import ChatClient
from tests.fakes.aksis_server import FakeAksis, portal_lesson
from tests.fakes.telegram_server import FakeTelegram
from tests.harness import PASSWORD, reply, running_bot
from ui.callbacks import (
    Act,
    AttendeesPage,
    ExcuseDecision,
    ExcuseSession,
    ExportCourse,
    ExportFormat,
    Fmt,
    HistoryAdd,
    HistoryCsv,
    HistoryExcuse,
    HistoryExcuseList,
    HistoryList,
    HistoryOpen,
    HistoryRequests,
    HistoryToggle,
    LessonPick,
    MyCourse,
    MyCourses,
    Review,
    SessionAction,
    SessionLevel,
    Verdict,
)
from ui.i18n import t

TEACHER_NAME = "Doç. Dr. ELİF KARTAL"
WEBHOOK_SECRET = "webhook-secret-of-the-replies-test_0123456789"


@pytest.fixture
async def portal() -> AsyncIterator[FakeAksis]:
    async with FakeAksis() as fake:
        now = datetime.now(UTC)
        lesson = portal_lesson(now - timedelta(minutes=5), minutes=60, hocalar=TEACHER_NAME)
        fake.add_teacher("teacher1", PASSWORD, TEACHER_NAME, lessons=[lesson])
        fake.add_student("student1", PASSWORD, "AYŞE YILDIZ", "2024001", lessons=[lesson])
        yield fake


def _text(message: dict[str, Any]) -> str:
    return str(message.get("text") or "")


# --- the reply is sent after the lock -------------------------------------------------------


def _lock_probe(app: App, telegram: FakeTelegram) -> list[tuple[str, int, str, bool]]:
    """Record, for every sendMessage / editMessageText the Bot API server receives, whether the
    sender's per-user lock (bot/locks.py) was held at that moment."""
    # The FSM middleware is ours, not the Dispatcher's (bot/app.py: `disable_fsm`).
    outer = app.dispatcher.update.outer_middleware
    (fsm,) = [m for m in outer if isinstance(m, FSMContextMiddleware)]
    storage = fsm.storage
    assert isinstance(storage, RedisStorage)
    seen: list[tuple[str, int, str, bool]] = []
    methods = dict(telegram._methods)

    def probe(name: str) -> Callable[[FakeTelegram, dict[str, Any]], Awaitable[Any]]:
        original = methods[name]

        async def check(fake: FakeTelegram, params: dict[str, Any]) -> Any:
            chat = int(params["chat_id"])
            key = storage.key_builder.build(
                StorageKey(bot_id=app.bot.id, chat_id=chat, user_id=chat), "lock"
            )
            held = bool(await storage.redis.exists(key))
            seen.append((name, chat, str(params.get("text") or ""), held))
            return await original(fake, params)

        return check

    # The fake dispatches through `self._methods`: an instance attribute shadows the table.
    telegram._methods = {  # type: ignore[misc]
        **methods,
        "sendmessage": probe("sendmessage"),
        "editmessagetext": probe("editmessagetext"),
    }
    return seen


async def test_a_reply_is_sent_after_the_lock_is_released_in_polling(
    pg_dsn: str, redis_url: str, portal: FakeAksis
) -> None:
    async with running_bot(pg_dsn=pg_dsn, redis_url=redis_url, aksis=portal) as bot:
        seen = _lock_probe(bot.app, bot.telegram)
        user = bot.user(201, "Ayşe")
        linked = await bot.login(user, "student1")
        assert "Linked" in _text(linked)
        # The control: "Signing in…" must be awaited (the result replaces it, by its id), so it
        # goes out under the lock; the probe sees that. The result itself is returned.
        (progress,) = [s for s in seen if s[0] == "sendmessage" and "Signing in" in s[2]]
        assert progress[3] is True, "the probe cannot see the lock"
        (result,) = [s for s in seen if s[0] == "editmessagetext" and "Linked" in s[2]]
        assert result[3] is False
        # Every other answer of the conversation, and a plain command's, after the lock.
        user.mark_read()
        await user.send("/me")
        assert "2024001" in _text(await reply(user))
        others = [s for s in seen if s[1] == 201 and "Signing in" not in s[2]]
        assert len(others) >= 4 and not any(held for *_, held in others), others
        # Nothing twice: one sendMessage per answer.
        assert len([s for s in seen if "2024001" in s[2] and s[0] == "sendmessage"]) == 1
        assert len(user.messages) == len({m["message_id"] for m in user.messages})


@contextlib.asynccontextmanager
async def _serving(app: App) -> AsyncIterator[str]:
    runner = web.AppRunner(build_web(app))
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    try:
        yield f"http://127.0.0.1:{runner.addresses[0][1]}"
    finally:
        await runner.cleanup()


async def test_a_reply_is_sent_once_after_the_lock_in_webhook_mode(
    pg_dsn: str, redis_url: str, portal: FakeAksis
) -> None:
    async with running_bot(pg_dsn=pg_dsn, redis_url=redis_url, aksis=portal) as bot:
        user = bot.user(201, "Ayşe")
        await bot.login(user, "student1")
        # The same stores, now served by a webhook replica (one Dispatcher at a time).
        await bot.app.dispatcher.stop_polling()
        settings = load_settings(
            **{
                **bot.settings.model_dump(),
                "webhook_url": "https://attn.example.edu/tg/hook",
                "webhook_secret": WEBHOOK_SECRET,
            }
        )
        async with build_app(settings) as hooked, _serving(hooked) as base:
            try:
                seen = _lock_probe(hooked, bot.telegram)
                user.mark_read()
                before = len(user.messages)
                update = {
                    "update_id": 700_001,
                    "message": {
                        "message_id": 700_001,
                        "date": int(datetime.now(UTC).timestamp()),
                        "chat": {"id": 201, "type": "private", "first_name": "Ayşe"},
                        "from": {"id": 201, "is_bot": False, "first_name": "Ayşe"},
                        "text": "/me",
                    },
                }
                async with (
                    aiohttp.ClientSession() as http,
                    http.post(
                        f"{base}/tg/hook",
                        json=update,
                        headers={"X-Telegram-Bot-Api-Secret-Token": WEBHOOK_SECRET},
                    ) as response,
                ):
                    assert response.status == 200
                    # Acknowledged at once; the reply is not written into the HTTP response.
                    assert await response.json() == {}
                assert "2024001" in _text(await reply(user))
                answers = [s for s in seen if s[1] == 201]
                assert len(answers) == 1 and answers[0][3] is False, answers
                await asyncio.sleep(0.5)  # time for a duplicate, were there one
                assert [_text(m) for m in user.messages[before:]] == [answers[0][2]]
            finally:
                await hooked.bot.session.close()


# --- buttons ---------------------------------------------------------------------------------

_AID = uuid.UUID("0b6f3c1e-8a51-4d2e-9b0c-5f1d2e3a4b5c")


def test_the_longest_callback_data_fits_64_bytes() -> None:
    longest_number = "9" * 20
    assert SCHOOL_NUMBER.match(longest_number) and not SCHOOL_NUMBER.match(longest_number + "9")
    aid = uuid.uuid4()
    page = 999  # 24 rows a page: a sheet of 24,000 students
    payloads = [
        LessonPick(code="X" * 24, start=4_102_444_800),
        SessionAction(action=Act.LIST, attendance_id=aid),
        SessionLevel(attendance_id=aid, level=3),
        AttendeesPage(attendance_id=aid, page=page),
        Review(action=Verdict.REJECT, attendance_id=aid, student_number=longest_number),
        HistoryOpen(attendance_id=aid, page=page),
        HistoryToggle(attendance_id=aid, student_number=longest_number, page=page),
        HistoryCsv(attendance_id=aid),
        HistoryList(page=page),
        HistoryExcuseList(attendance_id=aid),
        HistoryExcuse(attendance_id=aid, student_number=longest_number),
        HistoryAdd(attendance_id=aid),
        HistoryRequests(attendance_id=aid),
        ExcuseSession(attendance_id=aid),
        ExcuseDecision(action=Verdict.REJECT, request_id=2**63 - 1),
        MyCourse(token=course_token("YBSB1008")),
        MyCourses(),
        ExportCourse(token=course_token("YBSB1008")),
        ExportFormat(token=course_token("YBSB1008"), fmt=Fmt.XLSX),
    ]
    sizes = {type(p).__name__: len(p.pack().encode()) for p in payloads}
    assert max(sizes.values()) <= 64, sizes
    assert sizes["HistoryToggle"] == max(sizes.values())


def test_buttons_already_in_chats_still_parse() -> None:
    """The typed fields read the payloads earlier releases wrote (ids as 32 hex digits)."""
    aid = uuid.uuid4()
    assert SessionAction.unpack(f"sa:end:{aid.hex}") == SessionAction(
        action=Act.END, attendance_id=aid
    )
    assert Review.unpack(f"rv:a:{aid.hex}:2024001").action is Verdict.ACCEPT
    assert HistoryToggle.unpack(f"ht:{aid.hex}:2024001:2").attendance_id == aid
    assert ExportFormat.unpack("ef:abc:both").fmt is Fmt.BOTH


# Buttons as the release before the field renames (aid, sn, rid) packed them, literally: the
# packed form carries values only, so a button sent then still means the same now.
_PACKED_BEFORE_THE_RENAMES = {
    "sa:end:0b6f3c1e8a514d2e9b0c5f1d2e3a4b5c": SessionAction(action=Act.END, attendance_id=_AID),
    "sl:0b6f3c1e8a514d2e9b0c5f1d2e3a4b5c:2": SessionLevel(attendance_id=_AID, level=2),
    "ap:0b6f3c1e8a514d2e9b0c5f1d2e3a4b5c:3": AttendeesPage(attendance_id=_AID, page=3),
    "rv:r:0b6f3c1e8a514d2e9b0c5f1d2e3a4b5c:2024001": Review(
        action=Verdict.REJECT, attendance_id=_AID, student_number="2024001"
    ),
    "ho:0b6f3c1e8a514d2e9b0c5f1d2e3a4b5c:1": HistoryOpen(attendance_id=_AID, page=1),
    "ht:0b6f3c1e8a514d2e9b0c5f1d2e3a4b5c:2024001:2": HistoryToggle(
        attendance_id=_AID, student_number="2024001", page=2
    ),
    "hc:0b6f3c1e8a514d2e9b0c5f1d2e3a4b5c": HistoryCsv(attendance_id=_AID),
    "hx:0b6f3c1e8a514d2e9b0c5f1d2e3a4b5c": HistoryExcuseList(attendance_id=_AID),
    "he:0b6f3c1e8a514d2e9b0c5f1d2e3a4b5c:2024001": HistoryExcuse(
        attendance_id=_AID, student_number="2024001"
    ),
    "hd:0b6f3c1e8a514d2e9b0c5f1d2e3a4b5c": HistoryAdd(attendance_id=_AID),
    "hq:0b6f3c1e8a514d2e9b0c5f1d2e3a4b5c": HistoryRequests(attendance_id=_AID),
    "xs:0b6f3c1e8a514d2e9b0c5f1d2e3a4b5c": ExcuseSession(attendance_id=_AID),
    "xd:a:42": ExcuseDecision(action=Verdict.ACCEPT, request_id=42),
}


@pytest.mark.parametrize(("packed", "meant"), _PACKED_BEFORE_THE_RENAMES.items())
def test_a_button_packed_before_the_field_renames_means_the_same(
    packed: str, meant: CallbackData
) -> None:
    assert type(meant).unpack(packed) == meant
    assert meant.pack() == packed  # and new buttons are packed the same way


async def test_an_outdated_button_gets_a_clear_answer(client: ChatClient) -> None:
    teacher = client.user(100, "Elif")
    await client.login(teacher, "teacher1")
    _, status = await client.start_session(teacher)
    outdated = t("button.outdated", locale="en")
    for data in ("sa:end:not-an-id", "sa:pause:" + uuid.uuid4().hex, "ef:abc:pdf", "zz:1", "rv"):
        pressed = await teacher.click(data, on=status)
        assert pressed.answer is not None, data
        assert pressed.answer.text == outdated and pressed.answer.alert, data
    # Still open: none of them did anything.
    session = await client.app.redis.sessions.get_open_attendance(
        teacher_school_number=(
            await client.app.accounts.current_user(telegram_id=100)
        ).school_number
    )
    assert session is not None and session.end_time is None


async def test_a_refused_press_is_answered_once_with_its_reason(client: ChatClient) -> None:
    """The automatic callback answer steps aside for the error router's alert."""
    teacher = client.user(100, "Elif")
    student = client.user(201, "Ayşe")
    await client.login(teacher, "teacher1")
    await client.login(student, "student1")
    _, status = await client.start_session(teacher)
    gone = uuid.uuid4().hex  # a well-formed id of no session
    stranger = client.user(999, "Nobody")
    for user, data, reason in (
        (teacher, f"rv:a:{gone}:2024001", "review.session_gone"),
        (student, f"sa:end:{gone}", "auth.teachers_only"),
        (stranger, f"sa:end:{gone}", "auth.not_linked"),
    ):
        pressed = await user.click(data, on=status)
        assert pressed.answer is not None, data
        assert pressed.answer.text == t(reason, locale="en") and pressed.answer.alert, data
    # One answerCallbackQuery per press (a second would be refused by Telegram).
    answered = [m for name, m in client.session.calls if name == "answerCallbackQuery"]
    assert len(answered) == len({m.callback_query_id for m in answered}) == 3  # type: ignore[attr-defined]
