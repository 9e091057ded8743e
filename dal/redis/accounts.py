"""Linked accounts in Redis: the user session the check-in reads, credential prompts and the
marks of accounts Telegram refuses to deliver to."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Final

from dal.models import CachedAccount, Role
from dal.redis import keys
from dal.redis.base import Store, text

__all__ = ["AccountMarks", "UserStore", "session_ttl_seconds"]

_DAY: Final = 86_400


def session_ttl_seconds(role: Role, *, student_days: int, teacher_days: int) -> int:
    """How long a linked user's Redis session lives, by role (settings give the days)."""
    days = teacher_days if role is Role.TEACHER else student_days
    return days * _DAY


@dataclass(frozen=True, slots=True)
class AccountMarks:
    """The marks that send an account's check-in code the long way (bot/fsm.py)."""

    login_prompt: bool  # the bot last asked this account for a credential
    undeliverable: bool  # Telegram refuses to deliver to the account


class UserStore(Store):
    """`keys.user`, `keys.login_prompt` and `keys.undeliverable` of each Telegram account."""

    # --- the marks the check-in reads --------------------------------------------------------

    @staticmethod
    def mark_keys(telegram_id: int) -> tuple[str, str]:
        """The keys of the account's marks, in the order `marks` reads their values: the
        check-in script refuses the short way while one exists, and the long way reads them
        in the MGET it makes anyway (with the FSM state), so they cost no round trip of
        their own."""
        return keys.login_prompt(telegram_id), keys.undeliverable(telegram_id)

    @staticmethod
    def marks(values: Sequence[object]) -> AccountMarks:
        """The marks from the values read at `mark_keys` (None: no such key)."""
        prompt, blocked = values
        return AccountMarks(login_prompt=prompt is not None, undeliverable=blocked is not None)

    # --- user sessions ---------------------------------------------------------------------

    async def save_user_session(self, *, session: CachedAccount, ttl_seconds: int) -> None:
        with self._errors:
            await self._redis.set(
                keys.user(session.telegram_id), session.model_dump_json(), ex=ttl_seconds
            )

    async def get_user_session(self, *, telegram_id: int) -> CachedAccount | None:
        with self._errors:
            raw = await self._redis.get(keys.user(telegram_id))
        return None if raw is None else CachedAccount.model_validate_json(raw)

    async def delete_user_session(self, *, telegram_id: int) -> None:
        with self._errors:
            await self._redis.delete(keys.user(telegram_id))

    async def forget_account(self, *, telegram_id: int) -> None:
        """Retention: the linked-account copy and the undeliverable mark of the account."""
        with self._errors:
            await self._redis.delete(keys.user(telegram_id), keys.undeliverable(telegram_id))

    # --- credential prompts ----------------------------------------------------------------

    async def set_login_prompt(self, *, telegram_id: int, step: str, ttl_seconds: int) -> None:
        """Remember that the bot asked this account for a credential (`step`)."""
        with self._errors:
            await self._redis.set(keys.login_prompt(telegram_id), step, ex=ttl_seconds)

    async def get_login_prompt(self, *, telegram_id: int) -> str | None:
        with self._errors:
            raw = await self._redis.get(keys.login_prompt(telegram_id))
        return None if raw is None else text(raw)

    async def clear_login_prompt(self, *, telegram_id: int, keep_step: str | None = None) -> None:
        """Forget the credential prompt, unless it is now for `keep_step`. (The read and the
        delete are two commands: one account's updates are handled one at a time.)"""
        key = keys.login_prompt(telegram_id)
        with self._errors:
            if keep_step is not None:
                raw = await self._redis.get(key)
                if raw is None or text(raw) == keep_step:
                    return
            await self._redis.delete(key)

    async def is_linked(self, *, telegram_id: int) -> bool:
        """Whether this Telegram account has a linked account cached (one EXISTS)."""
        with self._errors:
            return bool(await self._redis.exists(keys.user(telegram_id)))

    # --- preferences -----------------------------------------------------------------------

    async def set_receipts(self, *, school_number: str, enabled: bool) -> None:
        """Kept without expiry, beside the person's other keys (erasure deletes it with them)."""
        with self._errors:
            if enabled:
                await self._redis.set(keys.receipts(school_number), "1")
            else:
                await self._redis.delete(keys.receipts(school_number))

    async def receipts_wanted(self, *, school_numbers: Sequence[str]) -> set[str]:
        """Those of `school_numbers` who want receipts (one MGET)."""
        numbers = list(school_numbers)
        if not numbers:
            return set()
        with self._errors:
            found = await self._redis.mget([keys.receipts(n) for n in numbers])
        return {n for n, value in zip(numbers, found, strict=True) if value is not None}

    # --- deliverability --------------------------------------------------------------------

    async def add_undeliverable(self, *, telegram_ids: Sequence[int], ttl_seconds: int) -> None:
        """Mark the accounts undeliverable (one key each, so that the check-in path can read
        the mark in the round trip it makes anyway: bot/fsm.py), for `ttl_seconds`."""
        if not telegram_ids:
            return
        with self._errors:
            async with self._redis.pipeline(transaction=False) as pipe:
                for x in telegram_ids:
                    pipe.set(keys.undeliverable(int(x)), "1", ex=ttl_seconds)
                await pipe.execute()

    async def remove_undeliverable(self, *, telegram_id: int) -> bool:
        """Drop the account's undeliverable mark; True when there was one."""
        with self._errors:
            removed = await self._redis.delete(keys.undeliverable(telegram_id))
        return bool(removed)
