"""`python -m bot`: run ATTN (long polling, or webhook when WEBHOOK_URL is set)."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import signal
import sys

from aiohttp import web

from bot.app import SHUTDOWN_GRACE_SECONDS, build_app
from bot.config import ConfigError, Settings, load_settings
from bot.logs import setup_logging
from bot.web import build_web
from dal.errors import (
    DatabaseUnavailable,
    RedisUnavailable,
    UnsafeRedisPolicy,
    UnsupportedServer,
)

log = logging.getLogger("bot")


async def run(settings: Settings) -> None:
    async with build_app(settings) as app:
        # Webhook requests in flight get a short grace at shutdown (aiohttp's default is 60 s).
        runner = web.AppRunner(build_web(app), shutdown_timeout=SHUTDOWN_GRACE_SECONDS)
        await runner.setup()
        site = web.TCPSite(runner, settings.web_host, settings.web_port)
        await site.start()
        log.info("web server on %s:%s", settings.web_host, settings.web_port)
        # Everything built so far (modules, routers, schemas, pools) lives as long as the
        # process: moved out of the collector's sight, so that a full collection no longer
        # walks it. Measured (issue 9, item 7): a finalization tick of 30,000 records spent
        # a third of its time in collections walking these objects.
        gc.freeze()
        try:
            if settings.webhook_url:
                secret = settings.webhook_secret
                await app.bot.set_webhook(
                    settings.webhook_url,
                    secret_token=secret.get_secret_value() if secret else None,
                    allowed_updates=app.dispatcher.resolve_used_update_types(),
                )
                log.info("webhook mode")
                stop = asyncio.Event()
                loop = asyncio.get_running_loop()
                for sig in (signal.SIGINT, signal.SIGTERM):
                    loop.add_signal_handler(sig, stop.set)
                await stop.wait()
            else:
                await app.bot.delete_webhook(drop_pending_updates=False)
                log.info("long polling mode")
                await app.dispatcher.start_polling(
                    app.bot,
                    allowed_updates=app.dispatcher.resolve_used_update_types(),
                    handle_signals=True,
                    close_bot_session=True,
                )
        finally:
            await runner.cleanup()
            with contextlib.suppress(Exception):
                await app.bot.session.close()


def main() -> int:
    try:
        settings = load_settings(require_token=True)
    except ConfigError as exc:
        sys.stderr.write(f"attn: configuration error: {exc}\n")
        return 2
    setup_logging(settings)
    try:
        asyncio.run(run(settings))
    except (DatabaseUnavailable, RedisUnavailable, UnsupportedServer, UnsafeRedisPolicy) as exc:
        sys.stderr.write(f"attn: {exc}\n")
        return 1
    except KeyboardInterrupt:
        return 0
    return 0


if __name__ == "__main__":
    sys.exit(main())
