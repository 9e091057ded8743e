"""Resident set size of one bot process with 10,000 linked users and 50 open sessions.

    python -m bench.memory [--users 10000] [--sessions 50]

A worker subprocess builds the app with `bot.app.build_app` on the no-network Bot session
(production settings: outgoing pacing at 30 messages/s), links `--users` students and
`--sessions` teachers through `AccountService.login` (a local portal stand-in answers every
sign-in with an identity and one lesson that is on now; the lessons of teacher k are taken by
students n with n % sessions == k), and opens one session per teacher with
`AttendanceService.start_session` (scheduled lessons: the enrolled sets come from the cached
schedules, and each opening queues "attendance is open" notices to its students in the Redis
outbox). RSS is read with psutil after each stage. Then every student sends their session's
code (in waves) and the RSS is read again once every check-in is recorded, with the replies
still waiting for the 30 messages/s pacing. The targets are the bot's own overhead once the
sessions are open (that RSS minus a bare aiogram process's) and what the check-ins add.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import time
from datetime import timedelta
from typing import Any

from bench.common import (
    STUDENT_BASE,
    TEACHER_BASE,
    ProjectBot,
    Row,
    bench_bot,
    database_url,
    emit,
    flush_redis,
    now_utc,
    print_table,
    project_settings,
    redis_url,
    rss_mb,
    run_worker,
    throwaway_database,
)

LOGIN_CONCURRENCY = 32
CHECKIN_WAVE = 500
PASSWORD = "bench-password"  # noqa: S105 - the stand-in portal accepts anything


class _Portal:
    """Stands in for Aksis (`services.aksis.AksisClient`): `s<n>` is student n, `t<k>` teacher
    k; each has one lesson that started five minutes ago."""

    def __init__(self, sessions: int) -> None:
        self._sessions = sessions
        self._start = now_utc() - timedelta(minutes=5)

    def _lesson(self, k: int) -> Any:
        from services.lesson_finder import Lesson
        from services.text import person_key

        return Lesson(
            start=self._start,
            end=self._start + timedelta(minutes=50),
            course_code=f"BEN{k:03d}",
            course_name=f"Bench Dersi {k}",
            teachers=f"Hoca {k}",
            teacher_keys=(person_key(f"Hoca {k}"),),
        )

    async def login(self, username: str, password: str) -> Any:
        from dal.models import Role
        from services.aksis import LoginResult, PortalIdentity

        kind, number = username[0], int(username[1:])
        if kind == "t":
            identity = PortalIdentity(Role.TEACHER, f"Hoca {number}", f"T{number:015d}")
            return LoginResult(identity, [self._lesson(number)], 0)
        identity = PortalIdentity(Role.STUDENT, ProjectBot.name(number), ProjectBot.number(number))
        return LoginResult(identity, [self._lesson(number % self._sessions)], 0)


async def _gather_limited(calls: list[Any], limit: int) -> None:
    pending = iter(calls)

    async def worker() -> None:
        for call in pending:
            await call()

    await asyncio.gather(*(worker() for _ in range(limit)))


async def _worker(dsn: str, users: int, sessions: int) -> dict[str, Any]:
    from bot.app import build_app
    from services.attendance import Started

    redis = redis_url()
    await flush_redis(redis)
    stages: dict[str, float] = {}
    timings: dict[str, float] = {}
    bot, session = bench_bot()
    async with build_app(project_settings(dsn, redis), aksis=_Portal(sessions), bot=bot) as app:
        gc.collect()
        stages["app built"] = rss_mb()

        def login(telegram_id: int, username: str, language: str) -> Any:
            return lambda: app.accounts.login(
                telegram_id=telegram_id, language=language, username=username, password=PASSWORD
            )

        began = time.perf_counter()
        await _gather_limited(
            [login(TEACHER_BASE + k, f"t{k}", "tr") for k in range(sessions)]
            + [login(STUDENT_BASE + n, f"s{n}", ProjectBot.language(n)) for n in range(users)],
            LOGIN_CONCURRENCY,
        )
        timings["login_seconds"] = time.perf_counter() - began
        gc.collect()
        stages[f"{users:,} users linked"] = rss_mb()

        codes: dict[int, str] = {}
        began = time.perf_counter()
        for k in range(sessions):
            teacher = await app.accounts.current_user(telegram_id=TEACHER_BASE + k)
            if teacher is None:
                raise RuntimeError(f"teacher {k} is not linked")
            outcome = await app.attendance.start_session(
                teacher=teacher, chat_id=teacher.telegram_id
            )
            if not isinstance(outcome, Started) or outcome.enrolled == 0:
                raise RuntimeError(f"teacher {k}: no scheduled session opened ({outcome!r})")
            codes[k] = outcome.attendance.code
        timings["open_seconds"] = time.perf_counter() - began
        gc.collect()
        stages[f"{sessions} sessions open"] = rss_mb()

        project = ProjectBot(app, send_answers=False)  # answers stay queued: measured
        live = app.redis.sessions
        ids = [await live.get_attendance_id_by_code(code=codes[k]) for k in range(sessions)]

        async def recorded_total() -> int:
            return sum([await project.recorded(aid) for aid in ids if aid is not None])

        # Waves of CHECKIN_WAVE simultaneous check-ins: a single burst of 10,000 would wait
        # longer than the Redis pools' checkout timeout (see README.md).
        tasks: list[asyncio.Task[Any]] = []
        began = time.perf_counter()
        recorded = 0
        for first in range(0, users, CHECKIN_WAVE):
            wave = range(first, min(users, first + CHECKIN_WAVE))
            tasks += [
                asyncio.ensure_future(
                    project.feed(project.updates(codes[n % sessions], range(n, n + 1))[0])
                )
                for n in wave
            ]
            while (recorded := await recorded_total()) < wave.stop:
                if time.perf_counter() - began > 60:
                    raise RuntimeError(f"only {recorded} of {wave.stop} check-ins recorded")
                await asyncio.sleep(0.05)
        timings["checkin_seconds"] = time.perf_counter() - began
        gc.collect()
        stages[f"{users:,} check-ins in flight"] = rss_mb()
        done = sum(1 for task in tasks if task.done())
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
    return {
        "stages": stages,
        "recorded": recorded,
        "replies_sent": session.sent,
        "handlers_done": done,
        **timings,
    }


_BARE_AIOGRAM = """
import gc, json, os, psutil
from aiogram import Bot, Dispatcher
from aiogram.fsm.storage.redis import RedisStorage
bot = Bot("4242424242:BENCH-telegram-token")
dp = Dispatcher()
gc.collect()
print(json.dumps({"rss_mb": psutil.Process(os.getpid()).memory_info().rss / 2**20}))
"""


def bare_aiogram_mb() -> float:
    """RSS of a process that only imports aiogram and builds a Bot and a Dispatcher: the
    framework's floor, beside which the bot's own overhead is read."""
    import json
    import subprocess
    import sys

    done = subprocess.run(
        [sys.executable, "-c", _BARE_AIOGRAM], capture_output=True, text=True, check=True
    )
    return float(json.loads(done.stdout.strip().splitlines()[-1])["rss_mb"])


def run(dsn: str, *, users: int = 10_000, sessions: int = 50) -> list[Row]:
    result = run_worker(
        "bench.memory", ["--dsn", dsn, "--users", str(users), "--sessions", str(sessions)]
    )
    stages: dict[str, float] = result["stages"]
    names = list(stages)
    open_rss = stages[names[2]]
    section = "memory (one bot process, RSS)"
    out = [
        Row(
            section,
            f"{names[2]} ({names[1]})",
            open_rss,
            "MB",
            detail=result,
        ),
        Row(section, names[0], stages[names[0]], "MB"),
    ]
    out.append(Row(section, f"{names[3]} (answers queued, not sent)", stages[names[3]], "MB"))
    bare = bare_aiogram_mb()
    own = open_rss - bare
    burst = stages[names[3]] - open_rss
    out += [
        Row(section, "bare aiogram process (import, Bot, Dispatcher)", bare, "MB"),
        Row(section, f"bot's own overhead ({names[2]})", own, "MB", "<= 50 MB", own <= 50),
        Row(section, f"{names[3]} add", burst, "MB", "<= 100 MB", burst <= 100),
    ]
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--worker", action="store_true")
    parser.add_argument("--dsn", default=None)
    parser.add_argument("--users", type=int, default=10_000)
    parser.add_argument("--sessions", type=int, default=50)
    args = parser.parse_args()
    if args.worker:
        emit(asyncio.run(_worker(args.dsn, args.users, args.sessions)))
        return

    async def standalone() -> list[Row]:
        async with throwaway_database(database_url()) as dsn:
            return await asyncio.to_thread(run, dsn, users=args.users, sessions=args.sessions)

    print_table(asyncio.run(standalone()))


if __name__ == "__main__":
    main()
