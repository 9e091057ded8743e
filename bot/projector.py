"""The projector page: the current check-in code and a QR code of the deep link, for the
classroom screen (issue 12).

`PUBLIC_URL/p/<token>` where the token is the session id followed by a 128-bit HMAC of it
under SECRET_KEY: unguessable without the key, checkable without storing anything, and useless
once the session has ended (the page answers 404). The page shows no student names. It updates
itself by polling `PUBLIC_URL/p/<token>/state` every second with a few lines of plain
JavaScript (no framework); without JavaScript it reloads itself every two seconds.
"""

from __future__ import annotations

import hashlib
import hmac
import html
import math
import re
from datetime import datetime
from typing import Any
from uuid import UUID

import segno

from dal.models import AttendanceRedis

POLL_MS = 1000
_MAC_BYTES = 16  # 128 bits
_TOKEN_SHAPE = re.compile(rf"[0-9a-f]{{{32 + 2 * _MAC_BYTES}}}", re.ASCII)


def _mac(secret: str, attendance_id: UUID) -> str:
    key = hashlib.sha256(b"attn projector page\x00" + secret.encode()).digest()
    return hmac.new(key, attendance_id.bytes, hashlib.sha256).digest()[:_MAC_BYTES].hex()


def projector_token(secret: str, attendance_id: UUID) -> str:
    return attendance_id.hex + _mac(secret, attendance_id)


def verify_token(secret: str, token: str) -> UUID | None:
    """The session id a token names, or None when it is not one of ours.

    The shape is checked first (ASCII lower-case hex only: `UUID()` also takes other Unicode
    digits, and comparing a non-ASCII `str` raises), then the MAC compared as bytes.
    """
    if not _TOKEN_SHAPE.fullmatch(token):
        return None
    attendance_id = UUID(hex=token[:32])
    given = token[32:].encode("ascii")
    if not hmac.compare_digest(given, _mac(secret, attendance_id).encode("ascii")):
        return None
    return attendance_id


def projector_url(public_url: str | None, secret: str, attendance_id: UUID) -> str | None:
    """The page's address, or None when PUBLIC_URL is unset (no link is offered then)."""
    if not public_url:
        return None
    return f"{public_url.rstrip('/')}/p/{projector_token(secret, attendance_id)}"


def qr_svg(link: str) -> str:
    """An inline SVG QR code of `link` (error correction M, quiet zone kept)."""
    qr = segno.make(link, error="m")
    return str(qr.svg_inline(scale=12, border=4, dark="#000", light="#fff"))


def page_state(
    attendance: AttendanceRedis, *, present: int, now: datetime, link: str
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
    }


def render_page(token: str, state: dict[str, Any]) -> str:
    esc = html.escape
    cap = f" / {state['cap']}" if state.get("cap") else ""
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta name="robots" content="noindex">
<noscript><meta http-equiv="refresh" content="2"></noscript>
<title>{esc(state["lesson"])} · ATTN</title>
<style>
body {{ margin: 0; font-family: system-ui, sans-serif; background: #fff; color: #111;
  display: flex; flex-direction: column; align-items: center; }}
h1 {{ font-size: 3vw; margin: 2vh 0 0; text-align: center; }}
main {{ display: flex; flex-wrap: wrap; align-items: center; justify-content: center;
  gap: 4vw; width: 100%; }}
#code {{ font-size: min(13vw, 30vh); font-weight: 800; letter-spacing: 0.3vw;
  font-variant-numeric: tabular-nums; }}
#qr svg {{ width: min(36vw, 65vh); height: auto; display: block; }}
p {{ font-size: 2.5vw; margin: 1vh 2vw; text-align: center; }}
</style></head>
<body>
<h1 id="lesson">{esc(state["lesson"])}</h1>
<main><div id="code">{esc(state["code"])}</div><div id="qr">{state["qr"]}</div></main>
<p>Kalan / Left: <span id="minutes">{state["minutes_left"]}</span> dk / min ·
Katılan / Checked in: <b><span id="present">{state["present"]}</span>\
<span id="cap">{esc(cap)}</span></b></p>
<p>Kodu bota gönderin ya da QR kodunu okutun · Send the code to the bot or scan the QR code</p>
<script>
(function () {{
  var code = {state["code"]!r};
  function tick() {{
    fetch("{esc(token)}/state", {{cache: "no-store"}}).then(function (r) {{
      if (r.status === 404) {{ location.reload(); return null; }}
      return r.ok ? r.json() : null;
    }}).then(function (s) {{
      if (!s) return;
      document.getElementById("code").textContent = s.code;
      document.getElementById("present").textContent = s.present;
      document.getElementById("cap").textContent = s.cap ? " / " + s.cap : "";
      document.getElementById("minutes").textContent = s.minutes_left;
      if (s.code !== code) {{ document.getElementById("qr").innerHTML = s.qr; code = s.code; }}
    }}).catch(function () {{}});
  }}
  setInterval(tick, {POLL_MS});
}})();
</script>
</body></html>
"""


__all__ = [
    "page_state",
    "projector_token",
    "projector_url",
    "qr_svg",
    "render_page",
    "verify_token",
]
