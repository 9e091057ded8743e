"""PostgreSQL access of ATTN, one store per aggregate over one shared asyncpg pool.

- `pool.Database`: the pool (connect with a server-version check and the migrations, ping,
  bounded close, outage detection for background jobs);
- `accounts.AccountStore`: users, Telegram links, delivery state;
- `schedules.ScheduleStore`: cached schedules, lesson finding, enrolment;
- `attendance.AttendanceStore`: saved sessions and records, the exactly-once finalization writes;
- `corrections.CorrectionStore`: teachers' corrections and their audit trail;
- `reports.ReportStore`: history, per-course statistics, exports, warning states;
- `retention.RetentionStore`: privacy deletes and the purge's lookup;
- `excuses.ExcuseStore`: students' excuse requests and their decisions;
- `erasure.ErasureStore`: an erasure request (`python -m bot forget-user`).

Callers take the store they need. `Postgres` only holds them together for the composition root
(`bot/app.py`), the tests and the benchmarks; it has no methods of its own besides opening.
Methods are keyword-only, named for what they return, and return the pydantic models of
`dal.models` (or the small row types of their module). Absence raises `NotFound`, a duplicate
key `Conflict`, an unreachable server `DatabaseUnavailable`. Soft-deleted attendances and
records never appear in ordinary reads; the records of a soft-deleted attendance are hidden
with it.
"""

from __future__ import annotations

from dataclasses import dataclass

from dal.pg.accounts import AccountStore, LinkedUser
from dal.pg.attendance import DEFAULT_RECORD_METHOD, AttendanceStore, RecordMethod
from dal.pg.corrections import Correction, CorrectionStore
from dal.pg.erasure import ErasedPerson, ErasureStore
from dal.pg.excuses import ExcuseRequest, ExcuseStatus, ExcuseStore, PlannedLesson
from dal.pg.pool import MIN_POSTGRES_MAJOR, Database
from dal.pg.reports import (
    CourseCounts,
    CourseRecordRow,
    CourseSummary,
    ReportStore,
    StudentAttendanceRow,
    WarningChange,
)
from dal.pg.retention import RetentionStore
from dal.pg.schedules import ScheduleStore

__all__ = [
    "DEFAULT_RECORD_METHOD",
    "MIN_POSTGRES_MAJOR",
    "AccountStore",
    "AttendanceStore",
    "Correction",
    "CorrectionStore",
    "CourseCounts",
    "CourseRecordRow",
    "CourseSummary",
    "Database",
    "ErasedPerson",
    "ErasureStore",
    "ExcuseRequest",
    "ExcuseStatus",
    "ExcuseStore",
    "LinkedUser",
    "PlannedLesson",
    "Postgres",
    "RecordMethod",
    "ReportStore",
    "RetentionStore",
    "ScheduleStore",
    "StudentAttendanceRow",
    "WarningChange",
]


@dataclass(frozen=True, slots=True)
class Postgres:
    """The pool and one store per aggregate over it (wiring only)."""

    db: Database
    accounts: AccountStore
    schedules: ScheduleStore
    attendance: AttendanceStore
    corrections: CorrectionStore
    reports: ReportStore
    retention: RetentionStore
    erasure: ErasureStore
    excuses: ExcuseStore

    @classmethod
    def over(cls, db: Database) -> Postgres:
        """Every store over the pool `db`."""
        return cls(
            db=db,
            accounts=AccountStore(db),
            schedules=ScheduleStore(db),
            attendance=AttendanceStore(db),
            corrections=CorrectionStore(db),
            reports=ReportStore(db),
            retention=RetentionStore(db),
            erasure=ErasureStore(db),
            excuses=ExcuseStore(db),
        )

    @classmethod
    async def connect(
        cls,
        dsn: str,
        *,
        min_size: int = 1,
        max_size: int = 10,
        migrate: bool = True,
        connect_timeout: float = 10.0,
    ) -> Postgres:
        """`Database.connect` (same arguments and errors), then every store over it."""
        db = await Database.connect(
            dsn,
            min_size=min_size,
            max_size=max_size,
            migrate=migrate,
            connect_timeout=connect_timeout,
        )
        return cls.over(db)
