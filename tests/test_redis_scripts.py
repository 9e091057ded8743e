"""The Lua scripts of dal/redis/lua: the key builders they are given agree with dal/redis/keys.py,
every file is loaded by some aggregate, and the files ship with the package."""

from __future__ import annotations

import re
import tomllib
from importlib.resources import files
from pathlib import Path

import redis.asyncio as aioredis

from dal.redis import keys, scripts

ROOT = Path(__file__).resolve().parent.parent
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
