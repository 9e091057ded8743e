"""Who is using the bot, as the handlers see it: a linked account's identity and role.

Handlers receive a `Member` (built once per update by the user-context middleware), never the
cached account record of `dal/`. Use cases accept anything with the `Identity` fields, so the
services' own callers (the check-in path loads the full record) need no conversion.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from dal.models import CachedAccount, Role
from services.errors import NotTeacher


class Identity(Protocol):
    """The fields a use case reads of the person asking."""

    @property
    def telegram_id(self) -> int: ...

    @property
    def school_number(self) -> str: ...

    @property
    def full_name(self) -> str: ...

    @property
    def role(self) -> Role: ...


@dataclass(frozen=True, slots=True)
class Member:
    """A linked Telegram account."""

    telegram_id: int
    school_number: str
    full_name: str
    role: Role
    language: str
    reminders_enabled: bool

    @property
    def is_teacher(self) -> bool:
        return self.role is Role.TEACHER

    @classmethod
    def of(cls, account: CachedAccount) -> Member:
        return cls(
            telegram_id=account.telegram_id,
            school_number=account.school_number,
            full_name=account.full_name,
            role=account.role,
            language=account.language,
            reminders_enabled=account.reminders_enabled,
        )


def require_teacher(person: Identity) -> None:
    """NotTeacher unless `person` is a teacher (answered by the bot's error router)."""
    if person.role is not Role.TEACHER:
        raise NotTeacher
