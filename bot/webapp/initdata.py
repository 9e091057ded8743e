"""Mini App launch data (`initData`): verified before anything on a page is trusted.

Telegram opens a Mini App with the launch data in the page's URL fragment (`#tgWebAppData=…`)
and, where its JS SDK is loaded, as `Telegram.WebApp.initData`: a query string whose `hash`
field is an HMAC-SHA256, keyed with `HMAC_SHA256(key="WebAppData", msg=bot_token)`, of the other
fields sorted by name and joined as `name=value` lines. Only the bot's own token makes that
hash, so a valid one proves the `user` field came from Telegram for this bot.
https://core.telegram.org/bots/webapps#validating-data-received-via-the-mini-app

`auth_date` is when Telegram signed it: a page held open (or launch data copied out of one)
stays valid only for `max_age`.
"""

from __future__ import annotations

import hashlib
import hmac
import json
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Literal
from urllib.parse import parse_qsl, urlencode

__all__ = ["InitDataInvalid", "LaunchData", "WebAppUser", "sign_init_data", "verify_init_data"]

# Launch data is a few hundred bytes; anything far larger is not from Telegram.
MAX_INIT_DATA_BYTES = 4096

Reason = Literal["malformed", "hash", "stale"]


class InitDataInvalid(Exception):
    """The launch data is not Telegram's for this bot (`hash`), too old (`stale`), or not
    launch data at all (`malformed`)."""

    def __init__(self, reason: Reason) -> None:
        super().__init__(reason)
        self.reason: Reason = reason


@dataclass(frozen=True, slots=True)
class WebAppUser:
    id: int
    first_name: str
    language_code: str | None = None
    username: str | None = None


@dataclass(frozen=True, slots=True)
class LaunchData:
    user: WebAppUser
    auth_date: datetime
    start_param: str | None = None
    query_id: str | None = None


def _secret(bot_token: str) -> bytes:
    return hmac.new(b"WebAppData", bot_token.encode(), hashlib.sha256).digest()


def _check_string(fields: dict[str, str]) -> bytes:
    return "\n".join(f"{k}={fields[k]}" for k in sorted(fields)).encode()


def _hash(fields: dict[str, str], bot_token: str) -> str:
    return hmac.new(_secret(bot_token), _check_string(fields), hashlib.sha256).hexdigest()


def verify_init_data(
    init_data: str, *, bot_token: str, max_age: timedelta, now: datetime
) -> LaunchData:
    """The launch data's user, once its hash is this bot's and it is younger than `max_age`.

    Raises `InitDataInvalid` otherwise; nothing of an invalid string is trusted or returned.
    """
    if not init_data or len(init_data.encode()) > MAX_INIT_DATA_BYTES:
        raise InitDataInvalid("malformed")
    try:
        pairs = parse_qsl(init_data, keep_blank_values=True, strict_parsing=True)
    except ValueError:
        raise InitDataInvalid("malformed") from None
    fields = dict(pairs)
    if len(fields) != len(pairs):  # a repeated field: which one would Telegram have signed?
        raise InitDataInvalid("malformed")
    # Every field but `hash` is signed, `signature` (Telegram's Ed25519 one for third
    # parties) included.
    given = fields.pop("hash", "")
    expected = _hash(fields, bot_token)
    if not hmac.compare_digest(given.encode(), expected.encode()):
        raise InitDataInvalid("hash")
    try:
        auth_date = datetime.fromtimestamp(int(fields["auth_date"]), UTC)
        raw_user = json.loads(fields["user"])
        user = WebAppUser(
            id=int(raw_user["id"]),
            first_name=str(raw_user.get("first_name", "")),
            language_code=raw_user.get("language_code"),
            username=raw_user.get("username"),
        )
    except (KeyError, ValueError, TypeError, OverflowError):
        raise InitDataInvalid("malformed") from None
    if not now - max_age <= auth_date <= now + timedelta(minutes=1):
        raise InitDataInvalid("stale")
    return LaunchData(
        user=user,
        auth_date=auth_date,
        start_param=fields.get("start_param"),
        query_id=fields.get("query_id"),
    )


def sign_init_data(
    *,
    bot_token: str,
    user: dict[str, object],
    auth_date: datetime,
    start_param: str | None = None,
    query_id: str | None = "AAtest",
) -> str:
    """Launch data signed as Telegram signs it, for the tests and the demo (which have no
    Telegram client to open the page)."""
    fields = {
        "auth_date": str(int(auth_date.timestamp())),
        "user": json.dumps(user, separators=(",", ":"), ensure_ascii=False),
    }
    if query_id is not None:
        fields["query_id"] = query_id
    if start_param is not None:
        fields["start_param"] = start_param
    fields["hash"] = _hash(fields, bot_token)
    return urlencode(fields)
