"""The per-(student, course, term) counts of `attendance_course_counts` (migration 0008).

They change only inside the transactions that change what they count: finalization adds the
records it has just stored, a correction moves one record from its old status to its new one,
a soft deletion takes the deleted records away. Every writer of `attendance_records` and of
`attendances.is_deleted` goes through these helpers; `RECOUNT_SQL` computes the same figures
from the records themselves (the migration's backfill, and what the tests compare with).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Final
from uuid import UUID

from dal.models import RecordStatus
from dal.pg.pool import Conn

__all__ = [
    "COUNT_COLUMNS",
    "REBUILD_SQL",
    "RECOUNT_SQL",
    "add_stored_records",
    "move_record",
    "remove_records",
]

# The status columns, in dal.models.RecordStatus order.
COUNT_COLUMNS: Final = tuple(status.value for status in RecordStatus)

_FILTERS = ", ".join(
    f"count(*) FILTER (WHERE r.status = '{column}') AS {column}" for column in COUNT_COLUMNS
)
_GROUP = (
    "r.student_number, coalesce(a.term, '') AS term,"
    " coalesce(a.lesson_code, a.lesson_name) AS course_key,"
    " (array_agg(a.lesson_name ORDER BY a.start_time DESC))[1] AS lesson_name"
)

# Every visible record counted afresh, one row per (student, term, course).
RECOUNT_SQL: Final = (
    f"SELECT {_GROUP}, {_FILTERS} FROM attendance_records AS r"
    " JOIN attendances AS a ON a.attendance_id = r.attendance_id"
    " WHERE NOT r.is_deleted AND NOT a.is_deleted GROUP BY 1, 2, 3"
)

_COLUMNS = ", ".join(COUNT_COLUMNS)

# The whole table rebuilt from the records (after data was changed by hand, as the
# migration's backfill did).
REBUILD_SQL: Final = (
    "DELETE FROM attendance_course_counts;"
    " INSERT INTO attendance_course_counts"
    f" (student_number, term, course_key, lesson_name, {_COLUMNS}) {RECOUNT_SQL}"
)
_ADD = ", ".join(f"{c} = k.{c} + excluded.{c}" for c in COUNT_COLUMNS)

# Rows go in key order, so that two transactions adding to the same students lock their rows
# in the same order (no deadlock between concurrent finalization batches).
_ADD_RECORDS = (
    "INSERT INTO attendance_course_counts AS k"
    f" (student_number, term, course_key, lesson_name, {_COLUMNS})"
    f" SELECT {_GROUP}, {_FILTERS} FROM attendance_records AS r"
    " JOIN attendances AS a ON a.attendance_id = r.attendance_id"
    " WHERE {where} AND NOT r.is_deleted AND NOT a.is_deleted"
    " GROUP BY 1, 2, 3 ORDER BY 1, 2, 3"
    f" ON CONFLICT (student_number, term, course_key) DO UPDATE SET {_ADD},"
    " lesson_name = excluded.lesson_name"
)
_BY_ATTENDANCES = _ADD_RECORDS.format(where="r.attendance_id = ANY($1::uuid[])")
_BY_KEYS = _ADD_RECORDS.format(
    where="(r.attendance_id, r.student_number) IN (SELECT * FROM unnest($1::uuid[], $2::text[]))"
)

_SHIFT = (
    "INSERT INTO attendance_course_counts AS k"
    f" (student_number, term, course_key, lesson_name, {_COLUMNS})"
    " SELECT i.n, coalesce(a.term, ''), coalesce(a.lesson_code, a.lesson_name), a.lesson_name,"
    f" {', '.join(f'i.{c}' for c in COUNT_COLUMNS)}"
    f" FROM unnest($2::text[], {', '.join(f'${i + 3}::integer[]' for i in range(6))})"
    f" AS i (n, {_COLUMNS})"
    " JOIN attendances AS a ON a.attendance_id = $1"
    " ORDER BY i.n"
    f" ON CONFLICT (student_number, term, course_key) DO UPDATE SET {_ADD}"
)


async def add_stored_records(
    conn: Conn,
    *,
    attendance_ids: Sequence[UUID] = (),
    keys: Sequence[tuple[UUID, str]] = (),
) -> None:
    """Count records this transaction has just stored: every record of `attendance_ids`
    (attendances it has just inserted), or the records named by (attendance, student)
    `keys`."""
    if attendance_ids:
        await conn.execute(_BY_ATTENDANCES, list(attendance_ids))
    if keys:
        await conn.execute(_BY_KEYS, [k[0] for k in keys], [k[1] for k in keys])


async def move_record(
    conn: Conn,
    *,
    attendance_id: UUID,
    student_number: str,
    old: RecordStatus | str | None,
    new: RecordStatus | str | None,
) -> None:
    """One record of the attendance changed from `old` to `new` (None: not counted, i.e. added
    or soft-deleted)."""
    await _shift(conn, attendance_id, [(student_number, old, new)])


async def remove_records(
    conn: Conn, *, attendance_id: UUID, statuses: Iterable[tuple[str, str]]
) -> None:
    """The attendance's records (student number, status) no longer count (the session was
    soft-deleted)."""
    await _shift(conn, attendance_id, [(number, status, None) for number, status in statuses])


async def _shift(
    conn: Conn,
    attendance_id: UUID,
    changes: Sequence[tuple[str, RecordStatus | str | None, RecordStatus | str | None]],
) -> None:
    deltas: dict[str, list[int]] = {}
    for number, old, new in changes:
        row = deltas.setdefault(number, [0] * len(COUNT_COLUMNS))
        for status, sign in ((old, -1), (new, 1)):
            if status is not None:
                row[COUNT_COLUMNS.index(RecordStatus(status).value)] += sign
    moved = {n: row for n, row in deltas.items() if any(row)}
    if not moved:
        return
    numbers = sorted(moved)
    await conn.execute(
        _SHIFT,
        attendance_id,
        numbers,
        *([moved[n][i] for n in numbers] for i in range(len(COUNT_COLUMNS))),
    )
