"""What handlers receive from the composition root, typed from the handlers' side.

Application-wide objects reach handlers by parameter name, as Dispatcher keyword arguments
(aiogram's workflow data, see bot/app.py). Handlers never import `bot`: the few objects that
`bot/` builds (the live status board, the check-in answer queue, the metrics, the sealer of
conversation data, the settings) are described here by the small part of them that handlers
use. Each Protocol is named after the `bot/` class that satisfies it, so a handler's signature
reads the same as before; `HandlerDeps` lists every key, and bot/app.py builds the Dispatcher
from one, so mypy checks that `bot/`'s objects still fit.
"""

from __future__ import annotations

from typing import Protocol, TypedDict
from uuid import UUID

from dal.models import LiveSession
from services.accounts import AccountService
from services.attendance import AttendanceService
from services.excuses import ExcuseService
from services.login_queue import LoginQueue
from services.notify import Notifier
from services.reports import ReportService


class StatusBoard(Protocol):
    """The teacher's live session message (bot.status_message.StatusBoard)."""

    async def post(self, attendance: LiveSession, *, chat_id: int) -> None: ...

    def touch(self, attendance_id: UUID) -> None:
        """A check-in changed the counts: edit the message soon (batched)."""

    async def refresh(self, attendance_id: UUID) -> None:
        """Edit the message now."""


class AnswerQueue(Protocol):
    """Check-in answers sent in the background (bot.answers.AnswerQueue)."""

    def put(
        self, chat_id: int, text: str, *, kind: str | None = None, quiet_seconds: float = 0.0
    ) -> None:
        """`kind`: what it answers (repeats waiting for one chat coalesce); `quiet_seconds`:
        not repeated to that chat within that time."""


class Metrics(Protocol):
    """The counters handlers feed (bot.metrics.Metrics)."""

    def check_in(self, outcome: str) -> None: ...

    def store_error(self, exc: BaseException) -> None: ...


class Sealer(Protocol):
    """Encryption of what waits between two conversation steps (bot.secrets.Sealer)."""

    def seal(self, value: str) -> str: ...

    def unseal(self, token: str) -> str | None: ...


class Settings(Protocol):
    """The settings handlers read (bot.config.Settings): /privacy's retention periods, and
    whether the sign-in page is offered and credentials are taken in the chat."""

    @property
    def public_url(self) -> str | None: ...

    @property
    def chat_login_enabled(self) -> bool: ...

    @property
    def student_session_ttl_days(self) -> int: ...

    @property
    def teacher_session_ttl_days(self) -> int: ...

    @property
    def retention_days(self) -> int: ...


class HandlerDeps(TypedDict):
    """The Dispatcher's keyword arguments: each reaches a handler that names its key."""

    settings: Settings
    accounts: AccountService
    login_queue: LoginQueue
    attendance: AttendanceService
    reports: ReportService
    excuses: ExcuseService
    board: StatusBoard
    notifier: Notifier
    answers: AnswerQueue
    sealer: Sealer
    metrics: Metrics
