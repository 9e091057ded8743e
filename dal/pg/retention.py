"""`RetentionStore`: the privacy deletes (/logout, inactive accounts) and the purge's lookup.

Forgetting an account drops its Telegram link, preferences and cached schedule; the user row
(school number, name, role) stays, because attendance records refer to it.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from dal.pg.common import Store

__all__ = ["RetentionStore"]

# What forgetting an account resets: the Telegram link and the preferences that came with it.
_FORGET_ASSIGNMENTS = (
    "telegram_id = NULL, linked_at = NULL, language = 'en', reminders_enabled = true,"
    " undeliverable_at = NULL, undeliverable_reason = NULL, updated_at = now()"
)


class RetentionStore(Store):
    """Dropping personal data that is no longer needed."""

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

    async def get_linked_telegram_ids(self, *, telegram_ids: Sequence[int]) -> set[int]:
        """Those of `telegram_ids` that are linked to a user (for the purge of FSM leftovers)."""
        if not telegram_ids:
            return set()
        rows = await self._pool.fetch(
            "SELECT telegram_id FROM users WHERE telegram_id = ANY($1::bigint[])",
            list(set(telegram_ids)),
        )
        return {int(row["telegram_id"]) for row in rows}
