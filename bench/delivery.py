"""Reply delivery under Telegram's flood limit: 500 check-in replies to 500 chats.

    python -m bench.delivery [--n 500]

The real sending path: `bot.app.build_app` builds the real aiogram `Bot` on an
`AiohttpSession` with the project's `OutgoingMiddleware` (production pacing: 30 messages/s
overall, 1/s per chat), pointed at `tests.fakes.telegram_server.FakeTelegram` set to enforce
30 messages/s (token bucket, HTTP 429 with `retry_after` beyond it). `n` linked students send
the session's code at the same moment through `Dispatcher.feed_raw_update`; the figure is the
time until the fake has accepted the last reply, against the ideal n/30 s. Every chat must have
received exactly one check-in confirmation (none lost, none doubled).
"""

from __future__ import annotations

import argparse
import asyncio
import time
from collections import Counter
from typing import Any

from bench.common import (
    STUDENT_BASE,
    ProjectBot,
    Row,
    database_url,
    flush_redis,
    print_table,
    project_settings,
    redis_url,
    throwaway_database,
)

TELEGRAM_RATE = 30.0


async def measure(dsn: str, n: int = 500) -> dict[str, Any]:
    from bot.app import build_app
    from bot.outgoing import OutgoingMiddleware
    from tests.fakes.telegram_server import FakeTelegram

    redis = redis_url()
    await flush_redis(redis)
    async with FakeTelegram(strict_chats=False) as fake:
        fake.rate_limit(per_second=TELEGRAM_RATE)
        settings = project_settings(
            dsn, redis, bot_token=fake.token, telegram_api_url=fake.base_url
        )
        async with build_app(settings) as app:
            project = ProjectBot(app)
            try:
                await project.link_students(n)
                code, attendance_id = await project.open_session()
                updates = project.updates(code, range(n))
                calls_before = len(fake.calls)
                began = time.monotonic()
                await asyncio.gather(*(project.feed(update) for update in updates))
                await project.answered()
                elapsed = time.monotonic() - began
                recorded = await project.recorded(attendance_id)
            finally:
                await project.stop()
                await app.bot.session.close()
            outgoing = next(
                m for m in app.bot.session.middleware if isinstance(m, OutgoingMiddleware)
            )
    calls = fake.calls[calls_before:]
    students = range(STUDENT_BASE, STUDENT_BASE + n)
    accepted = Counter(c.chat_id for c in calls if c.method.lower() == "sendmessage" and c.ok)
    confirmations = sum(1 for chat in students if accepted.get(chat) == 1)
    return {
        "n": n,
        "seconds": elapsed,
        "ideal_seconds": n / TELEGRAM_RATE,
        "recorded": recorded,
        "delivered": confirmations,
        "duplicates": sum(1 for chat in students if accepted.get(chat, 0) > 1),
        "answered_429": sum(1 for c in calls if c.status == 429),
        "retried_429": outgoing.stats.retried_429,
        "failed_permanent": outgoing.stats.failed_permanent,
    }


def rows(result: dict[str, Any]) -> list[Row]:
    n, seconds, ideal = result["n"], result["seconds"], result["ideal_seconds"]
    lost = n - result["delivered"]
    met = seconds <= 1.1 * ideal and lost == 0 and result["duplicates"] == 0
    section = "reply delivery (FakeTelegram at 30/s)"
    return [
        Row(
            section,
            f"{n} replies to {n} chats: delivered in",
            seconds,
            "s",
            f"<= 1.1 x {n}/30 = {1.1 * ideal:.2f} s, none lost",
            met,
            result,
        ),
        Row(section, "ideal n/30", ideal, "s"),
        Row(section, "replies lost", float(lost), "replies", "0", lost == 0),
        Row(section, "429 answers from the fake", float(result["answered_429"]), "answers"),
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--n", type=int, default=500)
    args = parser.parse_args()

    async def standalone() -> dict[str, Any]:
        async with throwaway_database(database_url()) as dsn:
            return await measure(dsn, args.n)

    print_table(rows(asyncio.run(standalone())))


if __name__ == "__main__":
    main()
