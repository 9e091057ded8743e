"""The Mini App's common plumbing: pages, their texts, launch data, errors, limits.

Every Mini App route lives under `/app/` on the bot's aiohttp server (`bot/web.py` calls
`register_webapp(web_app, app)`), in one sub-application whose middleware gives every answer
the same security headers and turns a `WebAppError` into the same JSON error.

The API, all a page module needs (bot/webapp/login.py is the example):

- `add_page(sub, name, texts=[...])`: `GET /app/<name>` serves `static/<name>.html`, and
  `GET /app/<name>/texts?lang=<code>` answers `{"lang": ..., "texts": {key: plain text}}` for
  the catalog keys listed (ui/i18n.py: English, Turkish, ... by the language code's primary
  subtag). The page's elements with `data-t="<key>"` get their text from it (static/webapp.js).
- `static/`: HTML, JS and CSS of the package, served at `/app/static/<file>`. A page loads
  `/app/static/webapp.js` (launch data from `location.hash`, `post()`, the texts) and
  `/app/static/webapp.css`; no inline script or style, no third-party origin (the CSP forbids
  both; Telegram's JS SDK is not loaded: `window.Telegram.WebApp` is used only when present).
- `await launch(request)`: the JSON body (at most `MAX_BODY_BYTES`) and its verified launch
  data: `(LaunchData, body)`. The body carries the launch data as `init_data`, exactly the
  `tgWebAppData` string Telegram put in the page's URL fragment. Refused (`WebAppError`)
  when it is not valid JSON, too large, or the launch data is not this bot's or is older
  than `WEBAPP_AUTH_MAX_AGE_MINUTES`.
- `await rate_limit(request, scope=, telegram_id=, limit=, window_seconds=)`: counts one
  hit on the same Redis throttle counters as the chat flow (`dal/redis/guards.py`,
  `keys.throttle(f"webapp:{scope}", telegram_id)`); `WebAppError(429)` beyond `limit`.
- `raise WebAppError(status, error, message=...)`: answered as
  `{"ok": false, "error": "<code>", "message": "<text for the user>"}` (and `retry_after`).
  `ok(data)` answers `{"ok": true, **data}`.
- `plain(text)`: a catalog text made for Telegram's HTML (tags, escapes) as plain text for a
  page, which sets it as `textContent` (never as HTML).
- `app_of(request)`: the `bot.app.App`.
- `locale_of(launch)`: the catalog locale of the launch data's user.
"""

from __future__ import annotations

import html
import json
import logging
import re
from collections.abc import Awaitable, Callable, Iterable
from datetime import UTC, datetime, timedelta
from importlib import resources
from typing import Any
from urllib.parse import parse_qsl

from aiohttp import web

from bot.app import App
from bot.webapp.initdata import InitDataInvalid, LaunchData, verify_init_data
from dal.redis import keys
from ui.i18n import default_catalogs, pick_locale, t

__all__ = [
    "CSP",
    "MAX_BODY_BYTES",
    "WebAppError",
    "add_page",
    "app_of",
    "launch",
    "locale_of",
    "ok",
    "page_url",
    "plain",
    "rate_limit",
    "register_webapp",
]

log = logging.getLogger(__name__)

PREFIX = "/app"
APP_KEY: web.AppKey[App] = web.AppKey("attn-webapp", App)
# A sign-in or a check-in is a few hundred bytes of JSON (the launch data is at most 4 KiB).
MAX_BODY_BYTES = 8 * 1024

# Only this origin, for everything; no inline script or style; nothing may frame the page but
# Telegram's web client (the apps open it in their own web view, which no frame rule affects).
CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; font-src 'self'; object-src 'none'; base-uri 'none'; "
    "form-action 'self'; frame-ancestors 'self' https://web.telegram.org"
)
SECURITY_HEADERS = {
    "Content-Security-Policy": CSP,
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-store",
    "X-Robots-Tag": "noindex",
    "Cross-Origin-Opener-Policy": "same-origin",
    "Permissions-Policy": "geolocation=(self), camera=(), microphone=()",
}
_STATIC_TYPES = {
    ".html": "text/html",
    ".js": "text/javascript",
    ".css": "text/css",
    ".svg": "image/svg+xml",
}
_STATIC_NAME = re.compile(r"[a-z0-9_-]+\.(html|js|css|svg)")
_TAG = re.compile(r"<[^>]+>")


class WebAppError(Exception):
    """An answer that is not a success: `status`, a stable `error` code for the page's logic,
    and a `message` the page shows the user (already in the user's language)."""

    def __init__(
        self, status: int, error: str, *, message: str = "", retry_after: int | None = None
    ) -> None:
        super().__init__(error)
        self.status = status
        self.error = error
        self.message = message
        self.retry_after = retry_after


def ok(data: dict[str, Any] | None = None, *, status: int = 200) -> web.Response:
    return web.json_response({"ok": True, **(data or {})}, status=status)


def plain(text: str) -> str:
    """A catalog text made for Telegram's HTML parse mode, as plain text."""
    return html.unescape(_TAG.sub("", text))


def app_of(request: web.Request) -> App:
    return request.app[APP_KEY]


def page_url(public_url: str, name: str) -> str:
    """The address of a page (without its fragment) for a `web_app` button."""
    return f"{public_url.rstrip('/')}{PREFIX}/{name}"


def locale_of(launch_data: LaunchData) -> str:
    return pick_locale(launch_data.user.language_code, default_catalogs().available_locales)


def _claimed_locale(init_data: str) -> str:
    """The language that unverified launch data names: only to word a refusal."""
    language = None
    try:
        user = json.loads(dict(parse_qsl(init_data)).get("user", "{}"))
        language = user.get("language_code") if isinstance(user, dict) else None
    except ValueError:
        pass
    return pick_locale(language if isinstance(language, str) else None, _available())


def _available() -> list[str]:
    return list(default_catalogs().available_locales)


def _static_bytes(name: str) -> bytes | None:
    if not _STATIC_NAME.fullmatch(name):
        return None
    resource = resources.files("bot.webapp").joinpath("static", name)
    if not resource.is_file():
        return None
    return resource.read_bytes()


def _static_response(name: str) -> web.Response:
    body = _static_bytes(name)
    if body is None:
        raise WebAppError(404, "not_found")
    suffix = name[name.rindex(".") :]
    return web.Response(body=body, content_type=_STATIC_TYPES[suffix], charset="utf-8")


async def _static(request: web.Request) -> web.Response:
    return _static_response(request.match_info["name"])


async def _read_json(request: web.Request) -> dict[str, Any]:
    if request.content_length is not None and request.content_length > MAX_BODY_BYTES:
        raise WebAppError(413, "too_large")
    raw = await request.content.read(MAX_BODY_BYTES + 1)
    if len(raw) > MAX_BODY_BYTES:
        raise WebAppError(413, "too_large")
    try:
        body = json.loads(raw)
    except (ValueError, UnicodeDecodeError):
        raise WebAppError(400, "bad_request") from None
    if not isinstance(body, dict):
        raise WebAppError(400, "bad_request")
    return body


async def launch(request: web.Request) -> tuple[LaunchData, dict[str, Any]]:
    """The request's verified launch data and its JSON body (see the module docstring)."""
    body = await _read_json(request)
    init_data = body.get("init_data")
    app = app_of(request)
    token = app.settings.bot_token
    if not isinstance(init_data, str) or token is None:
        raise WebAppError(401, "launch_malformed", message=plain(t("webapp.launch_invalid")))
    try:
        launch_data = verify_init_data(
            init_data,
            bot_token=token.get_secret_value(),
            max_age=timedelta(minutes=app.settings.webapp_auth_max_age_minutes),
            now=datetime.now(UTC),
        )
    except InitDataInvalid as exc:
        # The page was not opened from this bot (or too long ago): nothing in it is trusted
        # but its language, to say so.
        log.info("mini app: launch data refused (%s)", exc.reason)
        key = "webapp.launch_stale" if exc.reason == "stale" else "webapp.launch_invalid"
        message = plain(t(key, locale=_claimed_locale(init_data)))
        raise WebAppError(401, f"launch_{exc.reason}", message=message) from None
    return launch_data, body


async def rate_limit(
    request: web.Request, *, scope: str, telegram_id: int, limit: int, window_seconds: int
) -> None:
    """One hit on this user's counter for `scope`; WebAppError(429) beyond `limit` a window."""
    guards = app_of(request).redis.guards
    key = keys.throttle(f"webapp:{scope}", telegram_id)
    count = await guards.hit_counter(key=key, window_seconds=window_seconds)
    if count > limit:
        _, ttl = await guards.get_counter(key=key)
        raise WebAppError(429, "rate_limited", retry_after=max(ttl, 1))


def add_page(sub: web.Application, name: str, *, texts: Iterable[str]) -> None:
    """`GET /app/<name>` (static/<name>.html) and `GET /app/<name>/texts?lang=<code>`."""
    text_keys = tuple(texts)
    if _static_bytes(f"{name}.html") is None:
        raise ValueError(f"bot/webapp/static/{name}.html is missing")

    async def page(request: web.Request) -> web.Response:
        return _static_response(f"{name}.html")

    async def page_texts(request: web.Request) -> web.Response:
        catalogs = default_catalogs()
        locale = pick_locale(request.query.get("lang"), catalogs.available_locales)
        values = {key: plain(t(key, locale=locale)) for key in text_keys}
        return web.json_response({"lang": locale, "texts": values})

    sub.router.add_get(f"/{name}", page)
    sub.router.add_get(f"/{name}/texts", page_texts)


Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@web.middleware
async def _webapp_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    try:
        response = await handler(request)
    except WebAppError as exc:
        payload: dict[str, Any] = {"ok": False, "error": exc.error, "message": exc.message}
        if exc.retry_after is not None:
            payload["retry_after"] = exc.retry_after
        response = web.json_response(payload, status=exc.status)
        if exc.retry_after is not None:
            response.headers["Retry-After"] = str(exc.retry_after)
    except web.HTTPException as exc:
        response = web.json_response(
            {"ok": False, "error": exc.reason.lower().replace(" ", "_"), "message": ""},
            status=exc.status,
        )
    response.headers.update(SECURITY_HEADERS)
    return response


Setup = Callable[[web.Application, App], None]


def register_webapp(web_app: web.Application, app: App, *setups: Setup) -> web.Application:
    """Mount the Mini App at `/app/` on the bot's web app: static files, and each page
    module's `setup(sub, app)` (its `add_page` and API routes). Returns the sub-application."""
    sub = web.Application(middlewares=[_webapp_middleware], client_max_size=MAX_BODY_BYTES)
    sub[APP_KEY] = app
    sub.router.add_get("/static/{name}", _static)
    for setup in setups:
        setup(sub, app)
    web_app.add_subapp(f"{PREFIX}/", sub)
    return sub
