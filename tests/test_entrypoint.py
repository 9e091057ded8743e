"""`python -m bot` refuses bad configuration and unreachable stores with one clear line."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def _run(tmp_path: Path, **env: str) -> subprocess.CompletedProcess[str]:
    base = {k: v for k, v in os.environ.items() if not k.isupper() or k in ("PATH", "HOME")}
    return subprocess.run(
        [sys.executable, "-m", "bot"],
        cwd=tmp_path,  # no .env there
        env={**base, "PYTHONPATH": str(ROOT), **env},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_missing_token_names_the_variable(tmp_path: Path) -> None:
    result = _run(tmp_path)
    assert result.returncode != 0
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "BOT_TOKEN" in lines[0], result.stderr


@pytest.mark.parametrize(
    ("name", "value"),
    [("FINALIZE_INTERVAL_SECONDS", "soon"), ("TIMEZONE", "Mars/Olympus"), ("REDIS_URL", "nope")],
)
def test_malformed_setting_names_the_variable(tmp_path: Path, name: str, value: str) -> None:
    result = _run(tmp_path, BOT_TOKEN="1:x", **{name: value})
    assert result.returncode != 0
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and name in lines[0], result.stderr


def test_unreachable_postgres_says_which_url_with_the_password_masked(tmp_path: Path) -> None:
    result = _run(
        tmp_path,
        BOT_TOKEN="1:x",
        DATABASE_URL="postgresql://attn:hunter2@127.0.0.1:1/attn",
    )
    assert result.returncode != 0
    assert "Traceback" not in result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert "postgresql://attn:***@127.0.0.1:1/attn" in lines[0]
    assert "hunter2" not in result.stderr + result.stdout
