"""The Mini App's plumbing (bot/webapp/pages.py) over HTTP against the running bot: every
answer carries the strict CSP, bodies are capped, launch data is verified before anything else,
errors have one JSON shape, and the per-account limit counts in Redis."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import aiohttp
import pytest
from aiohttp import web

from bot.app import App
from bot.webapp.initdata import sign_init_data
from bot.webapp.pages import CSP, MAX_BODY_BYTES, launch, ok, rate_limit, register_webapp
from tests.harness import Running, running_bot


def _probe(sub: web.Application, app: App) -> None:
    """A page module's setup, as login.py writes one: launch data, then the limit."""

    async def whoami(request: web.Request) -> web.Response:
        data, body = await launch(request)
        await rate_limit(
            request, scope="probe", telegram_id=data.user.id, limit=2, window_seconds=60
        )
        return ok({"id": data.user.id, "echo": body.get("echo")})

    sub.router.add_post("/api/probe", whoami)


@pytest.fixture
async def served(pg_dsn: str, redis_url: str) -> AsyncIterator[tuple[Running, str]]:
    async with running_bot(pg_dsn=pg_dsn, redis_url=redis_url) as bot:
        # The Mini App alone, with a probe page module in it.
        web_app = web.Application()
        register_webapp(web_app, bot.app, _probe)
        runner = web.AppRunner(web_app)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        port = runner.addresses[0][1]
        try:
            yield bot, f"http://127.0.0.1:{port}"
        finally:
            await runner.cleanup()


def _signed(bot: Running, *, user_id: int = 501, age: timedelta = timedelta()) -> str:
    return sign_init_data(
        bot_token=bot.telegram.token,
        user={"id": user_id, "first_name": "Ayşe", "language_code": "tr"},
        auth_date=datetime.now(UTC) - age,
    )


async def _post(base: str, path: str, payload: Any) -> tuple[int, dict[str, Any], dict[str, str]]:
    body = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
    async with aiohttp.ClientSession() as http, http.post(base + path, data=body) as response:
        return response.status, await response.json(), dict(response.headers)


async def test_the_bot_web_app_serves_the_mini_app(pg_dsn: str, redis_url: str) -> None:
    async with running_bot(pg_dsn=pg_dsn, redis_url=redis_url) as bot:
        from bot.web import build_web

        runner = web.AppRunner(build_web(bot.app))
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        port = runner.addresses[0][1]
        try:
            async with aiohttp.ClientSession() as http:
                url = f"http://127.0.0.1:{port}/app/static/webapp.css"
                async with http.get(url) as response:
                    assert response.status == 200
                    assert response.headers["Content-Security-Policy"] == CSP
        finally:
            await runner.cleanup()


async def test_static_files_carry_the_strict_csp_and_no_path_escapes(
    served: tuple[Running, str],
) -> None:
    _, base = served
    async with aiohttp.ClientSession() as http:
        async with http.get(f"{base}/app/static/webapp.js") as response:
            assert response.status == 200
            assert response.headers["Content-Security-Policy"] == CSP
            assert response.headers["X-Content-Type-Options"] == "nosniff"
            assert "javascript" in response.headers["Content-Type"]
            assert "tgWebAppData" in await response.text()
        for name in ("..%2Fpages.py", "pages.py", "missing.js"):
            async with http.get(f"{base}/app/static/{name}") as response:
                assert response.status == 404
                assert response.headers["Content-Security-Policy"] == CSP
    assert "'unsafe-inline'" not in CSP
    assert "default-src 'self'" in CSP and "script-src 'self';" in CSP


async def test_launch_data_is_verified_before_the_body_is_used(
    served: tuple[Running, str],
) -> None:
    bot, base = served
    status, data, _ = await _post(base, "/app/api/probe", {"init_data": _signed(bot), "echo": 7})
    assert (status, data) == (200, {"ok": True, "id": 501, "echo": 7})

    forged = _signed(bot).replace("501", "502")
    status, data, headers = await _post(base, "/app/api/probe", {"init_data": forged})
    assert status == 401 and data["ok"] is False and data["error"] == "launch_hash"
    assert data["message"]  # a sentence for the user, not only a code
    assert headers["Content-Security-Policy"] == CSP

    stale = _signed(bot, age=timedelta(hours=2))  # WEBAPP_AUTH_MAX_AGE_MINUTES is 60
    status, data, _ = await _post(base, "/app/api/probe", {"init_data": stale})
    assert (status, data["error"]) == (401, "launch_stale")

    for bad in (b"not json", b"[1, 2]", {"echo": 1}):
        status, data, _ = await _post(base, "/app/api/probe", bad)
        assert status in (400, 401) and data["ok"] is False


async def test_bodies_over_the_cap_are_refused_unread(served: tuple[Running, str]) -> None:
    bot, base = served
    huge = {"init_data": _signed(bot), "echo": "x" * MAX_BODY_BYTES}
    status, data, _ = await _post(base, "/app/api/probe", huge)
    assert status == 413 and data["ok"] is False


async def test_rate_limit_counts_per_telegram_account(served: tuple[Running, str]) -> None:
    bot, base = served
    for _ in range(2):
        status, _, _ = await _post(base, "/app/api/probe", {"init_data": _signed(bot)})
        assert status == 200
    status, data, headers = await _post(base, "/app/api/probe", {"init_data": _signed(bot)})
    assert status == 429 and data["error"] == "rate_limited"
    assert 1 <= int(headers["Retry-After"]) <= 60
    other = {"init_data": _signed(bot, user_id=777)}
    status, _, _ = await _post(base, "/app/api/probe", other)
    assert status == 200  # another account has its own counter
