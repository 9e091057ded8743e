"""The services and how they connect: `build_services()` builds every service from settings
and stores, each given the others it calls as constructor arguments.

The one place that knows the services' constructor arguments. The application (bot/app.py)
builds them here and hands them to the scheduler (bot/scheduler.py), which builds none; the
tests and benches build them here too (tests/support.py), so that what they exercise is wired
as the bot wires it. A test that needs an argument other than the bot's passes it in
`overrides`, by service and argument name.
"""

from __future__ import annotations

import os
import secrets
import socket
from collections.abc import Callable, Mapping
from dataclasses import dataclass, fields
from datetime import UTC, datetime, timedelta
from typing import Any, Final

from bot.config import Settings
from bot.secrets import Sealer
from dal.pg import Postgres
from dal.redis.stores import RedisStores
from services.accounts import AccountService
from services.aksis import AksisClient, LiveAksisClient
from services.attendance import (
    AttendanceService,
    CheckInService,
    CodeRotation,
    ReviewService,
    SessionService,
)
from services.demo_aksis import DemoAksisClient
from services.excuses import ExcuseService
from services.finalize import Finalizer
from services.login_queue import LoginQueue
from services.notify import Notifier
from services.purge import Purger
from services.reminders import ReminderService
from services.reports import ReportService
from services.warnings import AttendanceWarnings, warning_rule
from ui.states import login_states

__all__ = ["SETTLE_SECONDS", "Services", "build_aksis_client", "build_services", "replica_id"]

# How long after its end a session is left alone: claims are judged by Redis's clock, so this
# only spares refused claims when a replica's clock runs ahead (services/finalize.py).
SETTLE_SECONDS: Final = 5.0
# How long a queued sign-on's sealed credentials and its ticket live.
LOGIN_TICKET_SECONDS: Final = 7200


@dataclass(frozen=True, slots=True)
class Services:
    """Every service of one process, wired together. `owner` names this replica in job locks
    and finalization claims."""

    accounts: AccountService
    login_queue: LoginQueue
    attendance: AttendanceService
    reports: ReportService
    excuses: ExcuseService
    warnings: AttendanceWarnings
    finalizer: Finalizer
    purger: Purger
    reminders: ReminderService
    owner: str


# The parts of the attendance service (services/attendance/), built here and overridable by
# name like a service.
ATTENDANCE_PARTS: Final = frozenset({"sessions", "checkins", "reviews", "rotation"})
SERVICE_NAMES: Final = (frozenset(f.name for f in fields(Services)) - {"owner"}) | ATTENDANCE_PARTS


def replica_id() -> str:
    """Who this process is, for lock owners and claims: host, pid and a random part."""
    return f"{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(4)}"


def build_aksis_client(settings: Settings) -> AksisClient:
    """The portal client `AKSIS_MODE` asks for: the live portal or the built-in demo."""
    if settings.aksis_mode == "demo":
        return DemoAksisClient(settings.tz, staff_id_key=settings.key("staff_id_key"))
    return LiveAksisClient(
        login_url=settings.aksis_login_url,
        obs_url=settings.aksis_obs_url,
        schedule_url=settings.aksis_schedule_url,
        timeout_seconds=settings.aksis_timeout_seconds,
        staff_id_key=settings.key("staff_id_key"),
        tz=settings.tz,
    )


def _utc_now() -> datetime:
    return datetime.now(UTC)


def build_services(
    settings: Settings,
    *,
    pg: Postgres,
    redis: RedisStores,
    notifier: Notifier,
    aksis: AksisClient | None = None,
    clock: Callable[[], datetime] | None = None,
    owner: str | None = None,
    overrides: Mapping[str, Mapping[str, Any]] | None = None,
) -> Services:
    """Every service, built from `settings` over the given stores.

    `aksis`: the portal client (default: the one `AKSIS_MODE` asks for). `clock`: the
    services' notion of now, the same for sessions and the jobs that end them (tests move
    it). `owner`: this replica's name (default: a fresh `replica_id()`). `overrides`:
    constructor arguments that replace the settings' ones, by service name, e.g.
    `{"finalizer": {"concurrency": 1}}`, or by the name of a part of the attendance service
    (`ATTENDANCE_PARTS`), e.g. `{"checkins": {"wrong_code_limit": 3}}`; an unknown name is
    refused.
    """
    overrides = overrides or {}
    unknown = set(overrides) - SERVICE_NAMES
    if unknown:
        raise ValueError(f"no such service to override: {', '.join(sorted(unknown))}")

    def args(name: str, **defaults: Any) -> dict[str, Any]:
        return {**defaults, **overrides.get(name, {})}

    now = clock or _utc_now
    owner = owner or replica_id()
    tz = settings.tz
    secret = settings.key("secret_key")
    accounts = AccountService(
        **args(
            "accounts",
            accounts=pg.accounts,
            schedules=pg.schedules,
            retention=pg.retention,
            user_store=redis.users,
            guards=redis.guards,
            aksis=aksis or build_aksis_client(settings),
            notifier=notifier,
            throttle_key=secret.encode(),
            student_ttl_days=settings.student_session_ttl_days,
            teacher_ttl_days=settings.teacher_session_ttl_days,
            max_failures=settings.login_max_failures,
            max_failures_per_username=settings.login_max_failures_per_username,
            failure_window_seconds=settings.login_failure_window_seconds,
            portal_logins_per_minute=settings.aksis_logins_per_minute,
            signons_per_hour=settings.login_signons_per_hour,
            undeliverable_ttl_days=settings.retention_days,
            tz=tz,
        )
    )
    # Sign-ons beyond the portal's pace wait in Redis, credentials sealed (for at most the
    # ticket's lifetime), until a replica's worker signs them on.
    login_queue = LoginQueue(
        **args(
            "login_queue",
            accounts=accounts,
            store=redis.login_queue,
            guards=redis.guards,
            sealer=Sealer(secret, ttl_seconds=LOGIN_TICKET_SECONDS, purpose="login-queue"),
            ticket_ttl_seconds=LOGIN_TICKET_SECONDS,
        )
    )
    # The attendance service is four parts over one live session, each given only the
    # stores it uses (services/attendance/__init__.py); their overrides go by part name.
    sessions = SessionService(
        **args(
            "sessions",
            accounts=pg.accounts,
            schedules=pg.schedules,
            sessions=redis.sessions,
            notifier=notifier,
            tz=tz,
            early_margin=timedelta(minutes=settings.lesson_early_margin_minutes),
            late_after=timedelta(minutes=settings.late_after_minutes),
            default_duration=timedelta(minutes=settings.default_session_minutes),
            security_level_default=settings.security_level_default,
            clock=now,
        )
    )
    checkins = CheckInService(
        **args(
            "checkins",
            sessions=redis.sessions,
            checkins=redis.checkins,
            late_after=timedelta(minutes=settings.late_after_minutes),
            location_radius_meters=settings.location_radius_meters,
            clock=now,
            # A check-in whose account's cache has expired re-reads the link through it.
            linked_accounts=accounts,
        )
    )
    reviews = ReviewService(
        **args(
            "reviews",
            accounts=pg.accounts,
            sessions=redis.sessions,
            live=sessions,
            user_store=redis.users,
            notifier=notifier,
            clock=now,
        )
    )
    rotation = CodeRotation(
        **args(
            "rotation",
            sessions=redis.sessions,
            code_rotation_seconds=settings.code_rotation_seconds,
            clock=now,
        )
    )
    attendance = AttendanceService(
        **args(
            "attendance",
            sessions=sessions,
            checkins=checkins,
            reviews=reviews,
            rotation=rotation,
        )
    )
    warnings = AttendanceWarnings(
        **args(
            "warnings", reports=pg.reports, notifier=notifier, rule=warning_rule(settings), tz=tz
        )
    )
    reports = ReportService(
        **args(
            "reports",
            accounts=pg.accounts,
            attendance=pg.attendance,
            corrections=pg.corrections,
            reports=pg.reports,
            tz=tz,
            rule=warning_rule(settings),
            warnings=warnings,
        )
    )
    excuses = ExcuseService(
        **args(
            "excuses",
            excuses=pg.excuses,
            attendance=pg.attendance,
            accounts=pg.accounts,
            reports=pg.reports,
            report_service=reports,
            notifier=notifier,
            tz=tz,
            deadline_days=settings.excuse_deadline_days,
            clock=now,
        )
    )
    finalizer = Finalizer(
        **args(
            "finalizer",
            db=pg.db,
            accounts=pg.accounts,
            attendance=pg.attendance,
            sessions=redis.sessions,
            finalization=redis.finalization,
            notifier=notifier,
            tz=tz,
            late_after=timedelta(minutes=settings.late_after_minutes),
            owner=owner,
            claim_ttl_seconds=settings.finalize_claim_seconds,
            settle_seconds=SETTLE_SECONDS,
            clock=now,
            warnings=warnings,
            receipts=redis.users,
        )
    )
    purger = Purger(
        **args(
            "purger",
            db=pg.db,
            retention=pg.retention,
            purge=redis.purge,
            user_store=redis.users,
            # An unlinked account may be half-way through /login; any other state it has is
            # a leftover (of a logout, or of a link moved to another account).
            keep_fsm_states=login_states(),
            retention_days=settings.retention_days,
            excuses=pg.excuses,
        )
    )
    reminders = ReminderService(
        **args(
            "reminders",
            accounts=pg.accounts,
            schedules=pg.schedules,
            sessions=redis.sessions,
            notifier=notifier,
            tz=tz,
            lead=timedelta(minutes=settings.reminder_lead_minutes),
            closing=timedelta(minutes=settings.closing_reminder_minutes),
            clock=now,
        )
    )
    return Services(
        accounts=accounts,
        login_queue=login_queue,
        attendance=attendance,
        reports=reports,
        excuses=excuses,
        warnings=warnings,
        finalizer=finalizer,
        purger=purger,
        reminders=reminders,
        owner=owner,
    )
