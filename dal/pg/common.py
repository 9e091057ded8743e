"""What the PostgreSQL stores share: the `Store` base, column lists and a few helpers."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import AbstractAsyncContextManager, contextmanager
from typing import Final

import asyncpg

from dal.errors import Conflict, NotFound
from dal.models import User
from dal.pg.pool import Conn, Database

__all__ = [
    "ATTENDANCE_COLUMNS",
    "COURSE_KEY_SQL",
    "LINKED_COLUMNS",
    "RECORD_COLUMNS",
    "RECORD_COLUMNS_R",
    "RECORD_FIELDS",
    "USER_COLUMNS",
    "Store",
    "row_count",
    "translated_integrity_errors",
    "upsert_users",
]


class Store:
    """Base of the stores: each reads and writes one aggregate through the shared pool."""

    def __init__(self, db: Database) -> None:
        self._db = db
        self._pool = db.pool

    def _transaction(self) -> AbstractAsyncContextManager[Conn]:
        return self._db.transaction()


# --- SQL ----------------------------------------------------------------------------------

# A session's course: its lesson code, or its lesson name when it has none (an ad-hoc session).
COURSE_KEY_SQL: Final = "coalesce(a.lesson_code, a.lesson_name)"

USER_COLUMNS = "user_school_number, user_full_name, role"
LINKED_COLUMNS = (
    "user_school_number AS school_number, user_full_name AS full_name, role, telegram_id,"
    " language, reminders_enabled, linked_at"
)
ATTENDANCE_COLUMNS = (
    "attendance_id, teacher_school_number, lesson_name, lesson_code, start_time, end_time,"
    " security_option, is_deleted, deletion_reason, deletion_time, lesson_slot, scheduled_start,"
    " term"
)
RECORD_FIELDS: Final = (
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
RECORD_COLUMNS = ", ".join(RECORD_FIELDS)
RECORD_COLUMNS_R = ", ".join(f"r.{name}" for name in RECORD_FIELDS)

# Name and role follow the portal; the Telegram link columns are never touched here. Rows
# whose name and role are unchanged are not rewritten (finalization upserts every student of
# every session).
_UPSERT_USERS = f"""
INSERT INTO users AS u ({USER_COLUMNS})
SELECT i.n, i.f, i.r FROM unnest($1::text[], $2::text[], $3::text[]) AS i (n, f, r)
ON CONFLICT (user_school_number) DO UPDATE
SET user_full_name = excluded.user_full_name, role = excluded.role, updated_at = now()
WHERE (u.user_full_name, u.role) IS DISTINCT FROM (excluded.user_full_name, excluded.role)
"""


# --- helpers ------------------------------------------------------------------------------


async def upsert_users(conn: Conn, users: Sequence[User]) -> None:
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


@contextmanager
def translated_integrity_errors() -> Iterator[None]:
    try:
        yield
    except asyncpg.ForeignKeyViolationError as exc:
        raise NotFound(exc.detail or str(exc)) from exc
    except asyncpg.UniqueViolationError as exc:
        raise Conflict(exc.detail or str(exc)) from exc


def row_count(status: str) -> int:
    """Rows affected, from a command status such as `UPDATE 3` or `INSERT 0 5`."""
    return int(status.rsplit(" ", 1)[-1])
