"""deploy/kubernetes/ parses, and says only what the bot understands: probe paths the web app
serves, settings bot/config.py reads, secret files the Secret holds, and webhook mode for more
than one replica."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import yaml

from bot.config import SECRET_FILE_SETTINGS, Settings

ROOT = Path(__file__).resolve().parents[2]
MANIFESTS = ROOT / "deploy" / "kubernetes"
SETTINGS = {name.upper() for name in Settings.model_fields}
# The routes bot/web.py registers (also those of the start-up probe server, bot/__main__.py).
ROUTES = set(re.findall(r'add_get\("([^"]+)"', (ROOT / "bot" / "web.py").read_text()))


def _documents() -> dict[str, dict[str, Any]]:
    found: dict[str, dict[str, Any]] = {}
    for path in sorted(MANIFESTS.glob("*.yaml")):
        for document in yaml.safe_load_all(path.read_text(encoding="utf-8")):
            found[document["kind"]] = document
    return found


def _pod(document: dict[str, Any]) -> dict[str, Any]:
    spec: dict[str, Any] = document["spec"]["template"]["spec"]
    return spec


def test_the_set_is_whole() -> None:
    assert set(_documents()) == {"ConfigMap", "Secret", "Deployment", "Job", "Service"}
    assert {"/health/live", "/health/ready"} <= ROUTES


def test_probes_hit_the_health_endpoints() -> None:
    (bot,) = _pod(_documents()["Deployment"])["containers"]
    assert bot["livenessProbe"]["httpGet"]["path"] == "/health/live"
    assert bot["readinessProbe"]["httpGet"]["path"] == "/health/ready"
    for probe in ("livenessProbe", "readinessProbe"):
        assert bot[probe]["httpGet"]["path"] in ROUTES
        assert bot[probe]["httpGet"]["port"] == bot["ports"][0]["name"]
    assert bot["command"] == ["python", "-m", "bot", "run"]


def test_every_setting_named_is_one_the_bot_reads() -> None:
    documents = _documents()
    config = documents["ConfigMap"]["data"]
    assert set(config) <= SETTINGS, set(config) - SETTINGS
    secret_keys = set(documents["Secret"]["stringData"])
    for kind in ("Deployment", "Job"):
        (container,) = _pod(documents[kind])["containers"]
        assert container["envFrom"] == [{"configMapRef": {"name": "attn"}}]
        mount = container["volumeMounts"][0]["mountPath"]
        for entry in container["env"]:
            name = entry["name"]
            assert name.endswith("_FILE") and name.removesuffix("_FILE").lower() in (
                SECRET_FILE_SETTINGS
            ), name
            directory, file = entry["value"].rsplit("/", 1)
            assert directory == mount and file in secret_keys, entry
            assert name.removesuffix("_FILE") not in config  # not both a value and its file
    job = _pod(documents["Job"])
    assert job["containers"][0]["command"] == ["python", "-m", "bot", "migrate"]
    assert job["restartPolicy"] == "Never"


def test_more_than_one_replica_runs_in_webhook_mode() -> None:
    documents = _documents()
    config = documents["ConfigMap"]["data"]
    assert documents["Deployment"]["spec"]["replicas"] > 1
    assert config["WEBHOOK_URL"].startswith("https://")
    assert config["MIGRATE_ON_START"] == "false"
    (bot,) = _pod(documents["Deployment"])["containers"]
    assert "WEBHOOK_SECRET_FILE" in {e["name"] for e in bot["env"]}
    service = documents["Service"]["spec"]
    assert service["selector"] == documents["Deployment"]["spec"]["selector"]["matchLabels"]
    # Settings as the pod would get them validate (webhook with its secret, live keys).
    settings = Settings(
        **{k.lower(): v for k, v in config.items()},
        webhook_secret="w" * 40,
        staff_id_key="k" * 40,
        secret_key="s" * 40,
    )
    assert settings.webhook_url == config["WEBHOOK_URL"]
