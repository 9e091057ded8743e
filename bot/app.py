"""The composition root: builds every object from settings and wires them together.

Nothing else in the project knows how the pieces connect; the services among them are built
by `bot.compose.build_services`, the same for the scheduler, the tests and the benches.
Application-wide objects reach handlers and startup/shutdown hooks as Dispatcher keyword
arguments (workflow data).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from aiogram import BaseMiddleware, Bot, Dispatcher
from aiogram.client.default import DefaultBotProperties
from aiogram.client.session.aiohttp import AiohttpSession
from aiogram.client.telegram import TelegramAPIServer
from aiogram.dispatcher.middlewares.error import ErrorsMiddleware
from aiogram.enums import ParseMode
from aiogram.fsm.storage.base import DefaultKeyBuilder
from aiogram.fsm.storage.redis import RedisStorage
from aiogram.methods.base import Response
from aiogram.types import BotCommand, BotCommandScopeDefault, Message, Update
from aiogram.types import User as TelegramUser
from apscheduler.schedulers.asyncio import AsyncIOScheduler
from redis.asyncio import Redis

from bot.answers import AnswerQueue
from bot.compose import build_aksis_client, build_services
from bot.config import Settings
from bot.delivery import DeliveryWorker
from bot.flood import RedisFloodBudget
from bot.fsm import CodeAwareFSMMiddleware
from bot.locks import RenewingRedisEventIsolation
from bot.login_worker import LoginWorker
from bot.logs import LogContextMiddleware
from bot.metrics import MeteredAksis, Metrics, TelegramMetrics, UpdateMetricsMiddleware
from bot.middlewares import (
    HeardFromMiddleware,
    InFlightMiddleware,
    LinkedAccountMiddleware,
    StoreErrorsMiddleware,
)
from bot.notifier import OutboxNotifier
from bot.outgoing import OutgoingMiddleware
from bot.projector import projector_url
from bot.scheduler import build_scheduler
from bot.secrets import Sealer
from bot.status_message import StatusBoard
from dal.pg import Postgres
from dal.redis.connection import blocking_pool
from dal.redis.outbox import OutboxLanes
from dal.redis.stores import RedisStores
from handlers import build_router
from handlers.deps import HandlerDeps
from services.accounts import AccountService
from services.aksis import AksisClient
from services.attendance import AttendanceService
from services.login_queue import LoginQueue
from services.pseudonyms import pseudonym, use_key
from services.reports import ReportService
from ui.i18n import COMMANDS, DEFAULT_LOCALE, LocaleMiddleware, default_catalogs, t

log = logging.getLogger(__name__)

# SIGTERM to exit within 5 s whatever the backlog (Docker kills after 10 s): handlers already
# running get this long, then the outbox worker returns what it has not sent (bot/delivery.py).
SHUTDOWN_GRACE_SECONDS = 2.0
SEND_GRACE_SECONDS = 1.0

# aiogram builds `Response[T]` to parse every Bot API answer; pydantic caches such
# parametrized models only weakly, so the garbage collector drops them and the next answer
# rebuilds one (about 2.6 ms, ~8% of the check-in path's CPU in bench/checkin.py). Holding
# the ones this bot uses keeps them built.
_RESPONSE_TYPES = (
    Response[Message],
    Response[Message | bool],
    Response[bool],
    Response[TelegramUser],
    Response[list[Update]],
)


@dataclass
class App:
    settings: Settings
    pg: Postgres
    redis: RedisStores
    bot: Bot
    dispatcher: Dispatcher
    notifier: OutboxNotifier
    outbox: OutboxLanes
    delivery: DeliveryWorker
    answers: AnswerQueue
    board: StatusBoard
    scheduler: AsyncIOScheduler
    accounts: AccountService
    attendance: AttendanceService
    reports: ReportService
    metrics: Metrics
    login_queue: LoginQueue
    login_worker: LoginWorker


def build_bot(settings: Settings, *, session: AiohttpSession | None = None) -> Bot:
    if settings.bot_token is None:
        raise ValueError("BOT_TOKEN is required")
    session = session or AiohttpSession(
        api=TelegramAPIServer.from_base(settings.telegram_api_url.rstrip("/"))
    )
    return Bot(
        token=settings.bot_token.get_secret_value(),
        session=session,
        default=DefaultBotProperties(parse_mode=ParseMode.HTML, link_preview_is_disabled=True),
    )


def build_storage(settings: Settings) -> RedisStorage:
    # RedisStorage.close() closes its own pool at shutdown, so it gets its own client rather
    # than the application's (docs/telegram.md). A blocking pool waits for a free connection
    # under a burst instead of raising MaxConnectionsError (docs/contracts.md, Data).
    # Conversation data expires after 15 minutes idle.
    pool = blocking_pool(
        settings.redis_url,
        sentinel=settings.redis_sentinel,
        max_connections=settings.redis_max_connections,
        timeout=10,
    )
    return RedisStorage(
        redis=Redis(connection_pool=pool),
        key_builder=DefaultKeyBuilder(prefix="fsm"),
        state_ttl=timedelta(minutes=15),
        data_ttl=timedelta(minutes=15),
    )


async def register_commands(bot: Bot) -> None:
    """The command menu in every catalog's language; English is also the default menu."""
    for locale in default_catalogs().available_locales:
        await bot.set_my_commands(
            [BotCommand(command=c, description=t(f"cmd.{c}", locale=locale)) for c in COMMANDS],
            scope=BotCommandScopeDefault(),
            language_code=None if locale == DEFAULT_LOCALE else locale,
        )


def _undeliverable_recorder(
    accounts: AccountService,
) -> Callable[[int | str, str, str], Awaitable[None]]:
    async def record(chat_id: int | str, method: str, description: str) -> None:
        log.warning(
            "telegram refused %s to chat %s for good: %s", method, pseudonym(chat_id), description
        )
        if isinstance(chat_id, int) and chat_id > 0:
            try:
                await accounts.mark_undeliverable(telegram_id=chat_id, reason=description)
            except Exception:  # recording must never break the sending path
                log.exception("could not record chat %s as undeliverable", pseudonym(chat_id))

    return record


def _wrap_updates(
    dispatcher: Dispatcher,
    outermost: Sequence[BaseMiddleware],
    inside_errors: Sequence[BaseMiddleware],
) -> None:
    """Put `outermost` before every update middleware aiogram registered, its error handling
    included, so that they see each update whole (its error replies too); and `inside_errors`
    right after aiogram's error middleware, so that what they raise reaches the error router."""
    manager = dispatcher.update.outer_middleware
    existing = list(manager)
    for middleware in existing:
        manager.unregister(middleware)
    for middleware in outermost:
        manager.register(middleware)
    for middleware in existing:
        manager.register(middleware)
        if isinstance(middleware, ErrorsMiddleware):
            for inner in inside_errors:
                manager.register(inner)


@contextlib.asynccontextmanager
async def build_app(
    settings: Settings,
    *,
    aksis: AksisClient | None = None,
    bot: Bot | None = None,
    clock: Callable[[], datetime] | None = None,
    migrate: bool = True,
) -> AsyncIterator[App]:
    """Open the pools, build services and the Dispatcher; close everything on exit.
    `migrate=False`: the schema was brought up to date beforehand (bot/__main__.py)."""
    # Both servers are checked (reachable, supported version, Redis never evicting) before the
    # schema migrates.
    redis = RedisStores.from_url(
        settings.redis_url,
        sentinel=settings.redis_sentinel,
        max_connections=settings.redis_max_connections,
    )
    try:
        await redis.ping()
        await redis.require_supported_version()
        await redis.require_noeviction(assume_noeviction=settings.redis_assume_noeviction)
        pg = await Postgres.connect(settings.database_url, migrate=migrate)
    except BaseException:
        await redis.close()
        raise
    try:
        bot = bot or build_bot(settings)
        metrics = Metrics()
        # One flood budget for every replica of this bot token (bot/flood.py).
        budget = RedisFloodBudget(
            redis.redis,
            bot_id=bot.id,
            global_rate=settings.telegram_global_rate,
            per_chat_rate=settings.telegram_per_chat_rate,
        )
        # Notices go through the durable outbox; this process's worker sends them.
        outbox = OutboxLanes(redis.redis)  # lanes: answers, urgent notices, results, the rest
        notifier = OutboxNotifier(outbox)
        delivery = DeliveryWorker(
            bot,
            outbox,
            public_url=settings.public_url,
            paid_broadcast_after=settings.telegram_paid_broadcast_after_seconds,
        )
        # Check-in answers are handed off, not awaited by their handlers (bot/answers.py).
        answers = AnswerQueue(bot, outbox)
        secret = settings.key("secret_key")
        # Log lines name people by a pseudonym keyed like the log context's `user=`.
        use_key(secret.encode())
        services = build_services(
            settings,
            pg=pg,
            redis=redis,
            notifier=notifier,
            aksis=MeteredAksis(aksis or build_aksis_client(settings), metrics),
            clock=clock,
        )
        accounts, attendance = services.accounts, services.attendance
        login_queue = services.login_queue
        login_worker = LoginWorker(queue=login_queue, bot=bot, notifier=notifier)
        bot.session.middleware(
            OutgoingMiddleware(
                global_rate=settings.telegram_global_rate,
                per_chat_rate=settings.telegram_per_chat_rate,
                on_undeliverable=_undeliverable_recorder(accounts),
                pacer=budget,
            )
        )
        # Inside the outgoing middleware: sees each attempt, retried ones included.
        bot.session.middleware(TelegramMetrics(metrics))
        # Level-3 sessions open across an upgrade from a version without the rotation schedule
        # are put on it, or their codes would stop rotating (one read when nothing is open).
        missed = await attendance.schedule_missed_rotations()
        if missed:
            log.info("rotation schedule: %d open level-3 session(s) added", missed)
        reports, excuses = services.reports, services.excuses
        board = StatusBoard(
            bot=bot,
            attendance=attendance,
            projector_url=lambda aid: projector_url(
                settings.public_url, secret, aid, now=attendance.now()
            ),
            pressure=budget.booked_ahead,  # edits back off while answers fill the budget
        )
        storage = build_storage(settings)
        # Typed from the handlers' side (handlers/deps.py): mypy checks that these fit.
        deps: HandlerDeps = {
            "settings": settings,
            "accounts": accounts,
            "login_queue": login_queue,
            "attendance": attendance,
            "reports": reports,
            "excuses": excuses,
            "board": board,
            "notifier": notifier,
            "answers": answers,
            "sealer": Sealer(secret),
            "metrics": metrics,
        }
        # aiogram's FSM middleware with the per-user lock skipped for a plain check-in code
        # (the hot path); every other update is isolated as usual (bot/fsm.py). It is ours, not
        # the Dispatcher's (`disable_fsm`, no storage given), so that our shutdown hook closes
        # the storage after the handlers still running have finished: aiogram closes its own
        # FSM storage in the first shutdown hook, before any hook registered here.
        fsm = CodeAwareFSMMiddleware(
            storage=storage,
            # Per-user locks that a crash leaves behind for seconds, not a minute (bot/locks.py).
            events_isolation=RenewingRedisEventIsolation(
                redis=storage.redis, key_builder=storage.key_builder
            ),
        )
        dispatcher = Dispatcher(disable_fsm=True, **deps)
        dispatcher.update.outer_middleware(fsm)
        dispatcher.update.outer_middleware(HeardFromMiddleware(accounts))
        dispatcher.include_router(build_router(LinkedAccountMiddleware(accounts)))
        # The reply locale of every event, errors included (ui/i18n.py).
        LocaleMiddleware(default_catalogs()).register(dispatcher)
        in_flight = InFlightMiddleware()
        _wrap_updates(
            dispatcher,
            outermost=[
                in_flight,
                LogContextMiddleware(secret.encode()),
                UpdateMetricsMiddleware(metrics),
            ],
            inside_errors=[StoreErrorsMiddleware()],
        )
        scheduler = build_scheduler(
            settings=settings, services=services, guards=redis.guards, metrics=metrics
        )
        app = App(
            settings=settings,
            pg=pg,
            redis=redis,
            bot=bot,
            dispatcher=dispatcher,
            notifier=notifier,
            outbox=outbox,
            delivery=delivery,
            answers=answers,
            board=board,
            scheduler=scheduler,
            accounts=accounts,
            attendance=attendance,
            reports=reports,
            metrics=metrics,
            login_queue=login_queue,
            login_worker=login_worker,
        )

        async def on_startup() -> None:
            await app.accounts.load_undeliverable()
            await register_commands(app.bot)
            await app.delivery.start()
            app.answers.start()
            app.board.start()
            app.login_worker.start()
            app.scheduler.start()

        async def on_shutdown() -> None:
            app.scheduler.shutdown(wait=False)
            # Polling has stopped taking updates; let the handlers already running finish
            # (aiogram does not wait for them) before the stores close.
            # Bounded: a handler still waiting after the grace is cut off with the loop; its
            # update is not confirmed again, and what it queued is in the outbox already.
            stopping = asyncio.create_task(app.delivery.stop(SEND_GRACE_SECONDS))
            if not await in_flight.wait(SHUTDOWN_GRACE_SECONDS):
                log.warning("shutdown: %d update(s) still being handled", len(in_flight))
            await app.answers.stop(SEND_GRACE_SECONDS)  # what is left goes to the outbox
            await stopping
            await app.board.stop()
            await app.login_worker.stop()
            await fsm.close()  # the conversation storage and its per-user locks, last

        dispatcher.startup.register(on_startup)
        dispatcher.shutdown.register(on_shutdown)
        yield app
    finally:
        await redis.close()
        await pg.db.close()
