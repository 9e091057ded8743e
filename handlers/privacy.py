"""/privacy: what the bot keeps about the user, why, for how long, and how to remove it.

The notice KVKK (the Turkish data-protection law) and the GDPR expect, in the user's language.
Removal itself is /logout (handlers/login.py, services/accounts.py); inactive accounts are
forgotten by the purge job after RETENTION_DAYS (services/purge.py).
"""

from __future__ import annotations

from aiogram import Router
from aiogram.types import Message

from handlers.deps import Settings
from handlers.filters import on_command
from handlers.replies import Reply
from ui.i18n import Raw, t, tn


def _days(count: int) -> Raw:
    return Raw(tn("count.days", count, count=count))


async def privacy(message: Message, settings: Settings) -> Reply:
    return message.answer(
        t(
            "privacy.text",
            student_days=_days(settings.student_session_ttl_days),
            teacher_days=_days(settings.teacher_session_ttl_days),
            retention_days=_days(settings.retention_days),
        )
    )


def router() -> Router:
    """/privacy; a new router each call."""
    routes = Router(name="privacy")
    routes.message.register(privacy, on_command("privacy"))
    return routes
