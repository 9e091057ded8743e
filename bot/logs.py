"""The one logging setup: text by default, JSON lines in the ECS shape with LOG_FORMAT=json.

Every line carries what it is about, when it is about something: `update_id` and `user` (a
keyed hash of the Telegram id, never the id itself) for lines logged while an update is
handled, `job` for lines logged by a scheduler tick. They come from context variables set by
`LogContextMiddleware` (the outermost update middleware) and by the scheduler's job wrapper
(`job_context`), so no call site passes them.

Secrets never reach a line: the formatter replaces every configured secret (bot token, webhook
secret, keys, store passwords) and anything shaped like a bot token with `***` in the finished
line, whichever library logged it. A person is named only by a keyed pseudonym of their Telegram
id (`services.pseudonyms.pseudonym`), never by the id or the school number; the Telegram ids
aiogram's exception texts carry are replaced by theirs. Portal user names and passwords are
never logged in the first place (handlers/login.py, services/aksis.py); the test suite checks
both at DEBUG.
"""

from __future__ import annotations

import contextlib
import json
import logging
import re
import sys
from collections.abc import Awaitable, Callable, Iterable, Iterator
from contextvars import ContextVar
from datetime import UTC, datetime
from typing import Any, Final, TextIO
from urllib.parse import urlsplit

from aiogram import BaseMiddleware
from aiogram.types import TelegramObject, Update

from bot.build import VERSION
from bot.config import Settings
from services.pseudonyms import keyed_pseudonym, pseudonym, use_key

__all__ = [
    "LogContextMiddleware",
    "build_handler",
    "job_context",
    "setup_logging",
    "user_hash",
]

_UPDATE_ID: ContextVar[int | None] = ContextVar("attn_update_id", default=None)
# The sender of the update being handled and the key of its pseudonym: the HMAC is worked out
# only when a line is written (`_ContextFilter`), not for every update (most log nothing).
_USER: ContextVar[tuple[int, bytes] | None] = ContextVar("attn_user", default=None)
_JOB: ContextVar[str | None] = ContextVar("attn_job", default=None)

# `<bot id>:<35 characters>`: the shape of every Telegram bot token.
_TOKEN_SHAPE: Final = re.compile(r"\b\d{5,}:[A-Za-z0-9_-]{30,}\b")
_MASK: Final = "***"
# aiogram's own exception texts name the chat: "Flood control exceeded ... in chat 123",
# "... migrated to a supergroup with id -100123 from -456". Such a text logged as it is would
# carry a raw Telegram id; the formatter writes the id's pseudonym instead.
_LIBRARY_CHAT_ID: Final = re.compile(r"(\bin chat |\bsupergroup with id |(?<=\d) from )(-?\d+)\b")
_TEXT_FORMAT: Final = "%(asctime)s %(levelname)s %(name)s%(context)s: %(message)s"
SERVICE_NAME: Final = "attn"
ECS_VERSION: Final = "8.11.0"


def user_hash(telegram_id: int, key: bytes) -> str:
    """A stable pseudonym of a Telegram account for logs: 12 hex digits of HMAC-SHA256.

    Keyed (SECRET_KEY) so that nobody holding only the logs can recompute it from a known id;
    the same function as `services.pseudonyms.pseudonym`, which every call site uses.
    """
    return keyed_pseudonym(telegram_id, key)


@contextlib.contextmanager
def job_context(name: str) -> Iterator[None]:
    """Lines logged inside carry `job=<name>`."""
    token = _JOB.set(name)
    try:
        yield
    finally:
        _JOB.reset(token)


_ECS_ERROR = "error"


class _ContextFilter(logging.Filter):
    """Copies the context variables onto each record (as attributes) for the formatters."""

    def filter(self, record: logging.LogRecord) -> bool:
        update_id, sender, job = _UPDATE_ID.get(), _USER.get(), _JOB.get()
        user = None if sender is None else user_hash(*sender)
        record.update_id = update_id
        record.user = user
        record.job = job
        parts = []
        if update_id is not None:
            parts.append(f"update={update_id}")
        if user is not None:
            parts.append(f"user={user}")
        if job is not None:
            parts.append(f"job={job}")
        record.context = f" [{' '.join(parts)}]" if parts else ""
        return True


class _Scrubber:
    """Replaces every known secret (and anything shaped like a bot token) with ***."""

    def __init__(self, secrets: Iterable[str]) -> None:
        # Longest first, so that a secret containing another is masked whole.
        self._secrets = sorted({s for s in secrets if len(s) >= 4}, key=len, reverse=True)

    def __call__(self, text: str) -> str:
        for secret in self._secrets:
            if secret in text:
                text = text.replace(secret, _MASK)
        text = _TOKEN_SHAPE.sub(_MASK, text)
        return _LIBRARY_CHAT_ID.sub(lambda m: m.group(1) + pseudonym(int(m.group(2))), text)


class _TextFormatter(logging.Formatter):
    def __init__(self, scrub: _Scrubber) -> None:
        super().__init__(_TEXT_FORMAT)
        self._scrub = scrub

    def format(self, record: logging.LogRecord) -> str:
        return self._scrub(super().format(record))


class _EcsFormatter(logging.Formatter):
    """One JSON object per line in the Elastic Common Schema's shape (flat dotted names, as the
    ECS loggers write them): `@timestamp` (RFC 3339, UTC, milliseconds), `log.level`,
    `log.logger`, `message`, `service.name`, `service.version`, `ecs.version`; `error.type`,
    `error.message` and `error.stack_trace` when an exception is logged; and the context that
    is set: `user.id` (the keyed pseudonym), `attn.update_id`, `attn.job`. Every text is
    scrubbed like a text line."""

    def __init__(self, scrub: _Scrubber, *, service_version: str) -> None:
        super().__init__()
        self._scrub = scrub
        self._static = {"service.name": SERVICE_NAME, "service.version": service_version}

    def format(self, record: logging.LogRecord) -> str:
        stamp = datetime.fromtimestamp(record.created, UTC)
        data: dict[str, Any] = {
            "@timestamp": stamp.isoformat(timespec="milliseconds").replace("+00:00", "Z"),
            "log.level": record.levelname,
            "log.logger": record.name,
            "message": record.getMessage(),
            **self._static,
            "ecs.version": ECS_VERSION,
        }
        user, update_id, job = (getattr(record, n, None) for n in ("user", "update_id", "job"))
        if user is not None:
            data["user.id"] = user
        if update_id is not None:
            data["attn.update_id"] = update_id
        if job is not None:
            data["attn.job"] = job
        # ECS's `error.*` fields, named through one prefix (the message catalogs' `error.`
        # keys are another namespace).
        error: dict[str, str] = {}
        if record.exc_info and record.exc_info[0] is not None:
            kind, exc = record.exc_info[0], record.exc_info[1]
            error["type"] = f"{kind.__module__}.{kind.__qualname__}".removeprefix("builtins.")
            error["message"] = str(exc)
            error["stack_trace"] = self.formatException(record.exc_info)
        elif record.exc_text:
            error["stack_trace"] = record.exc_text
        data.update({f"{_ECS_ERROR}.{name}": value for name, value in error.items()})
        if record.stack_info:
            data["log.origin.stack_trace"] = record.stack_info
        # Each text is scrubbed before encoding: a secret is found as written, not escaped.
        clean = {k: self._scrub(v) if isinstance(v, str) else v for k, v in data.items()}
        return json.dumps(clean, ensure_ascii=False, default=str)


def _store_passwords(*urls: str) -> list[str]:
    found = []
    for url in urls:
        with contextlib.suppress(ValueError):
            password = urlsplit(url).password
            if password:
                found.append(password)
    return found


def settings_secrets(settings: Settings) -> list[str]:
    """Every secret value in the settings, for the scrubber."""
    values = [
        secret.get_secret_value()
        for secret in (
            settings.bot_token,
            settings.webhook_secret,
            settings.secret_key,
            settings.staff_id_key,
            settings.metrics_token,
            settings.redis_sentinel_password,
        )
        if secret is not None
    ]
    return values + _store_passwords(settings.database_url, settings.redis_url)


def build_handler(settings: Settings, stream: TextIO | None = None) -> logging.Handler:
    """A handler writing lines in LOG_FORMAT, with context fields and secrets scrubbed."""
    scrub = _Scrubber(settings_secrets(settings))
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.addFilter(_ContextFilter())
    formatter: logging.Formatter = (
        _EcsFormatter(scrub, service_version=VERSION)
        if settings.log_format == "json"
        else _TextFormatter(scrub)
    )
    handler.setFormatter(formatter)
    return handler


def setup_logging(settings: Settings, *, stream: TextIO | None = None) -> logging.Handler:
    """Configure the root logger once for the process; returns the handler it installed."""
    handler = build_handler(settings, stream)
    use_key(settings.key("secret_key").encode())
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(settings.log_level.upper())
    # APScheduler logs two INFO lines per job run; the jobs log what they do themselves.
    logging.getLogger("apscheduler").setLevel(max(root.level, logging.WARNING))
    # aiogram logs a line per handled update: noise at a few hundred check-ins a second.
    logging.getLogger("aiogram.event").setLevel(max(root.level, logging.WARNING))
    return handler


class LogContextMiddleware(BaseMiddleware):
    """Outermost update middleware: sets `update_id` and `user` for every line logged while
    the update is handled (the error router's lines included)."""

    def __init__(self, key: bytes) -> None:
        self._key = key

    async def __call__(
        self,
        handler: Callable[[TelegramObject, dict[str, Any]], Awaitable[Any]],
        event: TelegramObject,
        data: dict[str, Any],
    ) -> Any:
        if not isinstance(event, Update):
            return await handler(event, data)
        sender = _sender_id(event)
        update_token = _UPDATE_ID.set(event.update_id)
        user_token = _USER.set(None if sender is None else (sender, self._key))
        try:
            return await handler(event, data)
        finally:
            _USER.reset(user_token)
            _UPDATE_ID.reset(update_token)


def _sender_id(update: Update) -> int | None:
    try:
        event = update.event
    except Exception:  # an update type this aiogram does not know
        return None
    sender = getattr(event, "from_user", None)
    user_id = getattr(sender, "id", None)
    return user_id if isinstance(user_id, int) else None
