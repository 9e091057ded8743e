"""The aiohttp side: `/health`, and webhook mode with its secret checked on every request."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from urllib.parse import quote, urlsplit

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


async def _raw_status(base: str, request: bytes) -> int:
    """The status of one raw HTTP/1.1 request: bytes as sent, no client-side encoding."""
    parts = urlsplit(base)
    reader, writer = await asyncio.open_connection(parts.hostname, parts.port)
    try:
        writer.write(request)
        await writer.drain()
        status_line = await asyncio.wait_for(reader.readline(), 10)
    finally:
        writer.close()
        await writer.wait_closed()
    return int(status_line.split()[1])


async def test_a_non_ascii_webhook_secret_header_is_refused_with_401_not_a_500(
    served: tuple[str, FakeTelegram],
) -> None:
    """aiogram compared the header as `str`: a non-ASCII value raised TypeError, a 500."""
    base, telegram = served
    user = telegram.user(556, "Web")
    body = json.dumps(_update(4, user.id, "/help")).encode()
    for secret in ("é" * 40, SECRET[:-1] + "é", "ü"):
        request = (
            b"POST /tg/webhook HTTP/1.1\r\nHost: attn.example.edu\r\n"
            b"Content-Type: application/json\r\nConnection: close\r\n"
            b"X-Telegram-Bot-Api-Secret-Token: " + secret.encode() + b"\r\n"
            b"Content-Length: " + str(len(body)).encode() + b"\r\n\r\n" + body
        )
        assert await _raw_status(base, request) == 401, secret
    await asyncio.sleep(0.2)
    assert user.messages == []


@pytest.mark.parametrize("suffix", ["", "/state"])
async def test_a_non_ascii_projector_token_is_404_not_a_500(
    served: tuple[str, FakeTelegram], suffix: str
) -> None:
    """A token of the right length with non-ASCII characters (percent-encoded in the URL) made
    `hmac.compare_digest` raise on `str`: a 500 with a traceback."""
    base, _ = served
    for token in (
        "0" * 32 + "é" * 32,
        "٠" * 32 + "a" * 32,
        "é" * 64,
        "0" * 32 + "é" * 40,
        "٠" * 32 + "a" * 40,
        "é" * 72,
    ):
        path = "/p/" + quote(token) + suffix
        request = f"GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n".encode()
        assert await _raw_status(base, request) == 404, token
