"""The hot queries stay flat over years: on a database seeded with three years of
a 60,000-student university, the queries /start_session, finalization, the warnings and the
reports run are planned with an index, never a sequential scan of a big table.

The seed is written with COPY (asyncpg's copy_records_to_table) and scaled to what seeds in
seconds on a shared machine: 60,000 students and 600 teachers, six terms of 2,000 sessions of
80 students each (960,000 records), and the current term's cached schedules (five courses per
student, 300,000 rows). The statements are the stores' own: each store call runs against the
seeded database, its SQL and arguments are taken from the pool it went through, and EXPLAIN is
run on exactly those.
"""

from __future__ import annotations

import json
import random
import uuid
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
import pytest

from dal.pg import Postgres
from dal.pg.counts import REBUILD_SQL
from tests.conftest import ADMIN_DSN, _with_database

pytestmark = pytest.mark.slow

STUDENTS = 60_000
TEACHERS = 600
TERMS = ("2024-1", "2024-2", "2025-1", "2025-2", "2026-1", "2026-2")
SESSIONS_PER_TERM = 2_000
CLASS_SIZE = 80
COURSES = 1_200  # course codes; each teacher teaches two
BIG_TABLES = {
    "attendances",
    "attendance_records",
    "attendance_course_counts",
    "schedule_entries",
    "users",
}
TERM_START = datetime(2024, 9, 16, 8, 30, tzinfo=UTC)


def _student(n: int) -> str:
    return f"S{n:06d}"


def _teacher(n: int) -> str:
    return f"T{n:04d}"


def _teacher_key(n: int) -> str:
    return f"hoca {n}"


def _course(n: int) -> str:
    return f"C{n:04d}"


async def _seed(conn: asyncpg.Connection) -> None:
    rng = random.Random(25)
    users = [(_student(n), f"Öğrenci {n}", "student") for n in range(STUDENTS)]
    users += [(_teacher(n), f"Hoca {n}", "teacher") for n in range(TEACHERS)]
    await conn.copy_records_to_table(
        "users", records=users, columns=["user_school_number", "user_full_name", "role"]
    )
    attendances: list[tuple[Any, ...]] = []
    records: list[tuple[Any, ...]] = []
    for t, term in enumerate(TERMS):
        begins = TERM_START + timedelta(days=182 * t)
        for s in range(SESSIONS_PER_TERM):
            course = rng.randrange(COURSES)
            teacher = course // 2
            start = begins + timedelta(hours=s % 1_500, minutes=0)
            aid = uuid.uuid4()
            attendances.append(
                (
                    aid,
                    _teacher(teacher),
                    f"{_course(course)} - Ders",
                    _course(course),
                    start,
                    start + timedelta(minutes=50),
                    term,
                )
            )
            first = rng.randrange(STUDENTS - CLASS_SIZE)
            for k in range(CLASS_SIZE):
                status = "present" if k % 5 else "absent"
                records.append((aid, _student(first + k), status == "present", start, status))
    await conn.copy_records_to_table(
        "attendances",
        records=attendances,
        columns=[
            "attendance_id",
            "teacher_school_number",
            "lesson_name",
            "lesson_code",
            "start_time",
            "end_time",
            "term",
        ],
    )
    await conn.copy_records_to_table(
        "attendance_records",
        records=records,
        columns=["attendance_id", "student_number", "is_attended", "attendance_time", "status"],
    )
    current = TERM_START + timedelta(days=182 * (len(TERMS) - 1))

    def entries() -> Iterator[tuple[Any, ...]]:
        for n in range(STUDENTS):
            for j in range(5):
                course = (n * 7 + j * 131) % COURSES
                start = current + timedelta(days=j, hours=course % 8)
                # Some rows are taught by two teachers: the key joins both with '|'.
                key = _teacher_key(course // 2)
                if course % 10 == 0:
                    key = f"{key}|{_teacher_key((course // 2 + 1) % TEACHERS)}"
                yield (
                    _student(n),
                    start,
                    start + timedelta(minutes=50),
                    _course(course),
                    "Ders",
                    "Dr. Hoca",
                    key,
                    TERMS[-1],
                )

    await conn.copy_records_to_table(
        "schedule_entries",
        records=list(entries()),
        columns=[
            "school_number",
            "start_time",
            "end_time",
            "course_code",
            "course_name",
            "teachers",
            "teacher_key",
            "term",
        ],
    )
    # The per-course counts, as migration 0008 builds them from the records.
    await conn.execute(REBUILD_SQL)
    await conn.execute("ANALYZE")


class _Capture:
    """The pool the stores go through: every statement and its arguments are kept."""

    def __init__(self, pool: asyncpg.Pool) -> None:
        self._pool = pool
        self.statements: list[tuple[str, tuple[Any, ...]]] = []

    async def fetch(self, sql: str, *args: Any) -> list[asyncpg.Record]:
        self.statements.append((sql, args))
        return await self._pool.fetch(sql, *args)

    async def fetchval(self, sql: str, *args: Any) -> Any:
        self.statements.append((sql, args))
        return await self._pool.fetchval(sql, *args)

    async def fetchrow(self, sql: str, *args: Any) -> Any:
        self.statements.append((sql, args))
        return await self._pool.fetchrow(sql, *args)


@pytest.fixture(scope="module")
async def university() -> AsyncIterator[Postgres]:
    name = f"attn_flat_{uuid.uuid4().hex[:12]}"
    admin = await asyncpg.connect(_with_database(ADMIN_DSN, "postgres"))
    try:
        await admin.execute(f'CREATE DATABASE "{name}"')
    finally:
        await admin.close()
    dsn = _with_database(ADMIN_DSN, name)
    pg = await Postgres.connect(dsn, max_size=4)
    try:
        async with pg.db.pool.acquire() as conn:
            await _seed(conn)
        yield pg
    finally:
        await pg.db.close()
        admin = await asyncpg.connect(_with_database(ADMIN_DSN, "postgres"))
        try:
            await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        finally:
            await admin.close()


def _nodes(plan: dict[str, Any]) -> Iterator[dict[str, Any]]:
    yield plan
    for child in plan.get("Plans", []):
        yield from _nodes(child)


async def _plan_of(pg: Postgres, store: Any, call: Any) -> list[dict[str, Any]]:
    """Run `call` on `store` through a capturing pool; the plan nodes of its statements."""
    capture = _Capture(pg.db.pool)
    real = store._pool
    store._pool = capture
    try:
        await call()
    finally:
        store._pool = real
    assert capture.statements
    nodes: list[dict[str, Any]] = []
    for sql, args in capture.statements:
        raw = await pg.db.pool.fetchval(f"EXPLAIN (FORMAT JSON) {sql}", *args)
        nodes.extend(_nodes(json.loads(raw)[0]["Plan"]))
    return nodes


def _assert_indexed(nodes: list[dict[str, Any]], *tables: str) -> None:
    seq = [n["Relation Name"] for n in nodes if n["Node Type"] == "Seq Scan"]
    assert not set(seq) & BIG_TABLES, f"sequential scan of {seq}"
    # A bitmap scan names its table on the heap node above the index node.
    used = {
        n.get("Relation Name")
        for n in nodes
        if "Index" in n["Node Type"] or n["Node Type"] == "Bitmap Heap Scan"
    }
    assert set(tables) <= used, f"no index scan of {set(tables) - used}"


async def test_start_session_finds_a_teachers_lessons_through_an_index(
    university: Postgres,
) -> None:
    store = university.schedules
    now = TERM_START + timedelta(days=182 * (len(TERMS) - 1), hours=2)

    async def call() -> None:
        found = await store.find_lessons_by_teacher_key(
            teacher_key=_teacher_key(300),
            start=now - timedelta(days=1),
            end=now + timedelta(days=7),
        )
        assert found  # the seed has this teacher's lessons in the window

    nodes = await _plan_of(university, store, call)
    _assert_indexed(nodes, "schedule_entries")
    assert any(n.get("Index Name") == "schedule_entries_teacher_keys_idx" for n in nodes)


async def test_my_attendance_reads_the_current_term_through_the_students_index(
    university: Postgres,
) -> None:
    store = university.reports
    number = await university.db.pool.fetchval(
        "SELECT student_number FROM attendance_records AS r JOIN attendances AS a"
        " USING (attendance_id) WHERE a.term = $1 LIMIT 1",
        TERMS[-1],
    )

    async def call() -> None:
        rows = await store.get_student_records(student_number=number)
        assert rows
        assert {r.start_time >= TERM_START + timedelta(days=182 * 5) for r in rows} == {True}

    nodes = await _plan_of(university, store, call)
    _assert_indexed(nodes, "attendance_records", "attendances")


async def test_finalization_and_the_warnings_read_by_index(university: Postgres) -> None:
    class_numbers = [_student(n) for n in range(1_000, 1_000 + CLASS_SIZE)]

    async def users() -> None:
        assert len(await university.accounts.get_users(school_numbers=class_numbers)) == 80

    _assert_indexed(await _plan_of(university, university.accounts, users), "users")

    # The warning check: the class's counts in the course and term, and their weekly slots.
    course, term = await university.db.pool.fetchrow(
        "SELECT course_key, term FROM attendance_course_counts WHERE student_number = $1"
        " AND term = $2 LIMIT 1",
        class_numbers[0],
        TERMS[-1],
    )

    async def counts() -> None:
        found = await university.reports.get_course_counts(
            course_key=course, term=term, student_numbers=class_numbers
        )
        assert class_numbers[0] in found
        await university.reports.get_lesson_starts(
            student_numbers=class_numbers, term=term, course_code=course
        )

    nodes = await _plan_of(university, university.reports, counts)
    _assert_indexed(nodes, "attendance_course_counts", "schedule_entries")
    assert not any(n.get("Relation Name") == "attendance_records" for n in nodes)


async def test_my_attendance_summary_reads_one_row_per_course(university: Postgres) -> None:
    number = await university.db.pool.fetchval(
        "SELECT student_number FROM attendance_course_counts WHERE term = $1 LIMIT 1",
        TERMS[-1],
    )

    async def call() -> None:
        courses = await university.reports.get_student_course_counts(student_number=number)
        assert courses and {c.term for c in courses} == {TERMS[-1]}
        assert await university.reports.get_lesson_starts(student_numbers=[number], term=None)

    nodes = await _plan_of(university, university.reports, call)
    _assert_indexed(nodes, "attendance_course_counts", "schedule_entries")
    assert not any(n.get("Relation Name") == "attendance_records" for n in nodes)


async def test_a_teachers_history_and_courses_read_by_index(university: Postgres) -> None:
    async def history() -> None:
        assert await university.reports.get_attendances(teacher_school_number=_teacher(5))

    _assert_indexed(await _plan_of(university, university.reports, history), "attendances")

    async def courses() -> None:
        assert await university.reports.get_teacher_courses(teacher_school_number=_teacher(5))

    _assert_indexed(await _plan_of(university, university.reports, courses), "attendances")
