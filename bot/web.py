"""The aiohttp server: `/health` always; the Telegram webhook when WEBHOOK_URL is set."""

from __future__ import annotations

import logging
from urllib.parse import urlsplit

from aiogram.webhook.aiohttp_server import SimpleRequestHandler, setup_application
from aiohttp import web

from bot.app import App

log = logging.getLogger(__name__)
APP_KEY: web.AppKey[App] = web.AppKey("attn", App)


async def health(request: web.Request) -> web.Response:
    """200 when PostgreSQL and Redis answer, else 503. The public answer names each component
    with "ok" or "down" and nothing else; why one is down goes to the log."""
    app = request.app[APP_KEY]
    checks: dict[str, str] = {}
    for name, ping in (("postgres", app.pg.ping), ("redis", app.redis.ping)):
        try:
            await ping()
        except Exception as exc:  # any failure is the answer here
            log.warning("health check: %s is down: %s: %s", name, type(exc).__name__, exc)
            checks[name] = "down"
        else:
            checks[name] = "ok"
    healthy = all(v == "ok" for v in checks.values())
    return web.json_response(
        {"status": "ok" if healthy else "down", **checks}, status=200 if healthy else 503
    )


def build_web(app: App) -> web.Application:
    web_app = web.Application()
    web_app[APP_KEY] = app
    web_app.router.add_get("/health", health)
    settings = app.settings
    if settings.webhook_url:
        # Without secret_token aiogram accepts any POST; with it, requests lacking the
        # X-Telegram-Bot-Api-Secret-Token header get 401 (TELEGRAM.md).
        secret = settings.webhook_secret.get_secret_value() if settings.webhook_secret else None
        path = urlsplit(settings.webhook_url).path or "/webhook"
        SimpleRequestHandler(dispatcher=app.dispatcher, bot=app.bot, secret_token=secret).register(
            web_app, path=path
        )
        setup_application(web_app, app.dispatcher, bot=app.bot)
    return web_app
