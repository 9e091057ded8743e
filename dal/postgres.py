"""`AsyncPostgresClient`: every PostgreSQL read and write of ATTN, over one asyncpg pool.

Methods are keyword-only, named for what they return, and return the pydantic models of
`dal.models` (plus `LinkedUser` and `StudentAttendanceRow` below). Absence raises `NotFound`,
a duplicate key `Conflict`, an unreachable server `DatabaseUnavailable`. Soft-deleted
attendances and records never appear in these reads; the records of a soft-deleted
attendance are hidden with it.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Iterator, Sequence
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Final, Literal, TypeAlias
from uuid import UUID

import asyncpg
from asyncpg.pool import PoolConnectionProxy
from pydantic import AwareDatetime, BaseModel, ConfigDict

from dal.errors import Conflict, DatabaseUnavailable, NotFound, UnsupportedServer, mask_url
from dal.migrations import apply_migrations
from dal.models import (
    Attendance,
    AttendanceRecord,
    RecordRow,
    RecordStatus,
    Role,
    ScheduleEntry,
    User,
    record_status,
)

__all__ = [
    "COURSE_KEY_SQL",
    "DEFAULT_RECORD_METHOD",
    "AsyncPostgresClient",
    "Correction",
    "CourseRecordRow",
    "CourseSummary",
    "LinkedUser",
    "RecordMethod",
    "StudentAttendanceRow",
]

logger = logging.getLogger(__name__)

RecordMethod: TypeAlias = Literal["copy", "executemany"]
# Measured with `python -m bench.bulk_insert` (PostgreSQL 15 over TCP on 127.0.0.1, median of 3):
# 10k rows: copy ~96k rows/s vs executemany ~61k; 100k rows: ~82k vs ~59k. Per-row FK checks
# and the primary key bound both. Below ~100 rows executemany wins by under a millisecond.
DEFAULT_RECORD_METHOD: Final[RecordMethod] = "copy"
# Oldest PostgreSQL major version the project supports: CI runs against the machine's 15 and the
# embedded 18.
MIN_POSTGRES_MAJOR: Final = 15

_Conn: TypeAlias = "PoolConnectionProxy[asyncpg.Record]"

# What a failed connect or a lost server looks like from asyncpg.
_UNAVAILABLE_ERRORS: Final = (
    OSError,
    TimeoutError,
    asyncpg.PostgresConnectionError,
    asyncpg.InterfaceError,
    asyncpg.CannotConnectNowError,
    asyncpg.InvalidCatalogNameError,
    asyncpg.InvalidAuthorizationSpecificationError,
    asyncpg.TooManyConnectionsError,
)
_CONNECT_ERRORS: Final = (*_UNAVAILABLE_ERRORS, asyncpg.PostgresError, ValueError)
# A server that went away mid-use (shut down, crashed) besides one that cannot be reached:
# for `outage_as_unavailable()` (background jobs, issue 5).
_OUTAGE_ERRORS: Final = (
    *_UNAVAILABLE_ERRORS,
    asyncpg.AdminShutdownError,
    asyncpg.CrashShutdownError,
)

_LINK_ATTEMPTS: Final = 3
_PING_TIMEOUT_SECONDS: Final = 5.0


class LinkedUser(BaseModel):
    """A user whose school number is linked to a Telegram account."""

    model_config = ConfigDict(frozen=True)

    school_number: str
    full_name: str
    role: Role
    telegram_id: int
    language: str
    reminders_enabled: bool
    linked_at: AwareDatetime


class StudentAttendanceRow(BaseModel):
    """One line of a student's attendance history."""

    model_config = ConfigDict(frozen=True)

    attendance_id: UUID
    lesson_name: str
    lesson_code: str | None
    start_time: AwareDatetime
    is_attended: bool
    is_late: bool
    fail_reason: str | None
    status: RecordStatus


@dataclass(frozen=True, slots=True)
class CourseSummary:
    """A course a teacher has saved sessions of (`course_key`: see COURSE_KEY_SQL)."""

    course_key: str
    lesson_name: str
    sessions: int


@dataclass(frozen=True, slots=True)
class CourseRecordRow:
    """One record of a course export (plain: thousands are read at once)."""

    attendance_id: UUID
    student_number: str
    full_name: str
    status: RecordStatus
    attendance_time: datetime | None
    fail_reason: str | None
    teacher_note: str | None
    source: str


@dataclass(frozen=True, slots=True)
class Correction:
    """One entry of the audit trail (`record_corrections`)."""

    attendance_id: UUID
    session_start: datetime
    student_number: str | None
    full_name: str | None
    action: str  # status | excused | added | record_deleted | session_deleted
    old_status: str | None
    new_status: str | None
    reason: str | None
    changed_by: str
    changed_at: datetime


# --- SQL ----------------------------------------------------------------------------------

# A session's course: its lesson code, or its lesson name when it has none (an ad-hoc session).
COURSE_KEY_SQL: Final = "coalesce(a.lesson_code, a.lesson_name)"

_USER_COLUMNS = "user_school_number, user_full_name, role"
# What forgetting an account resets: the Telegram link and the preferences that came with it.
_FORGET_ASSIGNMENTS = (
    "telegram_id = NULL, linked_at = NULL, language = 'en', reminders_enabled = true,"
    " undeliverable_at = NULL, undeliverable_reason = NULL, updated_at = now()"
)
_LINKED_COLUMNS = (
    "user_school_number AS school_number, user_full_name AS full_name, role, telegram_id,"
    " language, reminders_enabled, linked_at"
)
_ATTENDANCE_COLUMNS = (
    "attendance_id, teacher_school_number, lesson_name, lesson_code, start_time, end_time,"
    " security_option, is_deleted, deletion_reason, deletion_time, lesson_slot, scheduled_start"
)
_RECORD_FIELDS: Final = (
    "attendance_id",
    "student_number",
    "is_attended",
    "attendance_time",
    "fail_reason",
    "is_late",
    "source",
    "is_deleted",
    "deletion_reason",
    "deletion_time",
    "status",
    "teacher_note",
)
_RECORD_COLUMNS = ", ".join(_RECORD_FIELDS)
_RECORD_COLUMNS_R = ", ".join(f"r.{name}" for name in _RECORD_FIELDS)
_SCHEDULE_COLUMNS = (
    "school_number, start_time, end_time, course_code, course_name, teachers, teacher_key, term"
)
# Entries of the current term only: the newest term any cached schedule came from (NULL, an
# unknown term, matches only while no schedule names a term). Past terms' entries are ignored
# for lesson finding, enrolment and reminders.
_CURRENT_TERM = "term IS NOT DISTINCT FROM (SELECT max(term) FROM schedule_entries)"

# Name and role follow the portal; the Telegram link columns are never touched here. Rows
# whose name and role are unchanged are not rewritten (finalization upserts every student of
# every session).
_UPSERT_USERS = f"""
INSERT INTO users AS u ({_USER_COLUMNS})
SELECT i.n, i.f, i.r FROM unnest($1::text[], $2::text[], $3::text[]) AS i (n, f, r)
ON CONFLICT (user_school_number) DO UPDATE
SET user_full_name = excluded.user_full_name, role = excluded.role, updated_at = now()
WHERE (u.user_full_name, u.role) IS DISTINCT FROM (excluded.user_full_name, excluded.role)
"""

_INSERT_ATTENDANCES = f"""
INSERT INTO attendances ({_ATTENDANCE_COLUMNS})
SELECT {_ATTENDANCE_COLUMNS} FROM unnest(
    $1::uuid[], $2::text[], $3::text[], $4::text[], $5::timestamptz[], $6::timestamptz[],
    $7::smallint[], $8::boolean[], $9::text[], $10::timestamptz[], $11::text[], $12::timestamptz[]
) AS a ({_ATTENDANCE_COLUMNS})
"""

_INSERT_ATTENDANCE_IF_NEW = f"""
INSERT INTO attendances ({_ATTENDANCE_COLUMNS})
VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)
ON CONFLICT (attendance_id) DO NOTHING
RETURNING attendance_id
"""

_INSERT_ATTENDANCES_IF_NEW = (
    _INSERT_ATTENDANCES
    + """
ON CONFLICT (attendance_id) DO NOTHING
RETURNING attendance_id
"""
)

_RECORDS_STAGING = "attn_records_staging"
_INSERT_RECORD_ROW = f"""
INSERT INTO attendance_records ({_RECORD_COLUMNS})
VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)
ON CONFLICT (attendance_id, student_number) DO NOTHING
RETURNING 1
"""

_VISIBLE_RECORD = """
r.attendance_id = $1 AND r.student_number = $2 AND NOT r.is_deleted
AND a.attendance_id = r.attendance_id AND NOT a.is_deleted
"""


class AsyncPostgresClient:
    """PostgreSQL access for ATTN. Build it with `await AsyncPostgresClient.connect(dsn)`."""

    def __init__(self, pool: asyncpg.Pool[asyncpg.Record], *, masked_dsn: str) -> None:
        self._pool = pool
        self._masked_dsn = masked_dsn

    # --- lifecycle -----------------------------------------------------------------------

    @classmethod
    async def connect(
        cls,
        dsn: str,
        *,
        min_size: int = 1,
        max_size: int = 10,
        migrate: bool = True,
        connect_timeout: float = 10.0,
    ) -> AsyncPostgresClient:
        """Open the pool and (by default) bring the schema up to date.

        Raises `DatabaseUnavailable` with a one-line message naming the URL, password masked.
        """
        masked = mask_url(dsn)
        try:
            pool = await asyncpg.create_pool(
                dsn, min_size=min_size, max_size=max_size, timeout=connect_timeout
            )
        except _CONNECT_ERRORS as exc:
            # `from None`: the operator needs the one line, not asyncpg's connect internals.
            raise DatabaseUnavailable.unreachable(dsn, exc) from None
        client = cls(pool, masked_dsn=masked)
        try:
            await client._require_supported_version(dsn)
            if migrate:
                version = await apply_migrations(pool)
                logger.info("PostgreSQL at %s, schema version %d", masked, version)
            else:
                await client.ping()
        except BaseException:
            await pool.close()
            raise
        return client

    async def _require_supported_version(self, dsn: str) -> None:
        """Raise `UnsupportedServer` when the server is older than MIN_POSTGRES_MAJOR."""
        try:
            async with asyncio.timeout(_PING_TIMEOUT_SECONDS), self._pool.acquire() as conn:
                major = conn.get_server_version().major
                shown = str(getattr(conn.get_settings(), "server_version", major)).split(" ")[0]
        except _UNAVAILABLE_ERRORS as exc:
            raise DatabaseUnavailable.unreachable(self._masked_dsn, exc) from None
        if major < MIN_POSTGRES_MAJOR:
            raise UnsupportedServer(
                server="PostgreSQL", url=dsn, found=shown, oldest=str(MIN_POSTGRES_MAJOR)
            )

    async def close(self, grace_seconds: float = 5.0) -> None:
        """Close the pool. asyncpg waits for every acquired connection to be released; a task
        still holding one at shutdown must not keep the process alive, so after `grace_seconds`
        seconds the remaining connections are terminated."""
        try:
            async with asyncio.timeout(grace_seconds):
                await self._pool.close()
        except TimeoutError:
            logger.warning(
                "PostgreSQL pool did not close within %.0f s; terminating it", grace_seconds
            )
            self._pool.terminate()

    @property
    def pool(self) -> asyncpg.Pool[asyncpg.Record]:
        return self._pool

    async def ping(self) -> None:
        """Round trip to the server; raises `DatabaseUnavailable` when it does not answer
        within a few seconds (waiting for a free pool connection included)."""
        try:
            async with asyncio.timeout(_PING_TIMEOUT_SECONDS):
                await self._pool.fetchval("SELECT 1")
        except _UNAVAILABLE_ERRORS as exc:
            raise DatabaseUnavailable.unreachable(self._masked_dsn, exc) from None

    @asynccontextmanager
    async def _transaction(self) -> AsyncIterator[_Conn]:
        async with self._pool.acquire() as conn, conn.transaction():
            yield conn

    # --- users ---------------------------------------------------------------------------

    async def add_users(self, *, users: Sequence[User]) -> None:
        """Insert or update users (name and role); Telegram link columns are left alone."""
        if not users:
            return
        async with self._transaction() as conn:
            await _upsert_users(conn, users)

    async def get_users(self, *, school_numbers: Sequence[str] | None = None) -> list[User]:
        """The users with these school numbers (all users when None), by school number."""
        if school_numbers is None:
            rows = await self._pool.fetch(
                f"SELECT {_USER_COLUMNS} FROM users ORDER BY user_school_number"
            )
        else:
            rows = await self._pool.fetch(
                f"SELECT {_USER_COLUMNS} FROM users"
                " WHERE user_school_number = ANY($1::text[]) ORDER BY user_school_number",
                list(school_numbers),
            )
        return [User.model_validate(dict(row)) for row in rows]

    async def get_user(self, *, school_number: str) -> User:
        row = await self._pool.fetchrow(
            f"SELECT {_USER_COLUMNS} FROM users WHERE user_school_number = $1", school_number
        )
        if row is None:
            raise NotFound(f"no user with school number {school_number!r}")
        return User.model_validate(dict(row))

    # --- Telegram link -------------------------------------------------------------------

    async def link_telegram(self, *, user: User, telegram_id: int, language: str) -> int | None:
        """Link `telegram_id` to `user` (upserted), moving the link from any other user.

        One Telegram account <-> one school number. Returns the Telegram id that this school
        number was linked to before, when that was a different account (so the bot can tell
        it), else None.
        """
        attempt = 0
        while True:
            attempt += 1
            try:
                return await self._link_once(user=user, telegram_id=telegram_id, language=language)
            except (asyncpg.UniqueViolationError, asyncpg.DeadlockDetectedError) as exc:
                # Crossed links (account A -> user B while account B -> user A) can deadlock;
                # PostgreSQL aborts one and a retry then goes through.
                if attempt >= _LINK_ATTEMPTS:
                    raise Conflict(
                        f"could not link Telegram account to {user.user_school_number!r}"
                        f" after {attempt} attempts"
                    ) from exc
                logger.info("retrying Telegram link after %s", type(exc).__name__)

    async def _link_once(self, *, user: User, telegram_id: int, language: str) -> int | None:
        school_number = user.user_school_number
        async with self._transaction() as conn:
            # Links of one Telegram account run one at a time, so that the second sees the
            # first's link and moves it instead of colliding on the unique telegram_id.
            await conn.execute(
                "SELECT pg_advisory_xact_lock(hashtextextended('attn:telegram:' || $1::bigint, 0))",
                telegram_id,
            )
            await _upsert_users(conn, [user])
            previous: int | None = await conn.fetchval(
                "SELECT telegram_id FROM users WHERE user_school_number = $1 FOR UPDATE",
                school_number,
            )
            await conn.execute(
                "UPDATE users SET telegram_id = NULL, linked_at = NULL, updated_at = now()"
                " WHERE telegram_id = $1 AND user_school_number <> $2",
                telegram_id,
                school_number,
            )
            await conn.execute(
                "UPDATE users SET telegram_id = $2, language = $3, linked_at = now(),"
                " undeliverable_at = NULL, undeliverable_reason = NULL,"
                " updated_at = now() WHERE user_school_number = $1",
                school_number,
                telegram_id,
                language,
            )
        if previous is not None and previous != telegram_id:
            return previous
        return None

    async def unlink_telegram(self, *, telegram_id: int) -> str | None:
        """Remove the link of `telegram_id`; returns the school number it was linked to."""
        school_number: str | None = await self._pool.fetchval(
            "UPDATE users SET telegram_id = NULL, linked_at = NULL, updated_at = now()"
            " WHERE telegram_id = $1 RETURNING user_school_number",
            telegram_id,
        )
        return school_number

    async def get_linked_user(self, *, telegram_id: int) -> LinkedUser | None:
        """The user linked to `telegram_id`, or None for an account that never logged in."""
        row = await self._pool.fetchrow(
            f"SELECT {_LINKED_COLUMNS} FROM users WHERE telegram_id = $1", telegram_id
        )
        return None if row is None else LinkedUser.model_validate(dict(row))

    async def get_contacts(self, *, school_numbers: Sequence[str]) -> list[LinkedUser]:
        """The reachable linked users among `school_numbers`: unlinked accounts and those
        Telegram refused to deliver to (see `mark_undeliverable`) are left out."""
        if not school_numbers:
            return []
        rows = await self._pool.fetch(
            f"SELECT {_LINKED_COLUMNS} FROM users"
            " WHERE user_school_number = ANY($1::text[]) AND telegram_id IS NOT NULL"
            " AND undeliverable_at IS NULL"
            " ORDER BY user_school_number",
            list(school_numbers),
        )
        return [LinkedUser.model_validate(dict(row)) for row in rows]

    async def mark_undeliverable(self, *, telegram_id: int, reason: str) -> bool:
        """Record that Telegram refused for good to deliver to this account; True if linked.

        Cleared when the account links again (`link_telegram`) or is heard from
        (`mark_deliverable`)."""
        status = await self._pool.execute(
            "UPDATE users SET undeliverable_at = now(), undeliverable_reason = $2,"
            " updated_at = now() WHERE telegram_id = $1",
            telegram_id,
            reason[:500],
        )
        return _row_count(status) > 0

    async def mark_deliverable(self, *, telegram_id: int) -> bool:
        """Clear the undeliverable mark of this account (it was heard from again)."""
        status = await self._pool.execute(
            "UPDATE users SET undeliverable_at = NULL, undeliverable_reason = NULL,"
            " updated_at = now() WHERE telegram_id = $1 AND undeliverable_at IS NOT NULL",
            telegram_id,
        )
        return _row_count(status) > 0

    async def get_undeliverable_telegram_ids(self) -> list[int]:
        rows = await self._pool.fetch(
            "SELECT telegram_id FROM users"
            " WHERE undeliverable_at IS NOT NULL AND telegram_id IS NOT NULL"
        )
        return [int(row["telegram_id"]) for row in rows]

    async def set_reminders(self, *, school_number: str, enabled: bool) -> None:
        status = await self._pool.execute(
            "UPDATE users SET reminders_enabled = $2, updated_at = now()"
            " WHERE user_school_number = $1",
            school_number,
            enabled,
        )
        if _row_count(status) == 0:
            raise NotFound(f"no user with school number {school_number!r}")

    async def set_language(self, *, telegram_id: int, language: str) -> None:
        """Store the reply language of a linked account (NotFound when not linked)."""
        status = await self._pool.execute(
            "UPDATE users SET language = $2, updated_at = now() WHERE telegram_id = $1",
            telegram_id,
            language,
        )
        if _row_count(status) == 0:
            raise NotFound(f"no user linked to Telegram account {telegram_id}")

    # --- schedule ------------------------------------------------------------------------

    async def replace_schedule(
        self, *, school_number: str, entries: Sequence[ScheduleEntry]
    ) -> None:
        """Replace the user's cached schedule with `entries`, in one transaction.

        Entries repeating a (start_time, course_code) pair are stored once. NotFound when
        the user does not exist.
        """
        for entry in entries:
            if entry.school_number != school_number:
                raise ValueError(
                    f"schedule entry for {entry.school_number!r} given to {school_number!r}"
                )
        async with self._transaction() as conn:
            exists = await conn.fetchval(
                "SELECT true FROM users WHERE user_school_number = $1 FOR SHARE", school_number
            )
            if exists is None:
                raise NotFound(f"no user with school number {school_number!r}")
            await conn.execute(
                "DELETE FROM schedule_entries WHERE school_number = $1", school_number
            )
            if entries:
                await conn.execute(
                    f"INSERT INTO schedule_entries ({_SCHEDULE_COLUMNS})"
                    " SELECT $1, e.s, e.e, e.c, e.n, e.t, e.k, e.y FROM unnest("
                    "$2::timestamptz[], $3::timestamptz[], $4::text[], $5::text[], $6::text[],"
                    " $7::text[], $8::text[]) AS e (s, e, c, n, t, k, y)"
                    " ON CONFLICT (school_number, start_time, course_code) DO NOTHING",
                    school_number,
                    [e.start_time for e in entries],
                    [e.end_time for e in entries],
                    [e.course_code for e in entries],
                    [e.course_name for e in entries],
                    [e.teachers for e in entries],
                    [e.teacher_key for e in entries],
                    [e.term for e in entries],
                )

    async def get_schedule(
        self, *, school_number: str, start: datetime, end: datetime
    ) -> list[ScheduleEntry]:
        """The user's lessons of the current term that overlap [start, end), by start time.

        Overlap (not "starts within") so that `start=now, end=now + 1 s` finds the lesson in
        progress.
        """
        _check_window(start, end)
        rows = await self._pool.fetch(
            f"SELECT {_SCHEDULE_COLUMNS} FROM schedule_entries"
            f" WHERE school_number = $1 AND start_time < $3 AND end_time > $2 AND {_CURRENT_TERM}"
            " ORDER BY start_time, course_code",
            school_number,
            start,
            end,
        )
        return [ScheduleEntry.model_validate(dict(row)) for row in rows]

    async def find_lessons_by_teacher_key(
        self, *, teacher_key: str, start: datetime, end: datetime
    ) -> list[ScheduleEntry]:
        """Distinct lesson occurrences taught by `teacher_key` overlapping [start, end).

        Taken from every cached schedule; one entry per (course_code, start_time, end_time),
        ordered by start time. The `school_number` of each returned entry is the lowest school
        number among the schedules holding that occurrence: it only says where the row was
        found and carries no meaning for the caller. A row's `teacher_key` holds the keys of all
        its teachers joined by `|`; `teacher_key` must equal one of them.
        """
        _check_window(start, end)
        rows = await self._pool.fetch(
            f"SELECT {_SCHEDULE_COLUMNS} FROM ("
            f" SELECT DISTINCT ON (course_code, start_time, end_time) {_SCHEDULE_COLUMNS}"
            " FROM schedule_entries"
            " WHERE $1 = ANY(string_to_array(teacher_key, '|'))"
            f" AND start_time < $3 AND end_time > $2 AND {_CURRENT_TERM}"
            " ORDER BY course_code, start_time, end_time, school_number"
            ") AS o ORDER BY start_time, course_code",
            teacher_key,
            start,
            end,
        )
        return [ScheduleEntry.model_validate(dict(row)) for row in rows]

    async def get_course_entries(self, *, course_code: str) -> list[ScheduleEntry]:
        """The current term's entries of `course_code` in students' cached schedules (one per
        student, start and teachers), by school number: the caller tells sections apart by
        their slots (services.lesson_finder.lesson_slot)."""
        rows = await self._pool.fetch(
            f"SELECT DISTINCT {', '.join('s.' + c for c in _SCHEDULE_COLUMNS.split(', '))}"
            " FROM schedule_entries AS s"
            " JOIN users AS u ON u.user_school_number = s.school_number"
            f" WHERE s.course_code = $1 AND u.role = 'student' AND s.{_CURRENT_TERM}"
            " ORDER BY s.school_number, s.start_time",
            course_code,
        )
        return [ScheduleEntry.model_validate(dict(row)) for row in rows]

    async def get_current_term(self) -> str | None:
        """The newest term any cached schedule came from; None when none names a term."""
        term: str | None = await self._pool.fetchval("SELECT max(term) FROM schedule_entries")
        return term

    async def get_stale_term_contacts(self, *, term: str) -> list[LinkedUser]:
        """Reachable linked users whose cached schedule is from a term before `term` (or names
        none) and has nothing of `term`: they should sign in again."""
        rows = await self._pool.fetch(
            f"SELECT {_LINKED_COLUMNS} FROM users AS u"
            " WHERE u.telegram_id IS NOT NULL AND u.undeliverable_at IS NULL"
            " AND EXISTS (SELECT 1 FROM schedule_entries AS s"
            "   WHERE s.school_number = u.user_school_number AND (s.term IS NULL OR s.term < $1))"
            " AND NOT EXISTS (SELECT 1 FROM schedule_entries AS s"
            "   WHERE s.school_number = u.user_school_number AND s.term >= $1)"
            " ORDER BY u.user_school_number",
            term,
        )
        return [LinkedUser.model_validate(dict(row)) for row in rows]

    async def get_linked_teachers(self) -> list[User]:
        """Teachers linked to a Telegram account (for telling namesakes apart)."""
        rows = await self._pool.fetch(
            f"SELECT {_USER_COLUMNS} FROM users"
            " WHERE role = 'teacher' AND telegram_id IS NOT NULL ORDER BY user_school_number"
        )
        return [User.model_validate(dict(row)) for row in rows]

    async def get_teacher_lessons_starting(
        self, *, start: datetime, end: datetime
    ) -> list[ScheduleEntry]:
        """Lessons of the current term in teachers' own schedules starting in [start, end)."""
        _check_window(start, end)
        rows = await self._pool.fetch(
            "SELECT s.school_number, s.start_time, s.end_time, s.course_code, s.course_name,"
            " s.teachers, s.teacher_key, s.term FROM schedule_entries AS s"
            " JOIN users AS u ON u.user_school_number = s.school_number"
            " WHERE u.role = 'teacher' AND s.start_time >= $1 AND s.start_time < $2"
            f" AND s.{_CURRENT_TERM}"
            " ORDER BY s.start_time, s.school_number, s.course_code",
            start,
            end,
        )
        return [ScheduleEntry.model_validate(dict(row)) for row in rows]

    # --- attendances ---------------------------------------------------------------------

    async def add_attendances(self, *, attendances: Sequence[Attendance]) -> None:
        """Insert attendances, all or none: Conflict on a known id, NotFound on an unknown
        teacher."""
        if not attendances:
            return
        columns = _attendance_columns(attendances)
        async with self._transaction() as conn:
            with _translated_integrity_errors():
                await conn.execute(_INSERT_ATTENDANCES, *columns)

    async def get_attendances(
        self, *, teacher_school_number: str, limit: int = 20, offset: int = 0
    ) -> list[Attendance]:
        """The teacher's attendances, newest first."""
        _check_page(limit, offset)
        rows = await self._pool.fetch(
            f"SELECT {_ATTENDANCE_COLUMNS} FROM attendances"
            " WHERE teacher_school_number = $1 AND NOT is_deleted"
            " ORDER BY start_time DESC, attendance_id LIMIT $2 OFFSET $3",
            teacher_school_number,
            limit,
            offset,
        )
        return [Attendance.model_validate(dict(row)) for row in rows]

    async def get_attendance_by_id(self, *, attendance_id: UUID) -> Attendance:
        row = await self._pool.fetchrow(
            f"SELECT {_ATTENDANCE_COLUMNS} FROM attendances"
            " WHERE attendance_id = $1 AND NOT is_deleted",
            attendance_id,
        )
        if row is None:
            raise NotFound(f"no attendance {attendance_id}")
        return Attendance.model_validate(dict(row))

    async def delete_attendance(
        self, *, attendance_id: UUID, reason: str, changed_by: str | None = None
    ) -> None:
        """Soft-delete the attendance (its records disappear from reads with it). With
        `changed_by`, the audit trail (`record_corrections`) says who, in the same
        transaction."""
        async with self._transaction() as conn:
            status = await conn.execute(
                "UPDATE attendances SET is_deleted = true, deletion_reason = $2,"
                " deletion_time = now() WHERE attendance_id = $1 AND NOT is_deleted",
                attendance_id,
                reason,
            )
            if _row_count(status) == 0:
                raise NotFound(f"no attendance {attendance_id}")
            if changed_by is not None:
                await _audit(
                    conn, attendance_id, None, "session_deleted", None, None, reason, changed_by
                )

    # --- records -------------------------------------------------------------------------

    async def add_attendance_records(
        self,
        *,
        records: Sequence[AttendanceRecord | RecordRow],
        method: RecordMethod = DEFAULT_RECORD_METHOD,
    ) -> int:
        """Insert records in bulk, skipping ones already stored; returns how many were new.

        `copy` streams them into a temp table and inserts from there; `executemany` sends
        one pipelined INSERT per record. All or none: NotFound when a record names an
        unknown attendance or student.
        """
        if method not in ("copy", "executemany"):
            raise ValueError(f"unknown insert method {method!r}")
        if not records:
            return 0
        async with self._transaction() as conn:
            with _translated_integrity_errors():
                if method == "copy":
                    return await _copy_records(conn, records)
                # executemany's pipelined protocol; fetchmany is that same path with
                # RETURNING, which tells how many rows were new.
                inserted = await conn.fetchmany(
                    _INSERT_RECORD_ROW, [_record_row(r) for r in records]
                )
                return len(inserted)

    async def get_attendance_records(self, *, attendance_id: UUID) -> list[AttendanceRecord]:
        """The attendance's records by student number (empty for a deleted attendance)."""
        rows = await self._pool.fetch(
            f"SELECT {_RECORD_COLUMNS_R} FROM attendance_records AS r"
            " JOIN attendances AS a ON a.attendance_id = r.attendance_id"
            " WHERE r.attendance_id = $1 AND NOT r.is_deleted AND NOT a.is_deleted"
            " ORDER BY r.student_number",
            attendance_id,
        )
        return [AttendanceRecord.model_validate(dict(row)) for row in rows]

    async def delete_attendance_record(
        self,
        *,
        attendance_id: UUID,
        student_number: str,
        reason: str,
        changed_by: str | None = None,
    ) -> None:
        async with self._transaction() as conn:
            old: str | None = await conn.fetchval(
                "UPDATE attendance_records AS r SET is_deleted = true, deletion_reason = $3,"
                f" deletion_time = now() FROM attendances AS a WHERE {_VISIBLE_RECORD}"
                " RETURNING r.status",
                attendance_id,
                student_number,
                reason,
            )
            if old is None:
                raise NotFound(f"no record of {student_number!r} in attendance {attendance_id}")
            if changed_by is not None:
                await _audit(
                    conn,
                    attendance_id,
                    student_number,
                    "record_deleted",
                    old,
                    None,
                    reason,
                    changed_by,
                )

    async def set_record_attended(
        self,
        *,
        attendance_id: UUID,
        student_number: str,
        is_attended: bool,
        fail_reason: str | None,
        changed_by: str | None = None,
        reason: str | None = None,
        note: str | None = None,
        expect_status: RecordStatus | None = None,
    ) -> AttendanceRecord:
        """Accept (`is_attended=True`, no reason) or fail a stored record; returns it.

        The status follows (`dal.models.record_status`): an accepted record that was stored
        late is late again. With `changed_by`, the change goes into the audit trail
        (`record_corrections`: old and new status, `reason`) in the same transaction; `note`
        replaces the teacher's note when given. With `expect_status`, a record in another
        status is left alone (`NotFound`): the row is locked, so two teachers' concurrent
        corrections do not both apply to the same old state.
        """
        if is_attended and fail_reason is not None:
            raise ValueError("an attended record has no fail_reason")
        status = record_status(is_attended=is_attended, is_late=False, fail_reason=fail_reason)
        async with self._transaction() as conn:
            old: str | None = await conn.fetchval(
                "SELECT r.status FROM attendance_records AS r, attendances AS a"
                f" WHERE {_VISIBLE_RECORD} FOR UPDATE OF r",
                attendance_id,
                student_number,
            )
            if old is None or (expect_status is not None and old != expect_status.value):
                raise NotFound(f"no record of {student_number!r} in attendance {attendance_id}")
            row = await conn.fetchrow(
                "UPDATE attendance_records AS r SET is_attended = $3, fail_reason = $4,"
                " status = CASE WHEN $3 AND r.is_late THEN 'late' ELSE $5 END,"
                " teacher_note = coalesce($6, r.teacher_note)"
                f" FROM attendances AS a WHERE {_VISIBLE_RECORD} RETURNING {_RECORD_COLUMNS_R}",
                attendance_id,
                student_number,
                is_attended,
                fail_reason,
                status.value,
                note,
            )
            assert row is not None  # locked above
            record = AttendanceRecord.model_validate(dict(row))
            if changed_by is not None:
                action = "excused" if record.status is RecordStatus.EXCUSED else "status"
                await _audit(
                    conn,
                    attendance_id,
                    student_number,
                    action,
                    old,
                    record.status.value,
                    reason,
                    changed_by,
                )
        return record

    async def get_student_history(
        self, *, student_number: str, limit: int = 20
    ) -> list[StudentAttendanceRow]:
        """The student's records, newest lesson first."""
        _check_page(limit, 0)
        rows = await self._pool.fetch(
            "SELECT a.attendance_id, a.lesson_name, a.lesson_code, a.start_time,"
            " r.is_attended, r.is_late, r.fail_reason, r.status"
            " FROM attendance_records AS r"
            " JOIN attendances AS a ON a.attendance_id = r.attendance_id"
            " WHERE r.student_number = $1 AND NOT r.is_deleted AND NOT a.is_deleted"
            " ORDER BY a.start_time DESC, a.attendance_id LIMIT $2",
            student_number,
            limit,
        )
        return [StudentAttendanceRow.model_validate(dict(row)) for row in rows]

    async def get_attendance_summary(self, *, attendance_id: UUID) -> dict[str, int]:
        """Counts by status (dal.models.RecordStatus) and the total."""
        row = await self._pool.fetchrow(
            "SELECT"
            " count(r.student_number) FILTER (WHERE r.status = 'present') AS present,"
            " count(r.student_number) FILTER (WHERE r.status = 'late') AS late,"
            " count(r.student_number) FILTER (WHERE r.status = 'absent') AS absent,"
            " count(r.student_number) FILTER (WHERE r.status = 'pending') AS pending,"
            " count(r.student_number) FILTER (WHERE r.status = 'rejected') AS rejected,"
            " count(r.student_number) FILTER (WHERE r.status = 'excused') AS excused,"
            " count(r.student_number) AS total"
            " FROM attendances AS a"
            " LEFT JOIN attendance_records AS r"
            "   ON r.attendance_id = a.attendance_id AND NOT r.is_deleted"
            " WHERE a.attendance_id = $1 AND NOT a.is_deleted"
            " GROUP BY a.attendance_id",
            attendance_id,
        )
        if row is None:
            raise NotFound(f"no attendance {attendance_id}")
        return {key: int(value) for key, value in row.items()}

    # --- term statistics, exports, warnings (issue 13) -----------------------------------

    async def add_saved_record(
        self, *, attendance_id: UUID, student_number: str, changed_by: str, at: datetime
    ) -> AttendanceRecord:
        """A teacher adds a student as present to a saved session (a correction, kept in the
        audit trail). An unknown school number becomes a student named by the number, as
        finalization does. A soft-deleted record of the student comes back as present.
        NotFound for a missing or deleted session, Conflict when the student has a record."""
        async with self._transaction() as conn:
            live = await conn.fetchval(
                "SELECT true FROM attendances WHERE attendance_id = $1 AND NOT is_deleted"
                " FOR SHARE",
                attendance_id,
            )
            if live is None:
                raise NotFound(f"no attendance {attendance_id}")
            await conn.execute(
                f"INSERT INTO users ({_USER_COLUMNS}) VALUES ($1, $1, 'student')"
                " ON CONFLICT (user_school_number) DO NOTHING",
                student_number,
            )
            row = await conn.fetchrow(
                f"INSERT INTO attendance_records AS r ({_RECORD_COLUMNS})"
                " VALUES ($1, $2, true, $3, NULL, false, 'teacher', false, NULL, NULL,"
                " 'present', NULL)"
                " ON CONFLICT (attendance_id, student_number) DO UPDATE SET is_attended = true,"
                " attendance_time = excluded.attendance_time, fail_reason = NULL,"
                " is_late = false, source = 'teacher', status = 'present', is_deleted = false,"
                " deletion_reason = NULL, deletion_time = NULL, teacher_note = NULL"
                f" WHERE r.is_deleted RETURNING {_RECORD_COLUMNS_R}",
                attendance_id,
                student_number,
                at,
            )
            if row is None:
                raise Conflict(f"{student_number!r} already has a record in {attendance_id}")
            await _audit(
                conn, attendance_id, student_number, "added", None, "present", None, changed_by
            )
        return AttendanceRecord.model_validate(dict(row))

    async def get_student_records(self, *, student_number: str) -> list[StudentAttendanceRow]:
        """Every visible record of the student (no page limit), oldest lesson first: the
        per-course statistics of /my_attendance and the warnings count them all."""
        rows = await self._pool.fetch(
            "SELECT a.attendance_id, a.lesson_name, a.lesson_code, a.start_time,"
            " r.is_attended, r.is_late, r.fail_reason, r.status"
            " FROM attendance_records AS r"
            " JOIN attendances AS a ON a.attendance_id = r.attendance_id"
            " WHERE r.student_number = $1 AND NOT r.is_deleted AND NOT a.is_deleted"
            " ORDER BY a.start_time, a.attendance_id",
            student_number,
        )
        return [StudentAttendanceRow.model_validate(dict(row)) for row in rows]

    async def get_course_status_counts(
        self, *, course_key: str, student_numbers: Sequence[str]
    ) -> dict[str, dict[str, int]]:
        """Per student of `student_numbers`: their visible records in the course (`course_key`:
        the lesson code, or the name of sessions without one) counted by status."""
        rows = await self._pool.fetch(
            "SELECT r.student_number, r.status, count(*) AS n"
            " FROM attendance_records AS r"
            " JOIN attendances AS a ON a.attendance_id = r.attendance_id"
            " WHERE r.student_number = ANY($2::text[]) AND NOT r.is_deleted"
            f" AND NOT a.is_deleted AND {COURSE_KEY_SQL} = $1"
            " GROUP BY r.student_number, r.status",
            course_key,
            list(student_numbers),
        )
        counts: dict[str, dict[str, int]] = {}
        for row in rows:
            counts.setdefault(row["student_number"], {})[row["status"]] = int(row["n"])
        return counts

    async def get_teacher_courses(self, *, teacher_school_number: str) -> list[CourseSummary]:
        """The courses the teacher has saved sessions of, most recent first."""
        rows = await self._pool.fetch(
            f"SELECT {COURSE_KEY_SQL} AS course_key,"
            " (array_agg(a.lesson_name ORDER BY a.start_time DESC))[1] AS lesson_name,"
            " count(*) AS sessions, max(a.start_time) AS last_start"
            " FROM attendances AS a"
            " WHERE a.teacher_school_number = $1 AND NOT a.is_deleted"
            " GROUP BY 1 ORDER BY last_start DESC, 1",
            teacher_school_number,
        )
        return [CourseSummary(r["course_key"], r["lesson_name"], int(r["sessions"])) for r in rows]

    async def get_course_sessions(
        self, *, teacher_school_number: str, course_key: str
    ) -> list[Attendance]:
        """The teacher's visible sessions of the course, oldest first."""
        rows = await self._pool.fetch(
            f"SELECT {_ATTENDANCE_COLUMNS} FROM attendances AS a"
            f" WHERE a.teacher_school_number = $1 AND NOT a.is_deleted AND {COURSE_KEY_SQL} = $2"
            " ORDER BY a.start_time, a.attendance_id",
            teacher_school_number,
            course_key,
        )
        return [Attendance.model_validate(dict(row)) for row in rows]

    async def get_course_records(
        self, *, teacher_school_number: str, course_key: str
    ) -> list[CourseRecordRow]:
        """The visible records of the teacher's visible sessions of the course, with the
        students' names: one query, plain rows (an export reads thousands)."""
        rows = await self._pool.fetch(
            "SELECT r.attendance_id, r.student_number,"
            " coalesce(u.user_full_name, r.student_number) AS full_name, r.status,"
            " r.attendance_time, r.fail_reason, r.teacher_note, r.source"
            " FROM attendance_records AS r"
            " JOIN attendances AS a ON a.attendance_id = r.attendance_id"
            " LEFT JOIN users AS u ON u.user_school_number = r.student_number"
            " WHERE a.teacher_school_number = $1 AND NOT a.is_deleted AND NOT r.is_deleted"
            f" AND {COURSE_KEY_SQL} = $2"
            " ORDER BY a.start_time, r.student_number",
            teacher_school_number,
            course_key,
        )
        return [
            CourseRecordRow(
                attendance_id=r["attendance_id"],
                student_number=r["student_number"],
                full_name=r["full_name"],
                status=RecordStatus(r["status"]),
                attendance_time=r["attendance_time"],
                fail_reason=r["fail_reason"],
                teacher_note=r["teacher_note"],
                source=r["source"],
            )
            for r in rows
        ]

    async def get_course_corrections(
        self, *, teacher_school_number: str, course_key: str
    ) -> list[Correction]:
        """The audit trail of the teacher's sessions of the course (deleted ones included:
        their deletion is a correction), oldest first."""
        rows = await self._pool.fetch(
            "SELECT c.attendance_id, a.start_time AS session_start, c.student_number,"
            " coalesce(u.user_full_name, c.student_number) AS full_name, c.action,"
            " c.old_status, c.new_status, c.reason, c.changed_by, c.changed_at"
            " FROM record_corrections AS c"
            " JOIN attendances AS a ON a.attendance_id = c.attendance_id"
            " LEFT JOIN users AS u ON u.user_school_number = c.student_number"
            f" WHERE a.teacher_school_number = $1 AND {COURSE_KEY_SQL} = $2"
            " ORDER BY c.changed_at, c.correction_id",
            teacher_school_number,
            course_key,
        )
        return [Correction(**dict(row)) for row in rows]

    async def get_corrections(self, *, attendance_id: UUID) -> list[Correction]:
        """The audit trail of one session, oldest first."""
        rows = await self._pool.fetch(
            "SELECT c.attendance_id, a.start_time AS session_start, c.student_number,"
            " coalesce(u.user_full_name, c.student_number) AS full_name, c.action,"
            " c.old_status, c.new_status, c.reason, c.changed_by, c.changed_at"
            " FROM record_corrections AS c"
            " JOIN attendances AS a ON a.attendance_id = c.attendance_id"
            " LEFT JOIN users AS u ON u.user_school_number = c.student_number"
            " WHERE c.attendance_id = $1 ORDER BY c.changed_at, c.correction_id",
            attendance_id,
        )
        return [Correction(**dict(row)) for row in rows]

    async def set_warning_states(
        self, *, course_key: str, states: dict[str, bool]
    ) -> dict[str, bool]:
        """Store whether each student is below the warning threshold in the course; return
        the students whose state changed (or was new), with the new state. One statement:
        two finalizations racing on the same student report a change once."""
        if not states:
            return {}
        numbers = sorted(states)
        rows = await self._pool.fetch(
            "INSERT INTO attendance_warnings AS w (student_number, course_key, below)"
            " SELECT n, $1, b FROM unnest($2::text[], $3::boolean[]) AS i (n, b)"
            " ON CONFLICT (student_number, course_key) DO UPDATE"
            " SET below = excluded.below, changed_at = now()"
            " WHERE w.below IS DISTINCT FROM excluded.below"
            " RETURNING w.student_number, w.below",
            course_key,
            numbers,
            [states[n] for n in numbers],
        )
        return {row["student_number"]: bool(row["below"]) for row in rows}

    async def get_warning_states(self, *, course_key: str) -> dict[str, bool]:
        rows = await self._pool.fetch(
            "SELECT student_number, below FROM attendance_warnings WHERE course_key = $1",
            course_key,
        )
        return {row["student_number"]: bool(row["below"]) for row in rows}

    # --- finalization --------------------------------------------------------------------

    async def persist_session(
        self,
        *,
        users: Sequence[User],
        attendance: Attendance,
        records: Sequence[AttendanceRecord | RecordRow],
    ) -> bool:
        """Store a finished session in ONE transaction: users, then the attendance, then
        its records.

        Idempotent: returns True when the attendance row was new, False when it was already
        stored (a re-run), and never duplicates a record. Any failure rolls everything back
        (NotFound when a record names a student missing from `users` and the table).
        """
        for record in records:
            if record.attendance_id != attendance.attendance_id:
                raise ValueError(
                    f"record of attendance {record.attendance_id} given with"
                    f" {attendance.attendance_id}"
                )
        async with self._transaction() as conn:
            with _translated_integrity_errors():
                if users:
                    await _upsert_users(conn, users)
                new_id = await conn.fetchval(
                    _INSERT_ATTENDANCE_IF_NEW, *_attendance_row(attendance)
                )
                if records:
                    await _copy_records(conn, records)
        return new_id is not None

    async def persist_sessions(
        self,
        *,
        users: Sequence[User],
        attendances: Sequence[Attendance],
        records: Sequence[AttendanceRecord | RecordRow],
    ) -> set[UUID]:
        """Store several finished sessions in ONE transaction: the users of all of them
        first, then the attendances, then their records (what `persist_session` does for
        one, in three statements however many sessions there are).

        Idempotent like `persist_session`: returns the ids of the attendances that were new
        (the others were stored already, with all their records, by an earlier run: their
        records are skipped) and never duplicates a record. The records of the new ones go
        in by one binary COPY (`_copy_new_records`). All or
        none: any failure rolls back every session of the batch (NotFound when a record
        names a student missing from `users` and the table), so that the caller can retry
        them one by one to isolate a bad one. A user listed twice keeps the last entry.
        """
        ids = [attendance.attendance_id for attendance in attendances]
        given = set(ids)
        if len(given) != len(ids):
            raise ValueError("an attendance is given twice")
        for record in records:
            if record.attendance_id not in given:
                raise ValueError(f"record of attendance {record.attendance_id} given without it")
        if not attendances:
            return set()
        async with self._transaction() as conn:
            with _translated_integrity_errors():
                if users:
                    await _upsert_users(conn, users)
                new = await conn.fetch(
                    _INSERT_ATTENDANCES_IF_NEW, *_attendance_columns(attendances)
                )
                created = {row["attendance_id"] for row in new}
                fresh = [r for r in records if r.attendance_id in created]
                if fresh:
                    await _copy_new_records(conn, fresh)
        return created

    # --- background jobs (issue 5: finalize, purge, reminders) ---------------------------
    # Added by the scheduler work; kept apart from the methods above.

    @contextmanager
    def outage_as_unavailable(self) -> Iterator[None]:
        """Inside the block, a lost or unreachable server raises `DatabaseUnavailable`.

        Background jobs must tell an outage (keep Redis as it is, retry next tick) from a
        bad session (log it, go on with the others); the other methods let asyncpg's
        connection errors through as they are.
        """
        try:
            yield
        except _OUTAGE_ERRORS as exc:
            raise DatabaseUnavailable.unreachable(self._masked_dsn, exc) from exc

    async def get_linked_telegram_ids(self, *, telegram_ids: Sequence[int]) -> set[int]:
        """Those of `telegram_ids` that are linked to a user (for the purge of FSM leftovers)."""
        if not telegram_ids:
            return set()
        rows = await self._pool.fetch(
            "SELECT telegram_id FROM users WHERE telegram_id = ANY($1::bigint[])",
            list(set(telegram_ids)),
        )
        return {int(row["telegram_id"]) for row in rows}

    # --- privacy ------------------------------------------------------------------------------

    async def forget_telegram_user(self, *, telegram_id: int) -> str | None:
        """/logout: unlink `telegram_id` and drop what was cached for that account (its
        schedule rows, language and reminder preferences, delivery failure), in one
        transaction. The user row (school number, name, role) stays: attendance records are
        the institution's and refer to it. Returns the school number that was linked."""
        async with self._transaction() as conn:
            school_number: str | None = await conn.fetchval(
                f"UPDATE users SET {_FORGET_ASSIGNMENTS} WHERE telegram_id = $1"
                " RETURNING user_school_number",
                telegram_id,
            )
            if school_number is not None:
                await conn.execute(
                    "DELETE FROM schedule_entries WHERE school_number = $1", school_number
                )
        return school_number

    async def forget_inactive_users(self, *, inactive_since: datetime) -> list[int]:
        """Drop the cached personal data of every account with no login and no attendance
        (as a student checking in, or as a teacher opening a session) since `inactive_since`,
        as /logout does. Returns the Telegram ids that were linked, for their Redis copies."""
        rows = await self._pool.fetch(
            f"""
            WITH stale AS (
                SELECT u.user_school_number, u.telegram_id
                FROM users u
                WHERE (u.linked_at IS NULL OR u.linked_at < $1)
                  AND (u.telegram_id IS NOT NULL OR u.language <> 'en'
                       OR NOT u.reminders_enabled OR u.undeliverable_at IS NOT NULL
                       OR EXISTS (SELECT 1 FROM schedule_entries s
                                  WHERE s.school_number = u.user_school_number))
                  AND NOT EXISTS (SELECT 1 FROM attendance_records r
                                  WHERE r.student_number = u.user_school_number
                                    AND r.attendance_time >= $1)
                  AND NOT EXISTS (SELECT 1 FROM attendances a
                                  WHERE a.teacher_school_number = u.user_school_number
                                    AND a.start_time >= $1)
                FOR UPDATE OF u
            ),
            schedules AS (
                DELETE FROM schedule_entries s USING stale
                WHERE s.school_number = stale.user_school_number
            ),
            forgotten AS (
                UPDATE users u SET {_FORGET_ASSIGNMENTS}
                FROM stale WHERE u.user_school_number = stale.user_school_number
            )
            SELECT telegram_id FROM stale WHERE telegram_id IS NOT NULL
            """,
            inactive_since,
        )
        return [int(row["telegram_id"]) for row in rows]


# --- helpers ------------------------------------------------------------------------------


async def _audit(
    conn: _Conn,
    attendance_id: UUID,
    student_number: str | None,
    action: str,
    old_status: str | None,
    new_status: str | None,
    reason: str | None,
    changed_by: str,
) -> None:
    await conn.execute(
        "INSERT INTO record_corrections (attendance_id, student_number, action, old_status,"
        " new_status, reason, changed_by) VALUES ($1, $2, $3, $4, $5, $6, $7)",
        attendance_id,
        student_number,
        action,
        old_status,
        new_status,
        reason,
        changed_by,
    )


async def _upsert_users(conn: _Conn, users: Sequence[User]) -> None:
    # One row per school number (last one wins: ON CONFLICT DO UPDATE may not touch a row
    # twice in one statement), in key order so concurrent upserts lock rows alike.
    latest = {user.user_school_number: user for user in users}
    ordered = [latest[key] for key in sorted(latest)]
    await conn.execute(
        _UPSERT_USERS,
        [u.user_school_number for u in ordered],
        [u.user_full_name for u in ordered],
        [u.role.value for u in ordered],
    )


async def _copy_records(conn: _Conn, records: Sequence[AttendanceRecord | RecordRow]) -> int:
    """COPY into a transaction-local staging table, then INSERT ... ON CONFLICT DO NOTHING.

    Must run inside a transaction. COPY cannot skip duplicates itself; the staging table
    lets the final INSERT do it.
    """
    await conn.execute(
        f"CREATE TEMP TABLE {_RECORDS_STAGING} (LIKE attendance_records INCLUDING DEFAULTS)"
        " ON COMMIT DROP"
    )
    await conn.copy_records_to_table(
        _RECORDS_STAGING, records=[_record_row(r) for r in records], columns=_RECORD_FIELDS
    )
    status = await conn.execute(
        f"INSERT INTO attendance_records ({_RECORD_COLUMNS})"
        f" SELECT {_RECORD_COLUMNS} FROM {_RECORDS_STAGING}"
        " ON CONFLICT (attendance_id, student_number) DO NOTHING"
    )
    # Dropped now so that a second bulk insert in the same transaction can stage again.
    await conn.execute(f"DROP TABLE {_RECORDS_STAGING}")
    return _row_count(status)


async def _copy_new_records(conn: _Conn, records: Sequence[AttendanceRecord | RecordRow]) -> None:
    """Binary COPY straight into `attendance_records`: no staging table, no ON CONFLICT.

    Only for the records of attendances this transaction has just inserted (`INSERT ... ON
    CONFLICT DO NOTHING RETURNING` named them): a session's records are only ever stored in
    the transaction that stores its attendance row, so an attendance that was new has no
    record yet, and one stored before has all of them (a re-run skips them). A concurrent
    writer of the same attendance waits on its primary key until this one ends. Measured in
    `make bench` (issue 9, item 7): the fastest of unnest INSERT, staging table + INSERT, and
    this."""
    await conn.copy_records_to_table(
        "attendance_records", records=[_record_row(r) for r in records], columns=_RECORD_FIELDS
    )


def _record_row(record: AttendanceRecord | RecordRow) -> tuple[Any, ...]:
    return (
        record.attendance_id,
        record.student_number,
        record.is_attended,
        record.attendance_time,
        record.fail_reason,
        record.is_late,
        record.source.value,
        record.is_deleted,
        record.deletion_reason,
        record.deletion_time,
        record.status.value,
        record.teacher_note,
    )


def _attendance_row(attendance: Attendance) -> tuple[Any, ...]:
    return (
        attendance.attendance_id,
        attendance.teacher_school_number,
        attendance.lesson_name,
        attendance.lesson_code,
        attendance.start_time,
        attendance.end_time,
        attendance.security_option,
        attendance.is_deleted,
        attendance.deletion_reason,
        attendance.deletion_time,
        attendance.lesson_slot,
        attendance.scheduled_start,
    )


def _attendance_columns(attendances: Sequence[Attendance]) -> list[list[Any]]:
    rows = [_attendance_row(a) for a in attendances]
    return [list(column) for column in zip(*rows, strict=True)]


@contextmanager
def _translated_integrity_errors() -> Iterator[None]:
    try:
        yield
    except asyncpg.ForeignKeyViolationError as exc:
        raise NotFound(exc.detail or str(exc)) from exc
    except asyncpg.UniqueViolationError as exc:
        raise Conflict(exc.detail or str(exc)) from exc


def _row_count(status: str) -> int:
    """Rows affected, from a command status such as `UPDATE 3` or `INSERT 0 5`."""
    return int(status.rsplit(" ", 1)[-1])


def _check_window(start: datetime, end: datetime) -> None:
    # asyncpg would read a naive datetime as UTC: silently wrong for Europe/Istanbul.
    if start.utcoffset() is None or end.utcoffset() is None:
        raise ValueError("start and end must be timezone-aware")


def _check_page(limit: int, offset: int) -> None:
    if limit < 0 or offset < 0:
        raise ValueError("limit and offset must not be negative")
