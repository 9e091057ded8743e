"""`python -m bot COMMAND`: each operator command as a process against real PostgreSQL and Redis."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from pathlib import Path

import aiohttp
import asyncpg
import pytest
import redis.asyncio as aioredis

from bot.build import VERSION
from dal.migrations import MIGRATIONS_LOCK_KEY, load_migrations
from dal.redis.outbox import Outbox
from services.notice_codec import encode_text
from tests.fakes.aksis_server import FakeAksis
from tests.fakes.telegram_server import FakeTelegram
from tests.support import BotProcess, bot_env, free_port
from tests.throwaway import ThrowawayRedis

pytestmark = [pytest.mark.stores]

ROOT = Path(__file__).resolve().parents[2]
LIVE_KEYS = {
    "STAFF_ID_KEY": "cli-test-staff-key-0123456789abcdefghij",
    "SECRET_KEY": "cli-test-secret-key-0123456789abcdefghi",
}


def attn(*args: str, cwd: Path, **env: str) -> subprocess.CompletedProcess[str]:
    """`python -m bot ARGS` with only the given settings (no .env, none of the test run's)."""
    base = {k: v for k, v in os.environ.items() if not k.isupper() or k in ("PATH", "HOME")}
    return subprocess.run(
        [sys.executable, "-m", "bot", *args],
        cwd=cwd,
        env={**base, "PYTHONPATH": str(ROOT), **env},
        capture_output=True,
        text=True,
        timeout=90,
        check=False,
    )


def test_version_prints_the_installed_version(tmp_path: Path) -> None:
    done = attn("--version", cwd=tmp_path)
    assert done.returncode == 0
    assert done.stdout.strip() == f"attn {VERSION}"
    assert VERSION[0].isdigit()


def test_an_unknown_command_is_a_usage_error(tmp_path: Path) -> None:
    done = attn("frobnicate", cwd=tmp_path)
    assert done.returncode == 2
    assert "invalid choice" in done.stderr


async def test_migrate_applies_the_schema_then_nothing(
    empty_dsn: str,
    tmp_path: Path,
) -> None:
    env = {"DATABASE_URL": empty_dsn, "AKSIS_MODE": "demo"}
    latest = load_migrations()[-1].version
    first = attn("migrate", cwd=tmp_path, **env)
    assert first.returncode == 0, first.stderr
    assert f"schema version 0 -> {latest}" in first.stdout
    again = attn("migrate", cwd=tmp_path, **env)
    assert again.returncode == 0
    assert f"schema version {latest} -> {latest} (none pending)" in again.stdout
    conn = await asyncpg.connect(empty_dsn)
    try:
        assert await conn.fetchval("SELECT count(*) FROM schema_migrations") == len(
            load_migrations()
        )
    finally:
        await conn.close()


def test_migrate_reports_an_unreachable_database_in_one_line(tmp_path: Path) -> None:
    done = attn(
        "migrate",
        cwd=tmp_path,
        DATABASE_URL="postgresql://attn:s3cr3t-pw@127.0.0.1:1/attn",
        AKSIS_MODE="demo",
    )
    assert done.returncode == 1
    assert "Traceback" not in done.stderr and "s3cr3t-pw" not in done.stderr
    assert "127.0.0.1:1" in done.stderr


def test_run_refuses_an_old_schema_when_migrations_run_as_a_job(
    empty_dsn: str,
    tmp_path: Path,
) -> None:
    done = attn(
        "run",
        cwd=tmp_path,
        BOT_TOKEN="1:x",
        DATABASE_URL=empty_dsn,
        AKSIS_MODE="demo",
        MIGRATE_ON_START="false",
    )
    assert done.returncode == 1
    assert "python -m bot migrate" in done.stderr
    assert "0001_initial" in done.stderr


@pytest.mark.slow
async def test_liveness_answers_while_a_migration_runs(
    empty_dsn: str,
    redis_url: str,
    tmp_path: Path,
) -> None:
    """A migration that takes long (here: waiting for a lock the test holds) does not leave
    the port closed: /health/live is 200 and /health/ready 503 until the bot is up."""
    port = free_port()
    blocker = await asyncpg.connect(empty_dsn)
    await blocker.execute("SELECT pg_advisory_lock($1)", MIGRATIONS_LOCK_KEY)
    async with FakeTelegram() as telegram:
        env = bot_env(telegram, empty_dsn, redis_url, WEB_PORT=str(port))
        process = BotProcess(env, tmp_path / "bot.log")
        base = f"http://127.0.0.1:{port}"
        statuses: dict[str, int] = {}

        def probes_answer() -> bool:
            return "/health/live" in statuses

        async with aiohttp.ClientSession() as http:

            async def probe() -> None:
                for path in ("/health/live", "/health/ready"):
                    try:
                        async with http.get(base + path) as response:
                            statuses[path] = response.status
                    except aiohttp.ClientError:
                        statuses.pop(path, None)

            try:
                await process.start(telegram, lambda: True)
                for _ in range(300):
                    await probe()
                    if probes_answer():
                        break
                    await asyncio.sleep(0.05)
                assert statuses == {"/health/live": 200, "/health/ready": 503}, (
                    process.log.read_text()
                )
                await asyncio.sleep(1.0)  # still migrating: still alive, still not ready
                await probe()
                assert statuses == {"/health/live": 200, "/health/ready": 503}
                await blocker.execute("SELECT pg_advisory_unlock($1)", MIGRATIONS_LOCK_KEY)
                for _ in range(300):
                    await probe()
                    if statuses.get("/health/ready") == 200:
                        break
                    await asyncio.sleep(0.05)
                assert statuses.get("/health/ready") == 200, process.log.read_text()
                code, _ = await process.terminate()
                assert code == 0
            finally:
                await process.ensure_stopped()
                await blocker.close()
    conn = await asyncpg.connect(empty_dsn)
    try:
        assert await conn.fetchval("SELECT max(version) FROM schema_migrations") == (
            load_migrations()[-1].version
        )
    finally:
        await conn.close()


# --- check ----------------------------------------------------------------------------------


async def test_check_passes_and_prints_the_configuration_masked(
    pg_dsn: str, redis_url: str, tmp_path: Path
) -> None:
    async with FakeAksis() as portal:
        overrides = portal.settings_overrides()
        env = {
            "DATABASE_URL": pg_dsn,
            "REDIS_URL": redis_url,
            "BOT_TOKEN": "123456:secret-token-value-that-must-not-show",
            "METRICS_TOKEN": "metrics-token-that-must-not-show",
            "TIMEZONE": "America/New_York",
            "AKSIS_LOGIN_URL": str(overrides["aksis_login_url"]),
            **LIVE_KEYS,
        }
        migrated = attn("migrate", cwd=tmp_path, **env)
        assert migrated.returncode == 0, migrated.stderr
        # In a thread: the fake portal is served by this test's event loop.
        done = await asyncio.to_thread(attn, "check", cwd=tmp_path, **env)
    assert done.returncode == 0, done.stdout + done.stderr
    out = done.stdout
    assert "TIMEZONE=America/New_York" in out
    assert f"AKSIS_LOGIN_URL={overrides['aksis_login_url']}" in out
    assert "BOT_TOKEN=*** (set)" in out and "METRICS_TOKEN=*** (set)" in out
    for secret in [env["BOT_TOKEN"], env["METRICS_TOKEN"], *LIVE_KEYS.values()]:
        assert secret not in out + done.stderr
    assert "ok   redis eviction policy: noeviction" in out
    assert "schema version" in out and "up to date" in out
    assert "answered HTTP 200" in out
    assert "all checks passed" in out


async def test_check_fails_on_an_evicting_redis_and_an_unreachable_portal(
    pg_dsn: str, tmp_path: Path
) -> None:
    # A Redis of its own: the policy is server-wide, and the shared test server's other
    # databases belong to the other workers.
    evicting = ThrowawayRedis(tmp_path / "redis", "--maxmemory-policy", "allkeys-lru")
    await evicting.start()
    env = {
        "DATABASE_URL": pg_dsn,
        "REDIS_URL": evicting.url,
        "AKSIS_LOGIN_URL": f"http://127.0.0.1:{free_port()}/Account/LogOn",
        **LIVE_KEYS,
    }
    try:
        assert attn("migrate", cwd=tmp_path, **env).returncode == 0
        done = attn("check", cwd=tmp_path, **env)
    finally:
        await evicting.stop()
    assert done.returncode == 1
    assert "FAIL redis eviction policy: allkeys-lru" in done.stdout
    assert "FAIL portal:" in done.stdout and "unreachable" in done.stdout
    assert "2 check(s) failed" in done.stdout


def test_check_names_a_bad_setting_with_exit_status_2(tmp_path: Path) -> None:
    done = attn("check", cwd=tmp_path, TIMEZONE="Mars/Olympus", AKSIS_MODE="demo")
    assert done.returncode == 2
    assert "TIMEZONE" in done.stderr


# --- outbox ---------------------------------------------------------------------------------


async def test_outbox_stats_requeue_and_drop(
    redis_url: str, redis_raw: aioredis.Redis, tmp_path: Path
) -> None:
    await redis_raw.flushdb()
    outbox = Outbox(redis_raw)
    await outbox.ensure_group()
    await outbox.add([encode_text(1000 + i, f"notice {i}") for i in range(3)])
    taken = await outbox.read("stopped-worker", 2, block_ms=None, own=False)
    assert len(taken) == 2  # a worker took two and died without a heartbeat
    env = {"REDIS_URL": redis_url, "AKSIS_MODE": "demo"}

    stats = attn("outbox", "stats", cwd=tmp_path, **env)
    assert stats.returncode == 0, stats.stderr
    assert "waiting: 3 (in flight: 2)" in stats.stdout
    assert "worker stopped-worker: 2 in flight, stopped" in stats.stdout

    requeued = attn("outbox", "requeue", cwd=tmp_path, **env)
    assert requeued.returncode == 0, requeued.stderr
    assert "requeued 2 notice(s)" in requeued.stdout
    assert await outbox.pending() == 0 and await outbox.backlog() == 3
    fresh = await outbox.read("live-worker", 10, block_ms=None, own=False)
    assert sorted(e.payload for e in fresh) == sorted(
        encode_text(1000 + i, f"notice {i}") for i in range(3)
    )
    await outbox.requeue("live-worker", fresh)  # back in line for the drops below

    kept = attn("outbox", "drop", "--older-than", "3600", cwd=tmp_path, **env)
    assert "dropped 0 notice(s)" in kept.stdout and await outbox.backlog() == 3
    dropped = attn("outbox", "drop", "--all", cwd=tmp_path, **env)
    assert dropped.returncode == 0 and "dropped 3 notice(s)" in dropped.stdout
    assert await outbox.backlog() == 0 and await outbox.pending() == 0


# --- export ---------------------------------------------------------------------------------
