"""docker-compose.yml as an IT team runs it unchanged: every `.env` setting reaches the bot,
secrets come from Docker secrets files, the web port stays on loopback, Redis persists and
never evicts, logs rotate, and migrations run as a job before the bot.

`docker-compose config` (Debian's docker-compose, which validates against the Compose schema
offline) renders the file when it is installed; the structure is asserted on the parsed YAML
either way, and the environment the bot would get is handed to `python -m bot` here.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.fakes.aksis_server import FakeAksis

ROOT = Path(__file__).resolve().parents[2]
COMPOSE = ROOT / "docker-compose.yml"
SECRETS = ("bot_token", "staff_id_key", "secret_key", "webhook_secret", "metrics_token")
KEY_A = "k" * 40
KEY_B = "s" * 40


def _compose() -> dict[str, Any]:
    loaded: dict[str, Any] = yaml.safe_load(COMPOSE.read_text(encoding="utf-8"))
    return loaded


def _dotenv(path: Path) -> dict[str, str]:
    """`.env` as Compose's env_file reads it: KEY=VALUE lines, `#` comments."""
    found: dict[str, str] = {}
    for line in path.read_text(encoding="utf-8").splitlines():
        line = line.strip()
        if line and not line.startswith("#") and "=" in line:
            name, value = line.split("=", 1)
            found[name.strip()] = value
    return found


def test_the_bot_gets_every_env_setting_and_its_secrets_as_files() -> None:
    services = _compose()["services"]
    for name in ("bot", "migrate"):
        assert services[name]["env_file"] == ".env"
        assert services[name]["environment"]["DATABASE_URL_FILE"] == "/run/secrets/database_url"
    bot = services["bot"]
    env = bot["environment"]
    assert env["MIGRATE_ON_START"] == "false"
    # No secret as a plain value anywhere: each through its file, and each file a secret.
    declared = _compose()["secrets"]
    for name in SECRETS:
        assert env[f"{name.upper()}_FILE"] == f"/run/secrets/{name}"
        assert name in bot["secrets"] and declared[name]["file"] == f"./secrets/{name}"
        assert name.upper() not in env
    assert services["postgres"]["environment"]["POSTGRES_PASSWORD_FILE"].startswith("/run/")
    assert bot["ports"] == ["127.0.0.1:8080:8080"]
    assert bot["depends_on"]["migrate"]["condition"] == "service_completed_successfully"
    assert services["migrate"]["command"] == ["python", "-m", "bot", "migrate"]
    assert services["migrate"]["restart"] == "no"


def test_redis_persists_never_evicts_and_every_log_rotates() -> None:
    services = _compose()["services"]
    command = services["redis"]["command"]
    assert command[command.index("--appendonly") + 1] == "yes"
    assert command[command.index("--maxmemory-policy") + 1] == "noeviction"
    assert any(v.endswith(":/data") for v in services["redis"]["volumes"])
    for name, service in services.items():
        logging = service["logging"]
        assert logging["driver"] == "json-file", name
        assert logging["options"]["max-size"] and int(logging["options"]["max-file"]) >= 2, name
    proxy = (ROOT / "deploy" / "caddy" / "Caddyfile").read_text(encoding="utf-8")
    for path in ("/tg/webhook", "/app/*", "/p/*"):
        assert f"handle {path} {{" in proxy
    assert "/metrics" not in proxy.split("{$ATTN_DOMAIN", 1)[1].replace("# /metrics", "")


def _project(tmp_path: Path, dotenv: str, secrets: dict[str, str]) -> Path:
    project = tmp_path / "project"
    project.mkdir()
    shutil.copy2(COMPOSE, project / "docker-compose.yml")
    (project / ".env").write_text(dotenv, encoding="utf-8")
    (project / "secrets").mkdir()
    for name in (*SECRETS, "database_url", "postgres_password"):
        (project / "secrets" / name).write_text(secrets.get(name, ""), encoding="utf-8")
    return project


def _rendered_environment(project: Path) -> dict[str, str]:
    """The bot's environment: `docker-compose config` when installed (env_file merged under
    `environment` by Compose itself), else the same merge done here."""
    tool = shutil.which("docker-compose")
    if tool is not None:
        result = subprocess.run(
            [tool, "config"], cwd=project, capture_output=True, text=True, check=False
        )
        assert result.returncode == 0, result.stderr
        rendered = yaml.safe_load(result.stdout)["services"]["bot"]["environment"]
        return {k: "" if v is None else str(v) for k, v in rendered.items()}
    bot = _compose()["services"]["bot"]
    return {**_dotenv(project / ".env"), **{k: str(v) for k, v in bot["environment"].items()}}


@pytest.mark.skipif(shutil.which("docker-compose") is None, reason="docker-compose not installed")
def test_docker_compose_validates_the_file(tmp_path: Path) -> None:
    project = _project(tmp_path, "", {})
    result = subprocess.run(
        ["docker-compose", "config", "--quiet"], cwd=project, capture_output=True, text=True
    )
    assert result.returncode == 0, result.stderr
    profiles = subprocess.run(
        ["docker-compose", "--profile", "tls", "config", "--services"],
        cwd=project,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()
    assert sorted(profiles) == ["bot", "caddy", "migrate", "postgres", "redis"]


@pytest.mark.stores
async def test_settings_from_env_and_secrets_take_effect(
    tmp_path: Path, pg_dsn: str, redis_url: str
) -> None:
    """The environment Compose gives the bot (the operator's `.env` under the stack's own
    values, secrets as files) runs `migrate` (the job) and `check` (the bot's settings as in
    force) against real stores and a portal at the `.env`'s own URLs."""
    async with FakeAksis() as portal:
        dotenv = "\n".join(
            [
                "# as .env.example leaves them: secrets empty, they come from files",
                "BOT_TOKEN=",
                "STAFF_ID_KEY=",
                "SECRET_KEY=",
                "TIMEZONE=Europe/Berlin",
                "LOG_FORMAT=json",
                "PUBLIC_URL=https://attn.uni.example",
                f"AKSIS_LOGIN_URL={portal.login_url}",
                f"AKSIS_OBS_URL={portal.obs_url}",
                f"AKSIS_SCHEDULE_URL={portal.schedule_url}",
                "TELEGRAM_GLOBAL_RATE=25",
                # A local-development value the stack overrides with its own Redis.
                "REDIS_URL=redis://127.0.0.1:1/0",
                "",
            ]
        )
        project = _project(
            tmp_path,
            dotenv,
            {
                "bot_token": "123456:" + "t" * 35 + "\n",
                "staff_id_key": KEY_A + "\n",
                "secret_key": KEY_B + "\n",
                "database_url": pg_dsn,
            },
        )
        env = _rendered_environment(project)
        assert env["REDIS_URL"] == "redis://redis:6379/0"
        # Where the containers would see /run/secrets and the services' host names, this test
        # has the project's secrets folder and its own servers.
        env = {
            name: value.replace("/run/secrets", str(project / "secrets"))
            for name, value in env.items()
        }
        env["REDIS_URL"] = redis_url
        env.update(PATH=os.environ["PATH"], HOME=str(tmp_path))
        cwd = tmp_path / "app"  # the image's WORKDIR has no .env
        cwd.mkdir()

        def bot(*args: str) -> subprocess.CompletedProcess[str]:
            return subprocess.run(
                [sys.executable, "-m", "bot", *args],
                cwd=cwd,
                env=env,
                capture_output=True,
                text=True,
                timeout=60,
                check=False,
            )

        migrated = bot("migrate")
        assert migrated.returncode == 0, migrated.stderr
        checked = await _in_thread(bot, "check")
    assert checked.returncode == 0, checked.stdout + checked.stderr
    shown = dict(
        line.strip().split("=", 1)
        for line in checked.stdout.splitlines()
        if line.startswith("  ") and "=" in line
    )
    assert shown["TIMEZONE"] == "Europe/Berlin"
    assert shown["LOG_FORMAT"] == "json"
    assert shown["PUBLIC_URL"] == "https://attn.uni.example"
    assert shown["AKSIS_LOGIN_URL"] == portal.login_url
    assert shown["AKSIS_OBS_URL"] == portal.obs_url
    assert shown["AKSIS_SCHEDULE_URL"] == portal.schedule_url
    assert shown["TELEGRAM_GLOBAL_RATE"] == "25.0"
    assert shown["MIGRATE_ON_START"] == "False"
    for secret in ("BOT_TOKEN", "STAFF_ID_KEY", "SECRET_KEY"):
        assert shown[secret] == "*** (set)"
    assert shown["WEBHOOK_SECRET"] == "(unset)"  # an empty secret file leaves it unset
    assert f"portal: {portal.login_url} answered HTTP 200" in checked.stdout
    assert "schema version" in checked.stdout and "up to date" in checked.stdout
    for secret in (KEY_A, KEY_B, "t" * 35):
        assert secret not in checked.stdout + checked.stderr


async def _in_thread(run: Any, *args: str) -> subprocess.CompletedProcess[str]:
    """The fake portal answers on this event loop: the child's request is served meanwhile."""
    import asyncio

    result: subprocess.CompletedProcess[str] = await asyncio.to_thread(run, *args)
    return result
