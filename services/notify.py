"""What services hand to the bot layer to tell a user something outside a reply.

Services decide *who* hears *what* (a message key and its values); the bot layer renders the
text in the user's language and sends it through the paced outgoing path.

`Notifier.enqueue` is the only way: once it returns, the notices are in the Redis outbox
(dal/redis/outbox.py) and are delivered later, at least once, across crashes and restarts.
With `once`, a dedupe marker is written in the same atomic step, so a step that is retried
after a crash enqueues its notices exactly once. A notice may carry `drop_if` conditions
(`Stale`), checked at delivery time: when one holds, the notice no longer applies and is
dropped, not sent. How a notice is written into an outbox entry is services/notice_codec.py's
alone.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Final, Protocol

# The outbox lanes, drained in this order (dal/redis/outbox.py), all within one flood budget:
ANSWER: Final = "answer"  # a direct answer that could not go out at once (or a page's answer)
URGENT: Final = "urgent"  # time-critical: "attendance is open", "closing soon", "starts soon"
RESULT: Final = "result"  # results of ended sessions, teachers' summaries
BULK: Final = "bulk"  # warnings, digests and anything else that can wait its turn


@dataclass(frozen=True, slots=True)
class Button:
    """An inline button: a message key for its label and what pressing it asks for.

    `action` names a bot action (the bot layer turns it into callback data), e.g.
    `Button("button.start_attendance", "start_lesson", ("YBSB1008", 1739878800))`.
    """

    label_key: str
    action: str
    args: tuple[str | int, ...] = ()


@dataclass(frozen=True, slots=True)
class Stale:
    """A condition under which a queued notice no longer applies (checked at delivery).

    Build them with the constructors; the outbox evaluates them in one Redis call per batch.
    """

    kind: str
    args: tuple[str, ...]

    @classmethod
    def checked_in(cls, attendance_id: object, student_number: str) -> Stale:
        """The student has a record in the session (checked in, or added by the teacher)."""
        return cls("checked_in", (str(attendance_id), student_number))

    @classmethod
    def session_over(cls, attendance_id: object) -> Stale:
        """The session has ended (by the teacher or its planned end) or is finalized."""
        return cls("session_over", (str(attendance_id),))

    @classmethod
    def lesson_opened(cls, teacher_school_number: str, lesson_code: str) -> Stale:
        """The teacher has a session open for this lesson."""
        return cls("lesson_opened", (teacher_school_number, lesson_code))


@dataclass(frozen=True, slots=True)
class Moment:
    """A time a notice shows, written for each recipient's locale when it is delivered (Babel):
    `at` (timezone-aware) in the university's `tz` (an IANA name); the date too unless
    `time_only`."""

    at: datetime
    tz: str
    time_only: bool = False


@dataclass(frozen=True, slots=True)
class Percent:
    """A percentage's number a notice shows, written with the recipient's decimal sign."""

    value: float


@dataclass(frozen=True, slots=True)
class Attachment:
    """A file Telegram already holds, sent with a notice by its `file_id` (never downloaded):
    `kind` "photo" (sendPhoto) or "pdf" (sendDocument); the notice's text is its caption."""

    kind: str
    file_id: str


@dataclass(frozen=True, slots=True)
class Notice:
    telegram_id: int
    language: str
    key: str
    values: dict[str, object] = field(default_factory=dict)
    buttons: tuple[Button, ...] = ()
    drop_if: tuple[Stale, ...] = ()
    lane: str = BULK
    # Notices of one `digest` kind to one person go out as one message, and at most one such
    # message an hour (the rest wait and join the next): results of several ended sessions.
    digest: str = ""
    attachment: Attachment | None = None


class Notifier(Protocol):
    """Where services leave notices. Nothing is sent while the caller waits: `enqueue` only
    queues them durably, and the delivery worker (bot/delivery.py) sends each one later, at
    least once, in its lane's turn and within the flood budget, unless a `drop_if` condition
    holds by then. A service therefore never learns whether, or when, a notice was delivered.
    """

    async def enqueue(
        self,
        notices: Sequence[Notice],
        *,
        once: str | None = None,
        once_ttl: int = 0,
        once_state: str | None = None,
    ) -> bool:
        """Queue the notices durably (each into its `lane`); once this returns they survive a
        crash or restart and are delivered later by the worker.

        With `once`, the marker key is set (for `once_ttl` seconds) in the same atomic step;
        when it was already set nothing is queued and the answer is False. Otherwise True.
        With `once_state` too, the marker remembers that state: nothing is queued only when it
        holds the same state already, so a step retried after a crash tells its state once,
        and a later, different state (a teacher changing their mind) is told as well.
        """
        ...
