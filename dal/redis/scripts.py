"""Loads the Lua scripts of `dal/redis/lua/` and registers them with redis-py.

Every script is sent with the same prelude, built here once: `lua/now.lua` (`redis_now()`,
Redis's own clock: the live-write invariant of dal/redis/sessions.py) and the key builders of
dal/redis/keys.py spelled as Lua functions (`session_key(id)`, ...), so that a script that must
derive a key from an id it read names it exactly as Python does, and the values a script shares
with Python spelled as Lua locals from their one Python owner in dal/models.py: every reason code
(`REASON_OVER_CAP`, ...), role (`ROLE_STUDENT`), record source (`SOURCE_CODE`), security level
(`LEVEL_LOCATION`, ...) and the enrolled-set marker `EVERYONE`. A script never spells one of
them as a literal (tests/dal/redis/test_scripts.py checks). A script whose first line is
`--! uses: a, b` also gets the helpers `lua/a.lua`, `lua/b.lua` prepended.

`register` wraps redis-py's `register_script`: EVALSHA, and SCRIPT LOAD + retry on NOSCRIPT
(a restarted or flushed server). Nothing here uses a command newer than Redis 6.2.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterable
from enum import Enum
from importlib.resources import files
from typing import Final

import redis.asyncio as aioredis
from redis.commands.core import AsyncScript

from dal.models import EVERYONE, FailReason, RecordSource, Role, Security
from dal.redis import keys

__all__ = ["constants", "prelude", "register", "source"]

_USES: Final = "--! uses:"
_MARK: Final = "\x00"

# Lua name -> the keys.py builder it mirrors (one argument each).
_BUILDERS: Final[dict[str, Callable[[str], str]]] = {
    "session_key": keys.attendance,
    "records_key": keys.records,
    "enrolled_key": keys.enrolled,
    "claim_key": keys.claim,
    "code_key": keys.code,
    "teacher_key": keys.teacher,
}


# Lua local name prefix -> the enum whose members it spells (`REASON_` + member name).
_ENUMS: Final[tuple[tuple[str, type[Enum]], ...]] = (
    ("REASON_", FailReason),
    ("ROLE_", Role),
    ("SOURCE_", RecordSource),
    ("LEVEL_", Security),
)


def constants() -> dict[str, str | int]:
    """Every shared value the prelude defines, by its Lua name."""
    found: dict[str, str | int] = {"EVERYONE": EVERYONE}
    for prefix, enum in _ENUMS:
        for member in enum:
            found[prefix + member.name] = member.value
    return found


def _read(name: str) -> str:
    return files(__package__).joinpath("lua", f"{name}.lua").read_text(encoding="utf-8")


def _lua_string(text: str) -> str:
    if "'" in text or "\\" in text or "\n" in text:
        raise ValueError(f"key part {text!r} cannot be spelled as a plain Lua string")
    return f"'{text}'"


def _lua_value(value: str | int) -> str:
    return str(value) if isinstance(value, int) else _lua_string(value)


def _constants(values: Iterable[tuple[str, str | int]]) -> str:
    """`local REASON_OVER_CAP = 'OVER_CAP'`, ... (locals: no table built on every call)."""
    return "".join(f"local {name} = {_lua_value(value)}\n" for name, value in values)


def _key_builders() -> str:
    """`local function session_key(id) return 'attendances:{' .. id .. '}' end`, ..."""
    lines = []
    for lua_name, build in _BUILDERS.items():
        head, tail = build(_MARK).split(_MARK)
        body = " .. ".join(
            part
            for part in (_lua_string(head) if head else "", "v", _lua_string(tail) if tail else "")
            if part
        )
        lines.append(f"local function {lua_name}(v) return {body} end")
    return "\n".join(lines) + "\n"


@functools.cache
def prelude() -> str:
    """What every script starts with: `redis_now()`, the key builders and the constants."""
    return _read("now") + _key_builders() + _constants(constants().items())


@functools.cache
def source(name: str) -> str:
    """The full text sent to Redis for `lua/<name>.lua` (prelude, helpers, script)."""
    body = _read(name)
    first = body.split("\n", 1)[0]
    helpers: list[str] = []
    if first.startswith(_USES):
        helpers = [h.strip() for h in first[len(_USES) :].split(",") if h.strip()]
    return "".join([prelude(), *(_read(h) for h in helpers), body])


def register(redis: aioredis.Redis, name: str) -> AsyncScript:
    """`lua/<name>.lua` registered on `redis` (EVALSHA with NOSCRIPT fallback)."""
    return redis.register_script(source(name))
