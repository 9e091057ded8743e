"""Credentials never stay in the chat, end to end: the real bot against the
local Bot API and portal servers. A capitalised `/Login USERNAME`, a password sent as a
caption, and a credential that arrives while Redis is down are all deleted."""

from __future__ import annotations

import ast
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from tests.fakes.aksis_server import FakeAksis
from tests.fakes.telegram_server import FakeUser
from tests.harness import PASSWORD, Running, reply, running_bot
from tests.throwaway import ThrowawayRedis
from ui.i18n import t

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
async def portal() -> AsyncIterator[FakeAksis]:
    async with FakeAksis() as fake:
        fake.add_student("student1", PASSWORD, "AYŞE YILDIZ", "2024001", lessons=[])
        yield fake


@pytest.fixture
async def bot(pg_dsn: str, redis_url: str, portal: FakeAksis) -> AsyncIterator[Running]:
    async with running_bot(pg_dsn=pg_dsn, redis_url=redis_url, aksis=portal) as running:
        yield running


def _text(message: dict[str, Any]) -> str:
    return str(message.get("text") or "")


async def _deleted(bot: Running, chat_id: int, message: dict[str, Any], user: FakeUser) -> None:
    await user.wait_until(
        lambda: message["message_id"] in bot.telegram.deleted_message_ids(chat_id),
        what=f"deleteMessage of {message.get('text') or message.get('caption')!r}",
    )


async def test_a_capitalised_login_command_is_read_and_deleted(bot: Running) -> None:
    user = bot.user(301, "Ayşe")
    sent = await user.send("/Login student1")  # a phone capitalised the first word
    assert "password" in _text(await reply(user))
    await _deleted(bot, user.id, sent, user)
    await user.send(PASSWORD)
    await user.wait_until(lambda: "Linked" in _text(user.messages[-1]), what="the link")
    user.mark_read()
    await user.send("/LOGOUT")
    assert "no longer linked" in _text(await reply(user))


async def test_a_capitalised_login_with_a_user_name_in_a_group_is_deleted(bot: Running) -> None:
    user = bot.user(302, "Ayşe")
    group = {"id": -100501, "type": "group", "title": "Class"}
    await bot.telegram.deliver_update(
        {
            "message": {
                "message_id": 9,
                "date": 0,
                "chat": group,
                "from": user.as_user(),
                "text": "/Login 12345678901",
                "entities": [{"type": "bot_command", "offset": 0, "length": 6}],
            }
        }
    )
    await bot.telegram.wait_for_calls("deleteMessage", 1, timeout=10)
    assert bot.telegram.deleted_message_ids(-100501) == [9]


def test_every_command_filter_ignores_case() -> None:
    """One mechanism: handlers build command filters only through handlers.filters
    (`on_command`, `on_start`), which ignore case; aiogram's own are never called directly."""
    offenders = []
    for path in sorted((ROOT / "handlers").rglob("*.py")):
        if path.name == "filters.py":
            continue
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if (
                isinstance(node, ast.Call)
                and isinstance(node.func, ast.Name)
                and node.func.id in {"Command", "CommandStart"}
            ):
                offenders.append(f"{path.relative_to(ROOT)}:{node.lineno}")
    assert offenders == []


async def test_a_password_sent_as_a_caption_is_deleted(bot: Running) -> None:
    user = bot.user(303, "Ayşe")
    await user.send("/login student1")
    assert "password" in _text(await reply(user))
    sent = await user.send_photo(caption=PASSWORD)
    assert "as a text message" in _text(await reply(user))
    await _deleted(bot, user.id, sent, user)


async def test_a_credential_sent_while_redis_is_down_is_deleted(
    pg_dsn: str, portal: FakeAksis, tmp_path: Path
) -> None:
    server = ThrowawayRedis(tmp_path / "redis")
    await server.start()
    try:
        async with running_bot(pg_dsn=pg_dsn, redis_url=server.url, aksis=portal) as bot:
            user = bot.user(304, "Ayşe")
            await user.send("/login")
            assert "user name" in _text(await reply(user))
            await server.stop()
            unavailable = t("error.unavailable", locale="en")
            for text in ("student1", "/login student1", PASSWORD):
                sent = await user.send(text)
                assert _text(await reply(user)) == unavailable
                await _deleted(bot, user.id, sent, user)
            # A command without a credential is left alone.
            help_ = await user.send("/help")
            assert _text(await reply(user)) == unavailable
            assert help_["message_id"] not in bot.telegram.deleted_message_ids(user.id)
    finally:
        await server.stop()
