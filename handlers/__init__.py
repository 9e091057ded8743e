"""aiogram routers. Each module exports one `router`; `build_router()` assembles them."""

from __future__ import annotations

from aiogram import F, Router


def _adopt(parent: Router, *children: Router) -> None:
    """Include module-level routers, detaching them from a previous build first (a process
    that builds the bot twice, like the test suite, would otherwise be refused by aiogram)."""
    for child in children:
        previous = child.parent_router
        if previous is not None:
            previous.sub_routers.remove(child)
            child._parent_router = None
        parent.include_router(child)


def build_router() -> Router:
    """The root router: private chats only; conversations before commands before catch-alls."""
    from handlers import common, errors, groups, login, student, teacher

    root = Router(name="attn")
    _adopt(root, errors.router, groups.router)
    private = Router(name="private")
    private.message.filter(F.chat.type == "private")
    private.callback_query.filter(F.message.chat.type == "private")
    _adopt(private, login.router, teacher.router, student.router, common.router)
    root.include_router(private)
    return root
