"""Mini App launch data: only Telegram's signature for this bot, and only while fresh."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from urllib.parse import parse_qsl, urlencode

import pytest

from bot.webapp.initdata import InitDataInvalid, sign_init_data, verify_init_data

TOKEN = "123456:TEST-token"
NOW = datetime(2026, 12, 7, 9, 0, tzinfo=UTC)
USER = {"id": 4242, "first_name": "Ayşe", "language_code": "tr", "username": "ayse"}


def _verify(data: str, token: str = TOKEN) -> object:
    return verify_init_data(data, bot_token=token, max_age=timedelta(minutes=10), now=NOW)


def test_launch_data_signed_by_this_bot_names_its_user() -> None:
    data = sign_init_data(bot_token=TOKEN, user=USER, auth_date=NOW, start_param="s_abc")
    launch = verify_init_data(data, bot_token=TOKEN, max_age=timedelta(minutes=10), now=NOW)
    assert launch.user.id == 4242
    assert launch.user.language_code == "tr"
    assert launch.start_param == "s_abc"


def test_a_known_vector_from_the_documented_algorithm() -> None:
    """The hash is computed as Telegram documents it, not just consistently with our signer."""
    import hashlib
    import hmac

    fields = {"auth_date": str(int(NOW.timestamp())), "user": '{"id":1,"first_name":"A"}'}
    secret = hmac.new(b"WebAppData", TOKEN.encode(), hashlib.sha256).digest()
    check = "\n".join(f"{k}={fields[k]}" for k in sorted(fields)).encode()
    fields["hash"] = hmac.new(secret, check, hashlib.sha256).hexdigest()
    assert _verify(urlencode(fields)).user.id == 1  # type: ignore[attr-defined]


@pytest.mark.parametrize(
    ("tamper", "reason"),
    [
        (lambda f: {**f, "user": f["user"].replace("4242", "4243")}, "hash"),
        (lambda f: {**f, "hash": "0" * 64}, "hash"),
        (lambda f: {k: v for k, v in f.items() if k != "hash"}, "hash"),
        (lambda f: {**f, "hash": "é" * 64}, "hash"),
    ],
    ids=["another-user", "forged-hash", "no-hash", "non-ascii-hash"],
)
def test_tampered_launch_data_is_refused(tamper: object, reason: str) -> None:
    fields = dict(parse_qsl(sign_init_data(bot_token=TOKEN, user=USER, auth_date=NOW)))
    with pytest.raises(InitDataInvalid) as caught:
        _verify(urlencode(tamper(fields)))  # type: ignore[operator]
    assert caught.value.reason == reason


def test_another_bots_signature_is_refused() -> None:
    data = sign_init_data(bot_token="999:OTHER", user=USER, auth_date=NOW)
    with pytest.raises(InitDataInvalid) as caught:
        _verify(data)
    assert caught.value.reason == "hash"


def test_stale_launch_data_is_refused() -> None:
    data = sign_init_data(bot_token=TOKEN, user=USER, auth_date=NOW - timedelta(minutes=11))
    with pytest.raises(InitDataInvalid) as caught:
        _verify(data)
    assert caught.value.reason == "stale"


@pytest.mark.parametrize("data", ["", "no-equals-sign", "a=1&a=2", "x" * 5000])
def test_garbage_is_malformed(data: str) -> None:
    with pytest.raises(InitDataInvalid) as caught:
        _verify(data)
    assert caught.value.reason in {"malformed", "hash"}
