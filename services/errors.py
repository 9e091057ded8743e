"""Errors a use case raises for the bot layer to turn into a clear reply."""

from __future__ import annotations

from datetime import datetime


class ServiceError(Exception):
    """Base of the errors that services report to handlers."""


class NotLinked(ServiceError):
    """The Telegram account is not linked to an Aksis account."""


class NotTeacher(ServiceError):
    """A teacher-only action was asked for by someone else."""


class NotOwner(ServiceError):
    """The session belongs to another teacher."""


class SessionGone(ServiceError):
    """The session is no longer live (finalized, or never existed)."""


class SessionClosed(ServiceError):
    """The session has ended; corrections now go through the saved sheet (/history)."""


class RecordNotFound(ServiceError):
    def __init__(self, student_number: str) -> None:
        super().__init__(student_number)
        self.student_number = student_number


class AlreadyOnList(ServiceError):
    def __init__(self, student_number: str) -> None:
        super().__init__(student_number)
        self.student_number = student_number


class InvalidInput(ServiceError):
    """Input that fails validation; `key` names the message to show."""

    def __init__(self, key: str) -> None:
        super().__init__(key)
        self.key = key


class LoginThrottled(ServiceError):
    def __init__(self, retry_after: int) -> None:
        super().__init__(retry_after)
        self.retry_after = retry_after


class PortalBusy(ServiceError):
    """The bot's sign-ons to the portal reached their overall cap for this minute."""

    def __init__(self, retry_after: int) -> None:
        super().__init__(retry_after)
        self.retry_after = retry_after


class ExcuseRefused(ServiceError):
    """An excuse request that cannot be taken (too late, not the student's, not absent...):
    `key` names the message; `days` and `at` (the session's start) fill it in."""

    def __init__(self, key: str, *, days: int | None = None, at: datetime | None = None) -> None:
        super().__init__(key)
        self.key = key
        self.days = days
        self.at = at


class AlreadyDecided(ServiceError):
    """The excuse request was approved or rejected before (a second press of a button)."""
