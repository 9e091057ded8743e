"""One error router: expected refusals get their message, anything else an apology with an id.

A user never sees a traceback; the log has it, under the same error id the user was given.
"""

from __future__ import annotations

import logging
import secrets

from aiogram import Bot, Router
from aiogram.exceptions import TelegramAPIError
from aiogram.filters import ExceptionTypeFilter
from aiogram.types import ErrorEvent

from dal.errors import DatabaseUnavailable, RedisUnavailable
from handlers.deps import Metrics
from handlers.login import forget_quietly, may_carry_credential
from services.errors import (
    AlreadyDecided,
    AlreadyOnList,
    ExcuseRefused,
    InvalidInput,
    NotLinked,
    NotOwner,
    NotTeacher,
    RecordNotFound,
    SessionClosed,
    SessionGone,
)
from services.excuses import MAX_EXCUSE_REASON, MAX_PDF_BYTES, ExcuseService
from ui.i18n import Raw, date_time_text, t, tn

log = logging.getLogger(__name__)


async def _tell(event: ErrorEvent, bot: Bot, key: str, **values: str) -> None:
    # Awaited, not returned: error handlers run in aiogram's error middleware, which wraps the
    # FSM middleware, so the per-user lock is already released here (handlers/replies.py).
    update = event.update
    query, message = update.callback_query, update.message
    text = t(key, **values)  # in the sender's locale: LocaleMiddleware covers errors too
    try:
        if query is not None:
            await query.answer(text[:200], show_alert=True)
        elif message is not None:
            await bot.send_message(message.chat.id, text)
    except TelegramAPIError:
        log.warning("could not deliver an error reply for update %s", update.update_id)


_REFUSALS: dict[type[Exception], str] = {
    NotLinked: "auth.not_linked",
    NotTeacher: "auth.teachers_only",
    NotOwner: "auth.not_yours",
    SessionGone: "review.session_gone",
    SessionClosed: "review.session_gone",
    AlreadyDecided: "excreq.already_decided",
}


async def refused(event: ErrorEvent, bot: Bot) -> None:
    key = next(k for cls, k in _REFUSALS.items() if isinstance(event.exception, cls))
    await _tell(event, bot, key)


async def invalid(event: ErrorEvent, bot: Bot) -> None:
    assert isinstance(event.exception, InvalidInput)
    await _tell(event, bot, event.exception.key)


async def excuse_refused(event: ErrorEvent, bot: Bot, excuses: ExcuseService) -> None:
    exc = event.exception
    assert isinstance(exc, ExcuseRefused)
    days = exc.days if exc.days is not None else excuses.deadline_days
    await _tell(
        event,
        bot,
        exc.key,
        days=Raw(tn("count.days", days, count=days)),
        date=date_time_text(exc.at, excuses.tz) if exc.at else "",
        max=str(MAX_EXCUSE_REASON),
        mb=str(MAX_PDF_BYTES // (1024 * 1024)),
    )


async def no_record(event: ErrorEvent, bot: Bot) -> None:
    assert isinstance(event.exception, RecordNotFound)
    await _tell(event, bot, "review.no_record", number=event.exception.student_number)


async def already(event: ErrorEvent, bot: Bot) -> None:
    assert isinstance(event.exception, AlreadyOnList)
    await _tell(event, bot, "add.already", number=event.exception.student_number)


async def unavailable(event: ErrorEvent, bot: Bot, metrics: Metrics | None = None) -> None:
    if metrics is not None:
        metrics.store_error(event.exception)
    log.error(
        "storage unavailable while handling update %s: %s", event.update.update_id, event.exception
    )
    # Without the store the conversation state is unknown: this may be `/login USERNAME` or a
    # password, so it goes before the answer (a credential never stays in the chat).
    message = event.update.message
    if message is not None and may_carry_credential(message):
        await forget_quietly(bot, message)
    await _tell(event, bot, "error.unavailable")


async def unexpected(event: ErrorEvent, bot: Bot) -> None:
    error_id = secrets.token_hex(4)
    log.error(
        "error %s while handling update %s",
        error_id,
        event.update.update_id,
        exc_info=event.exception,
    )
    await _tell(event, bot, "error.generic", error_id=error_id)


def router() -> Router:
    """The refusals, then the catch-all; a new router each call."""
    routes = Router(name="errors")
    routes.errors.register(refused, ExceptionTypeFilter(*_REFUSALS))
    routes.errors.register(invalid, ExceptionTypeFilter(InvalidInput))
    routes.errors.register(excuse_refused, ExceptionTypeFilter(ExcuseRefused))
    routes.errors.register(no_record, ExceptionTypeFilter(RecordNotFound))
    routes.errors.register(already, ExceptionTypeFilter(AlreadyOnList))
    routes.errors.register(
        unavailable, ExceptionTypeFilter(DatabaseUnavailable, RedisUnavailable, ConnectionError)
    )
    routes.errors.register(unexpected)
    return routes
