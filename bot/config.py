"""Settings read from the environment (and an optional `.env`), as fixed by DESIGN.md."""

from __future__ import annotations

from typing import Literal
from urllib.parse import urlsplit, urlunsplit
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import Field, SecretStr, ValidationError, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict


class ConfigError(Exception):
    """A setting is missing or malformed; the message names the variable in one line."""


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_file=".env", env_file_encoding="utf-8", extra="ignore", case_sensitive=False
    )

    bot_token: SecretStr | None = None
    telegram_api_url: str = "https://api.telegram.org"
    database_url: str = "postgresql://postgres@127.0.0.1:5432/attn"
    redis_url: str = "redis://127.0.0.1:6379/0"
    redis_max_connections: int = Field(default=64, ge=1)

    aksis_mode: Literal["live", "demo"] = "live"
    aksis_login_url: str = "https://aksis.istanbul.edu.tr/Account/LogOn?ReturnUrl=%2f"
    aksis_obs_url: str = "https://obs.istanbul.edu.tr/"
    aksis_schedule_url: str = "https://obs.istanbul.edu.tr/OgrenimBilgileri/DersProgramiYeni/Index"
    aksis_timeout_seconds: float = Field(default=15.0, gt=0)
    # Key for the keyed hash that identifies staff whose portal page shows no staff number
    # (AKSIS.md section 4). Set it in production; changing it re-identifies every teacher.
    staff_id_key: SecretStr = SecretStr("attn-development-staff-key")
    # Key for short-lived encryption (the login user name between two steps) and for the
    # digests that throttle logins. Set it in production.
    secret_key: SecretStr = SecretStr("attn-development-secret-key")

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

    # Outgoing pacing under Telegram's limits (TELEGRAM.md): ~30 messages/s overall, ~1/s
    # sustained into one chat.
    telegram_global_rate: float = Field(default=30.0, gt=0)
    telegram_per_chat_rate: float = Field(default=1.0, gt=0)

    web_host: str = "0.0.0.0"  # noqa: S104 - the container's published port
    web_port: int = Field(default=8080, ge=0, le=65535)
    webhook_url: str | None = None
    webhook_secret: SecretStr | None = None
    log_level: str = "INFO"

    # --- operations (issue 14): logs, metrics, privacy --------------------------------
    # `text` for people, `json` for a log pipeline (one JSON object per line).
    log_format: Literal["text", "json"] = "text"
    # When set, /metrics answers only requests with `Authorization: Bearer <token>`.
    metrics_token: SecretStr | None = None
    # Cached personal data (Telegram link, schedule, preferences) of an account with no login
    # and no attendance for this many days is dropped by the purge job.
    retention_days: int = Field(default=365, ge=1)

    @field_validator("webhook_url", "webhook_secret", "bot_token", "metrics_token", mode="before")
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

    @field_validator("telegram_api_url", "aksis_login_url", "aksis_obs_url", "aksis_schedule_url")
    @classmethod
    def _http_url(cls, value: str) -> str:
        if urlsplit(value).scheme not in {"http", "https"}:
            raise ValueError("must be an http(s):// URL")
        return value

    @property
    def tz(self) -> ZoneInfo:
        return ZoneInfo(self.timezone)


def load_settings(*, require_token: bool = False, **overrides: object) -> Settings:
    """Build settings, turning validation errors into one line that names the variable."""
    try:
        settings = Settings(**overrides)  # type: ignore[arg-type]
    except ValidationError as exc:
        error = exc.errors()[0]
        name = str(error["loc"][0]).upper() if error["loc"] else "configuration"
        raise ConfigError(f"{name}: {error['msg']}") from None
    if require_token and (
        settings.bot_token is None or not settings.bot_token.get_secret_value().strip()
    ):
        raise ConfigError("BOT_TOKEN: required to run the bot (set it in the environment or .env)")
    return settings


def mask_url(url: str) -> str:
    """The URL with any password replaced by ***, for messages and logs."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = parts.netloc.rsplit("@", 1)[1]
    user = parts.username or ""
    return urlunsplit(parts._replace(netloc=f"{user}:***@{netloc}"))
