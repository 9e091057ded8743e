"""What services hand to the bot layer to tell a user something outside a reply.

Services decide *who* hears *what* (a message key and its values); the bot layer renders the
text in the user's language and sends it through the paced outgoing path.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Protocol


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
class Notice:
    telegram_id: int
    language: str
    key: str
    values: dict[str, object] = field(default_factory=dict)
    buttons: tuple[Button, ...] = ()


class Notifier(Protocol):
    async def notify(self, notices: Sequence[Notice]) -> int:
        """Send every notice now; return how many were delivered."""
        ...

    def notify_later(self, notices: Sequence[Notice]) -> None:
        """Send every notice in the background, so the caller's reply is not held up."""
        ...
