"""FakeTelegram speaks the Bot API as a real aiogram Bot expects it."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator

import pytest
from aiogram import Bot, Dispatcher, F, Router
from aiogram.client.session.aiohttp import AiohttpSession
from aiogram.client.telegram import TelegramAPIServer
from aiogram.exceptions import (
    TelegramBadRequest,
    TelegramConflictError,
    TelegramForbiddenError,
    TelegramNetworkError,
    TelegramRetryAfter,
    TelegramUnauthorizedError,
)
from aiogram.filters import CommandStart
from aiogram.types import (
    BotCommand,
    BufferedInputFile,
    CallbackQuery,
    InlineKeyboardButton,
    InlineKeyboardMarkup,
    KeyboardButton,
    Message,
    ReplyKeyboardMarkup,
    ReplyKeyboardRemove,
)
from aiogram.webhook.aiohttp_server import SimpleRequestHandler
from aiohttp import web

from tests.fakes.telegram_server import FakeTelegram


@pytest.fixture
async def fake() -> AsyncIterator[FakeTelegram]:
    server = FakeTelegram()
    await server.start()
    try:
        yield server
    finally:
        await server.stop()


@pytest.fixture
async def bot(fake: FakeTelegram) -> AsyncIterator[Bot]:
    client = fake.bot()
    try:
        yield client
    finally:
        await client.session.close()


def _keyboard(*pairs: tuple[str, str]) -> InlineKeyboardMarkup:
    return InlineKeyboardMarkup(
        inline_keyboard=[[InlineKeyboardButton(text=t, callback_data=d)] for t, d in pairs]
    )


async def test_get_me_describes_the_bot(bot: Bot, fake: FakeTelegram) -> None:
    me = await bot.get_me()
    assert me.id == fake.bot_id
    assert me.is_bot
    assert me.username == "attn_test_bot"


async def test_wrong_token_is_unauthorized(fake: FakeTelegram) -> None:
    session = AiohttpSession(api=TelegramAPIServer.from_base(fake.base_url))
    client = Bot("1:not-this-bot", session=session)
    try:
        with pytest.raises(TelegramUnauthorizedError):
            await client.get_me()
    finally:
        await client.session.close()


async def test_send_message_reaches_the_user_with_its_keyboard(
    bot: Bot, fake: FakeTelegram
) -> None:
    alice = fake.user(1001, "Alice")
    incoming = await alice.send("hi")
    sent = await bot.send_message(1001, "Pick one", reply_markup=_keyboard(("Yes", "y:1")))
    second = await bot.send_message(1001, "again")

    assert isinstance(sent, Message)
    assert sent.message_id == incoming["message_id"] + 1  # one id sequence per chat
    assert second.message_id == sent.message_id + 1
    assert sent.reply_markup is not None
    first = await alice.next_message()
    assert first["text"] == "Pick one"
    assert alice.inline_buttons(first) == [{"text": "Yes", "callback_data": "y:1"}]
    assert (await alice.next_message())["text"] == "again"
    # another chat has its own message ids
    bob = fake.user(1002, "Bob")
    assert (await bot.send_message(bob.id, "hello bob")).message_id == 1


async def test_reply_keyboard_sticks_to_the_chat_until_removed(
    bot: Bot, fake: FakeTelegram
) -> None:
    alice = fake.user(1001, "Alice")
    markup = ReplyKeyboardMarkup(keyboard=[[KeyboardButton(text="Math 101")]])
    sent = await bot.send_message(alice.id, "Which lesson?", reply_markup=markup)
    assert sent.reply_markup is None  # Message.reply_markup is inline-only in the Bot API
    assert alice.reply_keyboard == [["Math 101"]]
    await bot.send_message(alice.id, "ok", reply_markup=ReplyKeyboardRemove())
    assert alice.reply_keyboard is None


async def test_unknown_and_blocked_chats_fail_like_telegram(bot: Bot, fake: FakeTelegram) -> None:
    with pytest.raises(TelegramBadRequest, match="chat not found"):
        await bot.send_message(999, "nobody started me")
    fake.user(1001, "Alice")
    fake.forbid_chat(1001)
    with pytest.raises(TelegramForbiddenError, match="bot was blocked by the user"):
        await bot.send_message(1001, "hi")


async def test_edit_and_delete(bot: Bot, fake: FakeTelegram) -> None:
    alice = fake.user(1001, "Alice")
    password = await alice.send("hunter2")
    sent = await bot.send_message(alice.id, "Code: 123456", reply_markup=_keyboard(("End", "e")))

    edited = await bot.edit_message_text(text="Ended", chat_id=alice.id, message_id=sent.message_id)
    assert isinstance(edited, Message)
    assert edited.text == "Ended"
    assert alice.last_message is not None
    assert alice.last_message["text"] == "Ended"
    assert "reply_markup" not in alice.last_message  # an edit without markup removes it
    with pytest.raises(TelegramBadRequest, match="message is not modified"):
        await bot.edit_message_text(text="Ended", chat_id=alice.id, message_id=sent.message_id)

    assert await bot.delete_message(alice.id, password["message_id"])
    assert alice.deleted_message_ids == [password["message_id"]]
    with pytest.raises(TelegramBadRequest, match="message to delete not found"):
        await bot.delete_message(alice.id, password["message_id"])


async def test_send_document_keeps_name_and_bytes(bot: Bot, fake: FakeTelegram) -> None:
    alice = fake.user(1001, "Alice")
    content = b"student_number,attended\n2021001,yes\n"
    sent = await bot.send_document(
        alice.id, BufferedInputFile(content, filename="attendance.csv"), caption="Report"
    )
    assert sent.document is not None
    assert sent.document.file_name == "attendance.csv"
    assert sent.caption == "Report"
    message = await alice.next_message()
    stored = fake.document_of(message)
    assert (stored.filename, stored.content, stored.content_type) == (
        "attendance.csv",
        content,
        "text/csv",
    )
    downloaded = await bot.download(sent.document.file_id)
    assert downloaded is not None
    assert downloaded.read() == content


async def test_set_my_commands_per_language(bot: Bot, fake: FakeTelegram) -> None:
    await bot.set_my_commands([BotCommand(command="login", description="Sign in")])
    await bot.set_my_commands(
        [BotCommand(command="login", description="Giriş yap")], language_code="tr"
    )
    assert fake.commands[("default", "")] == [{"command": "login", "description": "Sign in"}]
    assert fake.commands[("default", "tr")][0]["description"] == "Giriş yap"
    tr = await bot.get_my_commands(language_code="tr")
    assert [c.description for c in tr] == ["Giriş yap"]


async def test_unknown_methods_succeed_and_are_recorded(bot: Bot, fake: FakeTelegram) -> None:
    fake.user(1001, "Alice")
    assert await bot.send_chat_action(1001, "typing")
    assert await bot.set_my_description("ATTN takes attendance")
    assert fake.call_count("setMyDescription") == 1
    assert fake.calls_to("sendChatAction")[0].params == {"chat_id": 1001, "action": "typing"}


async def test_long_poll_waits_for_an_update_and_offset_confirms(
    bot: Bot, fake: FakeTelegram
) -> None:
    alice = fake.user(1001, "Alice")
    started = time.monotonic()
    poll = asyncio.create_task(bot.get_updates(timeout=5))
    await asyncio.sleep(0.3)
    assert not poll.done()  # nothing queued: the request is held open
    await alice.send("/start")
    updates = await asyncio.wait_for(poll, 2)
    assert time.monotonic() - started < 2  # answered when the update arrived, not at timeout
    assert [u.message.text for u in updates if u.message] == ["/start"]

    again = await bot.get_updates(timeout=0)  # not confirmed yet: delivered again
    assert [u.update_id for u in again] == [updates[0].update_id]
    await alice.send("second")
    confirmed = await bot.get_updates(offset=updates[0].update_id + 1, timeout=0)
    assert [u.message.text for u in confirmed if u.message] == ["second"]
    assert [u["update_id"] for u in fake.pending_updates] == [updates[0].update_id + 1]

    started = time.monotonic()
    assert await bot.get_updates(offset=confirmed[0].update_id + 1, timeout=1) == []
    assert time.monotonic() - started >= 0.9  # an empty long poll lasts its timeout


async def test_second_get_updates_conflicts_with_the_first(bot: Bot, fake: FakeTelegram) -> None:
    first = asyncio.create_task(bot.get_updates(timeout=5))
    await asyncio.sleep(0.2)
    second = asyncio.create_task(bot.get_updates(timeout=1))
    with pytest.raises(TelegramConflictError, match="terminated by other getUpdates"):
        await asyncio.wait_for(first, 2)
    assert await second == []
    assert [c.status for c in fake.calls_to("getUpdates")] == [409, 200]


async def test_fault_injection(bot: Bot, fake: FakeTelegram) -> None:
    fake.user(1001, "Alice")
    fake.fail_next("sendMessage", 2, retry_after=3)
    for _ in range(2):
        with pytest.raises(TelegramRetryAfter) as info:
            await bot.send_message(1001, "x")
        assert info.value.retry_after == 3
    assert (await bot.send_message(1001, "x")).text == "x"
    fake.disconnect_next("sendMessage")
    with pytest.raises(TelegramNetworkError):
        await bot.send_message(1001, "y")
    assert [c.status for c in fake.calls_to("sendMessage")] == [429, 429, 200, 599]


async def test_rate_limit_answers_429_beyond_global_and_per_chat_rates(
    bot: Bot, fake: FakeTelegram
) -> None:
    fake.rate_limit(per_second=30, per_chat_per_second=1, per_chat_burst=4)
    users = [fake.user(2000 + i, f"S{i}") for i in range(40)]
    results = await asyncio.gather(
        *(bot.send_message(u.id, "hi") for u in users), return_exceptions=True
    )
    limited = [r for r in results if isinstance(r, TelegramRetryAfter)]
    assert len([r for r in results if isinstance(r, Message)]) == 30
    assert len(limited) == 10
    assert {r.retry_after for r in limited} == {1}

    fake.rate_limit(per_second=1000, per_chat_per_second=1, per_chat_burst=4)
    one = users[0]
    results = await asyncio.gather(
        *(bot.send_message(one.id, str(i)) for i in range(6)), return_exceptions=True
    )
    assert sum(isinstance(r, Message) for r in results) == 4  # the burst
    await asyncio.sleep(1.05)
    assert (await bot.send_message(one.id, "after a second")).text == "after a second"


async def test_dispatcher_polling_answers_start_and_button(bot: Bot, fake: FakeTelegram) -> None:
    router = Router()

    @router.message(CommandStart())
    async def start(message: Message) -> None:
        await message.answer("Welcome!", reply_markup=_keyboard(("Help", "help")))

    @router.callback_query(F.data == "help")
    async def help_pressed(query: CallbackQuery) -> None:
        assert isinstance(query.message, Message)
        await query.message.edit_text("Send the six-digit code.")
        await query.answer("ok")

    dp = Dispatcher()
    dp.include_router(router)
    polling = asyncio.create_task(
        dp.start_polling(bot, handle_signals=False, close_bot_session=False, polling_timeout=1)
    )
    try:
        alice = fake.user(1001, "Alice", language_code="tr")
        await alice.send("/start")
        welcome = await alice.next_message()
        assert welcome["text"] == "Welcome!"
        query_id = await alice.click_button("Help")
        answer = await alice.callback_answer(query_id)
        assert answer["text"] == "ok"
        assert alice.last_message is not None
        assert alice.last_message["text"] == "Send the six-digit code."
    finally:
        await dp.stop_polling()
        await polling


async def test_webhook_mode_pushes_updates_with_the_secret(bot: Bot, fake: FakeTelegram) -> None:
    dp = Dispatcher()

    @dp.message()
    async def echo(message: Message) -> None:
        await message.answer(f"echo: {message.text}")

    app = web.Application()
    SimpleRequestHandler(dp, bot, secret_token="s3cret").register(app, path="/webhook")
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    url = f"http://127.0.0.1:{runner.addresses[0][1]}/webhook"
    try:
        alice = fake.user(1001, "Alice")
        update = {"update_id": 900, "message": await alice.send("no secret")}
        assert await fake.post_update_to(url, update) == 401  # aiogram checks the secret
        fake._updates.clear()

        await bot.set_webhook(url, secret_token="s3cret")
        with pytest.raises(TelegramConflictError, match="webhook is active"):
            await bot.get_updates()
        await alice.send("ping")
        assert (await alice.next_message())["text"] == "echo: ping"
        info = await bot.get_webhook_info()
        assert info.url == url
        assert info.pending_update_count == 0
        await bot.delete_webhook()
        assert await bot.get_updates(timeout=0) == []
    finally:
        await runner.cleanup()


async def test_hundreds_of_concurrent_requests(bot: Bot, fake: FakeTelegram) -> None:
    users = [fake.user(5000 + i, f"S{i}") for i in range(300)]
    sent = await asyncio.gather(*(bot.send_message(u.id, f"#{u.id}") for u in users))
    assert len({(m.chat.id, m.message_id) for m in sent}) == 300
    assert sorted(m["text"] for m in fake.sent_messages) == sorted(f"#{u.id}" for u in users)
