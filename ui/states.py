"""Conversation states that outlive one handler module.

The /login conversation's states are set by its handlers (handlers/login.py) and kept by the
purge job (bot/scheduler.py -> services/purge.py), which must not drop the state of an
unlinked account that is half-way through signing in. Their names ("LoginForm:username") are
stored in Redis, so the class name is part of the stored data.
"""

from __future__ import annotations

from aiogram.fsm.state import State, StatesGroup


class LoginForm(StatesGroup):
    username = State()
    password = State()


def login_states() -> list[str]:
    """The stored names of the /login states."""
    return [s.state for s in LoginForm.__states__ if s.state]
