"""The settings class, `.env.example` and the README's configuration table never drift apart.

An operator reads the README or copies `.env.example`; both must name exactly the settings that
`bot/config.py` reads, and `.env.example` must show the default the code really uses.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from pydantic import SecretStr

from bot.config import Settings

ROOT = Path(__file__).resolve().parents[2]
SETTING_NAMES = {name.upper() for name in Settings.model_fields}
# `.env.example` lines: "NAME=value" (to fill in) or "# NAME=value" (the default, commented).
ENV_LINE = re.compile(r"^#?\s?([A-Z][A-Z0-9_]+)=(.*)$")


def _env_example() -> dict[str, str]:
    found: dict[str, str] = {}
    for line in (ROOT / ".env.example").read_text(encoding="utf-8").splitlines():
        match = ENV_LINE.match(line)
        if match:
            assert match.group(1) not in found, f"{match.group(1)} is listed twice"
            found[match.group(1)] = match.group(2)
    return found


def _readme_table() -> set[str]:
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    section = text.split("\n## Configuration\n", 1)[1].split("\n## ", 1)[0]
    names: set[str] = set()
    for row in section.splitlines():
        if row.startswith("| `"):
            names.update(re.findall(r"`([A-Z][A-Z0-9_]+)`", row.split("|")[1]))
    return names


def test_env_example_names_exactly_the_settings() -> None:
    assert set(_env_example()) == SETTING_NAMES


def test_readme_table_names_exactly_the_settings() -> None:
    assert _readme_table() == SETTING_NAMES


@pytest.mark.parametrize("name", sorted(SETTING_NAMES))
def test_env_example_shows_the_real_default(name: str) -> None:
    field = Settings.model_fields[name.lower()]
    shown = _env_example()[name]
    default = field.default
    if default is None or isinstance(default, SecretStr) or field.is_required():
        assert shown == "" or name in {"WEBHOOK_URL"}, f"{name} has no default to show"
        return
    if isinstance(default, bool):  # written as the environment would: true / false
        default = str(default).lower()
    elif isinstance(default, float) and default.is_integer():
        default = int(default)
    assert shown == str(default), f"{name}: .env.example says {shown!r}, the code {default!r}"
