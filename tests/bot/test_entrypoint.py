"""`python -m bot` refuses bad configuration and unreachable stores with one clear line."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from bot.config import ConfigError, load_settings

ROOT = Path(__file__).resolve().parents[2]


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
    result = _run(tmp_path, AKSIS_MODE="demo")
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
        AKSIS_MODE="demo",
        DATABASE_URL="postgresql://attn:hunter2@127.0.0.1:1/attn",
    )
    assert result.returncode != 0
    assert "Traceback" not in result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert "postgresql://attn:***@127.0.0.1:1/attn" in lines[0]
    assert "hunter2" not in result.stderr + result.stdout


# --- settings that would be unsafe in production ------------------------------------------

LIVE_KEYS = {
    "STAFF_ID_KEY": "k" * 20 + "-staff-0123456789abc",
    "SECRET_KEY": "k" * 20 + "-secret-0123456789ab",
}
GOOD_SECRET = "Ab0_-" * 8  # 40 characters of Telegram's alphabet


@pytest.mark.parametrize("secret", [None, ""])
def test_webhook_without_a_secret_stops_start_up(tmp_path: Path, secret: str | None) -> None:
    """Without a secret aiogram accepts any POST: anyone reaching the port could send updates as
    any teacher or student. `python -m bot` refuses before anything listens."""
    env = {"BOT_TOKEN": "1:x", "AKSIS_MODE": "demo", "WEBHOOK_URL": "https://attn.example/hook"}
    if secret is not None:
        env["WEBHOOK_SECRET"] = secret
    result = _run(tmp_path, **env)
    assert result.returncode != 0
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert "WEBHOOK_SECRET" in lines[0]
    assert "secrets.token_urlsafe(32)" in lines[0]  # says how to make one


@pytest.mark.parametrize("secret", ["   ", "short-secret", "x" * 31, "has space" * 5])
def test_weak_webhook_secret_is_refused(secret: str) -> None:
    with pytest.raises(ConfigError) as refused:
        load_settings(
            _env_file=None,
            aksis_mode="demo",
            webhook_url="https://attn.example/hook",
            webhook_secret=secret,
        )
    message = str(refused.value)
    assert message.startswith("WEBHOOK_SECRET:") and "\n" not in message
    if secret.strip():
        assert secret not in message  # the refused value is not echoed


def test_webhook_secret_of_telegrams_alphabet_is_accepted() -> None:
    settings = load_settings(
        _env_file=None,
        aksis_mode="demo",
        webhook_url="https://attn.example/hook",
        webhook_secret=GOOD_SECRET,
    )
    assert settings.webhook_secret is not None
    with pytest.raises(ConfigError, match="WEBHOOK_SECRET"):
        load_settings(
            _env_file=None,
            aksis_mode="demo",
            webhook_url="https://attn.example/hook",
            webhook_secret=GOOD_SECRET[:-1] + "!",
        )


@pytest.mark.parametrize(
    ("name", "value"), [("STAFF_ID_KEY", None), ("SECRET_KEY", "attn-development-secret-key")]
)
def test_live_mode_with_a_missing_or_default_key_exits_naming_it(
    tmp_path: Path, name: str, value: str | None
) -> None:
    env = {"BOT_TOKEN": "1:x", "AKSIS_MODE": "live", **LIVE_KEYS}
    if value is None:
        del env[name]
    else:
        env[name] = value
    result = _run(tmp_path, **env)
    assert result.returncode != 0
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert name in lines[0] and "secrets.token_urlsafe(32)" in lines[0]
    assert "Traceback" not in result.stderr


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("SECRET_KEY", None),
        ("STAFF_ID_KEY", "attn-development-staff-key"),
        ("SECRET_KEY", "too-short"),
        ("STAFF_ID_KEY", "   "),
    ],
)
def test_live_mode_refuses_missing_weak_or_development_keys(name: str, value: str | None) -> None:
    keys = {k.lower(): v for k, v in LIVE_KEYS.items()}
    if value is None:
        del keys[name.lower()]
    else:
        keys[name.lower()] = value
    with pytest.raises(ConfigError, match=f"^{name}: "):
        load_settings(_env_file=None, aksis_mode="live", **keys)  # type: ignore[arg-type]


def test_live_mode_is_the_default_and_needs_the_keys(tmp_path: Path) -> None:
    result = _run(tmp_path, BOT_TOKEN="1:x")
    assert result.returncode != 0
    assert "STAFF_ID_KEY" in result.stderr.strip().splitlines()[0]


def test_demo_mode_generates_keys_for_each_run() -> None:
    first = load_settings(_env_file=None, aksis_mode="demo")
    second = load_settings(_env_file=None, aksis_mode="demo")
    for name in ("staff_id_key", "secret_key"):
        a, b = first.key(name), second.key(name)
        assert len(a) >= 32 and a != b
        assert a not in ("attn-development-staff-key", "attn-development-secret-key")
    # Keys given explicitly are kept, in either mode.
    live = load_settings(
        _env_file=None, aksis_mode="live", staff_id_key="s" * 32, secret_key="t" * 32
    )
    assert (live.key("staff_id_key"), live.key("secret_key")) == ("s" * 32, "t" * 32)


def test_compose_passes_no_empty_webhook_secret() -> None:
    """`${WEBHOOK_SECRET:-}` would hand the bot an empty secret; the bot refuses that, but the
    compose file must not offer it either."""
    compose = (ROOT / "docker-compose.yml").read_text(encoding="utf-8")
    assert "WEBHOOK_SECRET" in compose
    for line in compose.splitlines():
        if "WEBHOOK_SECRET" in line:
            assert ":-}" not in line and ":-" not in line.split("WEBHOOK_SECRET", 1)[1], line


# --- settings that used to fail late, with a traceback -------------------


def test_an_unknown_log_level_ends_start_up_with_one_line_naming_log_level(tmp_path: Path) -> None:
    """LOG_LEVEL=verbose passed validation, then logging.setLevel raised: a traceback."""
    result = _run(tmp_path, BOT_TOKEN="1:x", AKSIS_MODE="demo", LOG_LEVEL="verbose")
    assert result.returncode != 0
    assert "Traceback" not in result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "LOG_LEVEL" in lines[0] and "WARNING" in lines[0], result.stderr


@pytest.mark.parametrize("value", ["debug", "Warning", " ERROR "])
def test_log_level_names_are_accepted_in_any_case(value: str) -> None:
    settings = load_settings(_env_file=None, aksis_mode="demo", log_level=value)
    assert settings.log_level == value.strip().upper()


@pytest.mark.parametrize("name", ["PUBLIC_URL", "WEBHOOK_URL"])
@pytest.mark.parametrize(
    "value", ["attn.example.edu", "ftp://attn.example.edu/", "https://", "https://host:port/"]
)
def test_public_and_webhook_urls_must_be_http_urls_with_a_host(name: str, value: str) -> None:
    with pytest.raises(ConfigError) as refused:
        load_settings(
            _env_file=None, aksis_mode="demo", webhook_secret=GOOD_SECRET, **{name.lower(): value}
        )
    message = str(refused.value)
    assert message.startswith(f"{name}:") and "http(s)" in message and "\n" not in message


def test_a_public_url_without_a_scheme_ends_start_up_with_one_line(tmp_path: Path) -> None:
    result = _run(tmp_path, BOT_TOKEN="1:x", AKSIS_MODE="demo", PUBLIC_URL="attn.example.edu")
    assert result.returncode != 0
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "PUBLIC_URL" in lines[0], result.stderr


def test_http_public_and_webhook_urls_are_accepted() -> None:
    settings = load_settings(
        _env_file=None,
        aksis_mode="demo",
        public_url="http://127.0.0.1:8080",
        webhook_url="https://attn.example.edu:8443/tg/webhook",
        webhook_secret=GOOD_SECRET,
    )
    assert settings.public_url == "http://127.0.0.1:8080"
    assert settings.webhook_url == "https://attn.example.edu:8443/tg/webhook"


# --- /metrics on the published port -------------------------------------------------------


def test_live_mode_without_a_metrics_token_exits_naming_it(tmp_path: Path) -> None:
    result = _run(tmp_path, BOT_TOKEN="1:x", AKSIS_MODE="live", **LIVE_KEYS)
    assert result.returncode != 0
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert "METRICS_TOKEN" in lines[0] and "METRICS_OPEN=true" in lines[0]
    assert "Traceback" not in result.stderr


def test_live_mode_runs_with_a_metrics_token_or_metrics_declared_private() -> None:
    keys = {k.lower(): v for k, v in LIVE_KEYS.items()}
    live = {"_env_file": None, "bot_token": "1:x", "aksis_mode": "live", **keys}
    with pytest.raises(ConfigError, match=r"^METRICS_TOKEN: "):
        load_settings(require_token=True, **live)
    with_token = load_settings(require_token=True, metrics_token="m" * 32, **live)
    assert with_token.metrics_token is not None
    declared_private = load_settings(require_token=True, metrics_open="true", **live)
    assert declared_private.metrics_open and declared_private.metrics_token is None
    # Commands that serve nothing (migrate, check, exports) need no token.
    assert load_settings(**live).metrics_token is None


def test_demo_mode_runs_without_a_metrics_token() -> None:
    settings = load_settings(_env_file=None, require_token=True, bot_token="1:x", aksis_mode="demo")
    assert settings.metrics_token is None and not settings.metrics_open
