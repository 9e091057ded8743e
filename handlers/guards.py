"""Small checks shared by handlers; the rules themselves live in services."""

from __future__ import annotations

from dal.models import UserSessionRedis
from services.errors import NotLinked


def require_user(user: UserSessionRedis | None) -> UserSessionRedis:
    """The linked account of this chat, or NotLinked (answered by the error router)."""
    if user is None:
        raise NotLinked
    return user
