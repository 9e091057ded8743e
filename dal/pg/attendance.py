"""`AttendanceStore`: attendance sessions and their records, and the finalization writes.

A finished session reaches PostgreSQL in ONE transaction (users upserted first, then the
attendance, then its records) through `persist_session` / `persist_sessions`, idempotently:
re-running leaves exactly one copy of every record (docs/contracts.md, "Finalization is exactly
once"). Soft-deleted attendances and records never appear in these reads.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Final, Literal, TypeAlias
from uuid import UUID

from dal.errors import NotFound
from dal.models import Attendance, AttendanceRecord, RecordRow, User
from dal.pg.common import (
    ATTENDANCE_COLUMNS,
    RECORD_COLUMNS,
    RECORD_COLUMNS_R,
    RECORD_FIELDS,
    Store,
    translated_integrity_errors,
    upsert_users,
)
from dal.pg.counts import add_stored_records
from dal.pg.pool import Conn

__all__ = ["DEFAULT_RECORD_METHOD", "AttendanceStore", "RecordMethod"]

RecordMethod: TypeAlias = Literal["copy", "executemany"]
# Measured with `python -m bench.bulk_insert` (PostgreSQL 15 over TCP on 127.0.0.1, median of 3):
# 10k rows: copy ~96k rows/s vs executemany ~61k; 100k rows: ~82k vs ~59k. Per-row FK checks
# and the primary key bound both. Below ~100 rows executemany wins by under a millisecond.
DEFAULT_RECORD_METHOD: Final[RecordMethod] = "copy"

_INSERT_ATTENDANCES = f"""
INSERT INTO attendances ({ATTENDANCE_COLUMNS})
SELECT {ATTENDANCE_COLUMNS} FROM unnest(
    $1::uuid[], $2::text[], $3::text[], $4::text[], $5::timestamptz[], $6::timestamptz[],
    $7::smallint[], $8::boolean[], $9::text[], $10::timestamptz[], $11::text[], $12::timestamptz[],
    $13::text[]
) AS a ({ATTENDANCE_COLUMNS})
"""

_INSERT_ATTENDANCE_IF_NEW = f"""
INSERT INTO attendances ({ATTENDANCE_COLUMNS})
VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13)
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
INSERT INTO attendance_records ({RECORD_COLUMNS})
VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)
ON CONFLICT (attendance_id, student_number) DO NOTHING
RETURNING attendance_id, student_number
"""


class AttendanceStore(Store):
    """Saved attendance sessions and their records."""

    async def add_attendances(self, *, attendances: Sequence[Attendance]) -> None:
        """Insert attendances, all or none: Conflict on a known id, NotFound on an unknown
        teacher."""
        if not attendances:
            return
        columns = _attendance_columns(attendances)
        async with self._transaction() as conn:
            with translated_integrity_errors():
                await conn.execute(_INSERT_ATTENDANCES, *columns)

    async def get_attendance_by_id(self, *, attendance_id: UUID) -> Attendance:
        row = await self._pool.fetchrow(
            f"SELECT {ATTENDANCE_COLUMNS} FROM attendances"
            " WHERE attendance_id = $1 AND NOT is_deleted",
            attendance_id,
        )
        if row is None:
            raise NotFound(f"no attendance {attendance_id}")
        return Attendance.model_validate(dict(row))

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
            with translated_integrity_errors():
                if method == "copy":
                    return await _copy_records(conn, records)
                # executemany's pipelined protocol; fetchmany is that same path with
                # RETURNING, which tells which rows were new.
                inserted = await conn.fetchmany(
                    _INSERT_RECORD_ROW, [_record_row(r) for r in records]
                )
                await add_stored_records(
                    conn, keys=[(row["attendance_id"], row["student_number"]) for row in inserted]
                )
                return len(inserted)

    async def get_attendance_records(self, *, attendance_id: UUID) -> list[AttendanceRecord]:
        """The attendance's records by student number (empty for a deleted attendance)."""
        rows = await self._pool.fetch(
            f"SELECT {RECORD_COLUMNS_R} FROM attendance_records AS r"
            " JOIN attendances AS a ON a.attendance_id = r.attendance_id"
            " WHERE r.attendance_id = $1 AND NOT r.is_deleted AND NOT a.is_deleted"
            " ORDER BY r.student_number",
            attendance_id,
        )
        return [AttendanceRecord.model_validate(dict(row)) for row in rows]

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
            with translated_integrity_errors():
                if users:
                    await upsert_users(conn, users)
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
            with translated_integrity_errors():
                if users:
                    await upsert_users(conn, users)
                new = await conn.fetch(
                    _INSERT_ATTENDANCES_IF_NEW, *_attendance_columns(attendances)
                )
                created = {row["attendance_id"] for row in new}
                fresh = [r for r in records if r.attendance_id in created]
                if fresh:
                    await _copy_new_records(conn, fresh)
                    # The per-course counts follow in the same transaction, for the new
                    # attendances only: a re-run adds nothing (exactly once).
                    await add_stored_records(
                        conn, attendance_ids=sorted({r.attendance_id for r in fresh})
                    )
        return created


# --- helpers ------------------------------------------------------------------------------


async def _copy_records(conn: Conn, records: Sequence[AttendanceRecord | RecordRow]) -> int:
    """COPY into a transaction-local staging table, then INSERT ... ON CONFLICT DO NOTHING.

    Must run inside a transaction. COPY cannot skip duplicates itself; the staging table
    lets the final INSERT do it.
    """
    await conn.execute(
        f"CREATE TEMP TABLE {_RECORDS_STAGING} (LIKE attendance_records INCLUDING DEFAULTS)"
        " ON COMMIT DROP"
    )
    await conn.copy_records_to_table(
        _RECORDS_STAGING, records=[_record_row(r) for r in records], columns=RECORD_FIELDS
    )
    inserted = await conn.fetch(
        f"INSERT INTO attendance_records ({RECORD_COLUMNS})"
        f" SELECT {RECORD_COLUMNS} FROM {_RECORDS_STAGING}"
        " ON CONFLICT (attendance_id, student_number) DO NOTHING"
        " RETURNING attendance_id, student_number"
    )
    # Dropped now so that a second bulk insert in the same transaction can stage again.
    await conn.execute(f"DROP TABLE {_RECORDS_STAGING}")
    # Only what was new is counted: a re-run of a stored session adds nothing.
    await add_stored_records(
        conn, keys=[(row["attendance_id"], row["student_number"]) for row in inserted]
    )
    return len(inserted)


async def _copy_new_records(conn: Conn, records: Sequence[AttendanceRecord | RecordRow]) -> None:
    """Binary COPY straight into `attendance_records`: no staging table, no ON CONFLICT.

    Only for the records of attendances this transaction has just inserted (`INSERT ... ON
    CONFLICT DO NOTHING RETURNING` named them): a session's records are only ever stored in
    the transaction that stores its attendance row, so an attendance that was new has no
    record yet, and one stored before has all of them (a re-run skips them). A concurrent
    writer of the same attendance waits on its primary key until this one ends. Measured in
    `make bench`: the fastest of unnest INSERT, staging table + INSERT, and
    this."""
    await conn.copy_records_to_table(
        "attendance_records", records=[_record_row(r) for r in records], columns=RECORD_FIELDS
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
        attendance.term,
    )


def _attendance_columns(attendances: Sequence[Attendance]) -> list[list[Any]]:
    rows = [_attendance_row(a) for a in attendances]
    return [list(column) for column in zip(*rows, strict=True)]
