"""What every Redis aggregate shares: the error translation, small conversions, the record codec.

Each aggregate (sessions.py, checkins.py, finalization.py, accounts.py, guards.py, purge.py) is
a `Store` over the one `redis.asyncio.Redis` of the process (dal/redis/stores.py builds them).
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Sequence
from datetime import datetime
from types import TracebackType
from typing import Final
from uuid import UUID

import redis.asyncio as aioredis
from pydantic import TypeAdapter
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from dal.errors import RedisUnavailable
from dal.models import LiveRecord

__all__ = ["Store", "TranslateErrors"]


class TranslateErrors:
    """Turns driver connection errors into `RedisUnavailable` (a plain `with`: no await cost)."""

    __slots__ = ("_url",)

    def __init__(self, url: str) -> None:
        self._url = url

    def __enter__(self) -> None:
        return None

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if isinstance(exc, RedisConnectionError | RedisTimeoutError):
            raise RedisUnavailable.unreachable(self._url, exc) from exc


class Store:
    """One aggregate's access over the shared client; `url` only names it in errors."""

    def __init__(self, redis: aioredis.Redis, *, url: str = "redis://") -> None:
        self._redis = redis
        self._url = url
        self._errors = TranslateErrors(url)


def epoch(moment: datetime) -> str:
    if moment.utcoffset() is None:
        raise ValueError("naive datetime: every time must be timezone-aware")
    return repr(moment.timestamp())


def text(value: bytes | str) -> str:
    """The pool decodes responses; this only narrows redis-py's `bytes | str` for mypy."""
    return value if isinstance(value, str) else value.decode()


async def batched(items: AsyncIterator[str], size: int) -> AsyncIterator[list[str]]:
    """`items` in lists of up to `size` (the last one may be shorter; none is empty)."""
    if size < 1:
        raise ValueError(f"batch size must be at least 1, got {size}")
    chunk: list[str] = []
    async for item in items:
        chunk.append(item)
        if len(chunk) >= size:
            yield chunk
            chunk = []
    if chunk:
        yield chunk


def parse_record(attendance_id: UUID, raw: bytes | str) -> LiveRecord:
    data = json.loads(raw)
    data["attendance_id"] = attendance_id
    return LiveRecord.model_validate(data)


_RECORD_LIST: Final = TypeAdapter(list[LiveRecord])


def parse_records(attendance_id: UUID, values: Sequence[bytes | str]) -> list[LiveRecord]:
    """Many stored records of one session at once: the session id is spliced into each JSON
    object (stored without it) and the array is validated in one pydantic-core call."""
    if not values:
        return []
    head = f'{{"attendance_id":"{attendance_id}",'
    parts = [head + text(value).lstrip()[1:] for value in values]
    return _RECORD_LIST.validate_json("[" + ",".join(parts) + "]")


def record_json(record: LiveRecord) -> str:
    return record.model_dump_json(exclude={"attendance_id"})
