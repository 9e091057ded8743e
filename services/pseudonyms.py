"""The one way a log line names a person: a stable keyed pseudonym of their Telegram id.

Logs are read by more people than the database, and kept longer; a raw Telegram id (or a
school number) in a line ties it to a person for anyone holding the logs. Every line that
must say *whose* chat it is about writes `pseudonym(telegram_id)` instead: 12 hex digits of
HMAC-SHA256 under SECRET_KEY, the same value the log context writes as `user=` (text) or
`user.id` (JSON) for the sender of an update, so lines about one person can be followed
without anyone who lacks the key recomputing it from a known id.

The key is set once per process by the composition root (`use_key`); until then (a tool or a
test that never builds the bot) a random key of this process is used, so that even then no id
reaches a line.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets

__all__ = ["keyed_pseudonym", "pseudonym", "use_key"]

_key: bytes = secrets.token_bytes(32)


def keyed_pseudonym(telegram_id: int | str, key: bytes) -> str:
    """12 hex digits of HMAC-SHA256(key, the decimal id)."""
    return hmac.new(key, str(telegram_id).encode(), hashlib.sha256).hexdigest()[:12]


def use_key(key: bytes) -> None:
    """Pseudonyms of this process are keyed with `key` (SECRET_KEY) from now on."""
    global _key
    _key = key


def pseudonym(telegram_id: int | str | None) -> str:
    """The pseudonym of a Telegram account (or chat) for a log line; `-` for no chat."""
    return "-" if telegram_id is None else keyed_pseudonym(telegram_id, _key)
