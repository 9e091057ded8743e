"""`make demo` (scripts/demo.py) run as an operator runs it: a subprocess with DATABASE_URL and
REDIS_URL, judged by its exit status and what it prints."""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import shutil
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import asyncpg
import pytest

from dal.redis.connection import client as redis_client

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "scripts" / "demo.py"
ADMIN_DSN = os.environ.get("DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/postgres")
BASE_REDIS_URL = os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/0")
TEST_REDIS_DB = int(os.environ.get("ATTN_TEST_REDIS_DB", "15"))

# The demo reaches the servers through DATABASE_URL / REDIS_URL, not the fixtures.
pytestmark = pytest.mark.stores

SHEET_ROW = re.compile(
    r"^\s+(\d+)\s+(\d{8})\s+(.+?)\s+(present|late|absent|pending|rejected)\s+(.+)$", re.M
)
TOTALS = re.compile(
    r"Totals: (\d+) present, (\d+) late, (\d+) absent, (\d+) pending, (\d+) rejected — "
    r"(\d+) records"
)


def _with_path(url: str, path: str) -> str:
    return urlunsplit(urlsplit(url)._replace(path=path))


def _environment(**overrides: str) -> dict[str, str]:
    return {
        **os.environ,
        "DATABASE_URL": ADMIN_DSN,
        "REDIS_URL": BASE_REDIS_URL,
        "PYTHONIOENCODING": "utf-8",
        **overrides,
    }


async def _run_demo(*args: str) -> tuple[int, str, str]:
    """Exit status, stdout and stderr of `scripts/demo.py ARGS`."""
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        str(SCRIPT),
        *args,
        cwd=ROOT,
        env=_environment(),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        out, err = await asyncio.wait_for(process.communicate(), 150)
    except TimeoutError:
        process.terminate()  # the script stops its bot and drops its database on SIGTERM
        try:
            await asyncio.wait_for(process.wait(), 30)
        except TimeoutError:
            process.kill()
            await process.wait()
        raise
    assert process.returncode is not None
    return process.returncode, out.decode("utf-8"), err.decode("utf-8")


@contextlib.contextmanager
def _refusing_port() -> Iterator[int]:
    """A port on 127.0.0.1 that is bound but not listening: connections are refused."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        yield sock.getsockname()[1]


async def _database_exists(name: str) -> bool:
    admin = await asyncpg.connect(_with_path(ADMIN_DSN, "/postgres"))
    try:
        return bool(await admin.fetchval("SELECT 1 FROM pg_database WHERE datname = $1", name))
    finally:
        await admin.close()


@pytest.mark.slow
@pytest.mark.demo
@pytest.mark.timeout(170)
async def test_the_demo_plays_a_class_and_prints_the_sheet_from_postgres() -> None:
    database = f"attn_demo_test_{uuid.uuid4().hex[:8]}"
    # Leftovers of an earlier run that died: a stale database and Redis keys.
    admin = await asyncpg.connect(_with_path(ADMIN_DSN, "/postgres"))
    try:
        await admin.execute(f'CREATE DATABASE "{database}"')
    finally:
        await admin.close()
    stale = await asyncpg.connect(_with_path(ADMIN_DSN, f"/{database}"))
    try:
        await stale.execute("CREATE TABLE users (leftover int)")
    finally:
        await stale.close()
    redis = redis_client(_with_path(BASE_REDIS_URL, f"/{TEST_REDIS_DB}"))
    try:
        await redis.set("attendances:teacher:leftover", "x")

        began = time.monotonic()
        status, out, err = await _run_demo("--database", database, "--redis-db", str(TEST_REDIS_DB))
        seconds = time.monotonic() - began
        assert status == 0, f"{out[-4000:]}\n--- stderr ---\n{err[-4000:]}"
        assert seconds < 120, seconds
        assert re.search(r"demo finished in \d+\.\d s", out)

        # The sheet read back from PostgreSQL: 38 on time, 2 late, 10 absent, 1 pending.
        totals = TOTALS.search(out)
        assert totals, out[-3000:]
        assert tuple(int(x) for x in totals.groups()) == (38, 2, 10, 1, 0, 51)
        rows = {number: state for _, number, _, state, _ in SHEET_ROW.findall(out)}
        assert len(rows) == 51
        assert {n for n, s in rows.items() if s == "late"} == {"24000039", "24000040"}
        assert {n for n, s in rows.items() if s == "absent"} == {
            f"240000{j}" for j in range(41, 51)
        }
        assert rows["24000055"] == "pending"
        assert all(rows[f"2400{j:04d}"] == "present" for j in range(1, 39))

        # The transcript: codes, the duplicate, the deep link, the wrong code, no password.
        code = re.search(r"teacher: 📋 .*?Check-in code: (\d{6})", out)
        assert code, out[:4000]
        assert f"student 5 → /start ci_{code.group(1)}" in out
        assert "student 2: You are already checked in" in out
        assert "student 7: That code does not match an open attendance" in out
        assert "student 55: 🕓 Recorded for" in out
        assert "teacher: 📊" in out
        assert "38 present, 2 late, 10 absent, 1 pending review, 0 rejected" in out
        assert "→ ••••" in out
        assert not re.search(r"→ password\b", out)
        assert "bot stopped cleanly by SIGTERM (exit code 0" in out
        # The Mini App step: done in Chromium when it is installed, else said to be skipped.
        if shutil.which("chromium") or shutil.which("chromium-browser"):
            # Student 8 signed in on the page (the chat had its confirmation, no Bot API
            # request the password) and later checked in on the page.
            assert "MINI APP SIGN-IN through the page: student 8: ✅" in out, out[-3000:]
            assert "no Bot API request carried the password" in out
            assert "MINI APP CHECK-IN through the page: student 8: ✅" in out, out[-3000:]
            assert "no bot message" in out
        else:
            assert "MINI APP SIGN-IN skipped (no Chromium): student 8 signs in in the chat" in out
            assert "MINI APP CHECK-IN skipped (no Chromium)" in out

        # Nothing left behind: the database is dropped, the Redis database empty.
        assert not await _database_exists(database)
        assert await redis.dbsize() == 0
    finally:
        await redis.flushdb()
        await redis.aclose()
        admin = await asyncpg.connect(_with_path(ADMIN_DSN, "/postgres"))
        try:
            await admin.execute(f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)')
        finally:
            await admin.close()


def test_the_demo_names_an_unreachable_postgres_and_fails_fast() -> None:
    with _refusing_port() as port:
        began = time.monotonic()
        result = subprocess.run(
            [sys.executable, str(SCRIPT), "--redis-db", str(TEST_REDIS_DB)],
            cwd=ROOT,
            env=_environment(DATABASE_URL=f"postgresql://postgres@127.0.0.1:{port}/postgres"),
            capture_output=True,
            text=True,
            encoding="utf-8",
            timeout=60,
            check=False,
        )
    assert result.returncode == 1, result.stdout + result.stderr
    assert f"PostgreSQL at 127.0.0.1:{port} (DATABASE_URL) is not reachable" in result.stderr
    assert "demo FAILED" in result.stderr
    assert time.monotonic() - began < 20
