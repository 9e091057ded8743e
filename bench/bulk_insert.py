"""Rows per second of `Postgres.add_attendance_records`: executemany vs COPY.

    python -m bench.bulk_insert [--sizes 10000,100000] [--repeat 3]

Works in a throwaway database (created, then dropped) on the server of DATABASE_URL
(default postgresql://postgres@127.0.0.1:5432/postgres). Each run inserts into an empty
`attendance_records` table; the median of `--repeat` runs is reported with the best one.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import time
import uuid
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from urllib.parse import urlsplit, urlunsplit

import asyncpg

from dal.models import Attendance, AttendanceRecord, Role, User
from dal.pg import Postgres, RecordMethod

DEFAULT_DSN = "postgresql://postgres@127.0.0.1:5432/postgres"
STUDENTS = 1_000
METHODS: tuple[RecordMethod, ...] = ("executemany", "copy")


def _with_database(dsn: str, database: str) -> str:
    return urlunsplit(urlsplit(dsn)._replace(path=f"/{database}"))


def _records(size: int) -> tuple[list[User], list[Attendance], list[AttendanceRecord]]:
    teacher = User(user_school_number="T1", user_full_name="Bench Öğretmen", role=Role.TEACHER)
    students = [
        User(user_school_number=f"S{n:05d}", user_full_name=f"Öğrenci {n}", role=Role.STUDENT)
        for n in range(min(size, STUDENTS))
    ]
    start = datetime(2025, 3, 10, 6, 0, tzinfo=UTC)
    sessions = [
        Attendance(
            attendance_id=uuid.uuid4(),
            teacher_school_number="T1",
            lesson_name="Bench",
            start_time=start + timedelta(hours=n),
            end_time=start + timedelta(hours=n, minutes=50),
        )
        for n in range(-(-size // len(students)))
    ]
    records = [
        AttendanceRecord(
            attendance_id=att.attendance_id,
            student_number=s.user_school_number,
            is_attended=True,
            attendance_time=att.start_time + timedelta(minutes=3),
        )
        for att in sessions
        for s in students
    ][:size]
    return [teacher, *students], sessions, records


async def _measure(
    client: Postgres, records: Sequence[AttendanceRecord], method: RecordMethod
) -> float:
    await client.db.pool.execute("TRUNCATE attendance_records")
    began = time.perf_counter()
    inserted = await client.attendance.add_attendance_records(records=records, method=method)
    elapsed = time.perf_counter() - began
    if inserted != len(records):
        raise RuntimeError(f"{method}: inserted {inserted} of {len(records)}")
    return elapsed


async def run(dsn: str, sizes: Sequence[int], repeat: int) -> None:
    name = f"attn_bench_{uuid.uuid4().hex[:12]}"
    admin = await asyncpg.connect(dsn)
    try:
        await admin.execute(f'CREATE DATABASE "{name}"')
    finally:
        await admin.close()
    try:
        client = await Postgres.connect(_with_database(dsn, name), max_size=2)
        try:
            version = await client.db.pool.fetchval("SHOW server_version")
            print(f"PostgreSQL {version}; median (best) of {repeat} runs into an empty table")
            header = f"{'rows':>8}  {'method':<12} {'seconds':>9}  {'rows/s':>10}"
            print(f"{header}  {'best rows/s':>11}")
            for size in sizes:
                users, sessions, records = _records(size)
                await client.db.pool.execute(
                    "TRUNCATE users, attendances, attendance_records, schedule_entries CASCADE"
                )
                await client.accounts.add_users(users=users)
                await client.attendance.add_attendances(attendances=sessions)
                for method in METHODS:
                    await _measure(client, records[: min(size, 1_000)], method)  # warm-up
                    times = [await _measure(client, records, method) for _ in range(repeat)]
                    median = statistics.median(times)
                    print(
                        f"{size:>8}  {method:<12} {median:>9.3f}  {size / median:>10,.0f}"
                        f"  {size / min(times):>11,.0f}"
                    )
        finally:
            await client.db.close()
    finally:
        admin = await asyncpg.connect(dsn)
        try:
            await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        finally:
            await admin.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="10000,100000", help="comma-separated row counts")
    parser.add_argument("--repeat", type=int, default=3, help="runs per size and method")
    args = parser.parse_args()
    sizes = [int(s) for s in args.sizes.split(",") if s.strip()]
    dsn = os.environ.get("DATABASE_URL", DEFAULT_DSN)
    asyncio.run(run(dsn, sizes, max(1, args.repeat)))


if __name__ == "__main__":
    main()
