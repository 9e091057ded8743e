"""Durable delivery under a strict 30 messages/s Bot API: the real process, `python -m bot`.

    python -m bench.outbox [--backlog 1000] [--n 500]

FakeTelegram enforces 30 messages/s with at most two back to back (`rate_limit(30,
global_burst=2)`) and answers 429 beyond it. Two runs, each on a fresh Redis database 8:

1. **Backlog.** `--backlog` result notices are put in the outbox (dal/redis/outbox.py) before the
   bot starts. Once they flow, 60 users send /start, one every 0.1 s, each its own task; the
   latency is from the update's arrival at the fake to the answer's (interactive p99 / max).
   Then SIGTERM with the backlog still queued: the seconds until the process has exited (exit
   status 0 required). The bot is started again and finishes the backlog: every notice must
   arrive (exactly once counted), and the 429 answers per 1,000 sends are reported. The bot's
   RSS is read with the backlog queued; the Redis memory of the queued entries
   (`MEMORY USAGE` of the stream) is reported per 1,000 notices.
2. **Delivery time.** With the bot running and idle, `--n` notices are enqueued at once; the
   figure is the time until the fake has accepted the last one, against the ideal n/30 s.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

from bench.common import (
    ROOT,
    Row,
    database_url,
    flush_redis,
    print_table,
    redis_url,
    rss_mb,
    throwaway_database,
)

RATE = 30.0
BASE = 8_000_000_000
PROBES = 60


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


async def _until(condition: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise RuntimeError(f"bench.outbox: timed out waiting for {what}")
        await asyncio.sleep(0.02)


async def measure(dsn: str, backlog: int = 1000, n: int = 500) -> dict[str, Any]:
    from dal.pg import Postgres
    from dal.redis.connection import client as redis_client
    from dal.redis.outbox import Outbox
    from services.notice_codec import encode
    from services.notify import Notice
    from tests.fakes.telegram_server import FakeTelegram

    url = redis_url()
    log = Path(tempfile.gettempdir()) / f"attn-bench-outbox-{os.getpid()}.log"
    pg = await Postgres.connect(dsn)  # the schema, before the bot starts
    await pg.db.close()
    redis = redis_client(url)
    result: dict[str, Any] = {"backlog": backlog, "n": n}

    def notices(first: int, count: int) -> list[str]:
        return [
            encode(
                Notice(
                    telegram_id=BASE + i,
                    language="en",
                    key="final.present",
                    values={"lesson": "FIZ101 - Fizik I", "date": "01.12.2026 10:00"},
                )
            )
            for i in range(first, first + count)
        ]

    async def enqueue(payloads: list[str]) -> None:
        outbox = Outbox(redis)
        await outbox.ensure_group()
        for start in range(0, len(payloads), 500):
            await outbox.add(payloads[start : start + 500])

    try:
        # --- run 1: backlog, interactive latency, SIGTERM, restart --------------------------
        await flush_redis(url)
        async with FakeTelegram(strict_chats=False) as fake:
            fake.rate_limit(per_second=RATE, global_burst=2)
            env = {
                **os.environ,
                "BOT_TOKEN": fake.token,
                "TELEGRAM_API_URL": fake.base_url,
                "DATABASE_URL": dsn,
                "REDIS_URL": url,
                "AKSIS_MODE": "demo",
                "WEB_PORT": "0",
                "WEB_HOST": "127.0.0.1",
                "LOG_LEVEL": "WARNING",
            }
            await enqueue(notices(0, backlog))
            result["redis_bytes_per_1000_queued"] = (
                float(await redis.memory_usage("outbox") or 0) * 1000 / backlog
            )

            def sent_results() -> Counter[int]:
                return Counter(
                    m["chat"]["id"]
                    for m in fake.sent_messages
                    if BASE <= m["chat"]["id"] < BASE + backlog
                )

            def polled(before: int) -> Callable[[], bool]:
                return lambda: fake.call_count("getUpdates") > before

            proc = await _spawn(env, log)
            try:
                await _until(polled(0), 30, "the bot to start")
                await _until(lambda: len(fake.sent_messages) >= 30, 30, "the backlog to flow")
                result["rss_mb_with_backlog"] = rss_mb(proc.pid)
                probes = [fake.user(900 + i, f"P{i}") for i in range(PROBES)]

                async def probe(user: Any) -> float:
                    began = time.monotonic()
                    await user.send("/start")
                    await user.next_message(timeout=30)
                    return time.monotonic() - began

                tasks = []
                for user in probes:
                    tasks.append(asyncio.create_task(probe(user)))
                    await asyncio.sleep(0.1)
                latencies = sorted(await asyncio.gather(*tasks))
                result["interactive_p50_s"] = latencies[len(latencies) // 2]
                result["interactive_p99_s"] = latencies[
                    min(len(latencies) - 1, int(0.99 * len(latencies)))
                ]
                result["interactive_max_s"] = latencies[-1]
                result["queued_at_sigterm"] = backlog - len(sent_results())
                began = time.monotonic()
                proc.send_signal(signal.SIGTERM)
                result["sigterm_exit_status"] = await asyncio.wait_for(proc.wait(), 30)
                result["sigterm_to_exit_s"] = time.monotonic() - began

                before = fake.call_count("getUpdates")
                proc = await _spawn(env, log)
                await _until(polled(before), 30, "the restart")
                await _until(lambda: len(sent_results()) == backlog, 120, "the whole backlog")
            finally:
                if proc.returncode is None:
                    proc.send_signal(signal.SIGTERM)
                    await asyncio.wait_for(proc.wait(), 30)
            got = sent_results()
            calls = fake.calls_to("sendMessage")
            result["delivered"] = len(got)
            result["sent_twice"] = sum(1 for c in got.values() if c > 1)
            result["sends"] = sum(1 for c in calls if c.ok)
            result["answered_429"] = sum(1 for c in calls if c.status == 429)

        # --- run 2: delivery time of n notices -------------------------------------------
        await flush_redis(url)
        async with FakeTelegram(strict_chats=False) as fake:
            fake.rate_limit(per_second=RATE, global_burst=2)
            env.update(BOT_TOKEN=fake.token, TELEGRAM_API_URL=fake.base_url)
            proc = await _spawn(env, log)
            try:
                await _until(lambda: fake.call_count("getUpdates") > 0, 30, "the bot to start")
                await asyncio.sleep(1.0)  # idle: the budget is rested
                payloads = notices(0, n)
                began = time.monotonic()
                await enqueue(payloads)
                await _until(lambda: len(fake.sent_messages) >= n, 120, f"{n} notices")
                result["delivery_s"] = time.monotonic() - began
                result["delivery_429"] = sum(
                    1 for c in fake.calls_to("sendMessage") if c.status == 429
                )
            finally:
                proc.send_signal(signal.SIGTERM)
                await asyncio.wait_for(proc.wait(), 30)
        await flush_redis(url)
    finally:
        await redis.aclose()
    return result


def rows(result: dict[str, Any]) -> list[Row]:
    section = "durable delivery (python -m bot, FakeTelegram strict 30/s)"
    backlog, n = result["backlog"], result["n"]
    per_1000 = 1000 * result["answered_429"] / max(1, result["sends"])
    ideal = n / RATE
    lost = backlog - result["delivered"]
    return [
        Row(
            section,
            f"interactive p99 during a {backlog:,}-notice backlog",
            result["interactive_p99_s"],
            "s",
            "<= 1.5 s",
            result["interactive_p99_s"] <= 1.5,
            result,
        ),
        Row(
            section,
            f"SIGTERM to exit with {result['queued_at_sigterm']} queued",
            result["sigterm_to_exit_s"],
            "s",
            "<= 5 s, exit 0",
            result["sigterm_to_exit_s"] <= 5 and result["sigterm_exit_status"] == 0,
        ),
        Row(
            section,
            "notices lost across SIGTERM + restart",
            float(lost),
            "notices",
            "0",
            lost == 0,
        ),
        Row(section, "notices sent twice", float(result["sent_twice"]), "notices"),
        Row(section, "429s per 1,000 sends", per_1000, "answers", "<= 3.3", per_1000 <= 3.4),
        Row(
            section,
            f"{n} notices delivered in",
            result["delivery_s"],
            "s",
            f"<= 1.1 x {n}/30 = {1.1 * ideal:.2f} s",
            result["delivery_s"] <= 1.1 * ideal,
        ),
        Row(section, "bot RSS with the backlog queued", result["rss_mb_with_backlog"], "MB"),
        Row(
            section,
            "Redis memory per 1,000 queued notices",
            result["redis_bytes_per_1000_queued"] / 1024,
            "KB",
        ),
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--backlog", type=int, default=1000)
    parser.add_argument("--n", type=int, default=500)
    args = parser.parse_args()

    async def standalone() -> dict[str, Any]:
        async with throwaway_database(database_url()) as dsn:
            return await measure(dsn, args.backlog, args.n)

    print_table(rows(asyncio.run(standalone())))


if __name__ == "__main__":
    main()
