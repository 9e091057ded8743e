"""Who may use a router, checked once per router instead of in each handler.

`MemberGate` is an inner middleware: it runs only once a handler's filters have matched, so an
update no handler of the router wants passes on untouched. It refuses with the same errors the
use cases raise (NotLinked, NotTeacher), which the error router answers (handlers.errors).

`RefusalAnswers` sits right inside aiogram's `CallbackAnswerMiddleware`: when a callback handler
raises, it stops the automatic empty answer, so that the error router can answer the query with
its reason as an alert (a query can be answered only once).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from aiogram import BaseMiddleware
from aiogram.types import TelegramObject
from aiogram.utils.callback_answer import CallbackAnswer

from services.errors import NotLinked
from services.members import Member, require_teacher


class MemberGate(BaseMiddleware):
    """Linked users only (and, with `teachers=True`, teachers only). Handlers behind it take
    `user: Member`, never None."""

    def __init__(self, *, teachers: bool = False) -> None:
        self._teachers = teachers

    async def __call__(
        self,
        handler: Callable[[TelegramObject, dict[str, Any]], Awaitable[Any]],
        event: TelegramObject,
        data: dict[str, Any],
    ) -> Any:
        user = data.get("user")
        if not isinstance(user, Member):
            raise NotLinked
        if self._teachers:
            require_teacher(user)
        return await handler(event, data)


class RefusalAnswers(BaseMiddleware):
    async def __call__(
        self,
        handler: Callable[[TelegramObject, dict[str, Any]], Awaitable[Any]],
        event: TelegramObject,
        data: dict[str, Any],
    ) -> Any:
        try:
            return await handler(event, data)
        except Exception:
            answer = data.get("callback_answer")
            if isinstance(answer, CallbackAnswer) and not answer.answered:
                answer.disable()
            raise
