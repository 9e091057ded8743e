"""The aiohttp side: `/health`, and webhook mode with its secret checked on every request."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import aiohttp
import pytest
from aiohttp import web

from bot.app import build_app
from bot.config import load_settings
from bot.web import build_web
from tests.fakes.telegram_server import FakeTelegram
from tests.harness import flush_redis, reset_database

SECRET = "s3cret-webhook-token"


@pytest.fixture
async def served(pg_dsn: str, redis_url: str) -> AsyncIterator[tuple[str, FakeTelegram]]:
    await reset_database(pg_dsn)
    await flush_redis(redis_url)
    async with FakeTelegram() as telegram:
        settings = load_settings(
            bot_token=telegram.token,
            telegram_api_url=telegram.base_url,
            database_url=pg_dsn,
            redis_url=redis_url,
            aksis_mode="demo",
            webhook_url="https://attn.example.edu/tg/webhook",
            webhook_secret=SECRET,
        )
        async with build_app(settings) as app:
            runner = web.AppRunner(build_web(app))
            await runner.setup()
            site = web.TCPSite(runner, "127.0.0.1", 0)
            await site.start()
            port = runner.addresses[0][1]
            try:
                yield f"http://127.0.0.1:{port}", telegram
            finally:
                await runner.cleanup()
                await app.bot.session.close()


def _update(update_id: int, user_id: int, text: str) -> dict[str, object]:
    return {
        "update_id": update_id,
        "message": {
            "message_id": update_id,
            "date": 0,
            "chat": {"id": user_id, "type": "private", "first_name": "Web"},
            "from": {"id": user_id, "is_bot": False, "first_name": "Web"},
            "text": text,
            "entities": [{"type": "bot_command", "offset": 0, "length": len(text)}],
        },
    }


async def test_health_reports_both_stores(served: tuple[str, FakeTelegram]) -> None:
    base, _ = served
    async with aiohttp.ClientSession() as http, http.get(f"{base}/health") as response:
        assert response.status == 200
        assert await response.json() == {"ok": True, "postgres": "ok", "redis": "ok"}


async def test_webhook_rejects_requests_without_the_secret(
    served: tuple[str, FakeTelegram],
) -> None:
    base, telegram = served
    user = telegram.user(555, "Web")
    url = f"{base}/tg/webhook"
    async with aiohttp.ClientSession() as http:
        async with http.post(url, json=_update(1, user.id, "/help")) as response:
            assert response.status == 401
        wrong = {"X-Telegram-Bot-Api-Secret-Token": "guess"}
        async with http.post(url, json=_update(2, user.id, "/help"), headers=wrong) as response:
            assert response.status == 401
        await asyncio.sleep(0.2)
        assert user.messages == []
        good = {"X-Telegram-Bot-Api-Secret-Token": SECRET}
        async with http.post(url, json=_update(3, user.id, "/help"), headers=good) as response:
            assert response.status == 200
    reply = await user.next_message()
    assert "/login" in str(reply.get("text"))
