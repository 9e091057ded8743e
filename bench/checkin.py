"""Check-in throughput and latency of one bot process on one core, against the framework floor.

    python -m bench.checkin [--n 3000] [--rounds 10] [--concurrency 100]

Each measurement runs in a worker subprocess pinned to core 0. The floor and the project are
measured turn about: both workers stay up, and the parent asks each in turn for one round of
`--n` check-ins (`bench.common.ServedWorker`), `--rounds` times; the ratio is the median of the
rounds' ratios. Measured one after the other, three runs each, the ratio of the same code came
out anywhere from 0.62 to 0.85 on this host, whose speed drifts within a minute. Updates go through
`Dispatcher.feed_raw_update` (Update JSON parsed by aiogram, as in webhook mode) from many
concurrent tasks; replies go to a no-network Bot session (`bench.common.NullSession`).

Variants:
- project: `bot.app.build_app` (the project's FSM and user-context middlewares, routers,
  handlers, services, the outgoing middleware) on real Redis and PostgreSQL. Students are
  linked (Redis user sessions, as login writes them), a teacher opens a session with
  `AttendanceService.start_session`, and every student sends the code once: every check-in
  is a real write. The outgoing pacing is lifted (rates of 1e6/s): the network session has
  no Telegram limit to respect, and the measurement is of the bot's own work.
- floor: a bare aiogram `Dispatcher()` with one handler that runs one Lua script (EVALSHA,
  the same Redis commands as the project's check-in) and answers; no project code.
- bare (informational): the same Dispatcher whose handler only answers.

Latency (project): 500 check-ins to one session arriving at uniformly random moments over
10 s (each update its own task, as aiogram's polling and webhook do), measured from the
scheduled arrival to the end of the handler (reply sent); and 500 arriving at once.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gc
import json
import random
import statistics
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from datetime import timedelta
from typing import Any

import redis.asyncio as aioredis
from aiogram import Dispatcher, Router
from aiogram.types import Message

from bench.common import (
    STUDENT_BASE,
    TEACHER_BASE,
    NullSession,
    ProjectBot,
    Row,
    ServedWorker,
    bench_bot,
    database_url,
    emit,
    flush_redis,
    now_utc,
    percentile,
    pin_to_core,
    print_table,
    project_settings,
    redis_url,
    run_worker,
    serve_rounds,
    text_update,
    throwaway_database,
)

LATENCY_N = 500
SPREAD_SECONDS = 10.0


async def _drive(
    feed: Callable[[dict[str, Any]], Awaitable[Any]],
    updates: Sequence[dict[str, Any]],
    concurrency: int,
) -> float:
    """Feed `updates` from `concurrency` tasks; seconds until all are handled."""
    pending = iter(updates)

    async def worker() -> None:
        for update in pending:
            await feed(update)

    began = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return time.perf_counter() - began


def _freeze_long_lived() -> None:
    """As `python -m bot` does once it has started (bot/__main__.py): what was built before
    the first update (modules, routers, pools, the linked students) lives as long as the
    process and is moved out of the collector's sight. Without it a full collection during a
    burst walks all of it: measured, 0.22 s of the 500-at-once drain. The worker is its own
    process, so nothing is unfrozen."""
    gc.collect()
    gc.freeze()


# --- the project -------------------------------------------------------------------------


@contextlib.asynccontextmanager
async def _project(
    dsn: str, redis: str, students: int
) -> AsyncIterator[tuple[ProjectBot, NullSession]]:
    """The project's bot on the no-network session, outgoing pacing lifted, students linked."""
    from bot.app import build_app

    await flush_redis(redis)
    bot, session = bench_bot()
    settings = project_settings(dsn, redis, telegram_global_rate=1e6, telegram_per_chat_rate=1e6)
    async with build_app(settings, bot=bot) as app:
        project = ProjectBot(app)
        try:
            await project.link_students(students)
            _freeze_long_lived()
            yield project, session
        finally:
            await project.stop()


@contextlib.asynccontextmanager
async def _project_rounds(
    dsn: str, redis: str, n: int, concurrency: int
) -> AsyncIterator[Callable[[], Awaitable[dict[str, Any]]]]:
    """The project built and warmed up; each round opens a session that `n` students check in
    to, and gives the rate from the first update to the last answer sent."""
    async with _project(dsn, redis, n) as (project, session):
        code, _aid = await project.open_session()
        await _drive(project.feed, project.updates(code, range(min(n, 1000))), concurrency)
        await project.answered()

        async def round_() -> dict[str, Any]:
            code, aid = await project.open_session()
            updates = project.updates(code, range(n))
            sent_before = session.sent
            gc.collect()
            began = time.perf_counter()
            await _drive(project.feed, updates, concurrency)
            await project.answered()  # the answers sent too
            seconds = time.perf_counter() - began
            recorded = await project.recorded(aid)
            replies = session.sent - sent_before
            if recorded != n or replies != n:
                raise RuntimeError(f"{recorded} records and {replies} replies for {n} check-ins")
            return {"rate": n / seconds}

        yield round_


async def _arrivals(
    feed: Callable[[dict[str, Any]], Awaitable[Any]],
    updates: Sequence[dict[str, Any]],
    offsets: Sequence[float],
) -> tuple[list[float], float]:
    """Each update its own task at `offsets` seconds from now; latencies (s) from the scheduled
    arrival to the handler's end, and the seconds from the first arrival to the last end."""
    loop = asyncio.get_running_loop()
    start = loop.time() + 0.05
    latencies: list[float] = []
    tasks: list[asyncio.Task[None]] = []

    async def one(update: dict[str, Any], due: float) -> None:
        await feed(update)
        latencies.append(loop.time() - due)

    def spawn(update: dict[str, Any], due: float) -> None:
        tasks.append(asyncio.ensure_future(one(update, due)))

    for update, offset in zip(updates, offsets, strict=True):
        loop.call_at(start + offset, spawn, update, start + offset)
    await asyncio.sleep(max(offsets) + 0.06)
    while len(tasks) < len(updates):
        await asyncio.sleep(0.001)
    await asyncio.gather(*tasks)
    return latencies, loop.time() - start


async def _project_latency(dsn: str, redis: str) -> dict[str, Any]:
    async with _project(dsn, redis, LATENCY_N) as (project, _):
        code, aid = await project.open_session()
        await _drive(project.feed, project.updates(code, range(LATENCY_N)), 50)  # warm-up
        await project.answered()
        rng = random.Random(6)
        offsets = sorted(rng.uniform(0, SPREAD_SECONDS) for _ in range(LATENCY_N))
        code, aid = await project.open_session()
        gc.collect()
        spread, _ = await _arrivals(
            project.feed_answered, project.updates(code, range(LATENCY_N)), offsets
        )
        if await project.recorded(aid) != LATENCY_N:
            raise RuntimeError("spread burst: check-ins missing")
        code, aid = await project.open_session()
        gc.collect()
        burst, drain = await _arrivals(
            project.feed_answered, project.updates(code, range(LATENCY_N)), [0.0] * LATENCY_N
        )
        if await project.recorded(aid) != LATENCY_N:
            raise RuntimeError("simultaneous burst: check-ins missing")
        return {"spread": spread, "burst": burst, "drain_seconds": drain}


# --- the framework floor -----------------------------------------------------------------

# The project's check-in script issues these commands; the floor's does the same work.
_FLOOR_LUA = """
local count = tonumber(redis.call('GET', KEYS[1]) or '0') or 0
if count >= tonumber(ARGV[3]) then
  return {'THROTTLED', redis.call('TTL', KEYS[1])}
end
local id = redis.call('GET', KEYS[2])
if not id then
  -- EXPIRE ... NX is Redis 7 only; the embedded Redis of `make bench` on a fresh machine is 6.2.
  if redis.call('INCR', KEYS[1]) == 1 then
    redis.call('EXPIRE', KEYS[1], ARGV[4])
  end
  return {'WRONG_CODE'}
end
local session = redis.call('GET', 'attendances:{' .. id .. '}')
if not session then
  return {'WRONG_CODE'}
end
local score = redis.call('ZSCORE', KEYS[3], id)
if (not score) or tonumber(score) <= tonumber(ARGV[2]) then
  return {'ENDED', id, session}
end
local records = 'attendance_records:{' .. id .. '}'
local existing = redis.call('HGET', records, ARGV[1])
if existing then
  return {'DUPLICATE', id, session, existing}
end
local enrolled = 'attendances:{' .. id .. '}:enrolled'
if redis.call('SISMEMBER', enrolled, ARGV[1]) == 1
   or redis.call('SISMEMBER', enrolled, '*') == 1 then
  redis.call('HSET', records, ARGV[1], ARGV[5])
  return {'OK_PRESENT', id, session}
end
redis.call('HSET', records, ARGV[1], ARGV[6])
return {'OK_PENDING', id, session}
"""


@contextlib.asynccontextmanager
async def _floor_rounds(
    redis: str, n: int, concurrency: int, *, with_redis: bool
) -> AsyncIterator[Callable[[], Awaitable[dict[str, Any]]]]:
    """The bare Dispatcher, warmed up; each round as the project's (`_project_rounds`)."""
    await flush_redis(redis)
    pool = aioredis.BlockingConnectionPool.from_url(
        redis, max_connections=64, timeout=5, decode_responses=True
    )
    client = aioredis.Redis.from_pool(pool)
    script = client.register_script(_FLOOR_LUA)
    state = {"id": ""}
    router = Router()

    # No filter: aiogram runs a plain callable filter (a MagicFilter too) in a worker thread,
    # which is avoidable cost, not the framework's floor.
    @router.message()
    async def code_message(message: Message) -> None:
        user = message.from_user
        if with_redis and user is not None:
            now = time.time()
            record = {
                "student_number": str(user.id),
                "student_full_name": user.full_name,
                "telegram_id": user.id,
                "is_attended": True,
                "attendance_time": now_utc().isoformat(),
                "fail_reason": None,
                "source": "code",
            }
            present = json.dumps(record)
            pending = json.dumps({**record, "is_attended": False, "fail_reason": "NOT_IN_SCHEDULE"})
            reply = await script(
                keys=[
                    f"throttle:checkin:{user.id}",
                    f"attendances:code:{message.text}",
                    "attendances:due",
                ],
                args=[str(user.id), repr(now), "5", "60", present, pending],
            )
            await message.answer(f"✅ {reply[0]} <b>Bench Dersi 101</b> {time.strftime('%H:%M')}")
        else:
            await message.answer(f"✅ OK <b>Bench Dersi 101</b> {time.strftime('%H:%M')}")

    dispatcher = Dispatcher()
    dispatcher.include_router(router)
    bot, session = bench_bot()
    update_id = 0

    async def open_session() -> str:
        aid = str(uuid.uuid4())
        code = f"{random.randrange(1_000_000):06d}"
        started = now_utc()
        body = {
            "attendance_id": aid,
            "teacher_school_number": "T000000000000001",
            "teacher_full_name": "Hoca 1",
            "teacher_telegram_id": TEACHER_BASE + 1,
            "lesson_name": "Bench Dersi 101",
            "lesson_code": None,
            "code": code,
            "security_option": 1,
            "start_time": started.isoformat(),
            "planned_end_time": (started + timedelta(minutes=50)).isoformat(),
            "end_time": None,
            "status_chat_id": TEACHER_BASE + 1,
            "status_message_id": None,
        }
        await client.set(f"attendances:code:{code}", aid)
        await client.set(f"attendances:{{{aid}}}", json.dumps(body))
        await client.zadd("attendances:due", {aid: time.time() + 3000})
        await client.sadd(f"attendances:{{{aid}}}:enrolled", "*")
        state["id"] = aid
        return code

    def updates(code: str, count: int) -> list[dict[str, Any]]:
        nonlocal update_id
        out = []
        for n in range(count):
            update_id += 1
            out.append(text_update(update_id, STUDENT_BASE + n, code, "tr" if n % 3 == 0 else "en"))
        return out

    async def feed(update: dict[str, Any]) -> Any:
        return await dispatcher.feed_raw_update(bot, update)

    async def round_() -> dict[str, Any]:
        code = await open_session()
        batch = updates(code, n)
        sent_before = session.sent
        gc.collect()
        seconds = await _drive(feed, batch, concurrency)
        replies = session.sent - sent_before
        recorded = await client.hlen(f"attendance_records:{{{state['id']}}}")
        if replies != n or (with_redis and recorded != n):
            raise RuntimeError(f"{recorded} records and {replies} replies for {n} updates")
        return {"rate": n / seconds}

    _freeze_long_lived()
    try:
        code = await open_session()
        await _drive(feed, updates(code, min(n, 500)), concurrency)
        yield round_
    finally:
        await client.aclose()


# --- worker and parent -------------------------------------------------------------------


async def _worker(args: argparse.Namespace) -> dict[str, Any] | None:
    dsn, redis = args.dsn, redis_url()
    if args.worker == "latency":
        return await _project_latency(dsn, redis)
    rounds = (
        _project_rounds(dsn, redis, args.n, args.concurrency)
        if args.worker == "project"
        else _floor_rounds(redis, args.n, args.concurrency, with_redis=args.worker == "floor")
    )
    async with rounds as round_:
        if args.serve:
            await serve_rounds(round_)
            return None
        rates = [(await round_())["rate"] for _ in range(args.rounds)]
    return {"rates": rates, "n": args.n, "concurrency": args.concurrency}


def _paired(
    floor: ServedWorker, project: ServedWorker, rounds: int
) -> tuple[list[float], list[float]]:
    """`rounds` rounds of each, turn about (floor first in even rounds, the project first in
    odd ones, so that a steady drift favours neither): the floor's and the project's rates."""
    floor_rates: list[float] = []
    project_rates: list[float] = []
    for i in range(rounds):
        pair = [(floor, floor_rates), (project, project_rates)]
        for worker, rates in pair if i % 2 == 0 else reversed(pair):
            rates.append(float(worker.round()["rate"]))
    return floor_rates, project_rates


def run(dsn: str, *, n: int = 3000, rounds: int = 10, concurrency: int = 100) -> list[Row]:
    """Throughput and latency rows; `dsn` names an existing (empty or bench) database."""
    common = ["--dsn", dsn, "--n", str(n), "--concurrency", str(concurrency)]
    # The floor first: each worker empties Redis once as it starts, and the project's linked
    # students must outlive that.
    with (
        ServedWorker("bench.checkin", ["floor", *common]) as floor_worker,
        ServedWorker("bench.checkin", ["project", *common]) as project_worker,
    ):
        floor_rates, project_rates = _paired(floor_worker, project_worker, rounds)
    bare = run_worker("bench.checkin", ["bare", *common, "--rounds", "3"])
    latency = run_worker("bench.checkin", ["latency", *common])
    pairs = [p / f for p, f in zip(project_rates, floor_rates, strict=True)]
    ratio = statistics.median(pairs)
    floor_rate, project_rate = statistics.median(floor_rates), statistics.median(project_rates)
    bare_rate = statistics.median(bare["rates"])
    how = {"n": n, "rounds": rounds, "concurrency": concurrency, "pinned_core": 0}
    spread_ms = [x * 1000 for x in latency["spread"]]
    burst_ms = [x * 1000 for x in latency["burst"]]
    drain = float(latency["drain_seconds"])
    drain_limit = 1.3 * LATENCY_N / project_rate
    p99 = percentile(spread_ms, 99)
    section = "check-in (1 core)"
    return [
        Row(
            section,
            "project: build_app bot, Redis",
            project_rate,
            "check-ins/s",
            detail={**how, "runs": project_rates},
        ),
        Row(
            section,
            "floor: bare Dispatcher + 1 Lua script",
            floor_rate,
            "check-ins/s",
            detail={**how, "runs": floor_rates},
        ),
        Row(
            section,
            f"project / floor (median of {rounds} rounds turn about)",
            ratio,
            "ratio",
            ">= 0.75",
            ratio >= 0.75,
            {"pairs": pairs, "lowest": min(pairs), "highest": max(pairs)},
        ),
        Row(
            section,
            "bare Dispatcher, no Redis (info)",
            bare_rate,
            "updates/s",
            detail={**how, "runs": bare["rates"]},
        ),
        Row(
            "check-in latency",
            f"{LATENCY_N} over {SPREAD_SECONDS:.0f} s: p50",
            percentile(spread_ms, 50),
            "ms",
        ),
        Row(
            "check-in latency",
            f"{LATENCY_N} over {SPREAD_SECONDS:.0f} s: p99",
            p99,
            "ms",
            "<= 20 ms",
            p99 <= 20.0,
        ),
        Row(
            "check-in latency",
            f"{LATENCY_N} over {SPREAD_SECONDS:.0f} s: max",
            max(spread_ms),
            "ms",
        ),
        Row(
            "check-in latency",
            f"{LATENCY_N} at once: drained in",
            drain,
            "s",
            f"<= 1.3 x {LATENCY_N}/throughput = {drain_limit:.3f} s",
            drain <= drain_limit,
            {"p50_ms": percentile(burst_ms, 50), "p99_ms": percentile(burst_ms, 99)},
        ),
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--worker", choices=["project", "floor", "bare", "latency"])
    parser.add_argument("--dsn", default=None, help="PostgreSQL database to use (worker)")
    parser.add_argument("--n", type=int, default=3000, help="check-ins per measured run")
    parser.add_argument("--rounds", type=int, default=10, help="measured rounds of each")
    parser.add_argument(
        "--serve", action="store_true", help="worker: one round per line on stdin (ServedWorker)"
    )
    parser.add_argument("--concurrency", type=int, default=100, help="feeding tasks")
    args = parser.parse_args()
    if args.worker:
        pin_to_core(0)
        result = asyncio.run(_worker(args))
        if result is not None:
            emit(result)
        return

    async def standalone() -> list[Row]:
        async with throwaway_database(database_url()) as dsn:
            return await asyncio.to_thread(
                run, dsn, n=args.n, rounds=args.rounds, concurrency=args.concurrency
            )

    print_table(asyncio.run(standalone()))


if __name__ == "__main__":
    main()
