"""The Lua scripts of dal/redis/lua: the key builders and the shared values they are given agree
with dal/redis/keys.py and dal/models.py, no script spells a shared value itself, every file is
loaded by some aggregate, and the files ship with the package."""

from __future__ import annotations

import re
import tomllib
from importlib.resources import files
from pathlib import Path

import redis.asyncio as aioredis

from dal.models import EVERYONE, FailReason, Role, Security
from dal.redis import keys, scripts

ROOT = Path(__file__).resolve().parents[3]
LUA = files("dal.redis").joinpath("lua")
HELPERS = {"now"}  # the prelude, prepended to every script by scripts.source


def _lua_names() -> set[str]:
    return {p.name.removesuffix(".lua") for p in LUA.iterdir() if p.name.endswith(".lua")}


async def test_lua_key_builders_name_keys_exactly_as_python_does(
    redis_raw: aioredis.Redis,
) -> None:
    probe = "return {session_key(ARGV[1]), records_key(ARGV[1]), enrolled_key(ARGV[1]), " + (
        "claim_key(ARGV[1]), code_key(ARGV[2]), teacher_key(ARGV[3])}"
    )
    aid, code, teacher = "0b6f3c1e-8a51-4d2e-9b0c-5f1d2e3a4b5c", "012345", "T-ÖĞ 1"
    got = await redis_raw.eval(scripts.prelude() + probe, 0, aid, code, teacher)
    assert got == [
        keys.attendance(aid),
        keys.records(aid),
        keys.enrolled(aid),
        keys.claim(aid),
        keys.code(code),
        keys.teacher(teacher),
    ]


async def test_lua_constants_are_their_python_owners_values(redis_raw: aioredis.Redis) -> None:
    shared = scripts.constants()
    got = await redis_raw.eval(scripts.prelude() + f"return {{{', '.join(shared)}}}", 0)
    # Redis replies with text as bytes; numbers stay numbers.
    assert [v.decode() if isinstance(v, bytes) else v for v in got] == list(shared.values())
    assert shared["EVERYONE"] == EVERYONE
    assert shared["REASON_OVER_CAP"] == FailReason.OVER_CAP
    assert shared["ROLE_STUDENT"] == Role.STUDENT
    assert shared["LEVEL_LOCATION"] == Security.LOCATION


def _code_literals(lua: str) -> list[str]:
    """The quoted string literals of `lua` outside comments, less field names (`s['code']`)
    and XADD's `'*'` (Redis's "new entry id", not the enrolled-set marker)."""
    found: list[str] = []
    for line in lua.splitlines():
        code = line.split("--", 1)[0] if not re.search(r"'[^']*--", line) else line
        code = re.sub(r"\[\s*'[^']*'\s*\]", "[]", code)
        if "'XADD'" in code:
            code = code.replace("'*'", "")
        found += re.findall(r"'([^']*)'", code) + re.findall(r'"([^"]*)"', code)
    return found


def test_no_script_spells_a_value_python_owns() -> None:
    shared = {v for v in scripts.constants().values() if isinstance(v, str)}
    spelled = {}
    for name in _lua_names():
        for literal in _code_literals(LUA.joinpath(f"{name}.lua").read_text()):
            # Alone, or inside JSON text the script writes or looks for ('"fail_reason":"X"').
            hits = {v for v in shared if literal == v or f'"{v}"' in literal}
            if hits:
                spelled[name] = sorted(hits)
    assert spelled == {}


def test_every_lua_file_is_registered_or_included() -> None:
    registered = set()
    for path in (ROOT / "dal" / "redis").glob("*.py"):
        registered |= set(re.findall(r'scripts\.register\(\s*\w+,\s*"(\w+)"\)', path.read_text()))
    included = set()
    for name in _lua_names():
        first = LUA.joinpath(f"{name}.lua").read_text().split("\n", 1)[0]
        if first.startswith("--! uses:"):
            included |= {h.strip() for h in first.removeprefix("--! uses:").split(",")}
    assert registered <= _lua_names(), registered - _lua_names()
    assert _lua_names() == registered | included | HELPERS


def test_helpers_are_prepended_once_after_the_prelude() -> None:
    text = scripts.source("check_in")
    assert text.startswith(scripts.prelude())
    assert "local function redis_now()" in scripts.prelude()
    assert text.count("local function over_cap(") == 1
    assert text.index("local function over_cap(") < text.index("local function throttled(")
    assert "over_cap" not in scripts.source("claim")


def test_lua_files_are_package_data() -> None:
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())
    assert "lua/*.lua" in config["tool"]["setuptools"]["package-data"]["dal.redis"]
