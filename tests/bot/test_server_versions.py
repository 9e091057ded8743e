"""Supported server versions: `python -m bot` refuses an older PostgreSQL or Redis in one line.

README "Supported servers": PostgreSQL 15 or newer, Redis 6.2 or newer. The old servers are a
real PostgreSQL behind a proxy that rewrites its reported version, and a small RESP server.
"""

from __future__ import annotations

import asyncio
import os
import sys
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from dal.errors import UnsafeRedisPolicy
from dal.pg import Postgres
from dal.redis.stores import RedisStores
from tests.fakes.old_servers import OldPostgresProxy, OldRedisServer
from tests.throwaway import ThrowawayRedis

ROOT = Path(__file__).resolve().parents[2]


async def _run_bot(tmp_path: Path, **env: str) -> tuple[int, str]:
    base = {k: v for k, v in os.environ.items() if not k.isupper() or k in ("PATH", "HOME")}
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "bot",
        cwd=tmp_path,  # no .env there
        env={**base, "PYTHONPATH": str(ROOT), "BOT_TOKEN": "1:x", "AKSIS_MODE": "demo", **env},
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    _, stderr = await asyncio.wait_for(process.communicate(), timeout=60)
    assert process.returncode is not None
    return process.returncode, stderr.decode()


def _with_port(url: str, port: int) -> str:
    parts = urlsplit(url)
    netloc = parts.netloc.rsplit("@", 1)
    host = f"127.0.0.1:{port}"
    return parts._replace(netloc=f"{netloc[0]}@{host}" if len(netloc) == 2 else host).geturl()


async def test_bot_refuses_postgres_older_than_15(
    tmp_path: Path, pg_dsn: str, redis_url: str
) -> None:
    upstream = urlsplit(pg_dsn)
    async with OldPostgresProxy(
        upstream_host=upstream.hostname or "127.0.0.1",
        upstream_port=upstream.port or 5432,
        version="14.9 (Debian 14.9-1)",
    ) as proxy:
        status, stderr = await _run_bot(
            tmp_path, DATABASE_URL=_with_port(pg_dsn, proxy.port), REDIS_URL=redis_url
        )
    assert status == 1
    assert "Traceback" not in stderr
    lines = stderr.strip().splitlines()
    assert len(lines) == 1, stderr
    assert "PostgreSQL" in lines[0] and "14.9" in lines[0] and "15 or newer" in lines[0]


@pytest.mark.parametrize("version", ["6.0.16", "5.0.7"])
async def test_bot_refuses_redis_older_than_6_2(tmp_path: Path, pg_dsn: str, version: str) -> None:
    """Also a server without HELLO (5.x): the bot speaks RESP2, so it reads the version and
    names it, and nothing but the bot's own line is printed (redis-py 8.2's RESP3 fallback
    warning once came first)."""
    async with OldRedisServer(version=version) as old:
        status, stderr = await _run_bot(
            tmp_path, DATABASE_URL=pg_dsn, REDIS_URL=f"redis://127.0.0.1:{old.port}/0"
        )
    assert status == 1
    assert "Traceback" not in stderr
    lines = stderr.strip().splitlines()
    assert len(lines) == 1, stderr
    assert "Redis" in lines[0] and version in lines[0] and "6.2 or newer" in lines[0]


async def test_the_servers_under_test_are_supported(pg_dsn: str, redis_url: str) -> None:
    """The version check passes on the servers this run uses (machine's or embedded)."""
    pg = await Postgres.connect(pg_dsn, migrate=False)
    await pg.db.close()
    async with RedisStores.from_url(redis_url) as redis:
        version = await redis.require_supported_version()
    assert tuple(int(p) for p in version.split(".")[:2]) >= (6, 2)


@pytest.mark.parametrize("version", ["6.2.0", "7.0.15", "7.4.2", "8.0.1"])
async def test_supported_redis_versions_pass(version: str) -> None:
    async with (
        OldRedisServer(version=version) as server,
        RedisStores.from_url(f"redis://127.0.0.1:{server.port}/0") as redis,
    ):
        assert await redis.require_supported_version() == version
    # The protocol is the project's choice (RESP2, dal/redis/connection.py), not the library's:
    # redis-py 8.2 started negotiating RESP3 with HELLO on every new connection.
    assert "HELLO" not in server.commands, server.commands


async def test_bot_refuses_a_redis_that_may_evict_keys(tmp_path: Path, pg_dsn: str) -> None:
    """Under an `allkeys-*` policy an idle session's records can vanish and the finalizer
    would write everyone absent: start-up refuses it in one line naming the setting."""
    server = ThrowawayRedis(tmp_path / "redis", "--maxmemory-policy", "allkeys-lru")
    await server.start()
    try:
        status, stderr = await _run_bot(tmp_path, DATABASE_URL=pg_dsn, REDIS_URL=server.url)
    finally:
        await server.stop()
    assert status == 1
    assert "Traceback" not in stderr
    lines = stderr.strip().splitlines()
    assert len(lines) == 1, stderr
    assert "maxmemory-policy allkeys-lru" in lines[0] and "noeviction" in lines[0]


async def test_a_redis_hiding_config_is_refused_unless_the_operator_vouches(
    tmp_path: Path,
) -> None:
    server = ThrowawayRedis(tmp_path / "redis", "--rename-command", "CONFIG", "")
    await server.start()
    try:
        async with RedisStores.from_url(server.url) as redis:
            with pytest.raises(UnsafeRedisPolicy, match="REDIS_ASSUME_NOEVICTION=true"):
                await redis.require_noeviction()
            assert await redis.require_noeviction(assume_noeviction=True) == "unknown"
    finally:
        await server.stop()


async def test_the_redis_under_test_never_evicts(redis_url: str) -> None:
    """The servers the tests and the demo run on (machine's or embedded) pass the check."""
    async with RedisStores.from_url(redis_url) as redis:
        assert await redis.require_noeviction() == "noeviction"
