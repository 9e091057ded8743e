"""Teachers: open, watch, correct and end a session; history, corrections and export.

One router for the package: its gate lets linked teachers through and refuses anyone else
with the usual answer (handlers.access), for every handler of the modules below.
"""

from __future__ import annotations

from aiogram import Router

from handlers.access import MemberGate
from handlers.teacher import attendees, excuses, export, history, session


def router() -> Router:
    """The teachers' router behind its gate; a new router (and gate) each call."""
    routes = Router(name="teacher")
    routes.message.middleware(MemberGate(teachers=True))
    routes.callback_query.middleware(MemberGate(teachers=True))
    routes.include_routers(
        session.router(), attendees.router(), history.router(), export.router(), excuses.router()
    )
    return routes
