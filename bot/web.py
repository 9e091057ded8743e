"""The aiohttp server: health, metrics, and the Telegram webhook when WEBHOOK_URL is set.

- `/health/live`: the process answers (an orchestrator restarts the container when it does not);
- `/health/ready`: PostgreSQL and Redis both answer (200) or not (503: take this replica out of
  the load balancer, but do not restart it; it recovers by itself when the store is back);
- `/health`: the same answer as `/health/ready`, kept for existing probes;
- `/metrics`: Prometheus text format (bot/metrics.py), behind `METRICS_TOKEN` when it is set;
- `/p/<token>` and `/p/<token>/state`: the projector page of an open session (bot/projector.py):
  the teacher's launch link (valid for minutes, renewed with every edit of the status
  message) redirects to a screen address that the page renews as it polls; 404 for an
  unknown or expired token or an ended session;
- `/app/…`: the Mini App (bot/webapp/pages.py mounts it; each page module adds its routes).

Health answers name components and say `ok` or `down`, nothing more: exception names and
messages (which may carry host names) stay in the log.
"""

from __future__ import annotations

import asyncio
import hmac
import logging
import re
from collections.abc import Awaitable
from datetime import UTC, datetime, timedelta
from urllib.parse import urlsplit
from uuid import UUID

from aiogram import Bot
from aiogram.webhook.aiohttp_server import SimpleRequestHandler, setup_application
from aiohttp import web

from bot.app import App
from bot.metrics import CONTENT_TYPE_LATEST
from bot.projector import (
    PAGE_CSP,
    STATIC_DIR,
    check_in_payload,
    page_state,
    render_page,
    screen_token,
    seconds_to_next_code,
    verify_screen_token,
    verify_token,
)
from bot.webapp import checkin, figures
from bot.webapp import login as webapp_login
from bot.webapp.pages import register_webapp
from services.attendance import Roster
from ui.render import mini_app_link

log = logging.getLogger(__name__)
APP_KEY: web.AppKey[App] = web.AppKey("attn", App)
# A store that does not answer within this long counts as down for readiness.
READY_TIMEOUT_SECONDS = 3.0


async def _probe(name: str, check: Awaitable[None]) -> str:
    try:
        async with asyncio.timeout(READY_TIMEOUT_SECONDS):
            await check
    except Exception as exc:  # any failure is the answer here
        # The public answer says only "down"; why goes to the log.
        log.warning("readiness: %s is down: %s: %s", name, type(exc).__name__, exc)
        return "down"
    return "ok"


async def ready(request: web.Request) -> web.Response:
    app = request.app[APP_KEY]
    checks = {
        "postgres": await _probe("postgres", app.pg.db.ping()),
        "redis": await _probe("redis", app.redis.ping()),
    }
    healthy = all(v == "ok" for v in checks.values())
    return web.json_response(
        {"status": "ok" if healthy else "down", **checks}, status=200 if healthy else 503
    )


async def live(request: web.Request) -> web.Response:
    return web.json_response({"status": "ok"})


async def metrics(request: web.Request) -> web.Response:
    app = request.app[APP_KEY]
    token = app.settings.metrics_token
    if token is not None:
        expected = f"Bearer {token.get_secret_value()}".encode()
        given = request.headers.get("Authorization", "").encode()
        if not hmac.compare_digest(given, expected):
            return web.Response(status=401, text="metrics token required\n")
    await app.metrics.refresh(
        sessions=app.redis.sessions, pg=app.pg.db, now=datetime.now(UTC), outbox=app.outbox
    )
    response = web.Response(body=app.metrics.exposition())
    response.headers["Content-Type"] = CONTENT_TYPE_LATEST
    return response


_NO_STORE = {"Cache-Control": "no-store", "X-Robots-Tag": "noindex"}


async def _open_session(app: App, attendance_id: UUID) -> tuple[Roster, datetime] | None:
    roster = await app.attendance.status(attendance_id=attendance_id)
    now = app.attendance.now()
    if roster is None:
        return None
    session = roster.attendance
    end = session.end_time or session.planned_end_time
    if min(end, session.planned_end_time) <= now:
        return None
    return roster, now


async def _projector_state(app: App, token: str) -> dict[str, object] | None:
    """The page's figures for a screen token, or None when the token is not ours, has expired,
    or the session has ended."""
    secret = app.settings.key("secret_key")
    attendance_id = verify_screen_token(secret, token, now=app.attendance.now())
    if attendance_id is None:
        return None
    found = await _open_session(app, attendance_id)
    if found is None:
        return None
    roster, now = found
    session = roster.attendance
    username = (await app.bot.me()).username or "bot"
    rotation = timedelta(seconds=app.settings.code_rotation_seconds)
    return page_state(
        session,
        present=roster.tally.attended,
        now=now,
        link=mini_app_link(username, check_in_payload(session)),
        bot_username=username,
        next_code_in=seconds_to_next_code(session, now=now, rotation=rotation),
        next_token=screen_token(secret, attendance_id, now=now),
    )


def _not_open() -> web.Response:
    return web.Response(status=404, text="This attendance is not open.\n", headers=_NO_STORE)


async def projector_page(request: web.Request) -> web.Response:
    """A launch link redirects to a fresh screen address; a screen address shows the page."""
    app = request.app[APP_KEY]
    token = request.match_info["token"]
    launch = verify_token(app.settings.key("secret_key"), token, now=app.attendance.now())
    if launch is not None:
        attendance_id, valid = launch
        found = await _open_session(app, attendance_id)
        if found is None:
            return _not_open()
        if not valid:
            # A photographed (or stale) link: nothing shown. The teacher's status message is
            # edited within seconds with a fresh link, in case it was the teacher's own.
            app.board.touch(attendance_id)
            return _not_open()
        fresh = screen_token(app.settings.key("secret_key"), attendance_id, now=found[1])
        # Relative: PUBLIC_URL may carry a path prefix the server does not see.
        raise web.HTTPSeeOther(location=fresh, headers=_NO_STORE)
    state = await _projector_state(app, token)
    if state is None:
        return _not_open()
    headers = {**_NO_STORE, "Content-Security-Policy": PAGE_CSP, "Referrer-Policy": "no-referrer"}
    return web.Response(text=render_page(state), content_type="text/html", headers=headers)


async def projector_data(request: web.Request) -> web.Response:
    state = await _projector_state(request.app[APP_KEY], request.match_info["token"])
    if state is None:
        return web.json_response({"open": False}, status=404, headers=_NO_STORE)
    return web.json_response(state, headers=_NO_STORE)


class _WebhookHandler(SimpleRequestHandler):
    """aiogram's handler with a secret check that answers 401 to any header, never a 500.

    aiogram compares the header as `str`, which raises TypeError (a 500 with a traceback) for a
    non-ASCII value. Here a header of another shape than Telegram's alphabet is refused first,
    and the comparison is of bytes, in constant time.
    """

    def verify_secret(self, telegram_secret_token: str, bot: Bot) -> bool:
        if not self.secret_token:
            return True
        if not _SECRET_SHAPE.fullmatch(telegram_secret_token):
            return False
        return hmac.compare_digest(
            telegram_secret_token.encode("ascii"), self.secret_token.encode("ascii")
        )


# The header Telegram sends: 1-256 characters of A-Z a-z 0-9 _ - (docs/telegram.md), ASCII only.
_SECRET_SHAPE = re.compile(r"[A-Za-z0-9_-]{1,256}", re.ASCII)


def _projector_file(name: str, content_type: str) -> web.Response:
    body = (STATIC_DIR / name).read_bytes()
    return web.Response(
        body=body, content_type=content_type, headers={"Cache-Control": "max-age=300"}
    )


async def projector_script(request: web.Request) -> web.Response:
    return _projector_file("projector.js", "text/javascript")


async def projector_style(request: web.Request) -> web.Response:
    return _projector_file("projector.css", "text/css")


def build_web(app: App) -> web.Application:
    web_app = web.Application()
    web_app[APP_KEY] = app
    web_app.router.add_get("/health", ready)
    web_app.router.add_get("/health/ready", ready)
    web_app.router.add_get("/health/live", live)
    web_app.router.add_get("/metrics", metrics)
    web_app.router.add_get("/p/projector.js", projector_script)
    web_app.router.add_get("/p/projector.css", projector_style)
    web_app.router.add_get("/p/{token}", projector_page)
    web_app.router.add_get("/p/{token}/state", projector_data)
    # The Mini App (bot/webapp/): its sign-in, check-in and figures pages.
    register_webapp(web_app, app, webapp_login.setup, checkin.setup, figures.setup)
    settings = app.settings
    if settings.webhook_url:
        # Without secret_token aiogram accepts any POST; with it, requests lacking the
        # X-Telegram-Bot-Api-Secret-Token header get 401 (docs/telegram.md).
        secret = settings.webhook_secret.get_secret_value() if settings.webhook_secret else None
        path = urlsplit(settings.webhook_url).path or "/webhook"
        # The dispatcher's shutdown (which settles the outbox sends in flight) is registered
        # first: aiohttp runs shutdown hooks in order, and the webhook handler's closes the bot
        # session. The other way round, SIGTERM cut off requests already at Telegram, and the
        # entries they delivered were sent again by the replica that took them over.
        setup_application(web_app, app.dispatcher, bot=app.bot)
        # In the background: the update is acknowledged at once and a reply its handler returns
        # is sent through the Bot API (paced, once), never in this HTTP response
        # (handlers/replies.py).
        _WebhookHandler(
            dispatcher=app.dispatcher, bot=app.bot, secret_token=secret, handle_in_background=True
        ).register(web_app, path=path)
    return web_app
