"""Finalization: ended sessions move from Redis to PostgreSQL, exactly once.

For every session whose due score has passed (ended by the teacher, or left open past its
planned end) the finalizer

1. claims it (`attendances:{id}:claim`, SET NX with an expiry, a token per attempt);
2. reads the session, its records and its enrolled set from Redis;
3. builds the sheet: every Redis record plus an ABSENT record for each enrolled student who
   never checked in;
4. writes users, the attendance and every record in ONE PostgreSQL transaction
   (`persist_session`, idempotent: the attendance and each record are inserted only if new);
5. tells the teacher and the students (once: a dedupe marker per session);
6. only then removes the session's Redis keys (one atomic script).

A crash between any two steps leaves the Redis keys in place, so the next run repeats the
steps; step 4 then inserts nothing new, step 5 is skipped by its marker, and step 6 finishes
the job. The claim only keeps two workers from doing the same work at once; correctness does
not depend on it (a claim that expires under a slow worker lets a second one in, and the
idempotent write still leaves one copy). With PostgreSQL down nothing is removed from Redis
and the tick ends at the first failure: the outage is logged once, when it starts, and once
more when it is over.
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Final
from uuid import UUID
from zoneinfo import ZoneInfo

from dal.errors import DalError, DatabaseUnavailable, RedisUnavailable
from dal.models import (
    Attendance,
    AttendanceRecord,
    AttendanceRecordRedis,
    AttendanceRedis,
    FailReason,
    RecordSource,
    Role,
    User,
)
from dal.postgres import AsyncPostgresClient, LinkedUser
from dal.redis_client import RedisClient
from services.attendance import EVERYONE, is_late
from services.notify import Notice, Notifier

__all__ = [
    "FinalizeReport",
    "Finalizer",
    "OutageLog",
    "Sheet",
    "SheetCounts",
    "build_sheet",
    "final_dedupe_key",
]

log = logging.getLogger(__name__)

_NAME_MAX: Final = 200  # users.user_full_name, as validated by dal.models.User
DATE_FORMAT: Final = "%d.%m.%Y %H:%M"


def final_dedupe_key(attendance_id: UUID) -> str:
    """The marker that makes a session's result messages go out at most once."""
    return f"once:final:{attendance_id}"


class OutageLog:
    """Logs an outage once when it starts and once when it ends, not on every failed try."""

    def __init__(self, what: str, logger: logging.Logger) -> None:
        self._what = what
        self._log = logger
        self._since: float | None = None
        self._tries = 0

    @property
    def down(self) -> bool:
        return self._since is not None

    def failed(self, exc: BaseException) -> None:
        self._tries += 1
        if self._since is None:
            self._since = time.monotonic()
            self._log.warning("%s unavailable, will retry every tick: %s", self._what, exc)
        else:
            self._log.debug("%s still unavailable: %s", self._what, exc)

    def succeeded(self) -> None:
        if self._since is not None:
            self._log.warning(
                "%s available again after %.0f s (%d failed tries)",
                self._what,
                time.monotonic() - self._since,
                self._tries,
            )
        self._since = None
        self._tries = 0


@dataclass(frozen=True, slots=True)
class SheetCounts:
    present: int  # attended, on time (teacher-added included)
    late: int  # attended, checked in after start + late_after
    absent: int  # enrolled, never checked in
    not_accepted: int  # pending review or rejected

    @property
    def total(self) -> int:
        return self.present + self.late + self.absent + self.not_accepted


@dataclass(frozen=True, slots=True)
class Sheet:
    """What one session becomes in PostgreSQL."""

    attendance: Attendance
    records: list[AttendanceRecord]
    users: list[User]  # to upsert: students first, the teacher last
    counts: SheetCounts


def _name(raw: str, fallback: str) -> str:
    name = " ".join(raw.split())[:_NAME_MAX]
    return name or fallback


def build_sheet(
    *,
    attendance: AttendanceRedis,
    records: Sequence[AttendanceRecordRedis],
    enrolled: Iterable[str],
    known_users: Mapping[str, User],
    late_after: timedelta,
) -> Sheet:
    """The PostgreSQL rows for an ended session (pure: no I/O).

    Records keep their state; a code check-in after `start + late_after` is late (a
    teacher-added record never is); every enrolled student without a record gets an ABSENT
    one. `EVERYONE` in `enrolled` names nobody. Users to upsert: students not yet known,
    and known students who checked in by code under a new name (their Redis name comes from
    the portal at login); a teacher-added record for a known user, or any record naming a
    known teacher, leaves that user's row alone, so a typed school number can never rename or
    demote anyone. Unchanged users are left out: no row locks for nothing.
    """
    attendance_id = attendance.attendance_id
    rows: list[AttendanceRecord] = []
    users: dict[str, User] = {}
    present = late = absent = not_accepted = 0
    for record in records:
        number = record.student_number
        known = known_users.get(number)
        name = _name(record.student_full_name, number)
        if known is None or (
            record.source is RecordSource.CODE
            and known.role is Role.STUDENT
            and known.user_full_name != name
        ):
            users[number] = User(user_school_number=number, user_full_name=name, role=Role.STUDENT)
        if record.is_attended:
            late_one = is_late(record, attendance.start_time, late_after)
            late += late_one
            present += not late_one
            fail_reason = None
        else:
            late_one = False
            not_accepted += 1
            fail_reason = record.fail_reason
        rows.append(
            AttendanceRecord(
                attendance_id=attendance_id,
                student_number=number,
                is_attended=record.is_attended,
                attendance_time=record.attendance_time,
                fail_reason=fail_reason,
                is_late=late_one,
                source=record.source,
            )
        )
    recorded = {record.student_number for record in records}
    for number in sorted(set(enrolled) - recorded - {EVERYONE}):
        if number not in known_users:
            # Enrolment comes from cached schedules, whose rows need a user row; should one be
            # missing all the same, the sheet stays complete under the number.
            log.warning("absent student %s of %s has no user row", number, attendance_id)
            users[number] = User(
                user_school_number=number, user_full_name=number, role=Role.STUDENT
            )
        absent += 1
        rows.append(
            AttendanceRecord(
                attendance_id=attendance_id,
                student_number=number,
                is_attended=False,
                attendance_time=None,
                fail_reason=FailReason.ABSENT.value,
            )
        )
    teacher = attendance.teacher_school_number
    users.pop(teacher, None)
    user_list = [
        *users.values(),
        User(
            user_school_number=teacher,
            user_full_name=_name(attendance.teacher_full_name, teacher),
            role=Role.TEACHER,
        ),
    ]
    row = Attendance(
        attendance_id=attendance_id,
        teacher_school_number=teacher,
        lesson_name=attendance.lesson_name,
        lesson_code=attendance.lesson_code,
        start_time=attendance.start_time,
        end_time=attendance.end_time or attendance.planned_end_time,
        security_option=attendance.security_option,
    )
    counts = SheetCounts(present=present, late=late, absent=absent, not_accepted=not_accepted)
    return Sheet(attendance=row, records=rows, users=user_list, counts=counts)


@dataclass(slots=True)
class FinalizeReport:
    """What one tick did, and where its time went (summed over sessions)."""

    finalized: int = 0  # sessions written to PostgreSQL and removed from Redis
    records: int = 0  # rows of those sheets, absent ones included
    absent: int = 0
    skipped: int = 0  # claimed by another worker
    postponed: int = 0  # left for the next tick (PostgreSQL or Redis unavailable)
    failed: int = 0  # could not be finalized for a reason of their own; kept in Redis
    orphans: int = 0  # due entries whose session key was gone (cleaned up)
    notified: int = 0  # notices handed to the notifier
    redis_read_seconds: float = 0.0
    build_seconds: float = 0.0
    postgres_seconds: float = 0.0
    cleanup_seconds: float = 0.0
    failures: list[UUID] = field(default_factory=list)


class Finalizer:
    """Moves ended sessions to PostgreSQL; `run_once()` is one scheduler tick."""

    def __init__(
        self,
        *,
        pg: AsyncPostgresClient,
        redis: RedisClient,
        notifier: Notifier,
        tz: ZoneInfo,
        late_after: timedelta,
        owner: str,
        claim_ttl_seconds: int = 300,
        dedupe_ttl_seconds: int = 7 * 86_400,
        max_sessions_per_tick: int = 1_000,
        concurrency: int = 4,
        settle_seconds: float = 5.0,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self._pg = pg
        self._redis = redis
        self._notifier = notifier
        self._tz = tz
        self._late_after = late_after
        self._owner = owner
        self._claim_ttl = claim_ttl_seconds
        self._dedupe_ttl = dedupe_ttl_seconds
        self._max_sessions = max_sessions_per_tick
        self._concurrency = max(1, concurrency)
        self._clock = clock
        # A session is taken a few seconds after its end, not at once: a check-in is judged
        # by the clock of the replica that receives it, and one whose clock runs a little
        # behind could still add a record after this one read the session and before it
        # removed it.
        self._settle = timedelta(seconds=settle_seconds)
        self._pg_outage = OutageLog("PostgreSQL (finalization)", log)
        self._reported_failures: set[UUID] = set()

    async def run_once(self) -> FinalizeReport:
        """Finalize every session that ended `settle_seconds` ago or earlier (up to
        `max_sessions_per_tick`).

        Raises `RedisUnavailable` when Redis fails (after the sessions in flight are done);
        a PostgreSQL outage ends the tick quietly, with Redis left as it was.
        """
        report = FinalizeReport()
        ids = await self._redis.get_due_attendance_ids(
            now=self._clock() - self._settle, limit=self._max_sessions
        )
        if not ids:
            return report
        try:
            with self._pg.outage_as_unavailable():
                await self._pg.ping()
        except DatabaseUnavailable as exc:
            self._pg_outage.failed(exc)
            report.postponed = len(ids)
            return report

        stop = asyncio.Event()
        pg_error: list[DatabaseUnavailable] = []
        redis_error: list[RedisUnavailable] = []
        unexpected: list[Exception] = []
        limit = asyncio.Semaphore(self._concurrency)

        async def one(attendance_id: UUID) -> None:
            async with limit:
                if stop.is_set():
                    report.postponed += 1
                    return
                try:
                    await self.finalize_session(attendance_id=attendance_id, report=report)
                except DatabaseUnavailable as exc:
                    stop.set()
                    pg_error.append(exc)
                    report.postponed += 1
                except RedisUnavailable as exc:
                    stop.set()
                    redis_error.append(exc)
                    report.postponed += 1
                except Exception as exc:
                    # A bug or a fault: stop claiming, let the sessions in flight finish, then
                    # raise it (the scheduler logs it). This session's keys are still in Redis.
                    stop.set()
                    unexpected.append(exc)

        await asyncio.gather(*(one(attendance_id) for attendance_id in ids))
        if pg_error:
            self._pg_outage.failed(pg_error[0])
        else:
            self._pg_outage.succeeded()
        if redis_error:
            raise redis_error[0]
        if unexpected:
            raise unexpected[0]
        if report.finalized or report.failed:
            log.info(
                "finalized %d session(s), %d record(s) (%d absent); %d skipped, %d failed,"
                " %d postponed",
                report.finalized,
                report.records,
                report.absent,
                report.skipped,
                report.failed,
                report.postponed,
            )
        return report

    async def finalize_session(self, *, attendance_id: UUID, report: FinalizeReport) -> None:
        """Claim, write and clean up one ended session (see the module docstring).

        `DatabaseUnavailable` and `RedisUnavailable` propagate with Redis untouched; any other
        failure is logged (once per session) and counted, and the session stays in Redis.
        """
        token = f"{self._owner}:{uuid.uuid4().hex}"
        if not await self._redis.claim_attendance(
            attendance_id=attendance_id, owner=token, ttl_seconds=self._claim_ttl
        ):
            report.skipped += 1
            return
        try:
            await self._finalize_claimed(attendance_id, report)
        except (DatabaseUnavailable, RedisUnavailable):
            raise
        except (DalError, ValueError) as exc:  # pydantic's ValidationError is a ValueError
            report.failed += 1
            report.failures.append(attendance_id)
            if attendance_id not in self._reported_failures:
                self._reported_failures.add(attendance_id)
                log.error(
                    "session %s cannot be finalized; it stays in Redis: %s", attendance_id, exc
                )
        finally:
            try:
                await self._redis.release_claim(attendance_id=attendance_id, owner=token)
            except RedisUnavailable:
                log.debug("claim of %s left to expire", attendance_id)

    async def _finalize_claimed(self, attendance_id: UUID, report: FinalizeReport) -> None:
        began = time.perf_counter()
        attendance = await self._redis.get_attendance(attendance_id=attendance_id)
        if attendance is None:
            # Sessions are created and removed by atomic scripts, so a due entry without its
            # session is debris (a manual deletion, an eviction). Nothing can be written
            # without the session; the leftovers are removed.
            lost = await self._redis.count_attendance_records(attendance_id=attendance_id)
            await self._redis.delete_attendance_keys(attendance_id=attendance_id)
            report.orphans += 1
            if lost:
                log.error("session %s vanished from Redis; %d records dropped", attendance_id, lost)
            return
        records = await self._redis.get_attendance_records(attendance_id=attendance_id)
        enrolled = await self._redis.get_enrolled(attendance_id=attendance_id)
        read = time.perf_counter()
        report.redis_read_seconds += read - began

        numbers = {r.student_number for r in records} | enrolled
        numbers.discard(EVERYONE)
        numbers.add(attendance.teacher_school_number)
        with self._pg.outage_as_unavailable():
            known = await self._pg.get_users(school_numbers=sorted(numbers))
            built = time.perf_counter()
            sheet = build_sheet(
                attendance=attendance,
                records=records,
                enrolled=enrolled,
                known_users={user.user_school_number: user for user in known},
                late_after=self._late_after,
            )
            build_time = time.perf_counter() - built
            report.build_seconds += build_time
            await self._pg.persist_session(
                users=sheet.users, attendance=sheet.attendance, records=sheet.records
            )
            contacts = await self._pg.get_contacts(school_numbers=sorted(numbers))
        written = time.perf_counter()
        report.postgres_seconds += written - read - build_time

        report.notified += await self._notify(sheet, contacts)
        await self._redis.delete_attendance_keys(attendance_id=attendance_id)
        report.cleanup_seconds += time.perf_counter() - written
        report.finalized += 1
        report.records += len(sheet.records)
        report.absent += sheet.counts.absent

    async def _notify(self, sheet: Sheet, contacts: Sequence[LinkedUser]) -> int:
        """Queue the teacher's summary and the students' results, once per session.

        `notify_later`, not an awaited `notify`: the notifier paces messages under Telegram's
        limits, so 300 results take seconds to go out; awaiting them would hold the tick (and
        its lock) for minutes at the end of a busy hour. The dedupe marker is set first, so a
        crash later in this step loses messages rather than sending them twice.
        """
        attendance = sheet.attendance
        if not await self._redis.mark_once(
            key=final_dedupe_key(attendance.attendance_id), ttl_seconds=self._dedupe_ttl
        ):
            return 0
        by_number = {c.school_number: c for c in contacts}
        when = attendance.start_time.astimezone(self._tz).strftime(DATE_FORMAT)
        lesson = attendance.lesson_name
        notices: list[Notice] = []
        teacher = by_number.get(attendance.teacher_school_number)
        if teacher is not None:
            counts = sheet.counts
            values: dict[str, object] = {
                "lesson": lesson,
                "date": when,
                "present": counts.present,
                "late": counts.late,
                "absent": counts.absent,
            }
            if counts.not_accepted:
                key = "final.teacher_pending"
                values["pending"] = counts.not_accepted
            else:
                key = "final.teacher"
                values["others"] = ""
            notices.append(
                Notice(
                    telegram_id=teacher.telegram_id,
                    language=teacher.language,
                    key=key,
                    values=values,
                )
            )
        for record in sheet.records:
            contact = by_number.get(record.student_number)
            if contact is None or contact.role is not Role.STUDENT or not contact.reminders_enabled:
                continue
            if record.is_attended:
                key = "final.late" if record.is_late else "final.present"
            elif record.fail_reason == FailReason.ABSENT:
                key = "final.absent"
            else:
                key = "final.not_accepted"
            notices.append(
                Notice(
                    telegram_id=contact.telegram_id,
                    language=contact.language,
                    key=key,
                    values={"lesson": lesson, "date": when},
                )
            )
        if notices:
            self._notifier.notify_later(notices)
        return len(notices)
