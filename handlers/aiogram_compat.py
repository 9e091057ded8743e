"""The one place that relies on aiogram internals: taking a router out of its parent.

aiogram includes a router into one parent for good (`Router.include_router`; the
`parent_router` setter refuses a second parent) and has no public way to undo it. The handler
modules export module-level routers (aiogram's own style), and a process that builds the bot
twice (the test suite, a bench run) must attach them to the routers of the new build.
tests/handlers/test_aiogram_compat.py fails if aiogram changes what this relies on: the private
`Router._parent_router` behind the public `parent_router`, and the public `sub_routers` list.
"""

from __future__ import annotations

from aiogram import Router


def detach(router: Router) -> None:
    """Undo `parent.include_router(router)`, if `router` has a parent."""
    parent = router.parent_router
    if parent is None:
        return
    parent.sub_routers.remove(router)
    router._parent_router = None
