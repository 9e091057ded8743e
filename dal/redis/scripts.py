"""Loads the Lua scripts of `dal/redis/lua/` and registers them with redis-py.

Every script is sent with the same prelude, built here once: `lua/now.lua` (`redis_now()`,
Redis's own clock: the live-write invariant of dal/redis/sessions.py) and the key builders of
dal/redis/keys.py spelled as Lua functions (`session_key(id)`, ...), so that a script that must
derive a key from an id it read names it exactly as Python does. A script whose first line is
`--! uses: a, b` also gets the helpers `lua/a.lua`, `lua/b.lua` prepended.

`register` wraps redis-py's `register_script`: EVALSHA, and SCRIPT LOAD + retry on NOSCRIPT
(a restarted or flushed server). Nothing here uses a command newer than Redis 6.2.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from importlib.resources import files
from typing import Final

import redis.asyncio as aioredis
from redis.commands.core import AsyncScript

from dal.redis import keys

__all__ = ["prelude", "register", "source"]

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


def _read(name: str) -> str:
    return files(__package__).joinpath("lua", f"{name}.lua").read_text(encoding="utf-8")


def _lua_string(text: str) -> str:
    if "'" in text or "\\" in text or "\n" in text:
        raise ValueError(f"key part {text!r} cannot be spelled as a plain Lua string")
    return f"'{text}'"


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
    """What every script starts with: `redis_now()` and the key builders."""
    return _read("now") + _key_builders()


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
