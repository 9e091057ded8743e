"""The alert rules and the Grafana dashboard under deploy/: promtool accepts the rules and their
unit tests pass, and every series they name is one a running bot serves on /metrics."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

import aiohttp
import pytest
import yaml
from aiohttp import web

from bot.app import build_app
from bot.build import VERSION
from bot.config import load_settings
from bot.web import build_web
from tests.harness import flush_redis, reset_database

ROOT = Path(__file__).resolve().parents[2]
RULES = ROOT / "deploy" / "prometheus" / "rules.yml"
RULE_TESTS = ROOT / "deploy" / "prometheus" / "rules.test.yml"
DASHBOARD = ROOT / "deploy" / "grafana" / "attn.json"
PROMTOOL = shutil.which("promtool")
needs_promtool = pytest.mark.skipif(
    PROMTOOL is None, reason="promtool missing (Debian package prometheus; .ci/run installs it)"
)

# PromQL words that are not series names.
_PROMQL = {
    "sum", "min", "max", "avg", "count", "rate", "irate", "increase", "histogram_quantile",
    "by", "without", "on", "ignoring", "group_left", "group_right", "and", "or", "unless",
    "topk", "bottomk", "abs", "clamp_min", "clamp_max", "time", "vector", "scalar", "delta",
    "deriv", "offset", "bool", "le", "job", "store", "outcome", "kind", "reason", "version",
    "generation", "e",
}  # fmt: skip


def series_names(expr: str) -> set[str]:
    """The series an expression reads: label matchers, grouping lists, ranges and numbers
    taken out, what is left that is not PromQL is a series name."""
    text = re.sub(r"\{[^}]*\}", " ", expr)
    text = re.sub(r"\[[^\]]*\]", " ", text)
    text = re.sub(r"\b(by|without|on|ignoring)\s*\([^)]*\)", " ", text)
    text = re.sub(r'"[^"]*"', " ", text)
    words = set(re.findall(r"[A-Za-z_:][A-Za-z0-9_:]*", text))
    return {w for w in words if w not in _PROMQL}


def _rule_expressions() -> dict[str, str]:
    groups = yaml.safe_load(RULES.read_text(encoding="utf-8"))["groups"]
    return {rule["alert"]: rule["expr"] for group in groups for rule in group["rules"]}


def _dashboard_expressions() -> list[str]:
    dashboard = json.loads(DASHBOARD.read_text(encoding="utf-8"))
    return [target["expr"] for panel in dashboard["panels"] for target in panel["targets"]]


def _exported(text: str) -> set[str]:
    """Every sample name a scrape can carry, from its TYPE lines (a labelled series without a
    child yet has only those) and its samples."""
    suffixes = {
        "counter": ("_total", "_created"),
        "histogram": ("_bucket", "_count", "_sum", "_created"),
        "summary": ("_count", "_sum", "_created", ""),
        "gauge": ("",),
        "info": ("_info",),
        "untyped": ("",),
    }
    names: set[str] = set()
    for line in text.splitlines():
        if line.startswith("# TYPE "):
            _, _, name, kind = line.split(" ", 3)
            if kind == "counter":  # the TYPE line of a counter names it with `_total`
                name = name.removesuffix("_total")
            names.update(name + suffix for suffix in suffixes[kind])
        elif line and not line.startswith("#"):
            names.add(re.split(r"[{ ]", line, maxsplit=1)[0])
    return names


@needs_promtool
def test_promtool_accepts_the_rules() -> None:
    assert PROMTOOL is not None
    result = subprocess.run(
        [PROMTOOL, "check", "rules", str(RULES)], capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"SUCCESS: {len(_rule_expressions())} rules found" in result.stdout


@needs_promtool
def test_the_rules_unit_tests_pass() -> None:
    assert PROMTOOL is not None
    result = subprocess.run(
        [PROMTOOL, "test", "rules", str(RULE_TESTS)],
        capture_output=True,
        text=True,
        check=False,
        cwd=RULE_TESTS.parent,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout


def test_the_rules_cover_what_an_operator_must_hear_of() -> None:
    exprs = _rule_expressions()
    wanted = {
        "AttnOutboxStuck": "attn_outbox_oldest_age_seconds",
        "AttnOutboxBacklog": "attn_outbox_depth",
        "AttnPortalDown": 'outcome="unavailable"',
        "AttnPortalChanged": 'outcome="changed"',
        "AttnTelegramFloodControl": "attn_telegram_retry_after_total",
        "AttnFinalizationFailing": 'job="finalize",outcome="failed"',
        "AttnStoreErrors": "attn_store_errors_total",
        "AttnStoreDown": "attn_store_up",
    }
    for alert, fragment in wanted.items():
        assert fragment in exprs[alert], alert


def test_the_name_reader_sees_through_promql() -> None:
    expr = 'histogram_quantile(0.95, sum by (le, job) (rate(x_bucket{job="a"}[5m]))) > 2'
    assert series_names(expr) == {"x_bucket"}
    assert series_names("max(a) / on (store) b_total") == {"a", "b_total"}


@pytest.mark.stores
async def test_every_series_of_rules_and_dashboard_is_in_a_live_scrape(
    pg_dsn: str, redis_url: str
) -> None:
    await reset_database(pg_dsn)
    await flush_redis(redis_url)
    settings = load_settings(
        bot_token="123456:" + "x" * 35, database_url=pg_dsn, redis_url=redis_url, aksis_mode="demo"
    )
    async with build_app(settings) as app:
        runner = web.AppRunner(build_web(app))
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        try:
            base = f"http://127.0.0.1:{runner.addresses[0][1]}"
            async with aiohttp.ClientSession() as http, http.get(f"{base}/metrics") as response:
                assert response.status == 200
                scrape = await response.text()
        finally:
            await runner.cleanup()
        await app.bot.session.close()
    exported = _exported(scrape)
    assert f'attn_build_info{{version="{VERSION}"}} 1.0' in scrape
    expressions = [*_dashboard_expressions(), *_rule_expressions().values()]
    assert len(expressions) >= 25
    used: set[str] = set()
    for expr in expressions:
        names = series_names(expr)
        assert names, expr
        missing = names - exported
        assert not missing, f"{expr}: {sorted(missing)} not on /metrics"
        used |= names
    # The dashboard shows the outbox and the standard process series too.
    assert {"attn_outbox_oldest_age_seconds", "process_resident_memory_bytes"} <= used
