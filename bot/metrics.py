"""Prometheus metrics, served at `/metrics` on the bot's aiohttp server (bot/web.py).

Each `Metrics` owns its own `CollectorRegistry` (no process-wide default registry), so two apps
in one process, as in the test suite, never share or clash over a series.

Where each series comes from:

- `attn_updates_total{kind}`, `attn_update_duration_seconds{kind}`: `UpdateMetricsMiddleware`,
  the outermost update middleware (the error router's time included);
- `attn_checkins_total{outcome}`: the check-in handler (handlers/student.py), one per answer;
- `attn_open_sessions`, `attn_sessions_awaiting_finalization`, `attn_finalization_lag_seconds`,
  `attn_store_up{store}`: read from Redis's due index and a PostgreSQL ping at scrape time
  (`refresh`), so they are right whichever replica finalized;
- `attn_finalized_sessions_total`, `attn_finalized_records_total`, `attn_job_runs_total`,
  `attn_job_duration_seconds`: the scheduler's job wrapper (bot/scheduler.py);
- `attn_telegram_retry_after_total`, `attn_telegram_errors_total{reason}`: `TelegramMetrics`, a
  request middleware inside the outgoing one, so every attempt (retries too) is seen;
- `attn_store_errors_total{store}`: the error router (an update that failed on a store);
- `attn_portal_logins_total{outcome}`, `attn_portal_login_seconds`: `MeteredAksis`, a wrapper
  around the portal client;
- `attn_outbox_depth`, `attn_outbox_in_flight`, `attn_outbox_oldest_age_seconds`: read from the
  outbox stream at scrape time (`refresh`);
- `attn_build_info{version}`: always 1; and the standard `process_*`, `python_gc_*` and
  `python_info` series of prometheus_client's collectors.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from datetime import datetime
from typing import TYPE_CHECKING, Any, Final

from aiogram import BaseMiddleware
from aiogram.client.session.middlewares.base import (
    BaseRequestMiddleware,
    NextRequestMiddlewareType,
)
from aiogram.exceptions import (
    TelegramAPIError,
    TelegramForbiddenError,
    TelegramNetworkError,
    TelegramRetryAfter,
    TelegramServerError,
)
from aiogram.methods.base import TelegramType
from aiogram.types import TelegramObject, Update
from prometheus_client import (
    GC_COLLECTOR,
    PLATFORM_COLLECTOR,
    PROCESS_COLLECTOR,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    Info,
)
from prometheus_client.exposition import CONTENT_TYPE_LATEST, generate_latest
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import RedisError

from bot.build import VERSION
from dal.errors import DatabaseUnavailable, RedisUnavailable
from dal.pg import Database
from dal.redis.outbox import Outbox, OutboxLanes
from dal.redis.sessions import LiveSessions
from services.aksis import (
    AksisClient,
    InvalidCredentials,
    LoginResult,
    PortalChanged,
    PortalUnavailable,
)

if TYPE_CHECKING:
    from aiogram import Bot
    from aiogram.methods import Response, TelegramMethod

__all__ = [
    "CONTENT_TYPE_LATEST",
    "MeteredAksis",
    "Metrics",
    "TelegramMetrics",
    "UpdateMetricsMiddleware",
]

_LATENCY_BUCKETS: Final = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
_LOGIN_BUCKETS: Final = (0.25, 0.5, 1.0, 2.0, 4.0, 8.0, 15.0, 30.0)
_JOB_BUCKETS: Final = (0.01, 0.05, 0.1, 0.5, 1.0, 5.0, 15.0, 60.0, 300.0)
_SCRAPE_TIMEOUT: Final = 3.0


class Metrics:
    """Every series of one app, on the app's own registry."""

    def __init__(self) -> None:
        self.registry = registry = CollectorRegistry(auto_describe=True)
        # The standard series of the default registry (process_*, python_gc_*, python_info):
        # the same collector objects, read at each scrape of this registry too.
        for collector in (PROCESS_COLLECTOR, PLATFORM_COLLECTOR, GC_COLLECTOR):
            registry.register(collector)
        self.build_info = Info(
            "attn_build", "The running build: attn_build_info{version} 1", registry=registry
        )
        self.build_info.info({"version": VERSION})
        self.updates = Counter(
            "attn_updates", "Telegram updates handled, by kind", ["kind"], registry=registry
        )
        self.update_seconds = Histogram(
            "attn_update_duration_seconds",
            "Time to handle one update (handlers, replies and errors included), by kind",
            ["kind"],
            buckets=_LATENCY_BUCKETS,
            registry=registry,
        )
        self.checkins = Counter(
            "attn_checkins",
            "Check-in answers, by outcome (ok_present, ok_pending, duplicate, wrong_code, ...)",
            ["outcome"],
            registry=registry,
        )
        # The labelled child per outcome, looked up once: a check-in counts on the hot path,
        # and labels() takes a lock and checks the values on every call.
        self._checkin_counts: dict[str, Counter] = {}
        self.open_sessions = Gauge(
            "attn_open_sessions", "Attendance sessions open now", registry=registry
        )
        self.awaiting = Gauge(
            "attn_sessions_awaiting_finalization",
            "Ended sessions not yet moved to PostgreSQL",
            registry=registry,
        )
        self.finalization_lag = Gauge(
            "attn_finalization_lag_seconds",
            "How long ago the oldest ended-but-unsaved session ended (0 when none)",
            registry=registry,
        )
        self.outbox_depth = Gauge(
            "attn_outbox_depth",
            "Notices in the durable outbox not yet delivered (waiting or being sent)",
            registry=registry,
        )
        self.outbox_in_flight = Gauge(
            "attn_outbox_in_flight",
            "Outbox notices taken by a worker and not yet confirmed",
            registry=registry,
        )
        self.outbox_age = Gauge(
            "attn_outbox_oldest_age_seconds",
            "How long the oldest undelivered notice has waited (0 when the outbox is empty)",
            registry=registry,
        )
        self.store_up = Gauge(
            "attn_store_up",
            "1 when the store answered at the last scrape",
            ["store"],
            registry=registry,
        )
        self.finalized_sessions = Counter(
            "attn_finalized_sessions", "Sessions moved to PostgreSQL", registry=registry
        )
        self.finalized_records = Counter(
            "attn_finalized_records",
            "Attendance records written by finalization (rate() gives records/s)",
            registry=registry,
        )
        self.job_runs = Counter(
            "attn_job_runs",
            "Scheduler ticks by job and outcome (ok, skipped: another replica had it, failed)",
            ["job", "outcome"],
            registry=registry,
        )
        self.job_seconds = Histogram(
            "attn_job_duration_seconds",
            "Duration of the ticks this replica ran",
            ["job"],
            buckets=_JOB_BUCKETS,
            registry=registry,
        )
        self.telegram_retry_after = Counter(
            "attn_telegram_retry_after",
            "Bot API answers 429 (flood control)",
            registry=registry,
        )
        self.telegram_errors = Counter(
            "attn_telegram_errors",
            "Failed Bot API calls by reason (retry_after, network, server, forbidden, rejected)",
            ["reason"],
            registry=registry,
        )
        self.store_errors = Counter(
            "attn_store_errors",
            "Updates that failed because a store was unavailable",
            ["store"],
            registry=registry,
        )
        self.portal_logins = Counter(
            "attn_portal_logins",
            "Portal sign-ins by outcome (ok, invalid_credentials, unavailable, changed, error)",
            ["outcome"],
            registry=registry,
        )
        self.portal_login_seconds = Histogram(
            "attn_portal_login_seconds",
            "Time for one portal sign-in (schedule read included)",
            buckets=_LOGIN_BUCKETS,
            registry=registry,
        )

    # --- hooks ----------------------------------------------------------------------------

    def check_in(self, outcome: str) -> None:
        child = self._checkin_counts.get(outcome)
        if child is None:
            child = self._checkin_counts[outcome] = self.checkins.labels(outcome=outcome.lower())
        child.inc()

    def store_error(self, exc: BaseException) -> None:
        if isinstance(exc, DatabaseUnavailable):
            store = "postgres"
        elif isinstance(exc, RedisUnavailable | RedisConnectionError):
            store = "redis"
        else:
            store = "other"
        self.store_errors.labels(store=store).inc()

    def job_ran(self, job: str, outcome: str, seconds: float | None = None) -> None:
        self.job_runs.labels(job=job, outcome=outcome).inc()
        if seconds is not None:
            self.job_seconds.labels(job=job).observe(seconds)

    def finalized(self, *, sessions: int, records: int) -> None:
        self.finalized_sessions.inc(sessions)
        self.finalized_records.inc(records)

    # --- scrape ---------------------------------------------------------------------------

    async def refresh(
        self,
        *,
        sessions: LiveSessions,
        pg: Database,
        now: datetime,
        outbox: Outbox | OutboxLanes | None = None,
    ) -> None:
        """Set the gauges read from the stores; a store that does not answer is `up 0`."""
        try:
            async with asyncio.timeout(_SCRAPE_TIMEOUT):
                open_count, ended, oldest = await sessions.due_overview(now=now)
                waiting = await outbox.overview() if outbox is not None else None
        except (RedisUnavailable, RedisError, OSError, TimeoutError):
            self.store_up.labels(store="redis").set(0)
        else:
            self.store_up.labels(store="redis").set(1)
            self.open_sessions.set(open_count)
            self.awaiting.set(ended)
            lag = 0.0 if oldest is None else max(0.0, (now - oldest).total_seconds())
            self.finalization_lag.set(lag)
            if waiting is not None:
                depth, in_flight, added_ms = waiting
                self.outbox_depth.set(depth)
                self.outbox_in_flight.set(in_flight)
                age = 0.0 if added_ms is None else now.timestamp() - added_ms / 1000.0
                self.outbox_age.set(max(0.0, age))
        try:
            await pg.ping()
        except DatabaseUnavailable:
            self.store_up.labels(store="postgres").set(0)
        else:
            self.store_up.labels(store="postgres").set(1)

    def exposition(self) -> bytes:
        return generate_latest(self.registry)


class UpdateMetricsMiddleware(BaseMiddleware):
    """Counts and times every update (outermost, so failures are timed too)."""

    def __init__(self, metrics: Metrics) -> None:
        self._metrics = metrics
        # The labelled children per kind, looked up once (labels() takes a lock each call).
        self._children: dict[str, tuple[Counter, Histogram]] = {}

    async def __call__(
        self,
        handler: Callable[[TelegramObject, dict[str, Any]], Awaitable[Any]],
        event: TelegramObject,
        data: dict[str, Any],
    ) -> Any:
        kind = _kind(event)
        started = time.perf_counter()
        try:
            return await handler(event, data)
        finally:
            children = self._children.get(kind)
            if children is None:
                children = (
                    self._metrics.updates.labels(kind=kind),
                    self._metrics.update_seconds.labels(kind=kind),
                )
                self._children[kind] = children
            children[0].inc()
            children[1].observe(time.perf_counter() - started)


def _kind(event: TelegramObject) -> str:
    if not isinstance(event, Update):
        return "other"
    try:
        kind = event.event_type
    except Exception:  # an update type this aiogram does not know
        return "unknown"
    message = event.message
    if kind == "message" and message is not None and (message.text or "").startswith("/"):
        return "command"
    return kind


class TelegramMetrics(BaseRequestMiddleware):
    """Counts failed Bot API attempts; registered after (inside) the outgoing middleware so
    that each retried attempt is counted once."""

    def __init__(self, metrics: Metrics) -> None:
        self._metrics = metrics

    async def __call__(
        self,
        make_request: NextRequestMiddlewareType[TelegramType],
        bot: Bot,
        method: TelegramMethod[TelegramType],
    ) -> Response[TelegramType]:
        try:
            return await make_request(bot, method)
        except TelegramRetryAfter:
            self._metrics.telegram_retry_after.inc()
            self._metrics.telegram_errors.labels(reason="retry_after").inc()
            raise
        except TelegramAPIError as exc:
            if method.__api_method__ != "getUpdates":  # a long poll's timeouts are routine
                self._metrics.telegram_errors.labels(reason=_reason(exc)).inc()
            raise


def _reason(exc: TelegramAPIError) -> str:
    if isinstance(exc, TelegramNetworkError):
        return "network"
    if isinstance(exc, TelegramServerError):
        return "server"
    if isinstance(exc, TelegramForbiddenError):
        return "forbidden"
    return "rejected"


class MeteredAksis:
    """An `AksisClient` that times each sign-in and counts it by outcome."""

    def __init__(self, inner: AksisClient, metrics: Metrics) -> None:
        self._inner = inner
        self._metrics = metrics

    async def login(self, username: str, password: str) -> LoginResult:
        started = time.perf_counter()
        outcome = "error"
        try:
            result = await self._inner.login(username, password)
        except InvalidCredentials:
            outcome = "invalid_credentials"
            raise
        except PortalUnavailable:
            outcome = "unavailable"
            raise
        except PortalChanged:
            outcome = "changed"
            raise
        else:
            outcome = "ok"
            return result
        finally:
            self._metrics.portal_logins.labels(outcome=outcome).inc()
            self._metrics.portal_login_seconds.observe(time.perf_counter() - started)
