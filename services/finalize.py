"""Finalization: ended sessions move from Redis to PostgreSQL, exactly once.

For every session whose due score has passed (ended by the teacher, or left open past its
planned end) the finalizer

1. claims it (`attendances:{id}:claim`, SET NX with an expiry, a token per attempt), which
   Redis grants only once the session has ended by its own clock; from then on no check-in or
   teacher's change can reach the session (the invariant in `dal.redis.sessions`), so what
   step 2 reads is final;
2. reads the session, its records and its enrolled set from Redis;
3. builds the sheet (services/final_sheet.py): every Redis record plus an ABSENT record for
   each enrolled student who never checked in;
4. writes users, the attendance and every record in ONE PostgreSQL transaction
   (idempotent: the attendance and each record are inserted only if new). Sessions go in
   batches: a batch's users are looked up in one query and the whole batch is stored in one
   transaction (`persist_sessions`, each session wholly inside it); a batch PostgreSQL
   refuses is stored again one session per transaction (`persist_session`), so that a bad
   session holds back no other;
5. tells the teacher and the students (once: a dedupe marker per session);
6. only then removes the session's Redis keys (one atomic script).

A crash between any two steps leaves the Redis keys in place, so the next run repeats the
steps; step 4 then inserts nothing new, step 5 is skipped by its marker, and step 6 finishes
the job. The claim only keeps two workers from doing the same work at once; correctness does
not depend on it (a claim that expires under a slow worker lets a second one in, and the
idempotent write still leaves one copy). With PostgreSQL down nothing is removed from Redis
and the tick ends at the first failure: the outage is logged once, when it starts, and once
more when it is over.

Why one file of ~600 lines: the six steps above are one exactly-once pipeline, and its
crash-safety argument is read across all of them (what each step leaves behind for the next
run); split over modules, that argument would have no single place to be checked. Only the
sheet is built elsewhere (services/final_sheet.py): it is pure, so building it again after a
crash gives the same rows, and it takes no part in that argument.
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Final, Protocol
from uuid import UUID
from zoneinfo import ZoneInfo

from dal.errors import DalError, DatabaseUnavailable, RedisUnavailable
from dal.models import (
    EVERYONE,
    LiveRecord,
    LiveSession,
    RecordStatus,
    Role,
    User,
)
from dal.pg import AccountStore, AttendanceStore, Database, LinkedUser
from dal.redis import keys
from dal.redis.finalization import ClaimOutcome, FinalizationStore
from dal.redis.sessions import LiveSessions
from services.final_sheet import FinalSheet, build_sheet
from services.notify import RESULT, Moment, Notice, Notifier
from services.outage import OutageLog
from services.warnings import AttendanceWarnings

__all__ = [
    "FinalSheet",
    "FinalizeReport",
    "Finalizer",
    "build_sheet",
    "final_dedupe_key",
]

log = logging.getLogger(__name__)


_RESULT_KEYS: Final = {
    RecordStatus.PRESENT: "final.present",
    RecordStatus.LATE: "final.late",
    RecordStatus.ABSENT: "final.absent",
    RecordStatus.PENDING: "final.not_accepted",
    RecordStatus.REJECTED: "final.not_accepted",
    RecordStatus.EXCUSED: "final.not_accepted",
}


def final_dedupe_key(attendance_id: UUID) -> str:
    """The marker that makes a session's result messages go out at most once."""
    return keys.once("final", attendance_id)


class Receipts(Protocol):
    """Who wants a result notice that repeats their check-in answer (dal UserStore)."""

    async def receipts_wanted(self, *, school_numbers: Sequence[str]) -> set[str]: ...


@dataclass(slots=True)
class FinalizeReport:
    """What one tick did, and where its time went (wall time of each phase, summed over the
    batches; with several batches in flight the sums overlap)."""

    finalized: int = 0  # sessions written to PostgreSQL and removed from Redis
    records: int = 0  # rows of those sheets, absent ones included
    absent: int = 0
    skipped: int = 0  # claimed by another worker
    postponed: int = 0  # left for the next tick (PostgreSQL or Redis unavailable)
    failed: int = 0  # could not be finalized for a reason of their own; kept in Redis
    orphans: int = 0  # due entries whose session key was gone (cleaned up)
    notified: int = 0  # notices handed to the notifier
    batches: int = 0  # PostgreSQL transactions that stored sessions (one-by-one retries too)
    redis_read_seconds: float = 0.0
    build_seconds: float = 0.0
    postgres_seconds: float = 0.0  # the three below
    users_read_seconds: float = 0.0
    write_seconds: float = 0.0
    contacts_read_seconds: float = 0.0
    cleanup_seconds: float = 0.0
    failures: list[UUID] = field(default_factory=list)

    @property
    def settled(self) -> int:
        """Sessions this tick is done with, one way or another (postponed ones aside)."""
        return self.finalized + self.skipped + self.failed + self.orphans


@dataclass(frozen=True, slots=True)
class _Loaded:
    """An ended session as read from Redis."""

    attendance: LiveSession
    records: list[LiveRecord]
    enrolled: set[str]

    @property
    def attendance_id(self) -> UUID:
        return self.attendance.attendance_id

    def numbers(self) -> set[str]:
        """Every school number the sheet may name: the users to look up."""
        numbers = {r.student_number for r in self.records} | self.enrolled
        numbers.discard(EVERYONE)
        numbers.add(self.attendance.teacher_school_number)
        return numbers


def _batch_users(sheets: Sequence[FinalSheet]) -> list[User]:
    """The users of several sheets for one upsert: students first, teachers last.

    One upsert keeps the last entry of a school number, so a teacher of one session whose
    number another session's record names (before the teacher's first session was ever
    stored) stays a teacher, as when the sessions are stored one after the other.
    """
    teachers = {sheet.attendance.teacher_school_number for sheet in sheets}
    students = [
        user
        for sheet in sheets
        for user in sheet.users
        if user.role is not Role.TEACHER and user.user_school_number not in teachers
    ]
    return [*students, *(sheet.users[-1] for sheet in sheets)]


class Finalizer:
    """Moves ended sessions to PostgreSQL; `run_once()` is one scheduler tick.

    Sessions go in batches of up to `batch_sessions`: claimed and read from Redis together,
    their users looked up in one query, stored in ONE transaction (each session wholly
    inside it), their contacts read in one query, then notified and removed from Redis one
    by one. A batch that PostgreSQL refuses for a reason other than an outage is stored again
    one session per transaction, so that a bad session holds back no other. Up to
    `concurrency` batches are in flight.
    """

    def __init__(
        self,
        *,
        db: Database,
        accounts: AccountStore,
        attendance: AttendanceStore,
        sessions: LiveSessions,
        finalization: FinalizationStore,
        notifier: Notifier,
        tz: ZoneInfo,
        late_after: timedelta,
        owner: str,
        claim_ttl_seconds: int = 300,
        dedupe_ttl_seconds: int = 7 * 86_400,
        page_sessions: int = 1_000,
        concurrency: int = 4,
        batch_sessions: int = 10,
        settle_seconds: float = 5.0,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
        warnings: AttendanceWarnings | None = None,
        receipts: Receipts | None = None,
    ) -> None:
        self._db = db
        self._accounts = accounts
        self._attendance = attendance
        self._warnings = warnings  # low-attendance warnings after the commit
        self._sessions = sessions
        self._finalization = finalization
        self._notifier = notifier
        self._receipts = receipts
        self._tz = tz
        self._late_after = late_after
        self._owner = owner
        self._claim_ttl = claim_ttl_seconds
        self._dedupe_ttl = dedupe_ttl_seconds
        self._page = max(1, page_sessions)
        self._concurrency = max(1, concurrency)
        self._batch = max(1, batch_sessions)
        self._clock = clock
        # Correctness does not depend on this delay (the claim shuts writes out, judged by
        # Redis's clock); it only spares claims that Redis would refuse when this replica's
        # clock runs ahead.
        self._settle = timedelta(seconds=settle_seconds)
        self._pg_outage = OutageLog("PostgreSQL (finalization)", log)
        self._reported_failures: set[UUID] = set()

    async def run_once(self) -> FinalizeReport:
        """Finalize every session that ended `settle_seconds` ago or earlier: the due index is
        read a page (`page_sessions`) at a time until it is drained, with no cap per tick.

        Safe on every replica at once: each session is claimed before it is touched, so
        replicas draining together split the work (a session claimed elsewhere is skipped and
        stays in the index; the next page starts past the ones this tick left there).
        Raises `RedisUnavailable` when Redis fails (after the batches in flight are done);
        a PostgreSQL outage ends the tick quietly, with Redis left as it was.
        """
        report = FinalizeReport()
        cutoff = self._clock() - self._settle
        offset = 0
        while True:
            ids = await self._sessions.get_due_attendance_ids(
                now=cutoff, limit=self._page, offset=offset
            )
            if not ids:
                break
            removed = report.finalized + report.orphans
            if not await self._run_page(ids, report):
                break
            # What this page left in the index (held elsewhere, failed, not ended by Redis's
            # clock) is skipped by the next page; what it removed is gone from the range.
            offset += len(ids) - (report.finalized + report.orphans - removed)
            if len(ids) < self._page:
                break
        if report.finalized or report.failed:
            log.info(
                "finalized %d session(s), %d record(s) (%d absent) in %d transaction(s);"
                " %d skipped, %d failed, %d postponed",
                report.finalized,
                report.records,
                report.absent,
                report.batches,
                report.skipped,
                report.failed,
                report.postponed,
            )
        return report

    async def _run_page(self, ids: Sequence[UUID], report: FinalizeReport) -> bool:
        """One page of due sessions, `concurrency` batches in flight. False: PostgreSQL is
        down, the tick stops here."""
        try:
            with self._db.outage_as_unavailable():
                await self._db.ping()
        except DatabaseUnavailable as exc:
            self._pg_outage.failed(exc)
            report.postponed += len(ids)
            return False

        stop = asyncio.Event()
        pg_error: list[DatabaseUnavailable] = []
        redis_error: list[RedisUnavailable] = []
        unexpected: list[Exception] = []
        limit = asyncio.Semaphore(self._concurrency)

        async def one(batch: list[UUID]) -> None:
            async with limit:
                if stop.is_set():
                    report.postponed += len(batch)
                    return
                settled = report.settled
                try:
                    await self._finalize_batch(batch, report)
                except DatabaseUnavailable as exc:
                    stop.set()
                    pg_error.append(exc)
                    report.postponed += len(batch) - (report.settled - settled)
                except RedisUnavailable as exc:
                    stop.set()
                    redis_error.append(exc)
                    report.postponed += len(batch) - (report.settled - settled)
                except Exception as exc:
                    # A bug or a fault: stop claiming, let the batches in flight finish, then
                    # raise it (the scheduler logs it). The keys of the sessions it hit are
                    # still in Redis.
                    stop.set()
                    unexpected.append(exc)

        batches = [list(ids[i : i + self._batch]) for i in range(0, len(ids), self._batch)]
        await asyncio.gather(*(one(batch) for batch in batches))
        if pg_error:
            self._pg_outage.failed(pg_error[0])
        else:
            self._pg_outage.succeeded()
        if redis_error:
            raise redis_error[0]
        if unexpected:
            raise unexpected[0]
        return not pg_error

    async def _finalize_batch(self, ids: Sequence[UUID], report: FinalizeReport) -> None:
        """Claim, write and clean up these sessions; those claimed elsewhere are skipped."""
        tokens = {attendance_id: f"{self._owner}:{uuid.uuid4().hex}" for attendance_id in ids}
        outcomes = await asyncio.gather(
            *(
                self._finalization.claim_attendance(
                    attendance_id=attendance_id, owner=token, ttl_seconds=self._claim_ttl
                )
                for attendance_id, token in tokens.items()
            ),
            return_exceptions=True,
        )
        claimed = [i for i, won in zip(ids, outcomes, strict=True) if won is ClaimOutcome.CLAIMED]
        report.skipped += sum(1 for won in outcomes if won is ClaimOutcome.HELD)
        # Not ended yet by Redis's clock (this replica's clock runs ahead): next tick.
        report.postponed += sum(1 for won in outcomes if won is ClaimOutcome.OPEN)
        try:
            for outcome in outcomes:
                if isinstance(outcome, BaseException):
                    raise outcome
            if claimed:
                await self._finalize_claimed(claimed, report)
        finally:
            await self._release(claimed, tokens)

    async def _release(self, claimed: Sequence[UUID], tokens: Mapping[UUID, str]) -> None:
        outcomes = await asyncio.gather(
            *(self._finalization.release_claim(attendance_id=i, owner=tokens[i]) for i in claimed),
            return_exceptions=True,
        )
        for attendance_id, outcome in zip(claimed, outcomes, strict=True):
            if isinstance(outcome, BaseException):
                log.debug("claim of %s left to expire: %s", attendance_id, outcome)

    def _fail(self, attendance_id: UUID, exc: BaseException, report: FinalizeReport) -> None:
        report.failed += 1
        report.failures.append(attendance_id)
        if attendance_id not in self._reported_failures:
            self._reported_failures.add(attendance_id)
            log.error("session %s cannot be finalized; it stays in Redis: %s", attendance_id, exc)

    async def _drop_debris(self, attendance_id: UUID, report: FinalizeReport) -> None:
        # Sessions are created and removed by atomic scripts, so a due entry without its
        # session is debris (a manual deletion, an eviction). Nothing can be written without
        # the session; the leftovers are removed.
        lost = await self._sessions.count_attendance_records(attendance_id=attendance_id)
        await self._finalization.delete_attendance_keys(attendance_id=attendance_id)
        report.orphans += 1
        if lost:
            log.error("session %s vanished from Redis; %d records dropped", attendance_id, lost)

    async def _read_all(self, ids: Sequence[UUID], report: FinalizeReport) -> list[_Loaded]:
        """The batch's sessions in one pipelined Redis round trip; a corrupt one is counted as
        failed and left, debris is removed."""
        loaded: list[_Loaded] = []
        reads = await self._finalization.read_sessions(attendance_ids=ids)
        for attendance_id, outcome in zip(ids, reads, strict=True):
            if outcome is None:
                await self._drop_debris(attendance_id, report)
            elif isinstance(outcome, ValueError):
                self._fail(attendance_id, outcome, report)
            else:
                attendance, records, enrolled = outcome
                loaded.append(_Loaded(attendance=attendance, records=records, enrolled=enrolled))
        return loaded

    def _build(
        self, loaded: _Loaded, known: Mapping[str, User], report: FinalizeReport
    ) -> FinalSheet | None:
        try:
            return build_sheet(
                attendance=loaded.attendance,
                records=loaded.records,
                enrolled=loaded.enrolled,
                known_users=known,
                late_after=self._late_after,
            )
        except ValueError as exc:
            self._fail(loaded.attendance_id, exc, report)
            return None

    async def _finalize_claimed(self, ids: Sequence[UUID], report: FinalizeReport) -> None:
        began = time.perf_counter()
        loaded = await self._read_all(ids, report)
        read = time.perf_counter()
        report.redis_read_seconds += read - began
        if not loaded:
            return

        numbers: set[str] = set()
        for session in loaded:
            numbers |= session.numbers()
        deferred: Exception | None = None
        with self._db.outage_as_unavailable():
            known_list = await self._accounts.get_users(school_numbers=sorted(numbers))
        looked_up = time.perf_counter()
        known = {user.user_school_number: user for user in known_list}
        sheets = [s for s in (self._build(x, known, report) for x in loaded) if s is not None]
        built = time.perf_counter()
        try:
            if sheets:
                with self._db.outage_as_unavailable():
                    await self._attendance.persist_sessions(
                        users=_batch_users(sheets),
                        attendances=[sheet.attendance for sheet in sheets],
                        records=[record for sheet in sheets for record in sheet.records],
                    )
                report.batches += 1
        except DatabaseUnavailable:
            raise
        except Exception as exc:
            if len(sheets) > 1:
                log.warning(
                    "a batch of %d sessions was refused (%s); storing them one by one",
                    len(sheets),
                    exc,
                )
                ids_built = {sheet.attendance.attendance_id for sheet in sheets}
                retry = [x for x in loaded if x.attendance_id in ids_built]
                sheets, deferred = await self._persist_one_by_one(retry, report)
            elif isinstance(exc, (DalError, ValueError)):
                self._fail(sheets[0].attendance.attendance_id, exc, report)
                sheets = []
            else:
                raise
        written = time.perf_counter()
        contacts: list[LinkedUser] = []
        if sheets:
            contact_numbers: set[str] = set()
            for sheet in sheets:
                contact_numbers.update(r.student_number for r in sheet.records)
                contact_numbers.add(sheet.attendance.teacher_school_number)
            with self._db.outage_as_unavailable():
                contacts = await self._accounts.get_contacts(school_numbers=sorted(contact_numbers))
        read_contacts = time.perf_counter()
        report.users_read_seconds += looked_up - read
        report.build_seconds += built - looked_up
        report.write_seconds += written - built
        report.contacts_read_seconds += read_contacts - written
        report.postgres_seconds += (looked_up - read) + (read_contacts - built)

        by_number = {contact.school_number: contact for contact in contacts}
        if self._warnings is not None and sheets:
            await self._check_warnings(sheets, by_number)
        outcomes = await asyncio.gather(
            *(self._notify_and_remove(sheet, by_number, report) for sheet in sheets),
            return_exceptions=True,
        )
        report.cleanup_seconds += time.perf_counter() - read_contacts
        for outcome in outcomes:
            if isinstance(outcome, BaseException):
                raise outcome
        if deferred is not None:
            raise deferred

    async def _persist_one_by_one(
        self, loaded: Sequence[_Loaded], report: FinalizeReport
    ) -> tuple[list[FinalSheet], Exception | None]:
        """Each session in its own transaction, as if it were alone: its users read again,
        its sheet built again. Returns the stored sheets and the first unexpected error
        (raised by the caller once the stored sessions are cleaned up)."""
        stored: list[FinalSheet] = []
        unexpected: Exception | None = None
        for session in loaded:
            try:
                with self._db.outage_as_unavailable():
                    known = await self._accounts.get_users(school_numbers=sorted(session.numbers()))
                    sheet = build_sheet(
                        attendance=session.attendance,
                        records=session.records,
                        enrolled=session.enrolled,
                        known_users={user.user_school_number: user for user in known},
                        late_after=self._late_after,
                    )
                    await self._attendance.persist_session(
                        users=sheet.users, attendance=sheet.attendance, records=sheet.records
                    )
            except DatabaseUnavailable:
                raise
            except (DalError, ValueError) as exc:
                self._fail(session.attendance_id, exc, report)
                continue
            except Exception as exc:
                if unexpected is None:
                    unexpected = exc
                continue
            report.batches += 1
            stored.append(sheet)
        return stored, unexpected

    async def _check_warnings(
        self, sheets: Sequence[FinalSheet], contacts: Mapping[str, LinkedUser]
    ) -> None:
        """Low-attendance warnings for the students of the stored sessions. A failure here is
        logged and loses no attendance: the next finalization of the course looks again."""
        assert self._warnings is not None
        try:
            with self._db.outage_as_unavailable():
                await self._warnings.check(
                    ((s.attendance, (r.student_number for r in s.records)) for s in sheets),
                    contacts,
                )
        except Exception:
            log.exception("low-attendance warnings failed; the next finalization retries")

    async def _notify_and_remove(
        self, sheet: FinalSheet, contacts: Mapping[str, LinkedUser], report: FinalizeReport
    ) -> None:
        """After the commit: the messages (once), then the session's Redis keys."""
        report.notified += await self._notify(sheet, contacts)
        aid = sheet.attendance.attendance_id
        await self._finalization.delete_attendance_keys(attendance_id=aid)
        report.finalized += 1
        report.records += len(sheet.records)
        report.absent += sheet.counts.absent

    async def _notify(self, sheet: FinalSheet, contacts: Mapping[str, LinkedUser]) -> int:
        """Queue the teacher's summary and the students' results, once per session.

        Enqueued in the durable outbox (sent in the background, not awaited) together with the
        dedupe marker in one atomic step: a crash before it re-runs it, a crash after it finds
        the marker, so each notice is queued exactly once and none is lost.
        """
        attendance = sheet.attendance
        by_number = contacts
        when = Moment(attendance.start_time, self._tz.key)
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
                "pending": counts.pending,
                "rejected": counts.rejected,
            }
            key = "final.teacher"
            notices.append(
                Notice(
                    telegram_id=teacher.telegram_id,
                    language=teacher.language,
                    key=key,
                    values=values,
                    lane=RESULT,
                )
            )
        # "Present, on time" is what the check-in answer already said: that result is sent
        # only to those who asked for receipts (/receipts); it would otherwise spend one of the
        # bot's ~30 messages a second, at the busiest moment, on telling nothing new.
        told = [r.student_number for r in sheet.records if r.status is RecordStatus.PRESENT]
        wanted = set()
        if told and self._receipts is not None:
            try:
                wanted = await self._receipts.receipts_wanted(school_numbers=told)
            except Exception:  # Redis unreachable: the repeat is skipped, nothing else
                log.warning("receipt preferences unreadable; present results are not repeated")
        for record in sheet.records:
            contact = by_number.get(record.student_number)
            if contact is None or contact.role is not Role.STUDENT or not contact.reminders_enabled:
                continue
            if record.status is RecordStatus.PRESENT and (
                self._receipts is None or record.student_number not in wanted
            ):
                continue
            key = _RESULT_KEYS[record.status]
            notices.append(
                Notice(
                    telegram_id=contact.telegram_id,
                    language=contact.language,
                    key=key,
                    values={"lesson": lesson, "date": when},
                    lane=RESULT,
                    digest="result",  # one result message an hour, however many sessions end
                )
            )
        if not await self._notifier.enqueue(
            notices, once=final_dedupe_key(attendance.attendance_id), once_ttl=self._dedupe_ttl
        ):
            return 0
        return len(notices)
