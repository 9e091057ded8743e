"""The aiohttp side: `/health`, and webhook mode with its secret checked on every request."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from urllib.parse import urlsplit

import aiohttp
import pytest
from aiohttp import web

from bot.app import build_app
from bot.config import load_settings
from bot.web import build_web
from tests.fakes.telegram_server import FakeTelegram
from tests.harness import flush_redis, reset_database
from tests.support import TcpProxy, dsn_via

SECRET = "s3cret-webhook-token-0123456789_abcdefgh"


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
        assert await response.json() == {"status": "ok", "postgres": "ok", "redis": "ok"}


async def test_health_says_down_without_internal_detail(
    pg_dsn: str, redis_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    """A store that stops answering: 503 and "down"; the exception only reaches the log."""
    await reset_database(pg_dsn)
    parts = urlsplit(pg_dsn)
    proxy = TcpProxy(parts.hostname or "127.0.0.1", parts.port or 5432)
    await proxy.start()
    async with FakeTelegram() as telegram:
        settings = load_settings(
            bot_token=telegram.token,
            telegram_api_url=telegram.base_url,
            database_url=dsn_via(pg_dsn, proxy.port),
            redis_url=redis_url,
            aksis_mode="demo",
        )
        async with build_app(settings) as app:
            runner = web.AppRunner(build_web(app))
            await runner.setup()
            site = web.TCPSite(runner, "127.0.0.1", 0)
            await site.start()
            url = f"http://127.0.0.1:{runner.addresses[0][1]}/health"
            try:
                await proxy.cut()
                app.pg.db.pool.terminate()  # the pool's idle connections went with the server
                async with aiohttp.ClientSession() as http, http.get(url) as response:
                    assert response.status == 503
                    body = await response.text()
                assert json.loads(body) == {"status": "down", "postgres": "down", "redis": "ok"}
                assert "Error" not in body and "127.0.0.1" not in body
                assert any("postgres is down" in r.getMessage() for r in caplog.records), (
                    caplog.text
                )
            finally:
                await runner.cleanup()
                await app.bot.session.close()
                await proxy.close()


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
