"""APScheduler wiring: finalize, purge and reminder jobs.

`build_scheduler()` returns an AsyncIOScheduler that is not started, over services it is
given and never builds (bot/compose.py does); the composition root (bot/app.py) starts it at
dispatcher startup and shuts it down at shutdown.

Finalization runs on every replica at every tick, with no job lock: the finalizer claims each
session before touching it (services/finalize.py), so replicas draining the due index together
split the sessions between them, and an hour's worth of ended sessions is not held to the pace
of one replica.

Every purge and reminders tick first takes a Redis lock named after its job
(`locks:job:<name>`, SET NX EX, this replica's id as the owner) and releases it when done,
compare-and-delete, so only its owner can. A replica that finds the lock taken skips the
tick: with several bot replicas behind a webhook load balancer, each tick runs on one of
them. The lock has a short expiry (JOB_LOCK_SECONDS) that a heartbeat pushes back while the
tick runs, so it outlasts the job's worst case however slow, yet a replica that dies holding
it (kill -9) holds the job up for at most that long. Should a tick outlive its lock all the
same, the jobs are idempotent (reminders carry dedupe markers).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Final, TypeVar

from apscheduler.schedulers.asyncio import AsyncIOScheduler
from apscheduler.triggers.interval import IntervalTrigger

from bot.compose import Services, replica_id
from bot.config import Settings
from bot.logs import job_context
from bot.metrics import Metrics
from dal.errors import RedisUnavailable
from dal.redis.guards import Guards
from services.finalize import Finalizer, FinalizeReport
from services.outage import OutageLog
from services.purge import Purger, PurgeReport
from services.reminders import ReminderReport, ReminderService

__all__ = ["JOB_IDS", "LockTimes", "ScheduledJobs", "build_scheduler", "replica_id"]

log = logging.getLogger(__name__)

T = TypeVar("T")

JOB_IDS: Final = ("finalize", "purge", "reminders")
# Reminders are due to the minute (lead and closing times are whole minutes): a 30 s tick
# delivers each within half a minute of its time.
REMINDER_INTERVAL_SECONDS: Final = 30


@dataclass(frozen=True, slots=True)
class LockTimes:
    """Expiry of each job's lock, in seconds, renewed by a heartbeat while the tick runs."""

    finalize: int
    purge: int
    reminders: int

    @classmethod
    def for_settings(cls, settings: Settings) -> LockTimes:
        seconds = settings.job_lock_seconds
        return cls(finalize=seconds, purge=seconds, reminders=seconds)


class ScheduledJobs:
    """The three jobs, each tick behind its Redis lock. Returns None for a skipped tick."""

    def __init__(
        self,
        *,
        guards: Guards,
        finalizer: Finalizer,
        purger: Purger,
        reminders: ReminderService,
        owner: str,
        locks: LockTimes,
        metrics: Metrics | None = None,
        after_finalize: Callable[[], Awaitable[int]] | None = None,
        after_reminders: Callable[[], Awaitable[int]] | None = None,
    ) -> None:
        self._guards = guards
        # Runs after a tick that saved sessions: approved apologies in advance whose session
        # is now saved become excused (services.excuses.ExcuseService.apply_waiting).
        self._after_finalize = after_finalize
        # Runs after a reminders tick of the replica holding its lock: excuse requests whose
        # teacher's notice was never queued get it (ExcuseService.announce_pending).
        self._after_reminders = after_reminders
        self._finalizer = finalizer
        self._purger = purger
        self._reminders = reminders
        self._owner = owner
        self._locks = locks
        self._redis_outage = OutageLog("Redis (scheduled jobs)", log)
        self._metrics = metrics

    @property
    def owner(self) -> str:
        return self._owner

    async def finalize(self) -> FinalizeReport | None:
        """Drain the ended sessions: no job lock (the per-session claims share the work)."""
        report = await self._unlocked("finalize", self._finalizer.run_once)
        if report is not None and self._metrics is not None:
            self._metrics.finalized(sessions=report.finalized, records=report.records)
        if report is not None and report.finalized and self._after_finalize is not None:
            try:
                await self._after_finalize()
            except Exception:
                log.exception("applying approved excuses failed; the next finalization retries")
        return report

    async def purge(self) -> PurgeReport | None:
        return await self._guarded("purge", self._locks.purge, self._purger.run_once)

    async def reminders(self) -> ReminderReport | None:
        report = await self._guarded("reminders", self._locks.reminders, self._reminders.run_once)
        if report is not None and self._after_reminders is not None:
            try:
                await self._after_reminders()
            except Exception:
                log.exception("announcing excuse requests failed; the next tick retries")
        return report

    async def _unlocked(self, name: str, run: Callable[[], Awaitable[T]]) -> T | None:
        with job_context(name):
            started = time.perf_counter()
            result: T | None = None
            outcome = "ok"
            try:
                result = await run()
            except RedisUnavailable as exc:
                self._redis_outage.failed(exc)
                outcome = "failed"
            except Exception:
                log.exception("%s tick failed", name)
                outcome = "failed"
            else:
                self._redis_outage.succeeded()
            if self._metrics is not None:
                self._metrics.job_ran(name, outcome, time.perf_counter() - started)
            return result

    async def _guarded(
        self, name: str, ttl_seconds: int, run: Callable[[], Awaitable[T]]
    ) -> T | None:
        with job_context(name):
            started = time.perf_counter()
            result, outcome = await self._locked(name, ttl_seconds, run)
            seconds = time.perf_counter() - started
            log.debug("%s tick %s in %.3f s: %s", name, outcome, seconds, result)
            if self._metrics is not None:
                self._metrics.job_ran(name, outcome, seconds if outcome != "skipped" else None)
            return result

    async def _locked(
        self, name: str, ttl_seconds: int, run: Callable[[], Awaitable[T]]
    ) -> tuple[T | None, str]:
        """Run one tick behind the job's lock: (its result, "ok" | "skipped" | "failed")."""
        lock = f"job:{name}"
        try:
            acquired = await self._guards.acquire_lock(
                name=lock, owner=self._owner, ttl_seconds=ttl_seconds
            )
        except RedisUnavailable as exc:
            self._redis_outage.failed(exc)
            return None, "failed"
        if not acquired:
            log.debug("%s tick skipped: another replica holds its lock", name)
            return None, "skipped"
        heartbeat = asyncio.create_task(self._keep_lock(lock, ttl_seconds))
        try:
            result = await run()
        except RedisUnavailable as exc:
            self._redis_outage.failed(exc)
            return None, "failed"
        except Exception:
            # Logged here rather than by APScheduler so that the lock is released first and
            # the next tick tries again.
            log.exception("%s tick failed", name)
            return None, "failed"
        finally:
            heartbeat.cancel()
            try:
                await self._guards.release_lock(name=lock, owner=self._owner)
            except RedisUnavailable:
                log.debug("%s lock left to expire", name)
        self._redis_outage.succeeded()
        return result, "ok"

    async def _keep_lock(self, lock: str, ttl_seconds: int) -> None:
        """Renew the lock every third of its expiry while the tick runs."""
        while True:
            await asyncio.sleep(max(1.0, ttl_seconds / 3))
            try:
                held = await self._guards.extend_lock(
                    name=lock, owner=self._owner, ttl_seconds=ttl_seconds
                )
            except RedisUnavailable:
                continue  # the lock may lapse; the jobs are idempotent
            if not held:
                log.warning("%s lost its lock mid-tick; the jobs are idempotent", lock)
                return


def build_scheduler(
    *,
    settings: Settings,
    services: Services,
    guards: Guards,
    metrics: Metrics | None = None,
) -> AsyncIOScheduler:
    """A scheduler (not started) running the finalize, purge and reminders jobs of the
    services it is given (bot/compose.py builds them); the jobs' locks are taken in `guards`
    under the services' replica name."""
    tz = services.attendance.tz
    jobs = ScheduledJobs(
        guards=guards,
        finalizer=services.finalizer,
        purger=services.purger,
        reminders=services.reminders,
        owner=services.owner,
        locks=LockTimes.for_settings(settings),
        metrics=metrics,
        after_finalize=services.excuses.apply_waiting,
        after_reminders=services.excuses.announce_pending,
    )
    # coalesce=True: ticks missed while the loop was busy or the process suspended collapse
    #   into one run; each job catches up on everything due anyway, so a burst of catch-up
    #   runs would only repeat the same work.
    # max_instances=1: a slow tick is never overlapped by the next one in this process (the
    #   Redis lock does the same across processes).
    # misfire_grace_time=one interval: a tick late by less than its interval still runs; a
    #   later one is dropped, since the next regular tick is due by then anyway.
    scheduler = AsyncIOScheduler(timezone=tz)
    started = datetime.now(UTC)
    intervals = {
        "finalize": settings.finalize_interval_seconds,
        "purge": settings.purge_interval_seconds,
        "reminders": REMINDER_INTERVAL_SECONDS,
    }
    functions: dict[str, Callable[[], Awaitable[object]]] = {
        "finalize": jobs.finalize,
        "purge": jobs.purge,
        "reminders": jobs.reminders,
    }
    for job_id in JOB_IDS:
        interval = intervals[job_id]
        scheduler.add_job(
            functions[job_id],
            IntervalTrigger(seconds=interval, timezone=tz),
            id=job_id,
            name=f"attn:{job_id}",
            coalesce=True,
            max_instances=1,
            misfire_grace_time=interval,
            # Finalize and reminders also run right at start-up: sessions that ended while no
            # replica was up are moved without waiting a full interval.
            next_run_time=started if job_id != "purge" else started + timedelta(seconds=interval),
            replace_existing=True,
        )
    return scheduler
