"""deploy/caddy/Caddyfile in front of a running bot: the webhook and the projector page pass
through, /metrics and the health probes do not leave the host."""

from __future__ import annotations

import asyncio
import os
import shutil
import subprocess
from pathlib import Path

import aiohttp
import pytest
from aiohttp import web

from bot.app import build_app
from bot.config import load_settings
from bot.web import build_web
from tests.fakes.telegram_server import DEFAULT_TOKEN, FakeTelegram
from tests.harness import flush_redis, reset_database
from tests.support import free_port

ROOT = Path(__file__).resolve().parents[2]
CADDYFILE = ROOT / "deploy" / "caddy" / "Caddyfile"
CADDY = shutil.which("caddy")
SECRET = "webhook-secret-of-the-proxy-test_0123456789"


@pytest.mark.skipif(
    CADDY is None, reason="caddy missing (Debian package caddy; .ci/run installs it)"
)
def test_caddy_reads_the_example() -> None:
    assert CADDY is not None
    result = subprocess.run(
        [CADDY, "adapt", "--config", str(CADDYFILE), "--adapter", "caddyfile"],
        capture_output=True,
        text=True,
        check=False,
        env={**os.environ, "ATTN_DOMAIN": "attn.uni.example", "ATTN_UPSTREAM": "bot:8080"},
    )
    assert result.returncode == 0, result.stderr
    assert '"host":["attn.uni.example"]' in result.stdout
    assert '"dial":"bot:8080"' in result.stdout


@pytest.mark.stores
@pytest.mark.skipif(
    CADDY is None, reason="caddy missing (Debian package caddy; .ci/run installs it)"
)
async def test_the_proxy_passes_only_the_public_paths(
    tmp_path: Path, pg_dsn: str, redis_url: str
) -> None:
    assert CADDY is not None
    await reset_database(pg_dsn)
    await flush_redis(redis_url)
    proxy_port = free_port()
    # The example as it is, after a global block for the test: plain HTTP on a free port, no
    # admin endpoint (the site block is the file's own).
    config = tmp_path / "Caddyfile"
    config.write_text(
        "{\n\tadmin off\n\tauto_https off\n}\n\n" + CADDYFILE.read_text(encoding="utf-8")
    )
    async with FakeTelegram() as telegram:
        await _through_the_proxy(tmp_path, config, proxy_port, pg_dsn, redis_url, telegram.base_url)


async def _through_the_proxy(
    tmp_path: Path, config: Path, proxy_port: int, pg_dsn: str, redis_url: str, api: str
) -> None:
    assert CADDY is not None
    settings = load_settings(
        telegram_api_url=api,
        bot_token=DEFAULT_TOKEN,
        database_url=pg_dsn,
        redis_url=redis_url,
        aksis_mode="demo",
        webhook_url=f"http://127.0.0.1:{proxy_port}/tg/webhook",
        webhook_secret=SECRET,
    )
    async with build_app(settings) as app:
        runner = web.AppRunner(build_web(app))
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        upstream = f"127.0.0.1:{runner.addresses[0][1]}"
        caddy = await asyncio.create_subprocess_exec(
            CADDY,
            "run",
            "--config",
            str(config),
            "--adapter",
            "caddyfile",
            env={
                **os.environ,
                "ATTN_DOMAIN": f"http://127.0.0.1:{proxy_port}",
                "ATTN_UPSTREAM": upstream,
                "HOME": str(tmp_path),
                "XDG_DATA_HOME": str(tmp_path),
                "XDG_CONFIG_HOME": str(tmp_path),
            },
            stdout=asyncio.subprocess.DEVNULL,
            stderr=asyncio.subprocess.DEVNULL,
        )
        proxy = f"http://127.0.0.1:{proxy_port}"
        try:
            async with aiohttp.ClientSession() as http:
                for _ in range(100):
                    try:
                        async with http.get(f"{proxy}/p/projector.js") as response:
                            if response.status == 200:
                                break
                    except aiohttp.ClientError:
                        pass
                    await asyncio.sleep(0.1)
                async with http.get(f"{proxy}/p/projector.js") as response:
                    assert response.status == 200
                    assert "javascript" in response.headers["Content-Type"]
                # The webhook reaches the bot, which refuses a post without Telegram's secret.
                async with http.post(f"{proxy}/tg/webhook", json={"update_id": 1}) as response:
                    assert response.status == 401
                for path in ("/metrics", "/health/live", "/health/ready", "/health"):
                    async with http.get(f"{proxy}{path}") as response:
                        assert response.status == 404, path
                    async with http.get(f"http://{upstream}{path}") as response:
                        assert response.status == 200, path  # on the host, still there
        finally:
            caddy.terminate()
            await caddy.wait()
            await runner.cleanup()
        await app.bot.session.close()
