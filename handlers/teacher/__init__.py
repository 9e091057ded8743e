"""Teachers: open, watch, correct and end a session; history, corrections and export.

One router for the package: its gate lets linked teachers through and refuses anyone else
with the usual answer (handlers.access), for every handler of the modules below.
"""

from __future__ import annotations

from aiogram import Router

from handlers.access import MemberGate
from handlers.teacher import attendees, excuses, export, history, session

router = Router(name="teacher")
router.message.middleware(MemberGate(teachers=True))
router.callback_query.middleware(MemberGate(teachers=True))
router.include_routers(
    session.router, attendees.router, history.router, export.router, excuses.router
)
