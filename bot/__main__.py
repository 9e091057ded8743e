"""`python -m bot`: the operator's commands (bot/cli.py); `run`, the default, runs ATTN (long
polling, or webhook when WEBHOOK_URL is set).

Start-up order keeps the liveness probe honest: the web port answers `/health/live` (and 503 on
`/health/ready`) while pending migrations are applied, so a long migration does not get the
container killed half-way; with MIGRATE_ON_START=false a separate `migrate` job applies them,
and a replica started on an older schema refuses to run.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import signal
import sys

from aiohttp import web

from bot.app import SHUTDOWN_GRACE_SECONDS, build_app
from bot.config import Settings
from bot.logs import setup_logging
from bot.web import build_web
from dal.errors import (
    DatabaseUnavailable,
    RedisUnavailable,
    UnsafeRedisPolicy,
    UnsupportedServer,
)
from dal.migrations import apply_migrations, pending_migrations
from dal.pg import Database
from dal.redis.stores import RedisStores

log = logging.getLogger("bot")


class SchemaBehind(Exception):
    """MIGRATE_ON_START=false and the database lacks migrations this code needs."""


async def _starting(request: web.Request) -> web.Response:
    return web.json_response({"status": "starting"}, status=503)


async def _alive(request: web.Request) -> web.Response:
    return web.json_response({"status": "ok"})


async def check_redis(settings: Settings) -> None:
    """Redis answers, is supported and never evicts: checked before the schema is touched, so
    an unusable Redis is refused in one line and no migration runs for a bot that cannot
    start."""
    async with RedisStores.from_url(
        settings.redis_url, sentinel=settings.redis_sentinel, max_connections=2
    ) as redis:
        await redis.ping()
        await redis.require_supported_version()
        await redis.require_noeviction(assume_noeviction=settings.redis_assume_noeviction)


async def prepare_schema(settings: Settings) -> None:
    """Apply pending migrations while a minimal server answers the probes on the web port
    (MIGRATE_ON_START=true); else refuse a schema older than the code."""
    await check_redis(settings)
    db = await Database.connect(settings.database_url, max_size=1, migrate=False)
    try:
        async with db.pool.acquire() as conn:
            version, pending = await pending_migrations(conn)
            if not pending:
                return
            if not settings.migrate_on_start:
                todo = ", ".join(f"{m.version:04d}_{m.name}" for m in pending)
                raise SchemaBehind(
                    f"database schema version {version} lacks {todo}; MIGRATE_ON_START=false:"
                    " run `python -m bot migrate` first"
                )
            probes = web.Application()
            probes.router.add_get("/health/live", _alive)
            probes.router.add_get("/health/ready", _starting)
            probes.router.add_get("/health", _starting)
            runner = web.AppRunner(probes, shutdown_timeout=0.5)
            await runner.setup()
            await web.TCPSite(runner, settings.web_host, settings.web_port).start()
            log.info("applying %d migration(s); /health/live answers meanwhile", len(pending))
            try:
                await apply_migrations(conn)
            finally:
                await runner.cleanup()
    finally:
        await db.close()


async def run(settings: Settings) -> None:
    await prepare_schema(settings)
    async with build_app(settings, migrate=False) as app:
        # Webhook requests in flight get a short grace at shutdown (aiohttp's default is 60 s).
        runner = web.AppRunner(build_web(app), shutdown_timeout=SHUTDOWN_GRACE_SECONDS)
        await runner.setup()
        site = web.TCPSite(runner, settings.web_host, settings.web_port)
        await site.start()
        log.info("web server on %s:%s", settings.web_host, settings.web_port)
        # Everything built so far (modules, routers, schemas, pools) lives as long as the
        # process: moved out of the collector's sight, so that a full collection no longer
        # walks it. Measured (`make bench`): a finalization tick of 30,000 records spent
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


def serve(settings: Settings) -> int:
    """`python -m bot run`: the bot until SIGTERM; 1 when a store is unusable."""
    setup_logging(settings)
    try:
        asyncio.run(run(settings))
    except (
        DatabaseUnavailable,
        RedisUnavailable,
        UnsupportedServer,
        UnsafeRedisPolicy,
        SchemaBehind,
    ) as exc:
        sys.stderr.write(f"attn: {exc}\n")
        return 1
    except KeyboardInterrupt:
        return 0
    return 0


def main(argv: list[str] | None = None) -> int:
    """The console script `attn` and `python -m bot`."""
    from bot.cli import main as cli_main

    return cli_main(argv)


if __name__ == "__main__":
    sys.exit(main())
