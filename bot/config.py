"""Settings read from the environment (and an optional `.env`), as docs/contracts.md fixes them."""

from __future__ import annotations

import os
import re
import secrets
from pathlib import Path
from typing import Any, Literal, Self
from urllib.parse import urlsplit
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import Field, SecretStr, ValidationError, field_validator, model_validator
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
)

from dal.redis.connection import SentinelTarget


class ConfigError(Exception):
    """A setting is missing or malformed; the message names the variable in one line."""


# The keys this project shipped as defaults before they became required in live mode: public,
# so refused like a missing key.
DEVELOPMENT_KEYS: frozenset[str] = frozenset(
    {"attn-development-staff-key", "attn-development-secret-key"}
)
MIN_KEY_LENGTH = 32
# Telegram's alphabet for the webhook secret token (1-256 characters); at least 32 here.
_WEBHOOK_SECRET = re.compile(r"[A-Za-z0-9_-]{32,256}")
# What LOG_LEVEL accepts (any case): the logging module's level names.
LOG_LEVELS: tuple[str, ...] = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")
KEY_RECIPE = 'python -c "import secrets; print(secrets.token_urlsafe(32))"'


class _NamedSettingError(ValueError):
    """A cross-field check that failed; `load_settings` reports it under `name`."""

    def __init__(self, name: str, message: str) -> None:
        super().__init__(f"{name}: {message}")


# Settings that may instead be read from a file named by `<NAME>_FILE` (Docker and Kubernetes
# secrets mounted as files): the value is the file's content without the trailing newline.
SECRET_FILE_SETTINGS: tuple[str, ...] = (
    "bot_token",
    "secret_key",
    "staff_id_key",
    "webhook_secret",
    "metrics_token",
    "database_url",
    "redis_url",
    "redis_sentinel_password",
)


def _sentinel_nodes(value: str) -> tuple[tuple[str, int], ...]:
    """`"10.0.0.1:26379, [::1]:26380"` -> (("10.0.0.1", 26379), ("::1", 26380))."""
    nodes: list[tuple[str, int]] = []
    for entry in (part.strip() for part in value.split(",")):
        if not entry:
            continue
        try:
            parts = urlsplit(f"//{entry}")
            host, port = parts.hostname, parts.port
        except ValueError:
            host, port = None, None
        if not host or port is None or parts.path or parts.username is not None:
            raise ValueError(f"{entry!r} is not host:port (e.g. 10.0.0.1:26379)")
        nodes.append((host, port))
    if not nodes:
        raise ValueError("no sentinel address (host:port,host:port,...)")
    return tuple(nodes)


class _SecretFiles(PydanticBaseSettingsSource):
    """`BOT_TOKEN_FILE=/run/secrets/bot_token` and the like; both a value and its file is an
    error (which one would win is a guess an operator should not have to make)."""

    def get_field_value(self, field: Any, field_name: str) -> tuple[Any, str, bool]:
        return None, field_name, False  # pragma: no cover - __call__ reads every file itself

    def __call__(self) -> dict[str, Any]:
        values: dict[str, Any] = {}
        for name in SECRET_FILE_SETTINGS:
            variable = f"{name.upper()}_FILE"
            path = os.environ.get(variable, "").strip()
            if not path:
                continue
            if os.environ.get(name.upper(), "").strip():
                raise ConfigError(f"{variable}: set {name.upper()} or {variable}, not both")
            try:
                values[name] = Path(path).read_text(encoding="utf-8").rstrip("\r\n")
            except OSError as exc:
                raise ConfigError(f"{variable}: cannot read {path}: {exc.strerror}") from None
        return values


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_file=".env", env_file_encoding="utf-8", extra="ignore", case_sensitive=False
    )

    bot_token: SecretStr | None = None
    telegram_api_url: str = "https://api.telegram.org"
    database_url: str = "postgresql://postgres@127.0.0.1:5432/attn"
    redis_url: str = "redis://127.0.0.1:6379/0"
    redis_max_connections: int = Field(default=64, ge=1)
    # Start-up refuses a Redis whose maxmemory-policy is not noeviction. Where the provider
    # disables CONFIG the policy cannot be read: true says it was checked in their console.
    redis_assume_noeviction: bool = False
    # High availability: one master with replicas, watched by Redis Sentinel. With both set,
    # every Redis client connects to the master the sentinels name (REDIS_URL's scheme, user,
    # password and database still apply; its host and port are not used).
    redis_sentinels: str | None = None  # host:port,host:port,...
    redis_sentinel_master: str | None = None
    redis_sentinel_password: SecretStr | None = None  # the sentinels' own, if they ask one

    aksis_mode: Literal["live", "demo"] = "live"
    aksis_login_url: str = "https://aksis.istanbul.edu.tr/Account/LogOn?ReturnUrl=%2f"
    aksis_obs_url: str = "https://obs.istanbul.edu.tr/"
    aksis_schedule_url: str = "https://obs.istanbul.edu.tr/OgrenimBilgileri/DersProgramiYeni/Index"
    aksis_timeout_seconds: float = Field(default=15.0, gt=0)
    # Key for the keyed hash that identifies staff whose portal page shows no staff number
    # (docs/portal.md §4). Required in live mode; changing it re-identifies every teacher.
    staff_id_key: SecretStr | None = None
    # Key for short-lived encryption (the login user name between two steps) and for the
    # digests that throttle logins. Required in live mode.
    secret_key: SecretStr | None = None
    # Failed portal sign-ons before a pause: per Telegram account (and per user name tried from
    # it), and per user name over all accounts (higher, so that one account cannot lock a
    # victim out); the window starts at the first failure.
    login_max_failures: int = Field(default=5, ge=1)
    login_max_failures_per_username: int = Field(default=20, ge=1)
    login_failure_window_seconds: int = Field(default=900, ge=1)
    # Portal sign-ons per hour, whatever their outcome, per Telegram account and per user name:
    # neither a success nor /logout resets it.
    login_signons_per_hour: int = Field(default=10, ge=1)
    # Portal sign-ons per minute over every user and replica; beyond it a login is asked to
    # wait (the portal is never hammered through this bot).
    aksis_logins_per_minute: int = Field(default=60, ge=1)

    timezone: str = "Europe/Istanbul"
    finalize_interval_seconds: int = Field(default=60, ge=1)
    purge_interval_seconds: int = Field(default=300, ge=1)
    # Background-job locks and per-session finalization claims expire this long after a replica
    # dies holding them (a heartbeat renews a job lock while its tick runs).
    job_lock_seconds: int = Field(default=30, ge=2)
    finalize_claim_seconds: int = Field(default=30, ge=2)
    reminder_lead_minutes: int = Field(default=10, ge=1)
    closing_reminder_minutes: int = Field(default=5, ge=1)
    lesson_early_margin_minutes: float = Field(default=10, ge=0)
    late_after_minutes: float = Field(default=15, ge=0)
    default_session_minutes: int = Field(default=50, ge=1)
    student_session_ttl_days: int = Field(default=120, ge=1)
    teacher_session_ttl_days: int = Field(default=30, ge=1)
    # /my_attendance marks a course, and the student is warned once, when attendance falls
    # below this percentage after at least this many sessions of the course.
    attendance_warning_percent: float = Field(default=70, ge=0, le=100)
    attendance_warning_min_sessions: int = Field(default=3, ge=1)
    # A student may ask to have a missed session excused (/excuse) until this many days after
    # the session; later requests are refused with the reason.
    excuse_deadline_days: int = Field(default=14, ge=0)
    # A term's length in weeks: a course's planned sessions are its weekly slots in the
    # student's cached schedule times this (the portal names no term dates), from which
    # /my_attendance tells how many more sessions can be missed.
    term_weeks: int = Field(default=14, ge=1, le=52)

    # Outgoing pacing under Telegram's limits (docs/telegram.md): ~30 messages/s overall, ~1/s
    # sustained into one chat.
    telegram_global_rate: float = Field(default=30.0, gt=0)
    telegram_per_chat_rate: float = Field(default=1.0, gt=0)
    # Paid broadcasts (Bot API 7.11, `allow_paid_broadcast`): once the oldest queued notice
    # has waited this long, notices are sent beyond the 30/s, for Telegram Stars. 0: never.
    telegram_paid_broadcast_after_seconds: float = Field(default=0.0, ge=0)

    web_host: str = "0.0.0.0"  # noqa: S104 - the container's published port
    web_port: int = Field(default=8080, ge=0, le=65535)
    webhook_url: str | None = None
    webhook_secret: SecretStr | None = None
    log_level: str = "INFO"
    # Apply pending migrations at start-up (the web server answers /health/live meanwhile).
    # false: run `python -m bot migrate` as a job before the replicas; a replica then refuses to
    # start on a schema older than its code.
    migrate_on_start: bool = True

    # --- operations: logs, metrics, privacy -----------------------------------------------
    # `text` for people, `json` for a log pipeline (one JSON object per line).
    log_format: Literal["text", "json"] = "text"
    # When set, /metrics answers only requests with `Authorization: Bearer <token>`. Running the
    # bot in live mode requires it unless METRICS_OPEN says WEB_PORT is private.
    metrics_token: SecretStr | None = None
    # true: serve /metrics without a token in live mode too, because only a private network (a
    # scraper beside the bot, not the published port) reaches WEB_PORT.
    metrics_open: bool = False
    # Cached personal data (Telegram link, schedule, preferences) of an account with no login
    # and no attendance for this many days is dropped by the purge job.
    retention_days: int = Field(default=365, ge=1)

    # --- honest attendance: security levels -----------------------------------------------
    # Security level of a new session: 1 code, 2 code and place, 3 rotating code and place.
    security_level_default: int = Field(default=1, ge=1, le=3)
    # Level 3: the code changes this often (the current and the previous code are accepted).
    code_rotation_seconds: int = Field(default=30, ge=5)
    # Levels 2 and 3: a student's location within this many metres of the teacher's counts.
    location_radius_meters: int = Field(default=150, ge=10)
    # The externally reachable base URL of the web server; unset: no projector page link.
    public_url: str | None = None

    # --- the Mini App (docs/telegram.md, Mini Apps) ---------------------------------------
    # Launch data Telegram signed longer ago than this is refused (a page held open, or
    # launch data copied out of one); the user opens the page again from the bot.
    webapp_auth_max_age_minutes: int = Field(default=60, ge=1)
    # `on`: /login also asks for the user name and password in the chat. Unset: off when
    # PUBLIC_URL is set (the sign-in page is offered instead), on without it.
    chat_login: Literal["on", "off"] | None = None

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        # Arguments, then `<NAME>_FILE` files, then the environment, then `.env`.
        return init_settings, _SecretFiles(settings_cls), env_settings, dotenv_settings

    @field_validator(
        "webhook_url",
        "webhook_secret",
        "bot_token",
        "staff_id_key",
        "secret_key",
        "metrics_token",
        "public_url",
        "chat_login",
        "redis_sentinels",
        "redis_sentinel_master",
        "redis_sentinel_password",
        mode="before",
    )
    @classmethod
    def _blank_is_unset(cls, value: object) -> object:
        return None if isinstance(value, str) and not value.strip() else value

    @field_validator("timezone")
    @classmethod
    def _known_timezone(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError) as exc:
            raise ValueError(f"unknown time zone {value!r}") from exc
        return value

    @field_validator("database_url")
    @classmethod
    def _postgres_dsn(cls, value: str) -> str:
        if urlsplit(value).scheme not in {"postgres", "postgresql"}:
            raise ValueError("must be a postgresql:// URL")
        return value

    @field_validator("redis_url")
    @classmethod
    def _redis_dsn(cls, value: str) -> str:
        if urlsplit(value).scheme not in {"redis", "rediss", "unix"}:
            raise ValueError("must be a redis:// URL")
        return value

    @field_validator("redis_sentinels")
    @classmethod
    def _sentinel_addresses(cls, value: str | None) -> str | None:
        if value is not None:
            _sentinel_nodes(value)  # raises ValueError naming the bad entry
        return value

    @field_validator("telegram_api_url", "aksis_login_url", "aksis_obs_url", "aksis_schedule_url")
    @classmethod
    def _http_url(cls, value: str) -> str:
        if urlsplit(value).scheme not in {"http", "https"}:
            raise ValueError("must be an http(s):// URL")
        return value

    @field_validator("webhook_url", "public_url")
    @classmethod
    def _optional_http_url(cls, value: str | None) -> str | None:
        """Telegram posts to WEBHOOK_URL and students open PUBLIC_URL links: both need a scheme
        and a host, or start-up would fail later (or links would lead nowhere)."""
        if value is None:
            return None
        try:
            parts = urlsplit(value.strip())
            host = parts.hostname
            _ = parts.port  # raises ValueError for a port that is not a number
        except ValueError as exc:
            raise ValueError(f"must be an http(s):// URL ({exc})") from None
        if parts.scheme not in {"http", "https"} or not host:
            raise ValueError("must be an http(s):// URL with a host, e.g. https://attn.example")
        return value.strip()

    @field_validator("log_level", mode="before")
    @classmethod
    def _known_log_level(cls, value: object) -> object:
        if isinstance(value, str) and value.strip().upper() in LOG_LEVELS:
            return value.strip().upper()
        raise ValueError(f"must be one of {', '.join(LOG_LEVELS)}, not {value!r}")

    @model_validator(mode="after")
    def _sentinel_complete(self) -> Self:
        """Sentinel needs both the addresses and the master's name, and a TCP REDIS_URL."""
        if (self.redis_sentinels is None) != (self.redis_sentinel_master is None):
            missing = "REDIS_SENTINEL_MASTER" if self.redis_sentinels else "REDIS_SENTINELS"
            raise _NamedSettingError(
                missing, "required when the other Sentinel setting is set (set both or neither)"
            )
        if self.redis_sentinels is not None and urlsplit(self.redis_url).scheme == "unix":
            raise _NamedSettingError(
                "REDIS_URL",
                "must be redis:// or rediss:// with REDIS_SENTINELS (the master is reached"
                " over TCP at the address the sentinels give)",
            )
        return self

    @property
    def redis_sentinel(self) -> SentinelTarget | None:
        """The Sentinel-watched master to connect to, or None for REDIS_URL's own server."""
        if self.redis_sentinels is None or self.redis_sentinel_master is None:
            return None
        password = self.redis_sentinel_password
        return SentinelTarget(
            sentinels=_sentinel_nodes(self.redis_sentinels),
            master=self.redis_sentinel_master.strip(),
            password=password.get_secret_value() if password is not None else None,
        )

    @model_validator(mode="after")
    def _safe_for_production(self) -> Self:
        """Refuse a webhook anyone could post to, and the public development keys outside demo
        mode. Demo mode without keys gets fresh ones for this run."""
        if self.webhook_url is not None:
            secret = self.webhook_secret.get_secret_value() if self.webhook_secret else ""
            if not _WEBHOOK_SECRET.fullmatch(secret):
                raise _NamedSettingError(
                    "WEBHOOK_SECRET",
                    "required when WEBHOOK_URL is set: 32 to 256 characters of A-Z a-z 0-9 _ -;"
                    f" make one with {KEY_RECIPE}",
                )
        for name in ("staff_id_key", "secret_key"):
            value: SecretStr | None = getattr(self, name)
            if self.aksis_mode == "demo":
                if value is None:
                    setattr(self, name, SecretStr(secrets.token_urlsafe(32)))
                continue
            raw = value.get_secret_value() if value is not None else ""
            if raw in DEVELOPMENT_KEYS or len(raw) < MIN_KEY_LENGTH:
                problem = (
                    "is a public development value"
                    if raw in DEVELOPMENT_KEYS
                    else (
                        "is missing" if not raw else f"is shorter than {MIN_KEY_LENGTH} characters"
                    )
                )
                raise _NamedSettingError(
                    name.upper(),
                    f"{problem}; AKSIS_MODE=live needs a private key of at least"
                    f" {MIN_KEY_LENGTH} characters: make one with {KEY_RECIPE}",
                )
        return self

    @property
    def chat_login_enabled(self) -> bool:
        """Whether /login may take credentials in the chat (`CHAT_LOGIN`, by default only
        without a PUBLIC_URL for the sign-in page)."""
        if self.chat_login is None:
            return self.public_url is None
        return self.chat_login == "on"

    @property
    def tz(self) -> ZoneInfo:
        return ZoneInfo(self.timezone)

    def key(self, name: Literal["staff_id_key", "secret_key"]) -> str:
        """A key's value; always set once validation passed (demo mode generates them)."""
        value: SecretStr | None = getattr(self, name)
        if value is None:  # pragma: no cover - the validator fills or refuses it
            raise ValueError(f"{name.upper()} is not set")
        return value.get_secret_value()


def load_settings(*, require_token: bool = False, **overrides: object) -> Settings:
    """Build settings, turning validation errors into one line that names the variable."""
    try:
        settings = Settings(**overrides)  # type: ignore[arg-type]
    except ValidationError as exc:
        error = exc.errors()[0]
        cause = (error.get("ctx") or {}).get("error")
        if isinstance(cause, _NamedSettingError):
            raise ConfigError(str(cause)) from None
        name = str(error["loc"][0]).upper() if error["loc"] else "configuration"
        raise ConfigError(f"{name}: {error['msg']}") from None
    if require_token and (
        settings.bot_token is None or not settings.bot_token.get_secret_value().strip()
    ):
        raise ConfigError("BOT_TOKEN: required to run the bot (set it in the environment or .env)")
    if (
        require_token
        and settings.aksis_mode == "live"
        and settings.metrics_token is None
        and not settings.metrics_open
    ):
        # /metrics is served on WEB_PORT, the port the webhook publishes: open, it tells anyone
        # how many students check in, when, and how the bot fares.
        raise ConfigError(
            "METRICS_TOKEN: required to run with AKSIS_MODE=live (/metrics is on the published"
            f" WEB_PORT); make one with {KEY_RECIPE}, or set METRICS_OPEN=true if only a"
            " private network reaches WEB_PORT"
        )
    return settings
