"""`AccountStore`: users, their Telegram links and delivery state, in PostgreSQL.

Methods are keyword-only and return the models of `dal.models` (plus `LinkedUser`). Absence
raises `NotFound`, a link that keeps colliding `Conflict`.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Final

import asyncpg
from pydantic import AwareDatetime, BaseModel, ConfigDict

from dal.errors import Conflict, NotFound
from dal.models import Role, User
from dal.pg.common import LINKED_COLUMNS, USER_COLUMNS, Store, row_count, upsert_users

__all__ = ["AccountStore", "LinkedUser"]

logger = logging.getLogger(__name__)

_LINK_ATTEMPTS: Final = 3


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


class AccountStore(Store):
    """Users (school number, name, role) and the Telegram account linked to each."""

    async def add_users(self, *, users: Sequence[User]) -> None:
        """Insert or update users (name and role); Telegram link columns are left alone."""
        if not users:
            return
        async with self._transaction() as conn:
            await upsert_users(conn, users)

    async def get_users(self, *, school_numbers: Sequence[str] | None = None) -> list[User]:
        """The users with these school numbers (all users when None), by school number."""
        if school_numbers is None:
            rows = await self._pool.fetch(
                f"SELECT {USER_COLUMNS} FROM users ORDER BY user_school_number"
            )
        else:
            rows = await self._pool.fetch(
                f"SELECT {USER_COLUMNS} FROM users"
                " WHERE user_school_number = ANY($1::text[]) ORDER BY user_school_number",
                list(school_numbers),
            )
        return [User.model_validate(dict(row)) for row in rows]

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
            await upsert_users(conn, [user])
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

    async def get_linked_user(self, *, telegram_id: int) -> LinkedUser | None:
        """The user linked to `telegram_id`, or None for an account that never logged in."""
        row = await self._pool.fetchrow(
            f"SELECT {LINKED_COLUMNS} FROM users WHERE telegram_id = $1", telegram_id
        )
        return None if row is None else LinkedUser.model_validate(dict(row))

    async def get_contacts(self, *, school_numbers: Sequence[str]) -> list[LinkedUser]:
        """The reachable linked users among `school_numbers`: unlinked accounts and those
        Telegram refused to deliver to (see `mark_undeliverable`) are left out."""
        if not school_numbers:
            return []
        rows = await self._pool.fetch(
            f"SELECT {LINKED_COLUMNS} FROM users"
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
        return row_count(status) > 0

    async def mark_deliverable(self, *, telegram_id: int) -> bool:
        """Clear the undeliverable mark of this account (it was heard from again)."""
        status = await self._pool.execute(
            "UPDATE users SET undeliverable_at = NULL, undeliverable_reason = NULL,"
            " updated_at = now() WHERE telegram_id = $1 AND undeliverable_at IS NOT NULL",
            telegram_id,
        )
        return row_count(status) > 0

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
        if row_count(status) == 0:
            raise NotFound(f"no user with school number {school_number!r}")

    async def get_linked_teachers(self) -> list[User]:
        """Teachers linked to a Telegram account (for telling namesakes apart)."""
        rows = await self._pool.fetch(
            f"SELECT {USER_COLUMNS} FROM users"
            " WHERE role = 'teacher' AND telegram_id IS NOT NULL ORDER BY user_school_number"
        )
        return [User.model_validate(dict(row)) for row in rows]
