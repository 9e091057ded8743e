"""aiogram's FSM middleware, minus the per-user lock for a plain check-in code.

`FSMContextMiddleware` takes a Redis lock (two round trips) around every update so that one
user's updates are handled one at a time. A six-digit code from a user who is in no conversation
needs no lock: the check-in is one atomic Redis script. The state is still read first, so a
code-like password typed during /login goes to the login conversation, under the lock.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any, cast

from aiogram import Bot
from aiogram.fsm.middleware import FSMContextMiddleware
from aiogram.types import TelegramObject, Update

from handlers.filters import is_code


def _is_plain_code(event: TelegramObject) -> bool:
    # The same test as the check-in handler's filter, so the two can never disagree.
    return isinstance(event, Update) and event.message is not None and is_code(event.message.text)


class CodeAwareFSMMiddleware(FSMContextMiddleware):
    async def __call__(
        self,
        handler: Callable[[TelegramObject, dict[str, Any]], Awaitable[Any]],
        event: TelegramObject,
        data: dict[str, Any],
    ) -> Any:
        if _is_plain_code(event):
            context = self.resolve_event_context(cast(Bot, data["bot"]), data)
            if context is not None:
                raw_state = await context.get_state()
                if raw_state is None:
                    data.update(fsm_storage=self.storage, state=context, raw_state=None)
                    return await handler(event, data)
        return await super().__call__(handler, event, data)
