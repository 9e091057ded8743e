"""Shared helpers for the background-job tests (finalize, purge, reminders, scheduler) and the
process-level ones (tests/e2e: test_delivery_process, test_replicas_class).

The fixtures they take (`pg_client`, `redis_client`) are in tests/fixtures.py, registered for
the whole suite; a test asks for them by name.

Here: `build_test_services` (every service wired as the bot wires it, bot/compose.py, over the
test stores; non-default constructor arguments as overrides), `demo_settings`, a
`RecordingNotifier` (a `services.notify.Notifier` that keeps every notice), a `Clock` the
tests move by hand, a `TcpProxy` that can cut PostgreSQL off for real, seeding
helpers that go through the real clients, and `BotProcess` (`python -m bot` in a subprocess,
with `bot_env`, `prepare_stores`, `round_robin` in front of webhook replicas, `poll_until`).
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import os
import signal
import socket
import sys
import time
import uuid
from collections.abc import AsyncIterator, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit
from zoneinfo import ZoneInfo

import aiohttp
import redis.asyncio as aioredis
from aiohttp import web

from bot.compose import Services, build_services
from bot.config import Settings
from dal.models import CachedAccount, LiveRecord, LiveSession, RecordSource, Role, User
from dal.pg import Postgres
from dal.redis.keys import records as records_key
from dal.redis.stores import RedisStores
from services.aksis import AksisClient
from services.notify import Notice, Notifier
from tests.fakes.telegram_server import FakeTelegram
from tests.harness import flush_redis, reset_database

IST = ZoneInfo("Europe/Istanbul")


# --- fakes --------------------------------------------------------------------------------


@dataclass
class RecordingNotifier:
    """A Notifier that delivers nothing and remembers everything it was asked to send."""

    sent: list[Notice] = field(default_factory=list)
    later_calls: int = 0
    markers: dict[str, str] = field(default_factory=dict)  # once-marker -> its state
    redis: aioredis.Redis | None = None

    async def enqueue(
        self,
        notices: Sequence[Notice],
        *,
        once: str | None = None,
        once_ttl: int = 0,
        once_state: str | None = None,
    ) -> bool:
        """Like the outbox: the `once` marker (holding `once_state`) and the notices in one
        step. The marker is set in `redis` when given (as the outbox does), else remembered
        here."""
        if once is not None:
            state = once_state or "1"
            if self.redis is not None:
                if await self.redis.get(once) == state:
                    return False
                await self.redis.set(once, state, ex=max(1, once_ttl))
            elif self.markers.get(once) == state:
                return False
            self.markers[once] = state
        self.later_calls += 1
        self.sent.extend(notices)
        return True

    def keys(self, key: str) -> list[Notice]:
        return [n for n in self.sent if n.key == key]

    def to(self, telegram_id: int) -> list[Notice]:
        return [n for n in self.sent if n.telegram_id == telegram_id]

    def clear(self) -> None:
        self.sent.clear()


def demo_settings(**overrides: object) -> Settings:
    """Settings from their defaults only (no .env), with the demo portal (its keys generated)."""
    return Settings(_env_file=None, **{"aksis_mode": "demo", **overrides})  # type: ignore[arg-type]


def build_test_services(
    pg: Postgres,
    redis: RedisStores,
    notifier: Notifier | None = None,
    *,
    settings: Settings | None = None,
    aksis: AksisClient | None = None,
    clock: Callable[[], datetime] | None = None,
    owner: str | None = None,
    **overrides: Mapping[str, Any],
) -> Services:
    """Every service as bot/compose.py wires it, over the test stores and `notifier` (a fresh
        RecordingNotifier by default), with the settings' defaults (`demo_settings()`) and the
    portal client they ask for unless `aksis` is given. A test that
        needs other constructor arguments names them by service:
        `build_test_services(pg, redis, finalizer={"concurrency": 1})`."""
    return build_services(
        settings or demo_settings(),
        pg=pg,
        redis=redis,
        notifier=notifier if notifier is not None else RecordingNotifier(),
        aksis=aksis,
        clock=clock,
        owner=owner,
        overrides=overrides,
    )


class Clock:
    """A clock the test moves: `clock()` is now; `clock.at(t)` / `clock.advance(...)`."""

    def __init__(self, now: datetime) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now

    def at(self, moment: datetime) -> None:
        self.now = moment

    def advance(self, **delta: float) -> None:
        self.now += timedelta(**delta)


class TcpProxy:
    """A TCP relay to a real server that the test can cut (refuse and drop) and restore, and
    that counts what the clients send (`chunks_up`: zero means not one query reached it).

    `delay` seconds are added before every chunk relayed in either direction (a slow network
    or an overloaded server, for the race tests).
    """

    def __init__(self, host: str, port: int, *, delay: float = 0.0) -> None:
        self.delay = delay
        self._target = (host, port)
        self._server: asyncio.Server | None = None
        self._writers: set[asyncio.StreamWriter] = set()
        self._tasks: set[asyncio.Task[None]] = set()
        self.port = 0
        self.chunks_up = 0  # reads relayed from the clients to the server (each a request or more)

    async def start(self) -> None:
        self._server = await asyncio.start_server(
            self._handle, "127.0.0.1", self.port, reuse_address=True
        )
        self.port = self._server.sockets[0].getsockname()[1]

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            up_reader, up_writer = await asyncio.open_connection(*self._target)
        except OSError:
            writer.close()
            return
        self._writers.update((writer, up_writer))
        pumps = [
            asyncio.create_task(self._pump(reader, up_writer, upstream=True)),
            asyncio.create_task(self._pump(up_reader, writer)),
        ]
        self._tasks.update(pumps)
        for pump in pumps:
            pump.add_done_callback(self._tasks.discard)

    async def _pump(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, *, upstream: bool = False
    ) -> None:
        try:
            while data := await reader.read(65536):
                if upstream:
                    self.chunks_up += 1
                if self.delay:
                    await asyncio.sleep(self.delay)
                writer.write(data)
                await writer.drain()
        except (OSError, asyncio.CancelledError):
            pass
        finally:
            self._writers.discard(writer)
            writer.close()

    async def cut(self) -> None:
        """Stop listening and drop every relayed connection (the server "goes away").

        The connections go before `wait_closed()`: since Python 3.12.1 it waits for every
        connection the server accepted to close, so awaiting it first never returned.
        """
        server, self._server = self._server, None
        if server is not None:
            server.close()
        for writer in list(self._writers):
            writer.close()
        self._writers.clear()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        if server is not None:
            await server.wait_closed()

    async def restore(self) -> None:
        await self.start()

    async def close(self) -> None:
        await self.cut()


def dsn_via(dsn: str, port: int) -> str:
    """`dsn` with its host and port replaced by 127.0.0.1:`port`."""
    parts = urlsplit(dsn)
    userinfo = parts.netloc.rsplit("@", 1)[0] + "@" if "@" in parts.netloc else ""
    return urlunsplit(parts._replace(netloc=f"{userinfo}127.0.0.1:{port}"))


@contextlib.asynccontextmanager
async def pg_behind_proxy(
    dsn: str, *, delay: float = 0.0
) -> AsyncIterator[tuple[Postgres, TcpProxy]]:
    parts = urlsplit(dsn)
    proxy = TcpProxy(parts.hostname or "127.0.0.1", parts.port or 5432, delay=delay)
    await proxy.start()
    client = await Postgres.connect(
        dsn_via(dsn, proxy.port), max_size=4, migrate=False, connect_timeout=3
    )
    try:
        yield client, proxy
    finally:
        await proxy.cut()
        with contextlib.suppress(Exception):
            client.db.pool.terminate()
        await proxy.close()


# --- seeding ------------------------------------------------------------------------------


def signed_in(user_number: str, role: Role, telegram_id: int = 1) -> CachedAccount:
    """The account a signed-in user's requests carry into the services (a Redis user session),
    signed in now."""
    return CachedAccount(
        telegram_id=telegram_id,
        school_number=user_number,
        full_name="X",
        role=role,
        logged_in_at=datetime.now(UTC).replace(microsecond=0),
    )


def teacher_user(number: str = "T0001", name: str = "Ayşe Öğretmen") -> User:
    return User(user_school_number=number, user_full_name=name, role=Role.TEACHER)


def student_user(number: str, name: str | None = None) -> User:
    return User(
        user_school_number=number, user_full_name=name or f"Öğrenci {number}", role=Role.STUDENT
    )


async def link(
    pg: Postgres,
    user: User,
    telegram_id: int,
    *,
    reminders: bool = True,
    language: str = "en",
) -> None:
    await pg.accounts.link_telegram(user=user, telegram_id=telegram_id, language=language)
    if not reminders:
        await pg.accounts.set_reminders(school_number=user.user_school_number, enabled=False)


async def open_session(
    redis: RedisStores,
    *,
    teacher: User,
    start: datetime,
    end: datetime,
    enrolled: Iterable[str],
    lesson_name: str = "FIZ101 - Fizik I",
    lesson_code: str | None = "FIZ101",
    teacher_telegram_id: int | None = None,
) -> LiveSession:
    """A live session opened through the real script, as of `start`."""
    draft = LiveSession(
        attendance_id=uuid.uuid4(),
        teacher_school_number=teacher.user_school_number,
        teacher_full_name=teacher.user_full_name,
        teacher_telegram_id=teacher_telegram_id,
        lesson_name=lesson_name,
        lesson_code=lesson_code,
        code="000000",
        start_time=start,
        planned_end_time=end,
    )
    return await redis.sessions.open_attendance(
        attendance=draft, enrolled=list(enrolled), now=start
    )


def record(
    attendance: LiveSession,
    number: str,
    *,
    minutes: float = 2,
    name: str | None = None,
    is_attended: bool = True,
    fail_reason: str | None = None,
    source: RecordSource = RecordSource.CODE,
    telegram_id: int | None = None,
) -> LiveRecord:
    return LiveRecord(
        attendance_id=attendance.attendance_id,
        student_number=number,
        student_full_name=name or f"Öğrenci {number}",
        telegram_id=telegram_id,
        is_attended=is_attended,
        attendance_time=attendance.start_time + timedelta(minutes=minutes),
        fail_reason=fail_reason,
        source=source,
    )


async def put_records(redis: RedisStores, records: Sequence[LiveRecord]) -> None:
    """Store records in bulk, in the client's own encoding (one pipeline)."""
    async with redis.redis.pipeline(transaction=False) as pipe:
        for rec in records:
            pipe.hset(
                records_key(rec.attendance_id),
                rec.student_number,
                rec.model_dump_json(exclude={"attendance_id"}),
            )
        await pipe.execute()


async def session_keys(raw: aioredis.Redis, attendance: LiveSession) -> list[str]:
    """Every Redis key (and index entry) that still refers to the session."""
    aid = attendance.attendance_id
    found = [
        key
        for key in (
            f"attendances:{{{aid}}}",
            f"attendance_records:{{{aid}}}",
            f"attendances:{{{aid}}}:enrolled",
            f"attendances:{{{aid}}}:claim",
        )
        if await raw.exists(key)
    ]
    if await raw.get(f"attendances:code:{attendance.code}") == str(aid):
        found.append("code index")
    if await raw.get(f"attendances:teacher:{attendance.teacher_school_number}") == str(aid):
        found.append("teacher index")
    if await raw.zscore("attendances:due", str(aid)) is not None:
        found.append("due index")
    if await raw.zscore("attendances:rotations", str(aid)) is not None:
        found.append("rotation schedule")
    return found


# --- the bot as a process (`python -m bot`): test_delivery_process, test_replicas_class ---

ROOT = Path(__file__).resolve().parent.parent
STUDENT_BASE = 7_000_000_000  # Telegram ids past 2**32


class BotProcess:
    def __init__(self, env: dict[str, str], log: Path) -> None:
        self.env = env
        self.log = log
        self.proc: asyncio.subprocess.Process | None = None

    async def start(self, telegram: FakeTelegram, ready: Callable[[], bool]) -> None:
        self.proc = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "bot",
            cwd=ROOT,
            env=self.env,
            stdout=self.log.open("ab"),
            stderr=asyncio.subprocess.STDOUT,
        )
        deadline = time.monotonic() + 30
        while not ready():
            assert self.proc.returncode is None, self.log.read_text()
            assert time.monotonic() < deadline, "the bot did not start"
            await asyncio.sleep(0.02)

    async def kill(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGKILL)
        await self.proc.wait()

    async def terminate(self, timeout: float = 15.0) -> tuple[int, float]:
        """SIGTERM; (exit status, seconds until the process was gone)."""
        assert self.proc is not None
        began = time.monotonic()
        self.proc.send_signal(signal.SIGTERM)
        code = await asyncio.wait_for(self.proc.wait(), timeout)
        return code, time.monotonic() - began

    async def ensure_stopped(self) -> None:
        if self.proc is not None and self.proc.returncode is None:
            self.proc.send_signal(signal.SIGKILL)
            await self.proc.wait()


def bot_env(telegram: FakeTelegram, pg_dsn: str, redis_url: str, **extra: str) -> dict[str, str]:
    return {
        **os.environ,
        "BOT_TOKEN": telegram.token,
        "TELEGRAM_API_URL": telegram.base_url,
        "DATABASE_URL": pg_dsn,
        "REDIS_URL": redis_url,
        "AKSIS_MODE": "demo",
        "WEB_PORT": "0",
        "WEB_HOST": "127.0.0.1",
        "LOG_LEVEL": "INFO",
        **extra,
    }


async def prepare_stores(pg_dsn: str, redis_url: str) -> None:
    await reset_database(pg_dsn)
    await flush_redis(redis_url)
    pg = await Postgres.connect(pg_dsn)  # applies the schema before the bots start
    await pg.db.close()


async def poll_until(condition: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(0.05)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


@contextlib.asynccontextmanager
async def round_robin(targets: list[str]) -> AsyncIterator[str]:
    """An HTTP proxy that sends each request to the next of `targets` in turn."""
    turn = itertools.cycle(targets)
    session = aiohttp.ClientSession()

    async def forward(request: web.Request) -> web.Response:
        body = await request.read()
        headers = {k: v for k, v in request.headers.items() if k.lower() != "host"}
        async with session.post(next(turn) + request.path, data=body, headers=headers) as answer:
            return web.Response(status=answer.status, body=await answer.read())

    app = web.Application()
    app.router.add_post("/{tail:.*}", forward)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)  # the kernel picks the port: no race
    await site.start()
    port = runner.addresses[0][1]
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        await runner.cleanup()
        await session.close()


WEBHOOK_SECRET = "s3cret-webhook-token-0123456789_abcdefgh"


def called_again(telegram: FakeTelegram, method: str) -> Callable[[], bool]:
    """A readiness check: true once `method` is called after this moment (a started bot's
    first `getUpdates`, or its `setWebhook`)."""
    before = telegram.call_count(method)
    return lambda: telegram.call_count(method) > before


@contextlib.asynccontextmanager
async def webhook_replicas(
    telegram: FakeTelegram,
    pg_dsn: str,
    redis_url: str,
    logs: Path,
    *,
    n: int = 2,
    **extra: str,
) -> AsyncIterator[list[BotProcess]]:
    """`n` bot processes (`python -m bot`) in webhook mode behind one round-robin proxy, as
    replicas behind a load balancer, sharing the database and Redis; started one after the
    other (each has registered its webhook), killed on the way out if still running. Their
    logs are `logs / replica<k>.log`."""
    ports = [free_port() for _ in range(n)]
    async with round_robin([f"http://127.0.0.1:{p}" for p in ports]) as proxy:
        replicas = [
            BotProcess(
                bot_env(
                    telegram,
                    pg_dsn,
                    redis_url,
                    WEB_PORT=str(port),
                    WEBHOOK_URL=f"{proxy}/webhook",
                    WEBHOOK_SECRET=WEBHOOK_SECRET,
                    **extra,
                ),
                logs / f"replica{k}.log",
            )
            for k, port in enumerate(ports)
        ]
        try:
            for replica in replicas:
                await replica.start(telegram, called_again(telegram, "setWebhook"))
            yield replicas
        finally:
            for replica in replicas:
                await replica.ensure_stopped()
