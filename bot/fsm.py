"""aiogram's FSM middleware, minus the per-user lock for a plain check-in code.

`FSMContextMiddleware` takes a Redis lock (two round trips) around every update so that one
user's updates are handled one at a time. A six-digit code from a user who is in no conversation
needs no lock: the check-in is one atomic Redis script. The state is still read first, so a
code-like password typed during /login goes to the login conversation, under the lock.

A code is first tried the short way, with no read in front of it: the handler is called as if
the user were in no conversation, and the check-in script itself checks, in its one atomic
call, the three keys that send an update the long way (`checkin_busy_keys`): the FSM state and
the two marks its store names (`UserStore.mark_keys`): whether the bot last asked this user
for a credential (a six-digit password typed after the login step expired must be deleted,
never taken as a check-in) and whether the user is marked undeliverable (for
bot.middlewares.HeardFromMiddleware). When one exists the script changes nothing and raises
`CheckInBusy`, and the update goes the long way: one MGET reads the three (`UserStore.marks`
tells the marks' values apart), the answers reach the handlers' filters as `login_prompt`
(handlers.login.expects_credential) and `undeliverable`, and a user in a conversation is
handled under the lock. So the usual check-in costs one Redis round trip, not two.

A mark on a linked account (a /login abandoned until it timed out) does not stop its codes: one
EXISTS on the long way, paid only when the mark is there.

And it owns the end of the mark: whenever a handler leaves the /login states by any route (the
password answered, /cancel, /logout, a deep link or another command that clears or replaces
the conversation), the mark is cleared (`AccountService.login_conversation_ended`); only a
timeout leaves it, for the "login expired" window.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any, cast

from aiogram import Bot
from aiogram.fsm.context import FSMContext
from aiogram.fsm.middleware import FSMContextMiddleware
from aiogram.fsm.storage.redis import RedisStorage
from aiogram.types import TelegramObject, Update

from dal.redis.accounts import UserStore
from dal.redis.checkins import CheckInBusy
from services.accounts import AccountService
from services.text import is_code
from ui.states import login_states

_LOGIN_STATES = frozenset(login_states())

Handler = Callable[[TelegramObject, dict[str, Any]], Awaitable[Any]]


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
        if _is_plain_code(event) and isinstance(self.storage, RedisStorage):
            context = self.resolve_event_context(cast(Bot, data["bot"]), data)
            if context is not None and context.key.user_id is not None:
                user_id = context.key.user_id
                state_key = self.storage.key_builder.build(context.key, "state")
                busy = (state_key, *UserStore.mark_keys(user_id))
                short = {
                    **data,
                    "fsm_storage": self.storage,
                    "state": context,
                    "raw_state": None,
                    "login_prompt": False,
                    "undeliverable": False,
                    "checkin_busy_keys": busy,
                }
                try:
                    return await handler(event, short)
                except CheckInBusy:
                    pass  # nothing was changed: the long way
                raw_state, *found = await self.storage.redis.mget(*busy)
                marks = UserStore.marks(found)
                asked = marks.login_prompt
                accounts = data.get("accounts")
                if asked and raw_state is None and isinstance(accounts, AccountService):
                    asked = await accounts.code_may_be_credential(telegram_id=user_id)
                data["login_prompt"] = asked
                data["undeliverable"] = marks.undeliverable
                if raw_state is None:
                    data.update(fsm_storage=self.storage, state=context, raw_state=None)
                    return await handler(event, data)
        return await super().__call__(_ending_login(handler), event, data)


def _ending_login(handler: Handler) -> Handler:
    """`handler`, then: if it took the user out of the /login states, the credential prompt
    mark goes too. Costs one state read, and only for updates that arrive mid-login."""

    async def run(event: TelegramObject, data: dict[str, Any]) -> Any:
        before = data.get("raw_state")
        result = await handler(event, data)
        state, accounts = data.get("state"), data.get("accounts")
        if (
            before in _LOGIN_STATES
            and isinstance(state, FSMContext)
            and isinstance(accounts, AccountService)
            and await state.get_state() not in _LOGIN_STATES
            and state.key.user_id is not None
        ):
            await accounts.login_conversation_ended(telegram_id=state.key.user_id)
        return result

    return run
