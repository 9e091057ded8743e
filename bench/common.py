"""Helpers shared by the benchmarks: servers, throwaway databases, a no-network Bot session,
update factories, pinned worker subprocesses and the result rows.

Servers come from DATABASE_URL and REDIS_URL (`make bench` exports them). The benchmarks use
Redis database 8 (flushed by them) and a throwaway PostgreSQL database (created, then dropped).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import math
import os
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast
from urllib.parse import urlsplit, urlunsplit

import asyncpg
from aiogram import Bot
from aiogram.client.session.base import BaseSession
from aiogram.methods import TelegramMethod
from aiogram.methods.base import TelegramType
from aiogram.types import InputFile

from dal.redis.connection import client as redis_client

if TYPE_CHECKING:
    from bot.compose import Services
    from dal.pg import Postgres
    from dal.redis.stores import RedisStores
    from services.notify import Notifier

DEFAULT_DSN = "postgresql://postgres@127.0.0.1:5432/postgres"
DEFAULT_REDIS = "redis://127.0.0.1:6379/0"
REDIS_DB = 8
FAKE_TOKEN = "4242424242:BENCH-telegram-token"  # noqa: S105 - no Telegram behind it
ROOT = Path(__file__).resolve().parent.parent


# --- servers -----------------------------------------------------------------------------


def database_url() -> str:
    return os.environ.get("DATABASE_URL", DEFAULT_DSN)


def redis_url(db: int = REDIS_DB) -> str:
    """REDIS_URL's server, database `db` (8 unless told)."""
    return urlunsplit(urlsplit(os.environ.get("REDIS_URL", DEFAULT_REDIS))._replace(path=f"/{db}"))


def with_database(dsn: str, database: str) -> str:
    return urlunsplit(urlsplit(dsn)._replace(path=f"/{database}"))


@contextlib.asynccontextmanager
async def throwaway_database(dsn: str | None = None) -> AsyncIterator[str]:
    """A fresh, empty PostgreSQL database on the server of `dsn`; dropped on exit."""
    admin_dsn = dsn or database_url()
    name = f"attn_bench_{uuid.uuid4().hex[:12]}"
    admin = await asyncpg.connect(admin_dsn)
    try:
        await admin.execute(f'CREATE DATABASE "{name}"')
    finally:
        await admin.close()
    try:
        yield with_database(admin_dsn, name)
    finally:
        admin = await asyncpg.connect(admin_dsn)
        try:
            await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        finally:
            await admin.close()


async def flush_redis(url: str) -> None:
    """Empty the benchmark's Redis database (never another one)."""
    if urlsplit(url).path != f"/{REDIS_DB}":
        raise ValueError(f"refusing to flush {url}: the benchmarks own database {REDIS_DB} only")
    client = redis_client(url)
    try:
        await client.flushdb()
    finally:
        await client.aclose()


# --- a Bot session without network -------------------------------------------------------


class NullSession(BaseSession):
    """Answers every Bot API call locally with a valid result and counts the calls.

    It does the CPU work of a real session around the network: it serialises the method's
    fields as `AiohttpSession.build_form_data` does, and parses a Bot API JSON answer with
    `check_response` (pydantic), so a bot on it costs what a real one costs minus the socket.
    Session request middlewares (the project's OutgoingMiddleware) run as usual.
    """

    def __init__(self) -> None:
        super().__init__()
        self.calls: dict[str, int] = {}
        self._message_id = 0

    @property
    def sent(self) -> int:
        return self.calls.get("sendMessage", 0)

    async def make_request(
        self, bot: Bot, method: TelegramMethod[TelegramType], timeout: int | None = None
    ) -> TelegramType:
        name = method.__api_method__
        self.calls[name] = self.calls.get(name, 0) + 1
        files: dict[str, InputFile] = {}
        form: dict[str, Any] = {}
        for key, value in method.model_dump(warnings=False).items():
            prepared = self.prepare_value(value, bot=bot, files=files)
            if prepared:
                form[key] = prepared
        content = json.dumps({"ok": True, "result": self._result(bot, name, form)})
        response = self.check_response(bot=bot, method=method, status_code=200, content=content)
        return cast(TelegramType, response.result)

    def _result(self, bot: Bot, name: str, form: dict[str, Any]) -> Any:
        if name == "getMe":
            return {"id": bot.id, "is_bot": True, "first_name": "ATTN", "username": "attn_bot"}
        if name in {"sendMessage", "editMessageText"}:
            self._message_id += 1
            chat_id = int(form.get("chat_id", 0))
            return {
                "message_id": int(form.get("message_id", self._message_id)),
                "date": int(time.time()),
                "chat": {"id": chat_id, "type": "private" if chat_id > 0 else "group"},
                "from": {"id": bot.id, "is_bot": True, "first_name": "ATTN"},
                "text": form.get("text", ""),
            }
        return True

    async def close(self) -> None:
        return None

    async def stream_content(
        self,
        url: str,
        headers: dict[str, Any] | None = None,
        timeout: int = 30,
        chunk_size: int = 65536,
        raise_for_status: bool = True,
    ) -> AsyncIterator[bytes]:
        raise NotImplementedError("the benchmarks download nothing")
        yield b""  # pragma: no cover - makes this an async generator


def null_bot() -> tuple[Bot, NullSession]:
    session = NullSession()
    return Bot(FAKE_TOKEN, session=session), session


# --- updates -----------------------------------------------------------------------------


def text_update(update_id: int, user_id: int, text: str, language: str = "en") -> dict[str, Any]:
    """A private-chat text message as Telegram delivers it (Update JSON)."""
    person = {"id": user_id, "is_bot": False, "first_name": f"Student {user_id}"}
    return {
        "update_id": update_id,
        "message": {
            "message_id": 1,
            "date": int(time.time()),
            "chat": {**person, "type": "private"},
            "from": {**person, "language_code": language},
            "text": text,
        },
    }


# --- figures -----------------------------------------------------------------------------


def percentile(values: Sequence[float], q: float) -> float:
    """Nearest-rank percentile (q in 0..100) of a non-empty sequence."""
    ordered = sorted(values)
    rank = max(1, math.ceil(q / 100 * len(ordered)))
    return ordered[rank - 1]


@dataclass
class Row:
    """One line of the results table."""

    section: str
    name: str
    value: float
    unit: str
    target: str = ""
    met: bool | None = None  # None: informational, no target
    detail: dict[str, Any] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def verdict(met: bool | None) -> str:
    return "" if met is None else ("met" if met else "MISSED")


def now_utc() -> datetime:
    return datetime.now(UTC)


def rss_mb(pid: int | None = None) -> float:
    import psutil

    return float(psutil.Process(pid).memory_info().rss) / (1024 * 1024)


# --- worker subprocesses -----------------------------------------------------------------


def pin_to_core(core: int = 0) -> None:
    """Pin this process to one CPU core (the benchmark's "one bot process on one core")."""
    os.sched_setaffinity(0, {core})


def run_worker(module: str, args: Sequence[str], *, timeout: float = 180.0) -> dict[str, Any]:
    """Run `python -m <module> --worker ...` and return the JSON object it prints last.

    The worker's stderr passes through (errors stay visible); its stdout carries the JSON.
    """
    command = [sys.executable, "-m", module, "--worker", *args]
    done = subprocess.run(
        command, cwd=ROOT, stdout=subprocess.PIPE, text=True, timeout=timeout, check=False
    )
    lines = [line for line in done.stdout.splitlines() if line.startswith("{")]
    if done.returncode != 0 or not lines:
        raise RuntimeError(f"worker {module} {' '.join(args)} failed (exit {done.returncode})")
    result: dict[str, Any] = json.loads(lines[-1])
    return result


def emit(result: dict[str, Any]) -> None:
    """A worker's answer to its parent: one JSON line on stdout."""
    sys.stdout.write(json.dumps(result) + "\n")
    sys.stdout.flush()


class ServedWorker:
    """A worker subprocess that stays up and measures one round each time it is asked, so that
    two variants can be measured turn about on the same core (`python -m <module> --worker
    ... --serve`; the worker side is `serve_rounds`). A host whose speed drifts by tens of
    percent within a minute (seen here) then slows both sides of a pair alike.

    Started, it builds what it measures and says it is ready; `round()` returns the JSON the
    worker printed for one round; closing it ends the worker (its stdin closes)."""

    def __init__(self, module: str, args: Sequence[str], *, timeout: float = 180.0) -> None:
        self._name = f"{module} {' '.join(args)}"
        self._timeout = timeout
        self._process = subprocess.Popen(
            [sys.executable, "-m", module, "--worker", *args, "--serve"],
            cwd=ROOT,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        self._answer()  # {"ready": true}, once built

    def _answer(self) -> dict[str, Any]:
        """The worker's next JSON line; a worker silent for `timeout` seconds is killed."""
        assert self._process.stdout is not None
        watchdog = threading.Timer(self._timeout, self._process.kill)
        watchdog.start()
        try:
            while True:
                line = self._process.stdout.readline()
                if not line:
                    code = self._process.wait(self._timeout)
                    raise RuntimeError(f"worker {self._name} failed (exit {code})")
                if line.startswith("{"):
                    answer: dict[str, Any] = json.loads(line)
                    return answer
        finally:
            watchdog.cancel()

    def round(self) -> dict[str, Any]:
        assert self._process.stdin is not None
        self._process.stdin.write("round\n")
        self._process.stdin.flush()
        return self._answer()

    def close(self) -> None:
        if self._process.stdin is not None:
            self._process.stdin.close()
        try:
            self._process.wait(self._timeout)
        except subprocess.TimeoutExpired:
            self._process.kill()
            self._process.wait()

    def __enter__(self) -> ServedWorker:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


async def serve_rounds(round_: Callable[[], Any]) -> None:
    """The worker side of `ServedWorker`: ready, then one awaited `round_()` per line on stdin,
    each answered with the JSON it returns, until stdin closes. Nothing else runs meanwhile:
    the reads wait in a thread, and the event loop is idle between rounds."""
    emit({"ready": True})
    while await asyncio.to_thread(sys.stdin.readline):
        emit(await round_())


# --- the table ---------------------------------------------------------------------------


def format_value(value: float, unit: str) -> str:
    if unit in {"ms", "s", "ratio", "MB"}:
        return f"{value:,.3f}" if value < 10 else f"{value:,.1f}"
    return f"{value:,.0f}"


def print_table(rows: Sequence[Row], *, header: bool = True) -> None:
    if not rows:
        return
    if header:
        cores = os.cpu_count()
        sys.stdout.write(f"ATTN benchmarks on {cores} CPU cores ({sys.version.split()[0]})\n")
    width = max(len(r.name) for r in rows) + 2
    section = ""
    for row in rows:
        if row.section != section:
            section = row.section
            sys.stdout.write(f"\n{section}\n")
        value = format_value(row.value, row.unit)
        line = (
            f"  {row.name:<{width}}{value:>12} {row.unit:<12} {row.target:<34} {verdict(row.met)}"
        )
        sys.stdout.write(line.rstrip() + "\n")
    sys.stdout.flush()


# --- the project's bot -------------------------------------------------------------------

STUDENT_BASE = 10_000_000  # Telegram ids of students: STUDENT_BASE + n
TEACHER_BASE = 9_000_000
COURSES = ["CSE101", "CSE102", "MAT201", "PHY101", "ENG101", "TUR101"]


def bench_bot() -> tuple[Bot, NullSession]:
    """A Bot on the no-network session, with the defaults `bot.app.build_bot` sets."""
    from aiogram.client.default import DefaultBotProperties
    from aiogram.enums import ParseMode

    session = NullSession()
    bot = Bot(
        FAKE_TOKEN,
        session=session,
        default=DefaultBotProperties(parse_mode=ParseMode.HTML, link_preview_is_disabled=True),
    )
    return bot, session


def project_settings(dsn: str, redis: str, **overrides: Any) -> Any:
    from bot.config import load_settings

    values: dict[str, Any] = {
        "bot_token": FAKE_TOKEN,
        "database_url": dsn,
        "redis_url": redis,
        "aksis_mode": "demo",  # the portal is a stand-in; demo mode makes its own keys
        # The stand-in portal links thousands of accounts in seconds; the production cap on
        # portal sign-ons (60 a minute) would refuse them.
        "aksis_logins_per_minute": 1_000_000,
    }
    return load_settings(**{**values, **overrides})


def bench_services(
    pg: Postgres,
    redis: RedisStores,
    notifier: Notifier,
    *,
    clock: Callable[[], datetime],
    owner: str | None = None,
    **overrides: Mapping[str, Any],
) -> Services:
    """Every service as the bot wires it (bot/compose.py), from the settings' defaults with the
    demo portal; what a benchmark changes is named by service, as `build_services` takes it."""
    from bot.compose import build_services
    from bot.config import Settings

    settings = Settings(_env_file=None, aksis_mode="demo")  # type: ignore[call-arg]
    return build_services(
        settings,
        pg=pg,
        redis=redis,
        notifier=notifier,
        clock=clock,
        owner=owner,
        overrides=overrides,
    )


class ProjectBot:
    """The project's bot from `bot.app.build_app`: linked students, sessions opened by teachers
    through `AttendanceService.start_session`, and check-in updates fed to its Dispatcher.

    Check-in handlers hand their answer to the app's answer queue (bot/answers.py); with
    `send_answers` its senders run (`answered` returns once every queued answer is sent, and
    `feed_answered` feeds one update and waits for that). Without, the answers stay queued
    (the memory bench)."""

    def __init__(self, app: Any, *, send_answers: bool = True) -> None:
        self.app = app
        self.teachers = 0
        self.update_id = 0
        self._send_answers = send_answers
        if send_answers:
            app.answers.start()

    async def link_students(self, count: int) -> None:
        """Students linked as `AccountService.login` leaves them: a users row in PostgreSQL and
        the Redis user session the middleware reads first (written in one pipeline)."""
        from dal.models import CachedAccount, Role, User
        from dal.redis.accounts import session_ttl_seconds
        from dal.redis.keys import user as user_key

        settings = self.app.settings
        ttl = session_ttl_seconds(
            Role.STUDENT,
            student_days=settings.student_session_ttl_days,
            teacher_days=settings.teacher_session_ttl_days,
        )
        now = now_utc()
        await self.app.pg.accounts.add_users(
            users=[
                User(
                    user_school_number=self.number(n),
                    user_full_name=self.name(n),
                    role=Role.STUDENT,
                )
                for n in range(count)
            ]
        )
        async with self.app.redis.redis.pipeline(transaction=False) as pipe:
            for n in range(count):
                session = CachedAccount(
                    telegram_id=STUDENT_BASE + n,
                    school_number=self.number(n),
                    full_name=self.name(n),
                    role=Role.STUDENT,
                    language=self.language(n),
                    logged_in_at=now,
                    courses=COURSES,
                )
                pipe.set(user_key(session.telegram_id), session.model_dump_json(), ex=ttl)
            await pipe.execute()

    @staticmethod
    def number(n: int) -> str:
        return f"24{n:07d}"

    @staticmethod
    def name(n: int) -> str:
        return f"Öğrenci {n}"

    @staticmethod
    def language(n: int) -> str:
        return "tr" if n % 3 == 0 else "en"

    async def open_session(self) -> tuple[str, uuid.UUID]:
        """A new teacher opens a session for an unscheduled lesson (everyone who sends the code
        is present); returns (code, attendance id)."""
        from dal.models import CachedAccount, Role
        from services.attendance import Started

        self.teachers += 1
        teacher = CachedAccount(
            telegram_id=TEACHER_BASE + self.teachers,
            school_number=f"T{self.teachers:015d}",
            full_name=f"Hoca {self.teachers}",
            role=Role.TEACHER,
            logged_in_at=now_utc(),
        )
        await self.app.redis.users.save_user_session(session=teacher, ttl_seconds=3600)
        outcome = await self.app.attendance.start_session(
            teacher=teacher, chat_id=teacher.telegram_id, lesson_name="Bench Dersi 101"
        )
        if not isinstance(outcome, Started):
            raise RuntimeError(f"session not opened: {outcome!r}")
        return str(outcome.attendance.code), outcome.attendance.attendance_id

    def updates(self, code: str, students: range) -> list[dict[str, Any]]:
        """Each of `students` sends `code` (Update JSON, fresh update ids)."""
        out = []
        for n in students:
            self.update_id += 1
            out.append(text_update(self.update_id, STUDENT_BASE + n, code, self.language(n)))
        return out

    async def feed(self, update: dict[str, Any]) -> Any:
        return await self.app.dispatcher.feed_raw_update(self.app.bot, update)

    async def answered(self) -> None:
        if self._send_answers:
            await self.app.answers.join()

    async def stop(self) -> None:
        """Stop the answer senders started here, as the bot's shutdown does (bot/app.py); left
        running, they outlived the app, and the event loop's end reported each as a task
        destroyed while pending."""
        if self._send_answers:
            await self.app.answers.stop()

    async def feed_answered(self, update: dict[str, Any]) -> Any:
        result = await self.feed(update)
        await self.answered()
        return result

    async def recorded(self, attendance_id: uuid.UUID) -> int:
        live = self.app.redis.sessions
        return int(await live.count_attendance_records(attendance_id=attendance_id))
