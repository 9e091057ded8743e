"""aiogram routers. Each module exports one `router`; `build_router()` assembles them."""

from __future__ import annotations

from aiogram import BaseMiddleware, Router
from aiogram.filters import StateFilter
from aiogram.utils.callback_answer import CallbackAnswerMiddleware

from handlers.access import RefusalAnswers
from handlers.aiogram_compat import detach
from handlers.filters import check_in_code, private_chat, private_query


def _adopt(parent: Router, *children: Router) -> None:
    """Include module-level routers, detaching them from a previous build first (a process
    that builds the bot twice, like the test suite, would otherwise be refused by aiogram)."""
    for child in children:
        detach(child)
        parent.include_router(child)


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
    _adopt(
        private,
        student.router,
        excuse.router,
        login.router,
        teacher.router,
        privacy.router,
        account.router,
        common.router,
    )
    root.include_router(private)
    # The context middleware goes on a router made here, not on the module-level one, which
    # would keep the middleware (and the stores) of every earlier build.
    group = Router(name="group")
    group.message.outer_middleware(user_context)
    _adopt(group, groups.router)
    root.include_router(group)
    _adopt(root, errors.router)
    return root
