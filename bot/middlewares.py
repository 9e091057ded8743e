"""The per-update context (the user's linked account; the locale is ui.i18n.LocaleMiddleware's);
the note that a user who blocked the bot once is reachable again; the translation of store
connection errors raised outside `dal/` (aiogram's FSM storage); and the updates in flight, for
shutdown."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from aiogram import BaseMiddleware
from aiogram.types import TelegramObject, User
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from dal.errors import RedisUnavailable
from services.accounts import AccountService
from services.members import Member
from services.pseudonyms import pseudonym

log = logging.getLogger(__name__)


class LinkedAccountMiddleware(BaseMiddleware):
    """Puts `user` (the sender's linked account as a `services.members.Member`, or None) into
    the handler data. One Redis read on the common path. (aiogram's own
    `UserContextMiddleware`, which every Dispatcher has, puts `event_from_user` there.)"""

    def __init__(self, accounts: AccountService) -> None:
        self._accounts = accounts

    async def __call__(
        self,
        handler: Callable[[TelegramObject, dict[str, Any]], Awaitable[Any]],
        event: TelegramObject,
        data: dict[str, Any],
    ) -> Any:
        sender: User | None = data.get("event_from_user")
        if sender is None or sender.is_bot:
            data["user"] = None
        else:
            account = await self._accounts.current_user(telegram_id=sender.id)
            data["user"] = None if account is None else Member.of(account)
        return await handler(event, data)


class HeardFromMiddleware(BaseMiddleware):
    """Any update from a user shows that Telegram delivers to them again (they unblocked the
    bot): an account marked undeliverable becomes deliverable before the update is handled.
    A check-in code comes with the mark already read (`undeliverable`, bot/fsm.py); any other
    update costs one Redis command. A failure here never stops the update."""

    def __init__(self, accounts: AccountService) -> None:
        self._accounts = accounts

    async def __call__(
        self,
        handler: Callable[[TelegramObject, dict[str, Any]], Awaitable[Any]],
        event: TelegramObject,
        data: dict[str, Any],
    ) -> Any:
        sender: User | None = data.get("event_from_user")
        if sender is not None and not sender.is_bot and data.get("undeliverable") is not False:
            try:
                await self._accounts.heard_from(telegram_id=sender.id)
            except Exception:  # handling the update matters more than this note
                log.exception(
                    "could not clear the undeliverable mark of chat %s", pseudonym(sender.id)
                )
        return await handler(event, data)


class StoreErrorsMiddleware(BaseMiddleware):
    """Turns Redis connection errors raised by aiogram's FSM storage (its state reads, writes and
    per-user locks bypass `dal/`) into `RedisUnavailable`, so that the error router answers
    "temporarily unavailable" for them as for any other store outage. Registered right inside
    aiogram's error middleware."""

    async def __call__(
        self,
        handler: Callable[[TelegramObject, dict[str, Any]], Awaitable[Any]],
        event: TelegramObject,
        data: dict[str, Any],
    ) -> Any:
        try:
            return await handler(event, data)
        except (RedisConnectionError, RedisTimeoutError) as exc:
            reason = type(exc).__name__
            raise RedisUnavailable(f"Redis unreachable (FSM storage): {reason}") from exc


class InFlightMiddleware(BaseMiddleware):
    """Keeps the tasks handling an update, so that shutdown can let them finish before the
    stores close. Outermost on updates: it sees every update, by polling or by webhook, from
    its start. aiogram keeps its own polling tasks but offers no public way to wait for them."""

    def __init__(self) -> None:
        self._tasks: set[asyncio.Task[Any]] = set()

    def __len__(self) -> int:
        return len(self._tasks)

    async def __call__(
        self,
        handler: Callable[[TelegramObject, dict[str, Any]], Awaitable[Any]],
        event: TelegramObject,
        data: dict[str, Any],
    ) -> Any:
        task = asyncio.current_task()
        if task is not None and task not in self._tasks:
            # The whole task, not just this call: after the handlers, aiogram may still send
            # the update's answer from it.
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)
        return await handler(event, data)

    async def wait(self, grace_seconds: float) -> bool:
        """Wait up to `grace_seconds` for the updates being handled; True if none is left.
        Updates that arrive meanwhile are waited for too."""
        await asyncio.sleep(0)  # an update task created just now reaches __call__ first
        deadline = asyncio.get_running_loop().time() + grace_seconds
        while self._tasks:
            left = deadline - asyncio.get_running_loop().time()
            if left <= 0:
                return False
            await asyncio.wait(set(self._tasks), timeout=left)
        return True
