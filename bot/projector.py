"""The projector page: the current check-in code, the bot's @username and a QR code that opens
the Mini App's check-in screen, for the classroom screen.

Two kinds of address:

- the *launch* link `PUBLIC_URL/p/<session id><expiry><MAC>` in the teacher's status message:
  the session id and an expiry followed by a 128-bit HMAC of both under SECRET_KEY (unguessable
  without the key, checkable without storing anything). It is valid for `LAUNCH_LINK_SECONDS`
  and shows nothing itself: it redirects to a screen address. The status message is edited
  at least once a minute while the session is open (bot/status_message.py), each time with a fresh
  link, so the link the teacher taps always works, while a photograph of the teacher's
  message (or of the address bar before the redirect) stops working minutes later. An
  expired link of an open session asks for the status message to be edited at once, so a
  message left stale (by a restart, say) gets a working link within seconds.
- the *screen* address `PUBLIC_URL/p/<session id><expiry><MAC>`, which is what the classroom's
  browser shows in its address bar. It is valid for `SCREEN_URL_SECONDS`; the page renews it
  with every poll (`/state` answers the next one and the page puts it in the address bar), so a
  photograph of the screen's address reads the rotating codes for a minute, not for the whole
  session.

Both answer 404 once the session has ended. The page shows no student names. It polls
`<screen address>/state` every second with a small script (`projector.js`, served from this
module's directory: the page's Content-Security-Policy allows no inline script).
"""

from __future__ import annotations

import hashlib
import hmac
import html
import math
import re
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any
from uuid import UUID

import segno

from dal.models import LiveSession, Security

POLL_MS = 1000
SCREEN_URL_SECONDS = 60
# Five refreshes of the status message (once a minute): a missed edit or two do not matter.
LAUNCH_LINK_SECONDS = 300
_MAC_BYTES = 16  # 128 bits
_TOKEN = re.compile(r"^[0-9a-f]{72}$")  # session id, expiry, MAC: launch and screen alike
_LAUNCH_LABEL = b"attn projector page"
_SCREEN_LABEL = b"attn projector screen"
STATIC_DIR = Path(__file__).resolve().parent / "webapp" / "static"
# Scripts and styles from this server only, nothing inline; the QR code is inline SVG markup.
PAGE_CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
)


def _mac(secret: str, label: bytes, message: bytes) -> str:
    key = hashlib.sha256(label + b"\x00" + secret.encode()).digest()
    return hmac.new(key, message, hashlib.sha256).digest()[:_MAC_BYTES].hex()


def _expiring_token(
    secret: str, label: bytes, attendance_id: UUID, *, now: datetime, seconds: int
) -> str:
    expires = f"{int(now.timestamp()) + seconds:08x}"
    message = attendance_id.bytes + expires.encode()
    return attendance_id.hex + expires + _mac(secret, label, message)


def _verify_expiring(secret: str, label: bytes, token: str) -> tuple[UUID, int] | None:
    """(session id, expiry as a Unix time) of a token of this kind that is ours, else None."""
    # The shape first: a non-ASCII token would make compare_digest raise.
    if not _TOKEN.fullmatch(token):
        return None
    attendance_id = _session_id(token)
    if attendance_id is None:
        return None
    expires = token[32:40]
    message = attendance_id.bytes + expires.encode()
    expected = attendance_id.hex + expires + _mac(secret, label, message)
    if not hmac.compare_digest(token.encode(), expected.encode()):
        return None
    return attendance_id, int(expires, 16)


def projector_token(secret: str, attendance_id: UUID, *, now: datetime) -> str:
    """The launch link's token (the teacher's status message), valid for LAUNCH_LINK_SECONDS
    from `now`."""
    return _expiring_token(
        secret, _LAUNCH_LABEL, attendance_id, now=now, seconds=LAUNCH_LINK_SECONDS
    )


def screen_token(secret: str, attendance_id: UUID, *, now: datetime) -> str:
    """A screen address's token, valid for SCREEN_URL_SECONDS from `now`."""
    return _expiring_token(
        secret, _SCREEN_LABEL, attendance_id, now=now, seconds=SCREEN_URL_SECONDS
    )


def _session_id(token: str) -> UUID | None:
    try:
        return UUID(hex=token[:32])
    except ValueError:
        return None


def verify_token(secret: str, token: str, *, now: datetime) -> tuple[UUID, bool] | None:
    """(session id, still valid) of a launch token that is ours, else None: an expired one is
    told apart so that the status message can be renewed."""
    found = _verify_expiring(secret, _LAUNCH_LABEL, token)
    if found is None:
        return None
    attendance_id, expires = found
    return attendance_id, expires > now.timestamp()


def verify_screen_token(secret: str, token: str, *, now: datetime) -> UUID | None:
    """The session id of a screen token that is ours and has not expired, else None."""
    found = _verify_expiring(secret, _SCREEN_LABEL, token)
    if found is None or found[1] <= now.timestamp():
        return None
    return found[0]


def projector_url(
    public_url: str | None, secret: str, attendance_id: UUID, *, now: datetime
) -> str | None:
    """A launch link valid from `now`, or None when PUBLIC_URL is unset (no link then)."""
    if not public_url:
        return None
    return f"{public_url.rstrip('/')}/p/{projector_token(secret, attendance_id, now=now)}"


def qr_svg(link: str) -> str:
    """An inline SVG QR code of `link` (error correction M, quiet zone kept)."""
    qr = segno.make(link, error="m")
    return str(qr.svg_inline(scale=12, border=4, dark="#000", light="#fff"))


def check_in_payload(attendance: LiveSession) -> str:
    """The Mini App's `start_param` for this session's QR code: the code itself at levels 1
    and 2 (the page fills it in); at level 3 only the screen (the student types the code
    shown, which changes every few seconds)."""
    return "ci" if attendance.security_option >= Security.ROTATING else f"ci_{attendance.code}"


def seconds_to_next_code(
    attendance: LiveSession, *, now: datetime, rotation: timedelta
) -> int | None:
    """Level 3: about how long the current code has left (the rotation job runs every few
    seconds, so the new code appears within a tick of zero)."""
    if attendance.security_option < Security.ROTATING:
        return None
    since = attendance.code_changed_at or attendance.start_time
    return max(0, math.ceil((since + rotation - now).total_seconds()))


def page_state(
    attendance: LiveSession,
    *,
    present: int,
    now: datetime,
    link: str,
    bot_username: str,
    next_code_in: int | None,
    next_token: str,
) -> dict[str, Any]:
    end = attendance.planned_end_time
    minutes = max(0, math.ceil((end - now).total_seconds() / 60))
    return {
        "code": attendance.code,
        "lesson": attendance.lesson_name,
        "present": present,
        "cap": attendance.head_count_cap,
        "minutes_left": minutes,
        "link": link,
        "qr": qr_svg(link),
        "bot": f"@{bot_username}",
        "next_code_in": next_code_in,
        "next": next_token,
    }


def render_page(state: dict[str, Any]) -> str:
    esc = html.escape
    cap = f" / {state['cap']}" if state.get("cap") else ""
    countdown = state.get("next_code_in")
    hidden = "" if countdown is not None else " hidden"
    return f"""<!doctype html>
<html lang="tr"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta name="robots" content="noindex">
<noscript><meta http-equiv="refresh" content="2"></noscript>
<title>{esc(state["lesson"])} · ATTN</title>
<link rel="stylesheet" href="projector.css">
<script src="projector.js" defer></script>
</head>
<body data-token="{esc(state["next"])}" data-code="{esc(state["code"])}" data-poll="{POLL_MS}">
<h1 id="lesson">{esc(state["lesson"])}</h1>
<main><div id="code">{esc(state["code"])}</div><div id="qr">{state["qr"]}</div></main>
<p id="rotation"{hidden}>Yeni kod / Next code: <b><span id="countdown">{countdown or 0}</span></b>
sn / s</p>
<p>Kalan / Left: <span id="minutes">{state["minutes_left"]}</span> dk / min ·
Katılan / Checked in: <b><span id="present">{state["present"]}</span>\
<span id="cap">{esc(cap)}</span></b></p>
<p class="way">Telegram'da <b id="bot">{esc(state["bot"])}</b> botuna kodu gönderin ya da QR kodunu
okutun · Send the code to <b>{esc(state["bot"])}</b> on Telegram or scan the QR code</p>
</body></html>
"""


__all__ = [
    "LAUNCH_LINK_SECONDS",
    "PAGE_CSP",
    "SCREEN_URL_SECONDS",
    "STATIC_DIR",
    "check_in_payload",
    "page_state",
    "projector_token",
    "projector_url",
    "qr_svg",
    "render_page",
    "screen_token",
    "seconds_to_next_code",
    "verify_screen_token",
    "verify_token",
]
