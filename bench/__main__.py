"""`python -m bench` (`make bench`): every ATTN benchmark, one table, and JSON results.

Sections: check-in throughput on one core against the aiogram floor and check-in latency
(bench/checkin.py), reply delivery under the 30 messages/s limit (bench/delivery.py), the top
of the hour at a university, scaled, within that limit (bench/university.py), durable
notice delivery by the real process with a backlog, SIGTERM and a restart (bench/outbox.py),
finalization from Redis to PostgreSQL (bench/finalize.py), the /export of a 400 x 14 course
(bench/export.py), check-ins through the Mini App's page during a notice backlog and for a
minute at 5,000 (bench/webapp.py), the first lecture of term's login wave at the portal's
real pace through `python -m bot` (bench/login_wave.py), and the RSS of one bot process
(bench/memory.py).
Servers: DATABASE_URL (a throwaway database is created on its server and
dropped) and REDIS_URL (database 8, flushed). The table goes to stdout; the figures, with
each run's details, to bench/results/latest.json.

    python -m bench [--quick] [--skip delivery,memory]
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import os
import platform
import sys
import time
import traceback
from pathlib import Path
from typing import Any

from bench import checkin, delivery, login_wave, memory, outbox, university, webapp
from bench.common import Row, database_url, flush_redis, print_table, redis_url, throwaway_database

RESULTS = Path(__file__).resolve().parent / "results" / "latest.json"
SECTIONS = (
    "checkin",
    "delivery",
    "university",
    "outbox",
    "finalize",
    "export",
    "webapp",
    "login_wave",
    "memory",
)
FINALIZE_SESSIONS = 100
FINALIZE_RECORDS = 300
FINALIZE_RUNS = 5


async def _finalize(dsn: str) -> list[Row]:
    """Records per second of `Finalizer.run_once()` over 100 ended sessions x 300 records, with
    the finalizer's default concurrency, using bench/finalize.py's seeding and timing."""
    from bench import finalize as fin
    from dal.pg import Postgres
    from dal.redis.stores import RedisStores

    url = redis_url()
    await flush_redis(url)
    redis = RedisStores.from_url(url)
    # As `python -m bot` does once it has started (bot/__main__.py): the long-lived objects of
    # the process (here the other benchmarks' modules too) are kept out of collections.
    gc.freeze()
    pg = await Postgres.connect(dsn, max_size=8)
    try:
        # A full-size warm-up run, as bench/finalize.py has before its concurrency-4 runs.
        await fin._once(
            pg, redis, sessions=FINALIZE_SESSIONS, per_session=FINALIZE_RECORDS, concurrency=4
        )
        runs = [
            await fin._once(
                pg, redis, sessions=FINALIZE_SESSIONS, per_session=FINALIZE_RECORDS, concurrency=4
            )
            for _ in range(FINALIZE_RUNS)
        ]
        # The median run: on a shared machine single runs swing by a factor of two.
        elapsed, report = sorted(runs, key=lambda run: run[0])[FINALIZE_RUNS // 2]
        # One batch at a time: the phases do not overlap, so their split is exact.
        serial_elapsed, serial = await fin._once(
            pg, redis, sessions=FINALIZE_SESSIONS, per_session=FINALIZE_RECORDS, concurrency=1
        )
    finally:
        gc.unfreeze()
        await pg.db.close()
        await redis.close()
    total = FINALIZE_SESSIONS * FINALIZE_RECORDS
    rate = total / elapsed
    detail = {
        "sessions": FINALIZE_SESSIONS,
        "records": total,
        "seconds": elapsed,
        "concurrency": 4,
        "runs_seconds": sorted(round(run[0], 3) for run in runs),
        "redis_read_seconds": report.redis_read_seconds,
        "build_seconds": report.build_seconds,
        "postgres_seconds": report.postgres_seconds,
        "cleanup_seconds": report.cleanup_seconds,
    }
    name = f"{FINALIZE_SESSIONS} sessions x {FINALIZE_RECORDS} records"
    section = "finalization (Redis -> PostgreSQL)"
    phases = [
        ("Redis read (pipelined GET/HVALS/SMEMBERS)", serial.redis_read_seconds),
        ("transform (sheet rows, statuses)", serial.build_seconds),
        ("PostgreSQL write (COPY)", serial.write_seconds),
        ("PostgreSQL user/contact reads", serial.users_read_seconds + serial.contacts_read_seconds),
        ("cleanup (notices, Redis keys)", serial.cleanup_seconds),
    ]
    spent = sum(seconds for _, seconds in phases) or 1.0
    return [
        Row(section, name, rate, "records/s", ">= 50,000", rate >= 50_000, detail),
        Row(
            section,
            "one batch at a time",
            total / serial_elapsed,
            "records/s",
            f"phases below: {serial_elapsed:.2f} s",
        ),
        *(
            Row(section, f"  {phase}", seconds, "s", f"{seconds / spent:.0%} of the phases")
            for phase, seconds in phases
        ),
    ]


async def _export(dsn: str) -> list[Row]:
    """/export of a 400-student x 14-session course, XLSX and CSV together (bench/export.py)."""
    from bench import export

    detail = await export.measure(dsn)
    seconds = float(detail["seconds"])
    return [
        Row(
            "term export (/export)",
            "400 students x 14 sessions, XLSX + CSV",
            seconds,
            "s",
            "<= 3",
            seconds <= 3.0,
            dict(detail),
        )
    ]


async def _section(name: str, dsn: str, quick: bool) -> list[Row]:
    """The rows of one section."""
    if name == "checkin":
        n = 1500 if quick else 3000
        return await asyncio.to_thread(checkin.run, dsn, n=n, rounds=10, concurrency=100)
    if name == "delivery":
        return delivery.rows(await delivery.measure(dsn, 500))
    if name == "university":
        return university.rows(await university.measure(dsn))
    if name == "outbox":
        return outbox.rows(await outbox.measure(dsn))
    if name == "finalize":
        return await _finalize(dsn)
    if name == "export":
        return await _export(dsn)
    if name == "webapp":
        n, seconds = (1500, 20.0) if quick else (5000, 60.0)
        return webapp.rows(await webapp.measure(dsn, n=n, seconds=seconds))
    if name == "login_wave":
        # At the portal's real pace (a minute's window): about two minutes however --quick.
        return login_wave.rows(await login_wave.measure(dsn))
    if name == "memory":
        return await asyncio.to_thread(memory.run, dsn)
    raise ValueError(f"unknown section {name!r}")


async def _run(sections: set[str], quick: bool) -> list[Row]:
    """Every chosen section in order, each printed as soon as it is measured. A section that
    fails becomes one missed row naming the error, and the others still run: one broken
    benchmark must not hide every other figure."""
    rows: list[Row] = []
    async with throwaway_database(database_url()) as dsn:
        for name in SECTIONS:
            if name not in sections:
                continue
            began = time.perf_counter()
            try:
                measured = await _section(name, dsn, quick)
            except Exception as exc:  # reported as a row, the run goes on
                traceback.print_exc()
                measured = [
                    Row(name, f"failed: {type(exc).__name__}: {exc}"[:120], 0.0, "", "runs", False)
                ]
            sys.stdout.write(f"[{name}: {time.perf_counter() - began:.0f} s]\n")
            print_table(measured, header=False)
            rows += measured
        await flush_redis(redis_url())
    return rows


def _write(rows: list[Row], seconds: float) -> None:
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    payload: dict[str, Any] = {
        "at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "cpu_cores": os.cpu_count(),
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "seconds": round(seconds, 1),
        "all_targets_met": all(r.met is not False for r in rows),
        "rows": [r.as_dict() for r in rows],
    }
    RESULTS.write_text(json.dumps(payload, indent=2, ensure_ascii=False) + "\n")


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--skip", default="", help=f"comma-separated sections of {SECTIONS}")
    parser.add_argument("--quick", action="store_true", help="smaller check-in runs")
    args = parser.parse_args()
    skip = {s.strip() for s in args.skip.split(",") if s.strip()}
    unknown = skip - set(SECTIONS)
    if unknown:
        parser.error(f"unknown sections: {', '.join(sorted(unknown))}")
    began = time.perf_counter()
    rows = asyncio.run(_run(set(SECTIONS) - skip, args.quick))
    elapsed = time.perf_counter() - began
    sys.stdout.write("\n=== all sections ===\n")
    print_table(rows)
    _write(rows, elapsed)
    missed = [f"{r.section}: {r.name}" for r in rows if r.met is False]
    sys.stdout.write(
        f"\n{len(rows)} figures in {elapsed:.0f} s; {len(missed)} targets missed; JSON: {RESULTS}\n"
    )


if __name__ == "__main__":
    main()
