"""Check-ins through the Mini App's page: the answer is the HTTP response, so it
does not queue behind the bot's 30 messages a second.

    python -m bench.webapp [--backlog 1000] [--probes 200] [--n 5000] [--seconds 60]

One process: `bot.app.build_app` and its aiohttp server (`bot.web.build_web`), with the page
endpoint `POST /app/api/checkin` called by an aiohttp client in the same process (so the
figures include the client's own work). Launch data is signed with the bot's token as
Telegram signs it (`bot.webapp.initdata.sign_init_data`), once per student, before the clock
starts. Students are linked as login leaves them (bench.common.ProjectBot); a teacher opens a
session for an unscheduled lesson (everyone who sends the code is present).

1. **Backlog.** FakeTelegram enforces 30 messages/s (`rate_limit(30, global_burst=2)`);
   `--backlog` result notices are in the outbox and the delivery worker is sending them. Once
   they flow, `--probes` students check in on the page, one every 50 ms, each its own task:
   latency from the request to the page's answer (p50 / p99 / max). The fake must have
   received no message for any of those students, and the backlog must still be draining
   when the last answer arrives.
2. **A minute of check-ins.** `--n` students check in on the page at uniformly random moments
   over `--seconds` (open loop: each request its own task, at its moment, whatever the server's
   state); the achieved rate (answers over the time from the first request to the last answer)
   and the latency (p50 / p99 / max). Every answer must be "checked in" and every record
   written. Then, for the headroom, the same students check in to a second session as fast
   as 50 concurrent pages can (closed loop): the rate and its p99. The bot's Bot API session
   is the no-network one (bench.common.NullSession).
"""

from __future__ import annotations

import argparse
import asyncio
import random
import socket
import time
from collections.abc import Sequence
from typing import Any

import aiohttp
from aiohttp import web

from bench.common import (
    STUDENT_BASE,
    ProjectBot,
    Row,
    bench_bot,
    database_url,
    flush_redis,
    now_utc,
    percentile,
    print_table,
    project_settings,
    redis_url,
    throwaway_database,
)

RATE = 30.0
CONCURRENT_PAGES = 50
BASE = 8_000_000_000


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _launch(token: str, students: Sequence[int]) -> dict[int, str]:
    from bot.webapp.initdata import sign_init_data

    at = now_utc()
    return {
        n: sign_init_data(
            bot_token=token,
            user={"id": STUDENT_BASE + n, "first_name": f"S{n}", "language_code": "tr"},
            auth_date=at,
        )
        for n in students
    }


async def _serve(app: Any, port: int) -> web.AppRunner:
    from bot.web import build_web

    runner = web.AppRunner(build_web(app), access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    return runner


async def _check_in(
    http: aiohttp.ClientSession, url: str, init_data: str, code: str
) -> tuple[float, str]:
    began = time.perf_counter()
    async with http.post(url, json={"init_data": init_data, "code": code}) as response:
        body = await response.json()
    return time.perf_counter() - began, str(body.get("kind"))


def _latency(values: Sequence[float]) -> dict[str, float]:
    return {
        "p50_ms": percentile(values, 50) * 1000,
        "p99_ms": percentile(values, 99) * 1000,
        "max_ms": max(values) * 1000,
    }


async def _backlog(dsn: str, backlog: int, probes: int) -> dict[str, Any]:
    from bot.app import build_app
    from services.notice_codec import encode
    from services.notify import Notice
    from tests.fakes.telegram_server import FakeTelegram

    url = redis_url()
    await flush_redis(url)
    port = _free_port()
    result: dict[str, Any] = {"backlog": backlog, "probes": probes}
    async with FakeTelegram(strict_chats=False) as fake:
        fake.rate_limit(per_second=RATE, global_burst=2)
        settings = project_settings(
            dsn,
            url,
            bot_token=fake.token,
            telegram_api_url=fake.base_url,
            public_url=f"http://127.0.0.1:{port}",
        )
        async with build_app(settings) as app:
            project = ProjectBot(app, send_answers=False)
            await project.link_students(probes)
            code, attendance_id = await project.open_session()
            launch = _launch(fake.token, range(probes))
            notices = [
                encode(
                    Notice(
                        telegram_id=BASE + i,
                        language="en",
                        key="final.present",
                        values={"lesson": "FIZ101 - Fizik I", "date": "01.12.2026 10:00"},
                    )
                )
                for i in range(backlog)
            ]
            await app.outbox.ensure_group()
            for start in range(0, backlog, 500):
                await app.outbox.add([("result", n) for n in notices[start : start + 500]])
            runner = await _serve(app, port)
            await app.delivery.start()
            try:
                deadline = time.monotonic() + 30
                while len(fake.sent_messages) < 30:
                    if time.monotonic() > deadline:
                        raise RuntimeError("bench.webapp: the backlog did not flow")
                    await asyncio.sleep(0.02)
                endpoint = f"{settings.public_url}/app/api/checkin"
                async with aiohttp.ClientSession() as http:
                    tasks = []
                    for n in range(probes):
                        tasks.append(
                            asyncio.create_task(_check_in(http, endpoint, launch[n], code))
                        )
                        await asyncio.sleep(0.05)
                    answers = await asyncio.gather(*tasks)
                sent_for_backlog = sum(
                    1 for m in fake.sent_messages if BASE <= m["chat"]["id"] < BASE + backlog
                )
            finally:
                await app.delivery.stop(1.0)
                await runner.cleanup()
            probe_chats = {STUDENT_BASE + n for n in range(probes)}
            result["messages_to_probes"] = sum(
                1 for c in fake.calls_to("sendMessage") if c.chat_id in probe_chats
            )
            result["backlog_left_at_last_answer"] = backlog - sent_for_backlog
            result["answers_ok"] = sum(1 for _, kind in answers if kind == "ok")
            result["recorded"] = await project.recorded(attendance_id)
            result.update(_latency([seconds for seconds, _ in answers]))
            await app.bot.session.close()
    await flush_redis(url)
    return result


async def _minute(dsn: str, n: int, seconds: float) -> dict[str, Any]:
    from bot.app import build_app

    url = redis_url()
    await flush_redis(url)
    port = _free_port()
    bot, _session = bench_bot()
    settings = project_settings(dsn, url, public_url=f"http://127.0.0.1:{port}")
    result: dict[str, Any] = {"n": n, "seconds_planned": seconds}
    async with build_app(settings, bot=bot) as app:
        project = ProjectBot(app, send_answers=False)
        await project.link_students(n)
        code, attendance_id = await project.open_session()
        launch = _launch(settings.bot_token.get_secret_value(), range(n))
        runner = await _serve(app, port)
        endpoint = f"{settings.public_url}/app/api/checkin"
        moments = sorted(random.uniform(0, seconds) for _ in range(n))
        connector = aiohttp.TCPConnector(limit=200)
        try:
            async with aiohttp.ClientSession(connector=connector) as http:
                loop = asyncio.get_running_loop()
                start = loop.time() + 0.2

                async def one(i: int, at: float) -> tuple[float, str]:
                    await asyncio.sleep(max(0.0, start + at - loop.time()))
                    scheduled = start + at
                    _, kind = await _check_in(http, endpoint, launch[i], code)
                    return loop.time() - scheduled, kind

                answers = await asyncio.gather(*(one(i, at) for i, at in enumerate(moments)))
                elapsed = loop.time() - start
                result["answers_ok"] = sum(1 for _, kind in answers if kind == "ok")
                result["recorded"] = await project.recorded(attendance_id)

                # Headroom: the same students check in to a second session as fast as 50
                # concurrent pages can (closed loop).
                code2, second = await project.open_session()
                pending = iter(range(n))
                fast: list[tuple[float, str]] = []

                async def worker() -> None:
                    for i in pending:
                        fast.append(await _check_in(http, endpoint, launch[i], code2))

                began = loop.time()
                await asyncio.gather(*(worker() for _ in range(CONCURRENT_PAGES)))
                result["closed_loop_seconds"] = loop.time() - began
                result["closed_loop_rate_per_s"] = n / result["closed_loop_seconds"]
                result["closed_loop_ok"] = sum(1 for _, kind in fast if kind == "ok")
                result["closed_loop_recorded"] = await project.recorded(second)
                closed = _latency([latency for latency, _ in fast])
                result["closed_loop_p99_ms"] = closed["p99_ms"]
        finally:
            await runner.cleanup()
        result["seconds"] = elapsed
        result["rate_per_s"] = n / elapsed
        result.update(_latency([latency for latency, _ in answers]))
    await bot.session.close()
    await flush_redis(url)
    return result


async def measure(
    dsn: str, *, backlog: int = 1000, probes: int = 200, n: int = 5000, seconds: float = 60.0
) -> dict[str, Any]:
    return {
        "backlog": await _backlog(dsn, backlog, probes),
        "minute": await _minute(dsn, n, seconds),
    }


def rows(result: dict[str, Any]) -> list[Row]:
    backlog, minute = result["backlog"], result["minute"]
    section = "Mini App check-in page"
    clean = (
        backlog["messages_to_probes"] == 0
        and backlog["answers_ok"] == backlog["probes"] == backlog["recorded"]
        and backlog["backlog_left_at_last_answer"] > 0
    )
    label = f"{backlog['probes']} answers during a {backlog['backlog']:,}-notice backlog"
    complete = minute["answers_ok"] == minute["n"] == minute["recorded"]
    return [
        Row(section, f"{label}: p50", backlog["p50_ms"], "ms", "", None, backlog),
        Row(
            section,
            f"{label}: p99",
            backlog["p99_ms"],
            "ms",
            "<= 1,000, no bot message, backlog still queued",
            clean and backlog["p99_ms"] <= 1000,
        ),
        Row(
            section,
            f"  bot messages to those students ({backlog['backlog_left_at_last_answer']} "
            "notices still queued)",
            backlog["messages_to_probes"],
            "messages",
            "0",
            backlog["messages_to_probes"] == 0,
        ),
        Row(
            section,
            f"{minute['n']:,} check-ins over {minute['seconds_planned']:.0f} s: achieved rate",
            minute["rate_per_s"],
            "/s",
            f">= {minute['n'] / minute['seconds_planned']:.0f}, all recorded",
            complete and minute["seconds"] <= minute["seconds_planned"] + 5,
            minute,
        ),
        Row(section, "  latency p50", minute["p50_ms"], "ms"),
        Row(section, "  latency p99", minute["p99_ms"], "ms", "<= 1,000", minute["p99_ms"] <= 1000),
        Row(section, "  latency max", minute["max_ms"], "ms"),
        Row(
            section,
            f"  headroom: {minute['n']:,} as fast as {CONCURRENT_PAGES} pages can",
            minute["closed_loop_rate_per_s"],
            "/s",
            f"p99 {minute['closed_loop_p99_ms']:.0f} ms, "
            f"{minute['closed_loop_recorded']:,} recorded",
            minute["closed_loop_ok"] == minute["n"] == minute["closed_loop_recorded"],
        ),
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--backlog", type=int, default=1000)
    parser.add_argument("--probes", type=int, default=200)
    parser.add_argument("--n", type=int, default=5000)
    parser.add_argument("--seconds", type=float, default=60.0)
    args = parser.parse_args()

    async def run() -> dict[str, Any]:
        async with throwaway_database(database_url()) as dsn:
            return await measure(
                dsn, backlog=args.backlog, probes=args.probes, n=args.n, seconds=args.seconds
            )

    print_table(rows(asyncio.run(run())))


if __name__ == "__main__":
    main()
