"""Runs the real bot (aiogram Dispatcher, real `Bot` HTTP session) against the local Bot API
and Aksis servers, with real PostgreSQL and Redis, for end-to-end tests."""

from __future__ import annotations

import asyncio
import contextlib
import re
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import asyncpg

from bot.app import App, build_app
from bot.config import Settings, load_settings
from dal.redis.connection import client as redis_client
from services.aksis import AksisClient
from tests.fakes.aksis_server import FakeAksis
from tests.fakes.telegram_server import FakeTelegram, FakeUser

TABLES = ("attendance_records", "attendances", "schedule_entries", "users")
CODE = re.compile(r"\b(\d{6})\b")
PASSWORD = "S3cret-Pässword!"


async def reset_database(dsn: str) -> None:
    conn = await asyncpg.connect(dsn)
    try:
        exists = await conn.fetchval("SELECT to_regclass('public.users') IS NOT NULL")
        if exists:
            await conn.execute(f"TRUNCATE {', '.join(TABLES)} CASCADE")
    finally:
        await conn.close()


async def flush_redis(url: str) -> None:
    client = redis_client(url)
    try:
        await client.flushdb()
    finally:
        await client.aclose()


@dataclass
class Running:
    app: App
    telegram: FakeTelegram
    aksis: FakeAksis
    settings: Settings
    polling: asyncio.Task[None]

    async def shut_down(self) -> None:
        """Stop as `python -m bot` does on SIGTERM: polling ends, shutdown hooks run, and the
        stores close right after."""
        await self.app.dispatcher.stop_polling()
        await asyncio.wait_for(asyncio.shield(self.polling), 30)
        await self.app.redis.close()
        await self.app.pg.db.close()

    def user(self, user_id: int, name: str = "User", lang: str = "en") -> FakeUser:
        return self.telegram.user(user_id, name, lang)

    async def login(
        self, user: FakeUser, username: str, password: str = PASSWORD
    ) -> dict[str, Any]:
        """The /login conversation; returns the bot's final answer (the edited progress note)."""
        user.mark_read()
        await user.send("/login")
        await user.next_message()
        await user.send(username)
        await user.next_message()
        before = len(user.messages)
        await user.send(password)

        def answered() -> bool:
            after = user.messages[before:]
            return any("…" not in (m.get("text") or "…") for m in after)

        await user.wait_until(answered, timeout=15, what="the login outcome")
        user.mark_read()
        return next(m for m in user.messages[before:] if "…" not in (m.get("text") or "…"))

    async def start_session(self, teacher: FakeUser, args: str = "") -> str:
        """/start_session; returns the six-digit code read from the teacher's message."""
        teacher.mark_read()
        await teacher.send(f"/start_session {args}".strip())
        message = await teacher.next_message(timeout=10)
        match = CODE.search(message.get("text") or "")
        assert match, f"no code in {message.get('text')!r}"
        return match.group(1)


async def reply(user: FakeUser, timeout: float = 10.0) -> dict[str, Any]:
    """The bot's next message to `user`, skipping "attendance is open" announcements."""
    while True:
        message = await user.next_message(timeout=timeout)
        if not str(message.get("text") or "").startswith("📣"):
            return message


@contextlib.asynccontextmanager
async def running_bot(
    *,
    pg_dsn: str,
    redis_url: str,
    aksis: FakeAksis | None = None,
    aksis_client: AksisClient | None = None,
    clock: Callable[[], datetime] | None = None,
    keep_data: bool = False,
    **overrides: Any,
) -> AsyncIterator[Running]:
    """The bot against the fakes. `clock`, when given, is the time of the bot's services and
    of the Bot API server's message dates (Redis keeps its own clock). `keep_data`: start on
    what an earlier run left in PostgreSQL and Redis (a restart)."""
    if not keep_data:
        await reset_database(pg_dsn)
        await flush_redis(redis_url)
    async with contextlib.AsyncExitStack() as stack:
        fake_clock = (lambda: clock().timestamp()) if clock is not None else time.time
        telegram = await stack.enter_async_context(FakeTelegram(clock=fake_clock))
        portal = aksis or await stack.enter_async_context(FakeAksis())
        settings = load_settings(
            bot_token=telegram.token,
            telegram_api_url=telegram.base_url,
            database_url=pg_dsn,
            redis_url=redis_url,
            web_port=0,
            # Conversations in tests run faster than a person types; the global rate stays real.
            telegram_per_chat_rate=50.0,
            **{**portal.settings_overrides(), **overrides},
        )
        app = await stack.enter_async_context(build_app(settings, aksis=aksis_client, clock=clock))
        polling = asyncio.create_task(
            app.dispatcher.start_polling(
                app.bot, handle_signals=False, close_bot_session=False, polling_timeout=1
            )
        )
        try:
            yield Running(
                app=app, telegram=telegram, aksis=portal, settings=settings, polling=polling
            )
        finally:
            with contextlib.suppress(RuntimeError):
                await app.dispatcher.stop_polling()
            with contextlib.suppress(asyncio.CancelledError):
                await asyncio.wait_for(polling, 10)
            await app.bot.session.close()
