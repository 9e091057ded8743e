#!/usr/bin/env python3
"""`make demo`: the real bot, a local Bot API server, demo Aksis accounts and a scripted class.

    demo.py [--database attn_demo] [--redis-db 7] [--keep] [--verbose]

1. Creates its own PostgreSQL database (dropped first if left over) on the server of
   DATABASE_URL and flushes its own Redis database (7 unless told) on REDIS_URL's server: no
   other data is touched.
2. Starts FakeTelegram (tests/fakes/telegram_server.py) on 127.0.0.1.
3. Runs the real bot, `python -m bot`, as a subprocess against it with AKSIS_MODE=demo, and waits
   until `/health` answers and the bot long-polls.
4. Plays a class through Telegram: demo_teacher_1 and 51 students link their accounts with
   /login (students 41..50 as well: the bot learns who is enrolled from the schedules it caches
   at login), except student 8, who signs in through the Mini App's sign-in page in headless
   Chromium (launch data signed with the bot token as Telegram signs it; the chat gets one
   confirmation, no Bot API request carries the password; without Chromium or Playwright the
   demo says so and student 8 uses /login too); the teacher opens attendance; students 1..40
   check in (a few send a wrong code first, one twice, one through the deep link, two after
   the late threshold), demo_student_55 (not in the course) checks in and is left pending
   review, students 41..50 stay away; the teacher lists the attendees and ends the session.
5. Waits until the finalizer has written the sheet to PostgreSQL and prints an abbreviated chat
   transcript and the attendance sheet read back from PostgreSQL.
5b. Plays one level-3 session: the teacher opens attendance again, presses the level
   3 button and shares the classroom's location; students send the rotating code and their
   locations (one 2 km away: pending review), one uses the previous code after a rotation
   (accepted) and one a code two rotations old ("expired"); prints the projector page URL the
   bot served (checked to answer, then to answer 404 once the session has ended).
5c. In that session one student checks in through the Mini App's check-in page in headless
   Chromium (launch data signed with the bot token, the code typed, the position from the
   browser): the verdict is the page's and the bot sends no message for it. Without Chromium
   (or Playwright) the step is skipped and the demo says so.
6. Stops the bot with SIGTERM, stops the fake and drops the database.

Exit status 0 when every step went as scripted, 1 with a message naming the failed step.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import html
import os
import re
import shutil
import signal
import socket
import string
import sys
import time
import traceback
from collections import Counter, defaultdict
from collections.abc import AsyncIterator, Coroutine, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from functools import cache
from pathlib import Path
from typing import Any, Final, Literal
from urllib.parse import quote, urlsplit, urlunsplit
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the project and its tests

import aiohttp
import asyncpg
import redis.asyncio as aioredis

from dal.redis.connection import client as redis_client
from services.demo_aksis import (
    DEMO_PASSWORD,
    demo_course,
    demo_school_number,
    demo_student_name,
)
from tests.fakes.telegram_server import FakeTelegram, FakeUser
from ui.i18n import t, tn

ROOT: Final = Path(__file__).resolve().parents[1]
DEFAULT_DATABASE_URL: Final = "postgresql://postgres@127.0.0.1:5432/postgres"
DEFAULT_REDIS_URL: Final = "redis://127.0.0.1:6379/0"
DEFAULT_DATABASE: Final = "attn_demo"
DEFAULT_REDIS_DB: Final = 7
LANG: Final = "en"
BOT_USERNAME: Final = "attn_demo_bot"

# The script of the class.
TEACHER: Final = 1
ATTENDING: Final = tuple(range(1, 41))  # students who come to class
STAYING_AWAY: Final = tuple(range(41, 51))  # enrolled in teacher 1's course, never check in
OUTSIDER: Final = 55  # not enrolled in teacher 1's course: pending review
LINKED: Final = (*ATTENDING, *STAYING_AWAY, OUTSIDER)
WRONG_CODE_FIRST: Final = (7, 19, 33)
TWICE: Final = 2
DEEP_LINK: Final = 5
LATE: Final = (39, 40)
LOGIN_BATCHES: Final = 3

# The level-3 session played after the class: the classroom's location, students
# near it and one too far, a code that rotates every few seconds.
CLASSROOM: Final = (41.0122, 28.9760)
METERS_PER_DEGREE_LAT: Final = 111_195.08
LEVEL3_NEAR: Final = (1, 2, 4, 6)  # in the room (20-60 m from the teacher)
LEVEL3_FAR: Final = 3  # 2 km away: pending review, LOCATION_TOO_FAR
LEVEL3_EXPIRED: Final = 6  # tries a code two rotations old first
MINI_APP_STUDENT: Final = 8  # checks in to the level-3 session through the Mini App's page
CODE_ROTATION_SECONDS: Final = 5

# Bot settings for a class played in seconds rather than minutes.
LATE_AFTER_MINUTES: Final = 0.1
FINALIZE_INTERVAL_SECONDS: Final = 2
PER_CHAT_RATE: Final = 5

# Time limits (seconds). The whole run stays under two minutes.
RUN_DEADLINE: Final = 130.0
BOT_READY_TIMEOUT: Final = 30.0
REPLY_TIMEOUT: Final = 20.0
FINALIZE_TIMEOUT: Final = 60.0
BOT_STOP_TIMEOUT: Final = 15.0

WIDTH: Final = 150
TEACHER_TG_ID: Final = 7_000_000
STUDENT_TG_BASE: Final = 7_001_000

_STARTED = time.monotonic()


class DemoError(Exception):
    """A step did not go as scripted; the message says which one and what happened."""


def elapsed() -> float:
    return time.monotonic() - _STARTED


def say(message: str) -> None:
    print(f"[{elapsed():5.1f}s] {message}", flush=True)


def where(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.hostname}:{parts.port or ''}".rstrip(":")


def with_path(url: str, path: str) -> str:
    return urlunsplit(urlsplit(url)._replace(path=path))


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


def plain(text: str) -> str:
    """A bot message as a reader sees it: no HTML, lines joined on one line."""
    lines = [line.strip() for line in html.unescape(re.sub(r"<[^>]+>", "", text)).splitlines()]
    return " · ".join(line for line in lines if line)


def clip(text: str, width: int) -> str:
    return text if len(text) <= width else text[: width - 1] + "…"


def spans(numbers: Iterable[int]) -> str:
    """1, 2, 3, 5 -> "1–3, 5"."""
    ordered = sorted(set(numbers))
    parts: list[str] = []
    i = 0
    while i < len(ordered):
        j = i
        while j + 1 < len(ordered) and ordered[j + 1] == ordered[j] + 1:
            j += 1
        parts.append(str(ordered[i]) if i == j else f"{ordered[i]}–{ordered[j]}")
        i = j + 1
    return ", ".join(parts)


# ----------------------------------------------------------------------------- bot texts


@cache
def _pattern(key: str, lang: str) -> re.Pattern[str]:
    """The message `key` as a regex: its literal text, any value in each placeholder; either
    form of a plural message ("1 lesson", "2 lessons")."""
    forms = [t(key, locale=lang)]
    if tn(key, 2, locale=lang) != key:  # a plural entry (a singular one answers the key)
        forms = [tn(key, 1, locale=lang), tn(key, 2, locale=lang)]
    alternatives = []
    for form in dict.fromkeys(forms):
        regex = ""
        for literal, name, _spec, _conv in string.Formatter().parse(form):
            regex += re.escape(literal)
            if name is not None:
                regex += ".*?"
        alternatives.append(f"(?:{regex})")
    return re.compile("|".join(alternatives), re.DOTALL)


def is_text(key: str, text: str, *, whole: bool = True) -> bool:
    pattern = _pattern(key, LANG)
    return bool(pattern.fullmatch(text) if whole else pattern.match(text))


def which(keys: Iterable[str], text: str) -> str | None:
    return next((key for key in keys if is_text(key, text)), None)


# Notices that may reach a user at any time; they are skipped while waiting for a reply.
NOTICES: Final = ("remind.open", "remind.closing", "remind.teacher")
RESULTS: Final = ("final.present", "final.late", "final.absent", "final.not_accepted")


# ----------------------------------------------------------------------------- actors


@dataclass(frozen=True)
class Actor:
    user: FakeUser
    label: str  # "teacher", "student 7"
    number: int  # demo account number
    username: str
    school_number: str  # "" for the teacher (a keyed hash the bot computes)
    full_name: str

    @property
    def chat(self) -> int:
        return self.user.id


@dataclass(frozen=True)
class UserEvent:
    at: float
    chat: int
    text: str  # as shown in the transcript
    message_id: int
    label: str  # what a deletion of this message is called


@dataclass(frozen=True)
class Event:
    at: float
    chat: int
    kind: Literal["user", "send", "edit", "delete"]
    text: str


@dataclass(frozen=True)
class Phase:
    title: str
    start: float
    featured: frozenset[int]  # chats shown message by message
    claims: tuple[str, ...] = ()  # bot messages starting so belong here, whenever sent


@dataclass
class Transcript:
    actors: dict[int, Actor] = field(default_factory=dict)
    said: list[UserEvent] = field(default_factory=list)
    phases: list[Phase] = field(default_factory=list)
    masks: dict[str, str] = field(default_factory=dict)  # text -> placeholder, for summaries

    def begin(self, title: str, featured: Iterable[Actor], claims: tuple[str, ...] = ()) -> None:
        chats = frozenset(a.chat for a in featured)
        self.phases.append(Phase(title, time.monotonic(), chats, claims))

    async def send(
        self, actor: Actor, text: str, *, shown: str | None = None, label: str = "message"
    ) -> dict[str, Any]:
        at = time.monotonic()
        message = await actor.user.send(text)
        self.said.append(
            UserEvent(at, actor.chat, shown or text, int(message["message_id"]), label)
        )
        return message

    def events(self, fake: FakeTelegram) -> list[Event]:
        deleted = {(e.chat, e.message_id): e.label for e in self.said}
        events = [Event(e.at, e.chat, "user", e.text) for e in self.said]
        for call in fake.calls:
            chat = call.chat_id
            if not call.ok or not isinstance(chat, int) or chat not in self.actors:
                continue
            method = call.method.lower()
            if method == "sendmessage":
                events.append(Event(call.at, chat, "send", str(call.params.get("text", ""))))
            elif method == "editmessagetext":
                events.append(Event(call.at, chat, "edit", str(call.params.get("text", ""))))
            elif method == "deletemessage":
                label = deleted.get((chat, int(call.params.get("message_id", 0))), "message")
                events.append(Event(call.at, chat, "delete", label))
        events.sort(key=lambda e: e.at)
        return events

    def _phase_of(self, event: Event) -> int:
        if event.kind in ("send", "edit"):
            text = plain(event.text)
            for index, phase in enumerate(self.phases):
                if phase.claims and text.startswith(phase.claims):
                    return index
        index = 0
        for i, phase in enumerate(self.phases):
            if phase.start <= event.at:
                index = i
        return index

    def _line(self, event: Event) -> str:
        who = self.actors[event.chat].label
        if event.kind == "user":
            return clip(f"  {who} → {event.text}", WIDTH)
        if event.kind == "delete":
            return f"  bot 🗑 deletes {who}'s {event.text} message"
        arrow = "→" if event.kind == "send" else "✎"
        return clip(f"  bot {arrow} {who}: {plain(event.text)}", WIDTH)

    def _gist(self, event: Event) -> str:
        actor = self.actors[event.chat]
        text = event.text if event.kind in ("user", "delete") else plain(event.text)
        for value, placeholder in self.masks.items():
            text = text.replace(value, placeholder)
        replacements = (
            (actor.full_name, "<name>"),
            (actor.username, "demo_student_<n>"),
            (actor.school_number, "<number>"),
        )
        for value, placeholder in replacements:
            if value:
                text = text.replace(value, placeholder)
        text = re.sub(r"\b\d{2}:\d{2}\b", "<time>", text)
        return {"user": "→ ", "send": "← ", "edit": "✎ ", "delete": "🗑 "}[event.kind] + text

    def render(self, fake: FakeTelegram) -> list[str]:
        by_phase: dict[int, list[Event]] = defaultdict(list)
        for event in self.events(fake):
            by_phase[self._phase_of(event)].append(event)
        out: list[str] = []
        for index, phase in enumerate(self.phases):
            events = by_phase.get(index, [])
            out.append(f"── {index + 1}. {phase.title} " + "─" * max(3, 70 - len(phase.title)))
            out += [self._line(e) for e in events if e.chat in phase.featured]
            others: dict[int, list[Event]] = defaultdict(list)
            for event in events:
                if event.chat not in phase.featured:
                    others[event.chat].append(event)
            groups: dict[tuple[str, ...], list[int]] = defaultdict(list)
            for chat, chat_events in others.items():
                groups[tuple(self._gist(e) for e in chat_events)].append(chat)
            for gist, chats in sorted(groups.items(), key=lambda g: (-len(g[1]), min(g[1]))):
                out += self._summary(gist, chats, featured=bool(phase.featured))
        return out

    def _summary(self, gist: tuple[str, ...], chats: list[int], *, featured: bool) -> list[str]:
        """Students whose exchange differs only in their own name, number and times: what
        they sent, and the bot's last answer."""
        numbers = [self.actors[c].number for c in chats]
        if len(chats) == 1:
            head = f"  ⋯ {'also ' if featured else ''}student {numbers[0]}"
        else:
            more = "more " if featured else ""
            head = f"  ⋯ {len(chats)} {more}students ({spans(numbers)})"
        said = [g[2:] for g in gist if g.startswith("→ ")]
        replies = [g[2:] for g in gist if g.startswith(("← ", "✎ "))]
        if len(gist) > 2:
            head += f", {len(gist)} messages" + (" each" if len(chats) > 1 else "")
        if not said:
            return [clip(f"{head}: ⇐ {replies[-1] if replies else '—'}", WIDTH)]
        lines = [clip(f"{head}: " + " → ".join(said), WIDTH)]
        if replies:
            lines.append(clip(f"        ⇒ {replies[-1]}", WIDTH))
        return lines


# ----------------------------------------------------------------------------- the bot process


class BotProcess:
    """`python -m bot` as a child process, its log kept in memory."""

    def __init__(self, process: asyncio.subprocess.Process, *, verbose: bool) -> None:
        self.process = process
        self.lines: list[str] = []
        self._verbose = verbose
        assert process.stdout is not None
        self._reader = asyncio.create_task(self._read(process.stdout))

    @classmethod
    async def start(cls, env: dict[str, str], *, verbose: bool) -> BotProcess:
        process = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "bot",
            cwd=str(ROOT),
            env=env,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
            start_new_session=True,  # a Ctrl-C in the terminal reaches only this script
        )
        return cls(process, verbose=verbose)

    async def _read(self, stream: asyncio.StreamReader) -> None:
        while line := await stream.readline():
            text = line.decode("utf-8", "replace").rstrip()
            self.lines.append(text)
            if self._verbose:
                print(f"    bot| {text}", file=sys.stderr, flush=True)

    @property
    def running(self) -> bool:
        return self.process.returncode is None

    def tail(self, n: int = 25) -> str:
        return "\n".join(f"    bot| {line}" for line in self.lines[-n:]) or "    (no output)"

    def problems(self) -> list[str]:
        return [
            line
            for line in self.lines
            if re.match(r"^\S+ \S+ (ERROR|CRITICAL) ", line) or line.startswith("Traceback")
        ]

    async def stop(self) -> tuple[int, float, bool]:
        """SIGTERM, then SIGKILL after BOT_STOP_TIMEOUT: (exit code, seconds, killed)."""
        began = time.monotonic()
        killed = False
        if self.running:
            self.process.send_signal(signal.SIGTERM)
            try:
                await asyncio.wait_for(self.process.wait(), BOT_STOP_TIMEOUT)
            except TimeoutError:
                killed = True
                self.process.kill()
                await self.process.wait()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._reader, 5)
        code = self.process.returncode
        return (code if code is not None else -1), time.monotonic() - began, killed


# ----------------------------------------------------------------------------- the demo


@dataclass(frozen=True)
class Options:
    database_url: str
    redis_url: str
    database: str
    redis_db: int
    keep: bool
    verbose: bool

    @property
    def admin_dsn(self) -> str:
        return with_path(self.database_url, "/postgres")

    @property
    def demo_dsn(self) -> str:
        return with_path(self.database_url, f"/{self.database}")

    @property
    def demo_redis_url(self) -> str:
        return with_path(self.redis_url, f"/{self.redis_db}")


def planned_sheet() -> dict[str, str]:
    """The status each student's row must show when the class went as scripted."""
    sheet = {demo_school_number(j): "present" for j in ATTENDING}
    sheet.update({demo_school_number(j): "late" for j in LATE})
    sheet.update({demo_school_number(j): "absent" for j in STAYING_AWAY})
    sheet[demo_school_number(OUTSIDER)] = "pending"
    return sheet


class Demo:
    def __init__(self, options: Options, stack: contextlib.AsyncExitStack) -> None:
        self.options = options
        self.stack = stack
        try:
            self.tz = ZoneInfo(os.environ.get("TIMEZONE") or "Europe/Istanbul")
        except (ValueError, ZoneInfoNotFoundError):  # the bot names the bad setting
            self.tz = ZoneInfo("UTC")
        self.transcript = Transcript()
        self.fake: FakeTelegram | None = None
        self.bot: BotProcess | None = None
        self.public_url: str | None = None
        self.bot_stopped = False
        self.transcript_printed = False

    # --- step 1: databases -------------------------------------------------------------

    async def prepare_storage(self) -> None:
        opts = self.options
        try:
            admin = await asyncpg.connect(opts.admin_dsn, timeout=10)
        except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError, TimeoutError) as exc:
            raise DemoError(
                f"PostgreSQL at {where(opts.database_url)} (DATABASE_URL) is not reachable: "
                f"{exc or type(exc).__name__}. `make demo` starts a throwaway server when none "
                "answers."
            ) from None
        try:
            await admin.execute(f'DROP DATABASE IF EXISTS "{opts.database}" WITH (FORCE)')
            await admin.execute(f'CREATE DATABASE "{opts.database}"')
        except asyncpg.PostgresError as exc:
            raise DemoError(
                f"could not re-create database {opts.database} on {where(opts.database_url)}: {exc}"
            ) from None
        finally:
            await admin.close()
        if not opts.keep:
            self.stack.push_async_callback(self.drop_database)

        client = redis_client(opts.demo_redis_url)
        try:
            await client.flushdb()
        except (OSError, aioredis.RedisError) as exc:
            await client.aclose()
            raise DemoError(
                f"Redis at {where(opts.redis_url)} (REDIS_URL) is not reachable: {exc}. "
                "`make demo` starts a throwaway server when none answers."
            ) from None
        self.stack.push_async_callback(self.release_redis, client)
        say(
            f"database {opts.database} created on {where(opts.database_url)}; "
            f"Redis db {opts.redis_db} on {where(opts.redis_url)} flushed"
        )

    async def drop_database(self) -> None:
        admin = await asyncpg.connect(self.options.admin_dsn, timeout=10)
        try:
            await admin.execute(f'DROP DATABASE IF EXISTS "{self.options.database}" WITH (FORCE)')
        finally:
            await admin.close()
        say(f"database {self.options.database} dropped")

    async def release_redis(self, client: aioredis.Redis) -> None:
        try:
            if not self.options.keep:
                await client.flushdb()
        finally:
            await client.aclose()

    # --- steps 2 and 3: the fake Telegram and the bot ----------------------------------

    async def start_fake(self) -> FakeTelegram:
        fake = FakeTelegram(bot_username=BOT_USERNAME, bot_first_name="ATTN demo")
        await fake.start("127.0.0.1", 0)
        self.stack.push_async_callback(self.stop_fake, fake)
        self.fake = fake
        say(f"fake Bot API server listening on {fake.base_url}")
        return fake

    async def stop_fake(self, fake: FakeTelegram) -> None:
        await fake.stop()
        say("fake Bot API server stopped")

    async def start_bot(self, fake: FakeTelegram) -> BotProcess:
        port = free_port()
        env = {
            **os.environ,
            "BOT_TOKEN": fake.token,
            "TELEGRAM_API_URL": fake.base_url,
            "DATABASE_URL": self.options.demo_dsn,
            "REDIS_URL": self.options.demo_redis_url,
            "AKSIS_MODE": "demo",
            "FINALIZE_INTERVAL_SECONDS": str(FINALIZE_INTERVAL_SECONDS),
            "LATE_AFTER_MINUTES": str(LATE_AFTER_MINUTES),
            "TELEGRAM_PER_CHAT_RATE": str(PER_CHAT_RATE),
            "WEB_HOST": "127.0.0.1",
            "WEB_PORT": str(port),
            "PUBLIC_URL": f"http://127.0.0.1:{port}",
            "CHAT_LOGIN": "on",  # the demo signs in through the chat too
            "CODE_ROTATION_SECONDS": str(CODE_ROTATION_SECONDS),
            "SECURITY_LEVEL_DEFAULT": "1",
            "WEBHOOK_URL": "",  # long polling, whatever the environment or .env says
            "LOG_LEVEL": "INFO",
            "PYTHONUNBUFFERED": "1",
            "PYTHONPATH": os.pathsep.join(
                p for p in (str(ROOT), os.environ.get("PYTHONPATH", "")) if p
            ),
        }
        self.public_url = env["PUBLIC_URL"]
        began = time.monotonic()
        bot = await BotProcess.start(env, verbose=self.options.verbose)
        self.bot = bot
        self.stack.push_async_callback(self.stop_bot_quietly)
        health = f"http://127.0.0.1:{port}/health"
        deadline = began + BOT_READY_TIMEOUT
        healthy = False
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=2)) as http:
            while True:
                if not bot.running:
                    await asyncio.sleep(0.2)  # let the reader catch the last lines
                    raise DemoError(
                        f"the bot exited during start-up with code {bot.process.returncode}:\n"
                        f"{bot.tail()}"
                    )
                if not healthy:
                    with contextlib.suppress(aiohttp.ClientError, TimeoutError):
                        async with http.get(health) as response:
                            healthy = response.status == 200
                if healthy and fake.call_count("getUpdates") > 0:
                    break
                if time.monotonic() > deadline:
                    state = "answers" if healthy else "does not answer"
                    raise DemoError(
                        f"the bot is not polling {BOT_READY_TIMEOUT:.0f} s after start "
                        f"(/health {state}, {fake.call_count('getUpdates')} getUpdates "
                        f"calls):\n{bot.tail()}"
                    )
                await asyncio.sleep(0.1)
        say(
            f"bot started: `python -m bot` pid {bot.process.pid}, /health ok on port {port}, "
            f"long polling after {time.monotonic() - began:.1f} s"
        )
        return bot

    async def stop_bot_quietly(self) -> None:
        if self.bot is not None and not self.bot_stopped:
            self.bot_stopped = True
            if not self.bot.running:
                await self.bot.stop()
                say(f"bot had exited with code {self.bot.process.returncode}")
                return
            code, seconds, killed = await self.bot.stop()
            say(f"bot stopped ({'killed' if killed else f'exit code {code}'}, {seconds:.1f} s)")

    # --- step 4: the class ---------------------------------------------------------------

    def make_actors(self, fake: FakeTelegram) -> tuple[Actor, dict[int, Actor]]:
        course = demo_course(TEACHER)
        teacher = Actor(
            user=fake.user(TEACHER_TG_ID, "Elif", LANG, last_name="Kartal"),
            label="teacher",
            number=TEACHER,
            username=f"demo_teacher_{TEACHER}",
            school_number="",
            full_name=course.teacher,
        )
        students: dict[int, Actor] = {}
        for j in LINKED:
            name = demo_student_name(j)
            first, _, last = name.partition(" ")
            students[j] = Actor(
                user=fake.user(STUDENT_TG_BASE + j, first, LANG, last_name=last),
                label=f"student {j}",
                number=j,
                username=f"demo_student_{j}",
                school_number=demo_school_number(j),
                full_name=name,
            )
        for actor in (teacher, *students.values()):
            self.transcript.actors[actor.chat] = actor
        return teacher, students

    async def expect(
        self, actor: Actor, keys: Sequence[str], *, what: str, whole: bool = True
    ) -> tuple[str, dict[str, Any]]:
        """The actor's next bot message that is one of `keys` (notices are skipped)."""
        deadline = time.monotonic() + REPLY_TIMEOUT
        while True:
            remaining = deadline - time.monotonic()
            try:
                message = await actor.user.next_message(timeout=max(0.1, remaining))
            except AssertionError:
                raise DemoError(
                    f"{actor.label}: no answer to {what} within {REPLY_TIMEOUT:.0f} s"
                ) from None
            text = str(message.get("text") or "")
            key = next((k for k in keys if is_text(k, text, whole=whole)), None)
            if key is not None:
                return key, message
            if which(NOTICES, text) is None:
                raise DemoError(
                    f"{actor.label}: unexpected answer to {what}: {plain(text)!r} "
                    f"(expected {' or '.join(keys)})"
                )

    async def login(self, actor: Actor) -> None:
        tr = self.transcript
        await tr.send(actor, "/login")
        await self.expect(actor, ["login.ask_username"], what="/login")
        await tr.send(actor, actor.username, label="user name")
        await self.expect(actor, ["login.ask_password"], what="the user name")
        await tr.send(actor, DEMO_PASSWORD, shown="••••", label="password")
        key, message = await self.expect(actor, ["login.checking", "login.ok"], what="the password")
        if key == "login.checking":

            def answered() -> bool:
                return not is_text("login.checking", str(message.get("text") or ""))

            try:
                await actor.user.wait_until(answered, REPLY_TIMEOUT, "the login outcome")
            except AssertionError:
                raise DemoError(
                    f"{actor.label}: the login stayed at 'Signing in…' for {REPLY_TIMEOUT:.0f} s"
                ) from None
        text = str(message.get("text") or "")
        if not is_text("login.ok", text):
            raise DemoError(f"{actor.label}: login failed: {plain(text)!r}")

    async def log_in_everyone(self, teacher: Actor, students: dict[int, Actor]) -> None:
        tr = self.transcript
        tr.begin(
            f"Linking accounts: /login, user name, password ({len(students) + 1} users, "
            f"{LOGIN_BATCHES} concurrent batches)",
            [teacher, students[1]],
        )
        began = time.monotonic()
        await self.login(teacher)
        ordered = list(students.values())
        page_student = students[MINI_APP_STUDENT]
        if await self.mini_app_sign_in(page_student):
            ordered.remove(page_student)  # linked through the page, not the chat
        size = -(-len(ordered) // LOGIN_BATCHES)
        for batch in range(LOGIN_BATCHES):
            chunk = ordered[batch * size : (batch + 1) * size]
            await asyncio.gather(*(self.login(actor) for actor in chunk))
        seconds = time.monotonic() - began
        say(f"{len(students) + 1} accounts linked through /login in {seconds:.1f} s")

    async def open_session(self, teacher: Actor, students: dict[int, Actor]) -> str:
        tr = self.transcript
        tr.begin(
            "The teacher opens attendance: /start_session",
            [teacher, students[1]],
            claims=("📣",),
        )
        await tr.send(teacher, "/start_session")
        _, message = await self.expect(teacher, ["session.status"], what="/start_session")
        text = str(message.get("text") or "")
        match = re.search(r"<code>(\d{6})</code>", text) or re.search(r"\b(\d{6})\b", text)
        if match is None:
            raise DemoError(f"no six-digit code in the teacher's message: {plain(text)!r}")
        code = match.group(1)
        tr.masks[code] = "<code>"
        say(f"session open: {clip(plain(text), 70)}")
        return code

    async def check_in(self, actor: Actor, text: str, expected: str) -> None:
        await self.transcript.send(actor, text)
        keys = [
            "checkin.ok_late",
            "checkin.ok",
            "checkin.pending",
            "checkin.duplicate",
            "checkin.wrong",
            "checkin.ended",
            "checkin.throttled",
        ]
        key, message = await self.expect(actor, keys, what=f"the check-in {text!r}")
        if key != expected:
            answer = plain(str(message.get("text") or ""))
            why = ""
            if expected == "checkin.ok" and key == "checkin.ok_late":
                why = f" (the bot took longer than the {LATE_AFTER_MINUTES * 60:.0f} s threshold)"
            raise DemoError(
                f"{actor.label} sent {text!r}: expected {expected}, the bot answered "
                f"{answer!r}{why}"
            )

    async def play_class(
        self, teacher: Actor, students: dict[int, Actor], code: str, opened: float
    ) -> None:
        tr = self.transcript
        featured = [teacher, *(students[j] for j in (1, TWICE, DEEP_LINK, 7, 39, OUTSIDER))]
        tr.begin("Students check in", featured)
        wrong = f"{(int(code) + 1) % 1_000_000:06d}"
        tr.masks[wrong] = "<wrong code>"
        # The session started before `opened` (when the code reached the teacher): one
        # second past the threshold from then is late by the bot's clock.
        late_at = opened + LATE_AFTER_MINUTES * 60 + 1.0

        async def student(j: int) -> None:
            actor = students[j]
            if j in LATE:
                await asyncio.sleep(max(0.0, late_at - time.monotonic()) + 0.2 * (j - LATE[0]))
                await self.check_in(actor, code, "checkin.ok_late")
                return
            await asyncio.sleep(0.05 * (j % 10))  # not all in the same millisecond
            if j in WRONG_CODE_FIRST:
                await self.check_in(actor, wrong, "checkin.wrong")
            if j == DEEP_LINK:
                await self.check_in(actor, f"/start ci_{code}", "checkin.ok")
            else:
                await self.check_in(actor, code, "checkin.ok")
            if j == TWICE:
                await self.check_in(actor, code, "checkin.duplicate")

        async def outsider() -> None:
            await asyncio.sleep(0.3)
            await self.check_in(students[OUTSIDER], code, "checkin.pending")

        await asyncio.gather(*(student(j) for j in ATTENDING), outsider())
        say(
            f"{len(ATTENDING)} students checked in ({len(LATE)} late, {len(WRONG_CODE_FIRST)} "
            f"after a wrong code, 1 twice, 1 by deep link), student {OUTSIDER} pending review, "
            f"{len(STAYING_AWAY)} stayed away"
        )

    async def close_session(self, teacher: Actor) -> float:
        tr = self.transcript
        tr.begin("The teacher checks the list: /attendees", [teacher])
        await tr.send(teacher, "/attendees")
        await self.expect(teacher, ["attendees.header"], what="/attendees", whole=False)
        tr.begin("The teacher ends attendance: /end_session", [teacher])
        await tr.send(teacher, "/end_session")
        await self.expect(teacher, ["session.ended"], what="/end_session")
        say("session ended by the teacher; waiting for the finalizer")
        return time.monotonic()

    # --- step 5: PostgreSQL and the results -------------------------------------------

    async def wait_for_sheet(self, ended: float) -> tuple[asyncpg.Record, list[asyncpg.Record]]:
        conn = await asyncpg.connect(self.options.demo_dsn, timeout=10)
        try:
            deadline = time.monotonic() + FINALIZE_TIMEOUT
            while True:
                head = await conn.fetchrow(
                    "SELECT a.attendance_id, a.lesson_name, a.lesson_code, a.start_time,"
                    " a.end_time, a.teacher_school_number, u.user_full_name AS teacher_name"
                    " FROM attendances AS a"
                    " JOIN users AS u ON u.user_school_number = a.teacher_school_number"
                    " WHERE NOT a.is_deleted ORDER BY a.start_time DESC LIMIT 1"
                )
                if head is not None:
                    rows = await conn.fetch(
                        "SELECT r.student_number, u.user_full_name, r.is_attended, r.is_late,"
                        " r.attendance_time, r.fail_reason, r.source"
                        " FROM attendance_records AS r"
                        " JOIN users AS u ON u.user_school_number = r.student_number"
                        " WHERE r.attendance_id = $1 AND NOT r.is_deleted"
                        " ORDER BY r.student_number",
                        head["attendance_id"],
                    )
                    if rows:
                        break
                if time.monotonic() > deadline:
                    tail = self.bot.tail() if self.bot else ""
                    raise DemoError(
                        f"the session did not reach PostgreSQL within {FINALIZE_TIMEOUT:.0f} s "
                        f"of /end_session (FINALIZE_INTERVAL_SECONDS={FINALIZE_INTERVAL_SECONDS})"
                        f":\n{tail}"
                    )
                await asyncio.sleep(0.5)
        finally:
            await conn.close()
        seconds = time.monotonic() - ended
        say(f"sheet in PostgreSQL {seconds:.1f} s after /end_session ({len(rows)} records)")
        return head, rows

    async def wait_for_results(
        self, teacher: Actor, students: dict[int, Actor], rows: Sequence[asyncpg.Record]
    ) -> None:
        """Results to the teacher and to every student whose result is news: one present on
        time was told so by the check-in answer and hears nothing more (unless /receipts)."""
        tr = self.transcript
        tr.begin(
            "Finalization: results to the teacher and the students",
            [teacher, *(students[j] for j in (LATE[0], STAYING_AWAY[0], OUTSIDER))],
            claims=("📊",),
        )
        keys = ["final.teacher"]
        await self.expect(teacher, keys, what="the end of the session (the summary)")
        told = {r["student_number"] for r in rows if record_status(r) == "present"}
        news = [s for s in students.values() if s.school_number not in told]
        await asyncio.gather(
            *(self.expect(s, RESULTS, what="the end of the session") for s in news)
        )
        say(
            f"results delivered to the teacher and {len(news)} students "
            f"({len(students) - len(news)} present on time were told at check-in)"
        )

    # --- printing ------------------------------------------------------------------------

    def print_transcript(self) -> None:
        if self.fake is None or not self.transcript.phases or self.transcript_printed:
            return
        self.transcript_printed = True
        fake = self.fake
        sent = sum(1 for c in fake.calls if c.ok and c.method.lower() == "sendmessage")
        edits = sum(1 for c in fake.calls if c.ok and c.method.lower() == "editmessagetext")
        print()
        print(
            f"CHAT TRANSCRIPT (abbreviated; {len(self.transcript.said)} user messages, "
            f"{sent} bot messages, {edits} edits)"
        )
        for line in self.transcript.render(fake):
            print(line)

    def print_sheet(self, head: asyncpg.Record, rows: Sequence[asyncpg.Record]) -> dict[str, str]:
        tz = self.tz
        start: datetime = head["start_time"]
        end: datetime | None = head["end_time"]

        def stamp(moment: datetime | None, fmt: str = "%d.%m.%Y %H:%M:%S") -> str:
            return moment.astimezone(tz).strftime(fmt) if moment else "—"

        print()
        print(f"ATTENDANCE SHEET (read back from PostgreSQL database {self.options.database})")
        print(f"  lesson   {head['lesson_name']}")
        print(f"  teacher  {head['teacher_name']} ({head['teacher_school_number']})")
        print(f"  start    {stamp(start)} ({tz.key})")
        print(f"  end      {stamp(end)}")
        print()
        print(f"  {'#':>3}  {'number':<9} {'name':<16} {'status':<8} time")
        statuses: dict[str, str] = {}
        for index, row in enumerate(rows, 1):
            status = record_status(row)
            statuses[row["student_number"]] = status
            moment: datetime | None = row["attendance_time"]
            when = "—"
            if moment is not None:
                when = f"{stamp(moment, '%H:%M:%S')}  (+{(moment - start).total_seconds():.1f} s)"
            print(
                f"  {index:>3}  {row['student_number']:<9} {row['user_full_name']:<16} "
                f"{status:<8} {when}"
            )
        counts = Counter(statuses.values())
        enrolled = len(rows) - counts["pending"]
        attended = counts["present"] + counts["late"]
        print()
        print(
            f"  Totals: {counts['present']} present, {counts['late']} late, "
            f"{counts['absent']} absent, {counts['pending']} pending, "
            f"{counts['rejected']} rejected — {len(rows)} records; "
            f"{attended} of {enrolled} enrolled students attended."
        )
        return statuses

    def check_sheet(self, statuses: dict[str, str]) -> None:
        expected = planned_sheet()
        wrong = [
            f"{number}: expected {expected.get(number, 'no record')}, "
            f"sheet says {statuses.get(number, 'no record')}"
            for number in sorted(set(expected) | set(statuses))
            if expected.get(number) != statuses.get(number)
        ]
        if wrong:
            raise DemoError(
                "the sheet in PostgreSQL differs from the scripted class:\n    "
                + "\n    ".join(wrong)
            )

    # --- the whole run -------------------------------------------------------------------

    async def run(self) -> None:
        await self.prepare_storage()
        fake = await self.start_fake()
        await self.start_bot(fake)
        await self.supervised(self.play(fake))
        await self.finish_bot()

    async def supervised(self, work: Coroutine[Any, Any, None]) -> None:
        """Run `work`, failing at once should the bot process die meanwhile."""
        assert self.bot is not None
        bot = self.bot
        task = asyncio.create_task(work)
        exited = asyncio.create_task(bot.process.wait())
        try:
            await asyncio.wait({task, exited}, return_when=asyncio.FIRST_COMPLETED)
        except BaseException:
            task.cancel()
            exited.cancel()
            raise
        if task.done():
            exited.cancel()
            task.result()
            return
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        await asyncio.sleep(0.2)  # the last lines of its log
        raise DemoError(
            f"the bot process exited unexpectedly with code {bot.process.returncode}:\n{bot.tail()}"
        )

    async def play(self, fake: FakeTelegram) -> None:
        teacher, students = self.make_actors(fake)
        await self.log_in_everyone(teacher, students)
        code = await self.open_session(teacher, students)
        await self.play_class(teacher, students, code, opened=time.monotonic())
        ended = await self.close_session(teacher)
        head, rows = await self.wait_for_sheet(ended)
        await self.wait_for_results(teacher, students, rows)
        self.print_transcript()
        statuses = self.print_sheet(head, rows)
        print()
        self.check_sheet(statuses)
        await self.play_level_3(teacher, students)

    # --- step 5b: a level-3 session ------------------------------------------

    def _north(self, meters: float) -> tuple[float, float]:
        return CLASSROOM[0] + meters / METERS_PER_DEGREE_LAT, CLASSROOM[1]

    async def _current_code(self, teacher: Actor, status_id: int, old: str) -> str:
        """Wait until the teacher's status message shows a code other than `old`."""
        found: list[str] = []

        def rotated() -> bool:
            message = next(m for m in teacher.user.messages if m["message_id"] == status_id)
            match = re.search(r"<code>(\d{6})</code>", str(message.get("text") or ""))
            if match and match.group(1) != old:
                found[:] = [match.group(1)]
                return True
            return False

        try:
            await teacher.user.wait_until(rotated, CODE_ROTATION_SECONDS * 3, "a rotated code")
        except AssertionError:
            raise DemoError(
                f"the status message kept code {old} for {CODE_ROTATION_SECONDS * 3} s "
                f"(CODE_ROTATION_SECONDS={CODE_ROTATION_SECONDS})"
            ) from None
        return found[0]

    async def located_check_in(self, actor: Actor, code: str, meters: float, expected: str) -> None:
        await self.transcript.send(actor, code)
        await self.expect(actor, ["checkin.need_location"], what=f"the level-3 code {code!r}")
        await actor.user.send_location(*self._north(meters), horizontal_accuracy=15)
        key, message = await self.expect(
            actor, ["location.present", "location.pending"], what="the location"
        )
        if key != expected:
            raise DemoError(
                f"{actor.label} at {meters:.0f} m: expected {expected}, the bot answered "
                f"{plain(str(message.get('text') or ''))!r}"
            )

    async def play_level_3(self, teacher: Actor, students: dict[int, Actor]) -> None:
        tr = self.transcript
        tr.begin(
            "Level 3: rotating code and place (/start_session, level button, locations)",
            [teacher, students[1], students[LEVEL3_FAR], students[LEVEL3_EXPIRED]],
            claims=("📣",),
        )
        await tr.send(teacher, "/start_session")
        _, status = await self.expect(teacher, ["session.status"], what="/start_session (2)")
        match = re.search(r"<code>(\d{6})</code>", str(status.get("text") or ""))
        if match is None:
            raise DemoError("no code in the second session's status message")
        code0 = match.group(1)
        await teacher.user.click_button("🛡 3", status)
        await self.expect(teacher, ["teacher.ask_location"], what="the level-3 button")
        await teacher.user.send_location(*CLASSROOM)
        await self.expect(teacher, ["teacher.location_saved"], what="the teacher's location")
        status_id = int(status["message_id"])
        for j in LEVEL3_NEAR[:2]:
            await self.located_check_in(students[j], code0, 20.0 * j, "location.present")
        await self.located_check_in(students[LEVEL3_FAR], code0, 2_000, "location.pending")
        say(
            f"level 3: students {LEVEL3_NEAR[0]} and {LEVEL3_NEAR[1]} in the room, student "
            f"{LEVEL3_FAR} 2 km away (pending review: LOCATION_TOO_FAR)"
        )
        code1 = await self._current_code(teacher, status_id, code0)
        # The previous code still counts.
        await self.located_check_in(students[LEVEL3_NEAR[2]], code0, 40, "location.present")
        code2 = await self._current_code(teacher, status_id, code1)
        expired = students[LEVEL3_EXPIRED]
        await tr.send(expired, code0)
        await self.expect(expired, ["checkin.expired"], what="a code two rotations old")
        await self.located_check_in(expired, code2, 60, "location.present")
        say(
            f"level 3: code rotated twice every {CODE_ROTATION_SECONDS} s; the previous code "
            f"was accepted, the one before it answered 'expired'"
        )
        await self.mini_app_check_in(students[MINI_APP_STUDENT], teacher, status_id)
        text = next(m for m in teacher.user.messages if m["message_id"] == status_id)["text"]
        found = re.search(r"(http://127\.0\.0\.1:\d+/p/[0-9a-f]{72})", str(text))
        if found is None:
            raise DemoError("the status message offers no projector page link")
        url = found.group(1)
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=5)) as http:
            async with http.get(url) as page:
                body = await page.text()
                if page.status != 200 or "<svg" not in body or re.search(r"\d{6}", body) is None:
                    raise DemoError(f"the projector page answered {page.status}")
            say(f"projector page served at {url} (code and QR code, no names)")
            tr.begin("Level 3: the teacher ends attendance", [teacher])
            await tr.send(teacher, "/end_session")
            await self.expect(teacher, ["session.ended"], what="/end_session (2)")
            async with http.get(url) as page:
                if page.status != 404:
                    raise DemoError(f"the projector page answered {page.status} after the end")
        say("projector page answers 404 once the session has ended")
        print(f"\nPROJECTOR PAGE served (level-3 session): {url}")

    def chromium(self, step: str) -> tuple[str, Any] | None:
        """Chromium's path and Playwright's `async_playwright`, or None after saying plainly
        that the Mini App `step` is skipped because one of them is not installed."""
        chromium = shutil.which("chromium") or shutil.which("chromium-browser")
        try:
            from playwright.async_api import async_playwright
        except ImportError:
            async_playwright = None  # type: ignore[assignment]
        if chromium is None or async_playwright is None:
            missing = "Chromium" if chromium is None else "Playwright"
            say(
                f"Mini App {step} skipped: {missing} is not installed "
                "(apt-get install chromium; pip install playwright)"
            )
            return None
        return chromium, async_playwright

    async def mini_app_sign_in(self, actor: Actor) -> bool:
        """Step 4: one student signs in through the Mini App's sign-in page in
        headless Chromium, as Telegram opens it (launch data signed with the bot's token in the
        URL fragment): the user name and password go from the page to the bot's web server,
        the chat gets one confirmation with the name, and no Bot API request carries the
        password. False (after saying so) when Chromium is not installed: the student then
        signs in through the chat like the others."""
        found = self.chromium("sign-in")
        if found is None:
            print(f"\nMINI APP SIGN-IN skipped (no Chromium): {actor.label} signs in in the chat")
            return False
        chromium, async_playwright = found
        from bot.webapp.initdata import sign_init_data

        assert self.public_url is not None
        assert self.fake is not None
        init_data = sign_init_data(
            bot_token=self.fake.token,
            user={"id": actor.chat, "first_name": actor.user.first_name, "language_code": LANG},
            auth_date=datetime.now().astimezone(),
        )
        url = f"{self.public_url}/app/login#tgWebAppData={quote(init_data, safe='')}"
        calls_before = len(self.fake.calls)
        async with async_playwright() as pw:
            browser = await pw.chromium.launch(
                executable_path=chromium, args=["--headless", "--no-sandbox", "--disable-gpu"]
            )
            try:
                page = await browser.new_page()
                began = time.monotonic()
                await page.goto(url)
                await page.wait_for_selector("body[data-ready='1']", timeout=10_000)
                await page.fill("#username", actor.username)
                await page.fill("#password", DEMO_PASSWORD)
                await page.click("#submit")
                await page.wait_for_selector("#verdict.ok, #verdict.bad", timeout=60_000)
                verdict = (await page.inner_text("#verdict")).strip()
                ok = "ok" in (await page.get_attribute("#verdict", "class") or "").split()
                seconds = time.monotonic() - began
            finally:
                await browser.close()
        if not ok:
            raise DemoError(f"{actor.label} on the Mini App sign-in page: {verdict!r}")

        def confirmed() -> bool:
            return any(actor.full_name in str(m.get("text") or "") for m in actor.user.messages)

        try:
            await actor.user.wait_until(confirmed, REPLY_TIMEOUT, "the sign-in confirmation")
        except AssertionError:
            raise DemoError(
                f"{actor.label}: no confirmation in the chat {REPLY_TIMEOUT:.0f} s after "
                "signing in on the page"
            ) from None
        named = [m for m in actor.user.messages if actor.full_name in str(m.get("text") or "")]
        if len(named) != 1:
            raise DemoError(f"{actor.label}: {len(named)} chat messages after the page sign-in")
        actor.user.mark_read()  # the confirmation is no answer to what the student sends next
        carrying = [
            call.method
            for call in self.fake.calls[calls_before:]
            if DEMO_PASSWORD in repr(call.params)
        ]
        if carrying:
            raise DemoError(f"the password reached the Bot API in {', '.join(carrying)}")
        say(
            f"Mini App: {actor.label} signed in on the page in headless Chromium "
            f"({seconds:.1f} s): {verdict!r}; one confirmation in the chat, "
            "no Bot API request carried the password"
        )
        print(f"\nMINI APP SIGN-IN through the page: {actor.label}: {verdict}")
        return True

    async def mini_app_check_in(self, actor: Actor, teacher: Actor, status_id: int) -> None:
        """Step 5c: one student checks in through the Mini App's page in headless
        Chromium, as Telegram opens it (launch data signed with the bot's token in the URL
        fragment), with the classroom's position from the browser; the verdict is the page's,
        and the bot sends that student no message for it."""
        found = self.chromium("check-in")
        if found is None:
            print("\nMINI APP CHECK-IN skipped (no Chromium)")
            return
        chromium, async_playwright = found
        from bot.webapp.initdata import sign_init_data

        assert self.public_url is not None
        assert self.fake is not None
        message = next(m for m in teacher.user.messages if m["message_id"] == status_id)
        match = re.search(r"<code>(\d{6})</code>", str(message.get("text") or ""))
        if match is None:
            raise DemoError("no code in the status message for the Mini App check-in")
        init_data = sign_init_data(
            bot_token=self.fake.token,
            user={"id": actor.chat, "first_name": actor.user.first_name, "language_code": LANG},
            auth_date=datetime.now().astimezone(),
            start_param="ci",
        )
        url = f"{self.public_url}/app/checkin#tgWebAppData={quote(init_data)}"
        sent_before = self.fake.call_count("sendMessage", chat_id=actor.chat)
        latitude, longitude = self._north(30)
        async with async_playwright() as pw:
            browser = await pw.chromium.launch(
                executable_path=chromium, args=["--headless", "--no-sandbox", "--disable-gpu"]
            )
            try:
                context = await browser.new_context(
                    geolocation={"latitude": latitude, "longitude": longitude},
                    permissions=["geolocation"],
                )
                page = await context.new_page()
                began = time.monotonic()
                await page.goto(url)
                await page.wait_for_selector("#form:not([hidden])", timeout=10_000)
                await page.fill("#code", match.group(1))
                await page.click("#submit")
                await page.wait_for_selector(
                    "#verdict[data-kind]:not([data-kind='busy']):not([data-kind='location'])",
                    timeout=15_000,
                )
                kind = await page.get_attribute("#verdict", "data-kind")
                verdict = await page.inner_text("#verdict")
                seconds = time.monotonic() - began
            finally:
                await browser.close()
        if kind != "ok":
            raise DemoError(f"{actor.label} on the Mini App page: {kind}: {verdict!r}")
        await asyncio.sleep(0.5)
        if self.fake.call_count("sendMessage", chat_id=actor.chat) != sent_before:
            raise DemoError(f"{actor.label}: the bot sent a message for a Mini App check-in")
        say(
            f"Mini App: {actor.label} checked in on the page in headless Chromium "
            f"({seconds:.1f} s, code typed, position 30 m from the teacher): {verdict!r}; "
            "no bot message"
        )
        print(f"\nMINI APP CHECK-IN through the page: {actor.label}: {verdict}")

    async def finish_bot(self) -> None:
        assert self.bot is not None
        self.bot_stopped = True
        code, seconds, killed = await self.bot.stop()
        if killed:
            raise DemoError(
                f"the bot did not exit within {BOT_STOP_TIMEOUT:.0f} s of SIGTERM and was "
                f"killed:\n{self.bot.tail()}"
            )
        if code != 0:
            raise DemoError(f"the bot exited with code {code} after SIGTERM:\n{self.bot.tail()}")
        say(f"bot stopped cleanly by SIGTERM (exit code 0, {seconds:.1f} s)")
        problems = self.bot.problems()
        if problems:
            listed = "\n".join(f"    bot| {line}" for line in problems[:20])
            raise DemoError(f"the bot logged {len(problems)} error line(s):\n{listed}")
        say(f"bot log: {len(self.bot.lines)} lines, no errors")


def record_status(row: asyncpg.Record) -> str:
    if row["is_attended"]:
        return "late" if row["is_late"] else "present"
    reason = row["fail_reason"] or ""
    if reason == "ABSENT":
        return "absent"
    if reason == "NOT_IN_SCHEDULE":
        return "pending"
    if reason.startswith("REJECTED"):
        return "rejected"
    return reason.lower() or "absent"


@contextlib.asynccontextmanager
async def deadline(seconds: float) -> AsyncIterator[None]:
    try:
        async with asyncio.timeout(seconds):
            yield
    except TimeoutError:
        raise DemoError(f"the scripted class did not finish within {seconds:.0f} s") from None


async def amain(options: Options) -> None:
    task = asyncio.current_task()
    assert task is not None
    # SIGTERM (a CI timeout, say) ends the run like Ctrl-C does: the bot is stopped and the
    # database dropped on the way out.
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, task.cancel)
    async with contextlib.AsyncExitStack() as stack:
        demo = Demo(options, stack)
        try:
            async with deadline(RUN_DEADLINE):
                await demo.run()
        except BaseException as exc:
            demo.print_transcript()
            shown = isinstance(exc, DemoError) and "    bot| " in str(exc)
            if demo.bot is not None and not demo.bot_stopped and not shown:
                print("\nlast lines of the bot log:", file=sys.stderr)
                print(demo.bot.tail(), file=sys.stderr)
            raise


def parse_args(argv: Sequence[str] | None) -> Options:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--database", default=DEFAULT_DATABASE, help="PostgreSQL database to use")
    parser.add_argument("--redis-db", type=int, default=DEFAULT_REDIS_DB, help="Redis db number")
    parser.add_argument("--keep", action="store_true", help="keep the database and Redis data")
    parser.add_argument("--verbose", action="store_true", help="echo the bot's log to stderr")
    args = parser.parse_args(argv)
    if not re.fullmatch(r"[a-z_][a-z0-9_]{0,62}", args.database):
        parser.error("--database: lower-case letters, digits and _ only")
    if args.database in {"postgres", "template0", "template1"}:
        parser.error("--database: pick a database of the demo's own")
    if not 0 <= args.redis_db <= 15:
        parser.error("--redis-db: 0 to 15")
    database_url = os.environ.get("DATABASE_URL") or DEFAULT_DATABASE_URL
    redis_url = os.environ.get("REDIS_URL") or DEFAULT_REDIS_URL
    if urlsplit(database_url).scheme not in {"postgres", "postgresql"}:
        parser.error("DATABASE_URL must be a postgresql:// URL")
    if urlsplit(redis_url).scheme not in {"redis", "rediss"}:
        parser.error("REDIS_URL must be a redis:// or rediss:// URL")
    return Options(
        database_url=database_url,
        redis_url=redis_url,
        database=args.database,
        redis_db=args.redis_db,
        keep=args.keep,
        verbose=args.verbose,
    )


def main(argv: Sequence[str] | None = None) -> int:
    with contextlib.suppress(AttributeError, ValueError):
        sys.stdout.reconfigure(errors="replace")  # type: ignore[union-attr]
        sys.stderr.reconfigure(errors="replace")  # type: ignore[union-attr]
    options = parse_args(argv)
    say(f"ATTN demo: PostgreSQL {where(options.database_url)}, Redis {where(options.redis_url)}")
    try:
        asyncio.run(amain(options))
    except DemoError as exc:
        print(f"\ndemo FAILED after {elapsed():.1f} s: {exc}", file=sys.stderr, flush=True)
        return 1
    except KeyboardInterrupt:
        print(f"\ndemo interrupted after {elapsed():.1f} s", file=sys.stderr, flush=True)
        return 130
    except asyncio.CancelledError:
        print(f"\ndemo stopped by SIGTERM after {elapsed():.1f} s", file=sys.stderr, flush=True)
        return 143
    except Exception:
        traceback.print_exc()
        print(f"\ndemo FAILED after {elapsed():.1f} s: unexpected error (above)", file=sys.stderr)
        return 1
    print(f"\ndemo finished in {elapsed():.1f} s", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
