"""Security hardening end to end: the real bot against the local Bot API and portal
servers, with real PostgreSQL and Redis. Every credential path ends with the message deleted,
as the Bot API server's deleteMessage log shows."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from bot.secrets import Sealer
from dal.redis.connection import client as redis_client
from dal.redis.keys import records as records_key
from tests.fakes.aksis_server import FakeAksis, portal_lesson
from tests.fakes.telegram_server import FakeUser
from tests.harness import PASSWORD, Running, reply, running_bot

TEACHER_NAME = "Doç. Dr. ELİF KARTAL"
ARABIC_INDIC = str.maketrans("0123456789", "٠١٢٣٤٥٦٧٨٩")


@pytest.fixture
async def portal() -> AsyncIterator[FakeAksis]:
    async with FakeAksis() as fake:
        now = datetime.now(UTC)
        lesson = portal_lesson(now - timedelta(minutes=5), minutes=60, hocalar=TEACHER_NAME)
        fake.add_teacher("teacher1", PASSWORD, TEACHER_NAME, lessons=[lesson])
        fake.add_student("student1", PASSWORD, "AYŞE YILDIZ", "2024001", lessons=[lesson])
        fake.add_student("student2", PASSWORD, "İSMAİL IŞIK", "2024002", lessons=[lesson])
        yield fake


@pytest.fixture
async def bot(pg_dsn: str, redis_url: str, portal: FakeAksis) -> AsyncIterator[Running]:
    async with running_bot(pg_dsn=pg_dsn, redis_url=redis_url, aksis=portal) as running:
        yield running


def _text(message: dict[str, Any]) -> str:
    return str(message.get("text") or "")


async def _deleted(bot: Running, user: FakeUser, message: dict[str, Any]) -> None:
    await user.wait_until(
        lambda: message["message_id"] in bot.telegram.deleted_message_ids(user.id),
        what=f"deleteMessage of {message.get('text')!r}",
    )


async def _expire_conversation(redis_url: str, user: FakeUser) -> None:
    """What 15 idle minutes do: the conversation state and data expire in Redis."""
    raw = redis_client(redis_url)
    try:
        async for key in raw.scan_iter(match=f"fsm:*:{user.id}:*"):
            await raw.delete(key)
    finally:
        await raw.aclose()


async def _ask_password(user: FakeUser, username: str = "student1") -> None:
    user.mark_read()
    await user.send("/login")
    assert "user name" in _text(await reply(user))
    await user.send(username)
    assert "password" in _text(await reply(user))


# --- 3. a credential never stays in the chat --------------------------------------------


async def test_login_with_user_name_while_throttled_is_deleted(bot: Running) -> None:
    user = bot.user(301, "Mallory")
    for _ in range(5):  # five wrong passwords: this account is paused
        await _ask_password(user)
        await user.send("wrong-password")
        await user.wait_until(
            lambda: "did not accept" in _text(user.messages[-1]), what="the refusal"
        )
    user.mark_read()
    sent = await user.send("/login student1")
    assert "Too many login attempts" in _text(await reply(user))
    await _deleted(bot, user, sent)


async def test_password_after_the_conversation_expired_is_deleted(
    bot: Running, redis_url: str
) -> None:
    user = bot.user(302, "Ayşe")
    await _ask_password(user)
    await _expire_conversation(redis_url, user)
    user.mark_read()
    sent = await user.send(PASSWORD)
    assert "Login timed out, send /login again" in _text(await reply(user))
    await _deleted(bot, user, sent)
    # Within the window any plain text is treated the same way.
    another = await user.send("hunter2-again")
    assert "Login timed out" in _text(await reply(user))
    await _deleted(bot, user, another)
    # Commands still work, and a new /login starts afresh.
    answer = await bot.login(user, "student1")
    assert "Linked" in _text(answer)
    # Once the password is answered, plain text is ordinary text again.
    await user.send("hello")
    assert "Login timed out" not in _text(await reply(user))
    await user.send("/logout")
    assert "no longer linked" in _text(await reply(user))


async def test_password_after_the_login_step_expired_is_deleted(bot: Running) -> None:
    """The conversation is still there but its sealed user name has expired."""
    sealer = bot.app.dispatcher["sealer"]
    assert isinstance(sealer, Sealer)
    sealer._ttl = 1  # the running bot's sealer: its user names now expire after a second
    user = bot.user(303, "Ayşe")
    await _ask_password(user)
    await asyncio.sleep(2.2)
    user.mark_read()
    sent = await user.send(PASSWORD)
    assert "Login timed out" in _text(await reply(user))
    await _deleted(bot, user, sent)
    assert bot.aksis.requests_to("/Account/LogOn", "POST") == []  # nothing was signed in


async def _records(redis_url: str) -> int:
    """Records of the one open session."""
    raw = redis_client(redis_url)
    try:
        (session_id,) = [k async for k in raw.scan_iter(match="attendances:{*}")]
        aid = session_id.decode().split("{")[1].rstrip("}")
        return int(await raw.hlen(records_key(aid)))
    finally:
        await raw.aclose()


async def test_a_six_digit_password_after_the_login_expired_is_no_check_in(
    bot: Running, redis_url: str
) -> None:
    teacher, newcomer = bot.user(100, "Elif"), bot.user(201, "Ayşe")
    await bot.login(teacher, "teacher1")
    code = await bot.start_session(teacher)
    # Someone not linked yet is asked for the password, and the conversation expires; the
    # password they then type happens to be six digits.
    await _ask_password(newcomer)
    await _expire_conversation(redis_url, newcomer)
    newcomer.mark_read()
    sent = await newcomer.send(code)
    assert "Login timed out" in _text(await reply(newcomer))
    await _deleted(bot, newcomer, sent)
    assert await _records(redis_url) == 0  # not a check-in

    # Once the password is answered, codes are check-ins again.
    await bot.login(newcomer, "student1")
    await newcomer.send(code)
    assert "checked in" in _text(await reply(newcomer))


async def test_cancel_ends_the_login_so_the_class_code_checks_in(
    bot: Running, redis_url: str
) -> None:
    """/login then /cancel used to leave the credential mark, and the class
    code was deleted and answered "login timed out" for up to 20 minutes."""
    teacher, student, newcomer = bot.user(100, "Elif"), bot.user(201, "Ayşe"), bot.user(202)
    await bot.login(teacher, "teacher1")
    await bot.login(student, "student1")
    code = await bot.start_session(teacher)
    await _ask_password(student)
    await student.send("/cancel")
    assert "Cancelled" in _text(await reply(student))
    sent = await student.send(code)
    assert "checked in" in _text(await reply(student))
    assert sent["message_id"] not in bot.telegram.deleted_message_ids(student.id)
    assert await _records(redis_url) == 1
    # Nor is an unlinked account's text taken for a late password after /cancel.
    newcomer.mark_read()
    await newcomer.send("/login")
    await reply(newcomer)
    await newcomer.send("/cancel")
    await reply(newcomer)
    await newcomer.send("hello")
    assert "Login timed out" not in _text(await reply(newcomer))


async def test_another_command_ending_the_login_clears_the_credential_mark(
    bot: Running, redis_url: str
) -> None:
    """/logout, the check-in deep link: any handler that leaves the login conversation."""
    teacher, student = bot.user(100, "Elif"), bot.user(201, "Ayşe")
    await bot.login(teacher, "teacher1")
    await bot.login(student, "student1")
    code = await bot.start_session(teacher)
    await _ask_password(student)
    await student.send(f"/start ci_{code}")
    assert "checked in" in _text(await reply(student))
    raw = redis_client(redis_url)
    try:
        assert await raw.exists(f"login:prompt:{student.id}") == 0
    finally:
        await raw.aclose()
    await student.send(code)
    assert "already checked in" in _text(await reply(student)).lower()


async def test_an_abandoned_login_never_swallows_a_linked_students_code(
    bot: Running, redis_url: str
) -> None:
    """A linked student starts /login, walks away until it times out, then sends the code."""
    teacher, student = bot.user(100, "Elif"), bot.user(201, "Ayşe")
    await bot.login(teacher, "teacher1")
    await bot.login(student, "student1")
    code = await bot.start_session(teacher)
    await _ask_password(student)
    await _expire_conversation(redis_url, student)
    student.mark_read()
    await student.send(code)
    assert "checked in" in _text(await reply(student))
    assert await _records(redis_url) == 1


async def test_login_with_user_name_in_a_group_is_deleted(bot: Running) -> None:
    user = bot.user(304, "Ayşe")
    group = {"id": -100500, "type": "group", "title": "Class"}
    update = {
        "message": {
            "message_id": 7,
            "date": 0,
            "chat": group,
            "from": user.as_user(),
            "text": "/login student1",
            "entities": [{"type": "bot_command", "offset": 0, "length": 6}],
        },
    }
    await bot.telegram.deliver_update(update)
    await bot.telegram.wait_for_calls("deleteMessage", 1, timeout=10)
    assert bot.telegram.deleted_message_ids(-100500) == [7]


# --- 4. deliverability recovers --------------------------------------------------------------


async def test_a_user_who_unblocks_the_bot_gets_the_next_notice(bot: Running) -> None:
    teacher, student = bot.user(100, "Elif"), bot.user(201, "Ayşe")
    await bot.login(teacher, "teacher1")
    await bot.login(student, "student1")
    bot.telegram.forbid_chat(student.id)  # the student blocks the bot
    await bot.start_session(teacher)
    for _ in range(100):  # the announcement is refused for good: marked undeliverable
        if not await bot.app.pg.accounts.get_contacts(school_numbers=["2024001"]):
            break
        await asyncio.sleep(0.05)
    assert await bot.app.pg.accounts.get_contacts(school_numbers=["2024001"]) == []
    await teacher.send("/end_session")
    await reply(teacher)

    bot.telegram.allow_chat(student.id)  # unblocked; any update from them ...
    student.mark_read()
    await student.send("/help")
    await reply(student)
    assert len(await bot.app.pg.accounts.get_contacts(school_numbers=["2024001"])) == 1

    await bot.start_session(teacher)  # ... and the next notice reaches them
    assert "Attendance is open" in _text(await student.next_message())


# --- 5. input normalisation -----------------------------------------------------------------


async def test_arabic_indic_code_checks_in_and_a_long_reason_reaches_the_student(
    bot: Running,
) -> None:
    teacher, student = bot.user(100, "Elif"), bot.user(201, "Ayşe")
    await bot.login(teacher, "teacher1")
    await bot.login(student, "student1")
    code = await bot.start_session(teacher)
    await student.next_message()  # attendance is open
    await student.send(code.translate(ARABIC_INDIC))  # e.g. ١٢٣٤٥٦
    assert "checked in" in _text(await reply(student))

    teacher.mark_read()
    await teacher.send("/attendees")
    listing = await reply(teacher)
    await teacher.click_button("❌ 2024001", listing)
    await reply(teacher)  # asks for the reason
    await teacher.send("<b>&" * 1000)  # 4,000 characters, 12,000 once escaped
    await reply(teacher)  # rejected
    notice = _text(await reply(student))
    assert "rejected" in notice and "&lt;b&gt;&amp;" in notice
    assert len(notice) <= 4096
