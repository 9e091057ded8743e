"""aiogram routers. Each module has `router()`, which builds a new router of its handlers on
every call; `build_router()` assembles them.

A router joins one parent for good (aiogram refuses a second `include_router`) and keeps the
middlewares put on it, so nothing here lives at module level: every build (each Dispatcher, and
a process that builds the bot twice, like the test suite) gets routers, gates and middlewares
of its own.
"""

from __future__ import annotations

from aiogram import BaseMiddleware, Router
from aiogram.filters import StateFilter
from aiogram.utils.callback_answer import CallbackAnswerMiddleware

from handlers.access import RefusalAnswers
from handlers.filters import check_in_code, private_chat, private_query


def build_router(user_context: BaseMiddleware) -> Router:
    """The root router.

    The check-in code, the hot path, is the first handler of the root router, so an update
    reaches it without descending through nested routers (each level copies the handler data
    and wraps the middlewares again). It applies only outside a conversation: a six-digit
    password typed during /login has a state set and goes to the login router.
    Then private chats: conversations before commands before catch-alls; then group chats.
    `user_context` (the linked account) runs for those routers only: the check-in handler
    gets it from its one Redis script. The locale is set for every event by
    ui.i18n.LocaleMiddleware (bot/app.py).

    Every button press in a private chat is answered once by aiogram's
    `CallbackAnswerMiddleware` after its handler (a handler that has something to say sets
    the injected `callback_answer`); a refusal is answered by the error router instead.
    Access (linked, teacher) is checked by the student, teacher and account routers
    themselves (handlers.access.MemberGate).
    """
    from handlers import account, common, errors, excuse, groups, login, privacy, student, teacher

    root = Router(name="attn")
    root.message.register(student.code_message, private_chat, StateFilter(None), check_in_code)
    # Plain text from someone the bot last asked for a credential is deleted, not read as a
    # code (a six-digit password typed after the login step expired: `check_in_code` leaves
    # it alone). One filter, so the check-in above pays nothing for it.
    root.message.register(login.late_credential, login.expects_credential)
    private = Router(name="private")
    private.message.filter(private_chat)
    private.callback_query.filter(private_query)
    private.message.outer_middleware(user_context)
    private.callback_query.outer_middleware(user_context)
    private.callback_query.middleware(CallbackAnswerMiddleware())
    private.callback_query.middleware(RefusalAnswers())
    private.include_routers(
        student.router(),
        excuse.router(),
        login.router(),
        teacher.router(),
        privacy.router(),
        account.router(),
        common.router(),
    )
    root.include_router(private)
    group = Router(name="group")
    group.message.outer_middleware(user_context)
    group.include_router(groups.router())
    root.include_router(group)
    root.include_router(errors.router())
    return root
