"""The first lecture of term at the portal's real pace: the real process, `python -m bot`.

    python -m bench.login_wave [--n 60] [--pace 20] [--restart-at 25]

`python -m bot` (polling FakeTelegram; the fake Aksis portal, tests/fakes/aksis_server.py, in
live mode; `AKSIS_LOGINS_PER_MINUTE=--pace`; its web server at a local `PUBLIC_URL`). `--n`
students send their user name and password through the sign-in page's endpoint
(`POST /app/api/login`, launch data signed with the bot's token as Telegram signs it) at the
same moment, then wait as the page does: every 2 s `POST /app/api/login/status`, and a poll
that fails (the server away) is simply repeated. `--restart-at` seconds into the wave the bot
gets SIGTERM and is started again at once (0: no restart): the line, kept in Redis, must
carry on where it was.

Figures: the time from the wave to the last student seeing "linked" (target: about n / pace
minutes, and at most n / pace + 1), how many were told anything but "in line" or "linked"
(target 0), the most sign-ons the portal saw in any 60 s (target <= pace + pace: the
minute's turns are a fixed window, so two windows' turns can sit within 60 s, never more),
and each waiting student's place and estimate against what happened: the error of the first
estimate (the moment the student was promised, against the moment they saw "linked"; p50 and
max), the most the promised moment moved between one poll and the next, and how often a
student's place went up (someone overtook them; target 0).
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import os
import secrets
import signal
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp

from bench.common import (
    ROOT,
    Row,
    database_url,
    flush_redis,
    now_utc,
    percentile,
    print_table,
    redis_url,
    throwaway_database,
)

POLL_SECONDS = 2.0
BASE = 6_000_000_000
PASSWORD = "Wave-pw-1"  # noqa: S105 - the fake portal's


@dataclass
class Student:
    index: int
    answers: list[tuple[float, dict[str, Any]]] = field(default_factory=list)
    failed_polls: int = 0
    linked_at: float | None = None


def _free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


async def _spawn(env: dict[str, str], log: Path) -> asyncio.subprocess.Process:
    return await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "bot",
        cwd=ROOT,
        env=env,
        stdout=log.open("ab"),
        stderr=asyncio.subprocess.STDOUT,
    )


async def _until_serving(http: aiohttp.ClientSession, base: str, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            async with http.get(f"{base}/app/login") as response:
                if response.status == 200:
                    return
        except aiohttp.ClientError:
            pass
        if time.monotonic() > deadline:
            raise RuntimeError("bench.login_wave: the bot's web server did not come up")
        await asyncio.sleep(0.05)


async def measure(
    dsn: str, n: int = 60, pace: int = 20, restart_at: float = 25.0
) -> dict[str, Any]:
    from bot.webapp.initdata import sign_init_data
    from dal.pg import Postgres
    from tests.fakes.aksis_server import LOGIN_PATH, FakeAksis
    from tests.fakes.telegram_server import FakeTelegram

    url = redis_url()
    await flush_redis(url)
    log = Path(tempfile.gettempdir()) / f"attn-bench-login-wave-{os.getpid()}.log"
    pg = await Postgres.connect(dsn)  # the schema, before the bot starts
    port = _free_port()
    base = f"http://127.0.0.1:{port}"
    result: dict[str, Any] = {"n": n, "pace": pace, "restart_at_s": restart_at, "log": str(log)}
    students = [Student(i) for i in range(n)]
    try:
        async with FakeTelegram(strict_chats=False) as fake, FakeAksis() as portal:
            for i in range(n):
                portal.add_student(f"wave{i:03d}", PASSWORD, f"ÖĞRENCİ {i}", f"2026{i:05d}")
            env = {
                **os.environ,
                **{key.upper(): str(value) for key, value in portal.settings_overrides().items()},
                "BOT_TOKEN": fake.token,
                "TELEGRAM_API_URL": fake.base_url,
                "DATABASE_URL": dsn,
                "REDIS_URL": url,
                "WEB_HOST": "127.0.0.1",
                "WEB_PORT": str(port),
                "PUBLIC_URL": base,
                "AKSIS_LOGINS_PER_MINUTE": str(pace),
                "LOG_LEVEL": "WARNING",
                # Live mode serves /metrics only behind a token.
                "METRICS_TOKEN": secrets.token_urlsafe(24),
            }
            proc = await _spawn(env, log)
            sign_ons: list[float] = []  # when the portal saw each sign-on POST
            try:
                async with aiohttp.ClientSession() as http:
                    await _until_serving(http, base, 30)
                    launch = {
                        s.index: sign_init_data(
                            bot_token=fake.token,
                            user={
                                "id": BASE + s.index,
                                "first_name": f"S{s.index}",
                                "language_code": "tr" if s.index % 2 else "en",
                            },
                            auth_date=now_utc(),
                        )
                        for s in students
                    }
                    started = time.monotonic()

                    async def watch_portal() -> None:
                        seen = 0
                        while True:
                            count = len(portal.requests_to(LOGIN_PATH, "POST"))
                            sign_ons.extend([time.monotonic() - started] * (count - seen))
                            seen = count
                            await asyncio.sleep(0.05)

                    async def post(path: str, body: dict[str, Any]) -> dict[str, Any] | None:
                        try:
                            async with http.post(f"{base}{path}", json=body) as response:
                                if response.status >= 500 or response.status == 429:
                                    return None  # as the page: asked again
                                data: dict[str, Any] = await response.json()
                                return data
                        except (aiohttp.ClientError, ValueError):
                            return None

                    async def student(s: Student) -> None:
                        body = {
                            "init_data": launch[s.index],
                            "username": f"wave{s.index:03d}",
                            "password": PASSWORD,
                        }
                        data = await post("/app/api/login", body)
                        if data is None:
                            raise RuntimeError("bench.login_wave: a sign-in post failed")
                        s.answers.append((time.monotonic() - started, data))
                        while data.get("state") == "queued":
                            await asyncio.sleep(POLL_SECONDS)
                            status = {"init_data": launch[s.index], "ticket": data["ticket"]}
                            polled = await post("/app/api/login/status", status)
                            if polled is None:
                                s.failed_polls += 1  # the page polls again
                                continue
                            data = polled
                            s.answers.append((time.monotonic() - started, data))
                        if data.get("success"):
                            s.linked_at = time.monotonic() - started

                    async def restart() -> None:
                        nonlocal proc
                        await asyncio.sleep(restart_at)
                        result["waiting_at_restart"] = sum(1 for s in students if not s.linked_at)
                        began = time.monotonic()
                        proc.send_signal(signal.SIGTERM)
                        result["sigterm_exit_status"] = await asyncio.wait_for(proc.wait(), 30)
                        proc = await _spawn(env, log)
                        await _until_serving(http, base, 30)
                        result["restart_s"] = time.monotonic() - began

                    watcher = asyncio.create_task(watch_portal())
                    restarting = asyncio.create_task(restart()) if restart_at > 0 else None
                    try:
                        await asyncio.wait_for(
                            asyncio.gather(*(student(s) for s in students)),
                            timeout=60 * (n / pace + 3),
                        )
                        if restarting is not None:
                            await restarting
                    finally:
                        watcher.cancel()
                        if restarting is not None and not restarting.done():
                            restarting.cancel()
            finally:
                if proc.returncode is None:
                    proc.send_signal(signal.SIGTERM)
                    await asyncio.wait_for(proc.wait(), 30)
            linked = 0
            for s in students:
                if await pg.accounts.get_linked_user(telegram_id=BASE + s.index) is not None:
                    linked += 1
            result["linked_in_database"] = linked
            result["password_in_bot_api"] = sum(
                1 for call in fake.calls if PASSWORD in repr(call.params)
            )
    finally:
        await pg.db.close()
        await flush_redis(url)
    result.update(_figures(students, sign_ons, pace))
    return result


def _figures(students: list[Student], sign_ons: list[float], pace: int) -> dict[str, Any]:
    linked = [s.linked_at for s in students if s.linked_at is not None]
    refused = [
        data
        for s in students
        for _, data in s.answers
        if not (data.get("ok") and data.get("state") in {"queued", "done"})
        or (data.get("state") == "done" and not data.get("success"))
    ]
    first_errors: list[float] = []
    drift = 0.0
    place_rises = 0
    queued = 0
    for s in students:
        waits = [(at, data) for at, data in s.answers if data.get("state") == "queued"]
        if not waits or s.linked_at is None:
            continue
        queued += 1
        promised = [at + float(data["wait_seconds"]) for at, data in waits]
        first_errors.append(s.linked_at - promised[0])
        drift = max([drift, *(abs(b - a) for a, b in itertools.pairwise(promised))])
        places = [int(data["place"]) for _, data in waits if int(data["place"]) > 0]
        place_rises += sum(1 for a, b in itertools.pairwise(places) if b > a)
    busiest = max(
        (sum(1 for t in sign_ons if start <= t < start + 60) for start in sign_ons), default=0
    )
    return {
        "linked": len(linked),
        "last_linked_s": max(linked, default=float("nan")),
        "linked_at_once": sum(
            1 for s in students if s.answers and s.answers[0][1].get("state") == "done"
        ),
        "queued": queued,
        "refused_answers": len(refused),
        "refused_examples": refused[:3],
        "failed_polls": sum(s.failed_polls for s in students),
        "portal_sign_ons": len(sign_ons),
        "portal_busiest_60s": busiest,
        "estimate_error_p50_s": percentile([abs(e) for e in first_errors], 50)
        if first_errors
        else 0.0,
        "estimate_error_max_s": max((abs(e) for e in first_errors), default=0.0),
        "estimate_late_max_s": max(first_errors, default=0.0),
        "promise_drift_max_s": drift,
        "place_rises": place_rises,
        "pace": pace,
    }


def rows(result: dict[str, Any]) -> list[Row]:
    n, pace = result["n"], result["pace"]
    ideal = n / pace * 60
    section = f"login wave (python -m bot, fake portal at {pace}/min)"
    restart = (
        f", SIGTERM + restart at {result['restart_at_s']:.0f} s "
        f"({result.get('waiting_at_restart', 0)} waiting)"
        if result["restart_at_s"] > 0
        else ""
    )
    all_linked = result["linked"] == n == result["linked_in_database"]
    return [
        Row(
            section,
            f"{n} students at once: last one linked{restart}",
            result["last_linked_s"],
            "s",
            f"<= {ideal + 60:.0f} s ({n}/{pace} min + 1), all linked",
            all_linked and result["last_linked_s"] <= ideal + 60,
            result,
        ),
        Row(
            section,
            f"  linked at once / waited in line ({result['failed_polls']} polls met the restart)",
            float(result["linked_at_once"]),
            "students",
            f"{result['queued']} waited",
            result["linked_at_once"] + result["queued"] == n,
        ),
        Row(
            section,
            "  told to try again (or anything but 'in line' / 'linked')",
            float(result["refused_answers"]),
            "answers",
            "0",
            result["refused_answers"] == 0,
        ),
        Row(
            section,
            "  portal sign-ons in the busiest 60 s",
            float(result["portal_busiest_60s"]),
            "sign-ons",
            f"<= {2 * pace} (two fixed windows), {result['portal_sign_ons']} in all",
            result["portal_busiest_60s"] <= 2 * pace and result["portal_sign_ons"] == n,
        ),
        Row(
            section,
            "  first estimate vs the moment linked: p50 error",
            result["estimate_error_p50_s"],
            "s",
        ),
        Row(
            section,
            "  first estimate vs the moment linked: max error",
            result["estimate_error_max_s"],
            "s",
            "<= 10 s (2 s polls, 1 s worker tick)",
            result["estimate_error_max_s"] <= 10,
        ),
        Row(
            section,
            "  promised moment moved between two polls (max)",
            result["promise_drift_max_s"],
            "s",
            "<= 10 s",
            result["promise_drift_max_s"] <= 10,
        ),
        Row(
            section,
            "  a student's place went up (overtaken)",
            float(result["place_rises"]),
            "times",
            "0",
            result["place_rises"] == 0,
        ),
        Row(
            section,
            "  Bot API requests carrying a password",
            float(result["password_in_bot_api"]),
            "requests",
            "0",
            result["password_in_bot_api"] == 0,
        ),
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--n", type=int, default=60)
    parser.add_argument("--pace", type=int, default=20)
    parser.add_argument("--restart-at", type=float, default=25.0)
    args = parser.parse_args()

    async def standalone() -> dict[str, Any]:
        async with throwaway_database(database_url()) as dsn:
            return await measure(dsn, args.n, args.pace, args.restart_at)

    print_table(rows(asyncio.run(standalone())))


if __name__ == "__main__":
    main()
