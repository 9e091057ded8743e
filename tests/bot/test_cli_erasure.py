"""`python -m bot forget-user` and `export`, after a real class: teacher and students signed in
through the bot, a session taken and finalized. The erasure is checked by scanning every
PostgreSQL table and every Redis key (names and values) for the person."""

from __future__ import annotations

import asyncio
import csv
import io
from collections.abc import AsyncIterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import asyncpg
import openpyxl
import pytest
import redis.asyncio as aioredis

from dal.pg import ExcuseStatus
from dal.redis.outbox import Outbox
from services.notice_codec import encode_text
from services.text import person_key
from tests.bot.test_cli import attn
from tests.bot.test_operations import (
    STUDENT_IDS,
    STUDENTS,
    TEACHER_ID,
    _login_class,
    class_portal,
)
from tests.fakes.aksis_server import FakeAksis
from tests.harness import reply, running_bot

pytestmark = [pytest.mark.slow, pytest.mark.stores]


@pytest.fixture
async def portal() -> AsyncIterator[FakeAksis]:
    """A teacher and three students with a lesson now (the class of test_operations)."""
    async with class_portal() as fake:
        yield fake


async def _pg_rows(dsn: str) -> dict[str, list[str]]:
    """Every row of every table, as text."""
    conn = await asyncpg.connect(dsn)
    try:
        tables = [
            r["table_name"]
            for r in await conn.fetch(
                "SELECT table_name FROM information_schema.tables"
                " WHERE table_schema = 'public' AND table_type = 'BASE TABLE'"
            )
        ]
        return {
            table: [r["row"] for r in await conn.fetch(f'SELECT t::text AS row FROM "{table}" t')]
            for table in tables
        }
    finally:
        await conn.close()


async def _redis_dump(raw: aioredis.Redis) -> dict[str, str]:
    """Every key with its value, whatever the type, as text."""
    dump: dict[str, str] = {}
    async for key in raw.scan_iter(count=1000):
        kind = _decoded(await raw.type(key))
        value: Any
        if kind == "string":
            value = await raw.get(key)
        elif kind == "hash":
            value = await raw.hgetall(key)
        elif kind == "set":
            value = await raw.smembers(key)
        elif kind == "zset":
            value = await raw.zrange(key, 0, -1, withscores=True)
        elif kind == "list":
            value = await raw.lrange(key, 0, -1)
        elif kind == "stream":
            value = await raw.xrange(key)
        else:
            value = kind
        dump[_decoded(key)] = _decoded(value)
    return dump


def _decoded(value: Any) -> str:
    """Bytes anywhere inside, decoded, so that UTF-8 names are found as written."""
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    if isinstance(value, dict):
        return " ".join(_decoded(k) + " " + _decoded(v) for k, v in value.items())
    if isinstance(value, list | tuple | set):
        return " ".join(_decoded(v) for v in value)
    return str(value)


def _traces(
    rows: dict[str, list[str]], dump: dict[str, str], needles: list[str]
) -> dict[str, list[str]]:
    found: dict[str, list[str]] = {}
    for table, texts in rows.items():
        for text in texts:
            for needle in needles:
                if needle in text:
                    found.setdefault(needle, []).append(f"{table}: {text[:120]}")
    for key, text in dump.items():
        for needle in needles:
            if needle in key or needle in text:
                found.setdefault(needle, []).append(f"redis {key}")
    return found


async def test_export_then_forget_a_student_and_a_teacher(
    pg_dsn: str, redis_url: str, redis_raw: aioredis.Redis, portal: FakeAksis, tmp_path: Path
) -> None:
    env = {"DATABASE_URL": pg_dsn, "REDIS_URL": redis_url, "AKSIS_MODE": "demo"}
    student_number, student_name = STUDENTS[0][2], STUDENTS[0][1]
    async with running_bot(
        pg_dsn=pg_dsn, redis_url=redis_url, aksis=portal, finalize_interval_seconds=1
    ) as bot:
        teacher, students, code = await _login_class(bot)
        for student in students[:2]:
            await student.send(code)
            assert "checked in" in str((await reply(student)).get("text")).lower()

        # While the session is not saved yet, an erasure would leave its check-in behind.
        refused = await asyncio.to_thread(attn, "forget-user", student_number, cwd=tmp_path, **env)
        assert refused.returncode == 1
        assert "not yet saved" in refused.stderr and "nothing was changed" in refused.stderr

        await teacher.send("/end_session")
        await teacher.next_message()
        for _ in range(200):
            if await bot.app.pg.reports.get_course_teachers(course_key="YBSB1008"):
                break
            await asyncio.sleep(0.1)
        else:
            raise AssertionError("the session was not finalized")
        await asyncio.sleep(1.0)  # the result notices go out through the outbox
        teacher_row = await bot.app.pg.db.pool.fetchrow(
            "SELECT user_school_number, user_full_name FROM users WHERE role = 'teacher'"
        )
        assert teacher_row is not None
        # Excuse requests: the student's own (with a document), and a classmate's that the
        # teacher rejected with a reason naming the student.
        (saved,) = await bot.app.pg.reports.get_attendances(
            teacher_school_number=teacher_row["user_school_number"]
        )
        excuses = bot.app.pg.excuses
        for number, reason in ((student_number, "hastaydım"), (STUDENTS[2][2], "otobüs")):
            request = await excuses.add_request(
                student_number=number,
                attendance_id=saved.attendance_id,
                lesson_code="YBSB1008",
                lesson_name=saved.lesson_name,
                lesson_start=saved.start_time,
                teacher_school_number=teacher_row["user_school_number"],
                reason=reason,
                file_id="AgACAgPHOTO" if number == student_number else None,
                file_kind="photo" if number == student_number else None,
            )
        await excuses.decide(
            request_id=request.request_id,
            status=ExcuseStatus.REJECTED,
            decided_by=teacher_row["user_school_number"],
            reason=f"{student_name} de aynı otobüsteydi ama geldi",
        )
        tz = bot.settings.tz
    teacher_number, teacher_name = teacher_row["user_school_number"], teacher_row["user_full_name"]

    # --- export: the registrar's documents of the course over the term ---------------------
    csv_path = tmp_path / "course.csv"
    exported = attn(
        "export", "--term", "2024-2", "--course", "YBSB1008", "--format", "csv",
        "--output", str(csv_path), cwd=tmp_path, **env,
    )  # fmt: skip
    assert exported.returncode == 0, exported.stderr
    assert "1 session(s), 3 student(s)" in exported.stdout
    rows = list(csv.reader(io.StringIO(csv_path.read_bytes().decode("utf-8-sig")), delimiter=";"))
    by_number = {r[4]: r for r in rows[1:]}
    assert set(by_number) == {number for _, _, number in STUDENTS}
    statuses = [by_number[number][6] for _, _, number in STUDENTS]
    assert statuses[2] != statuses[0] == statuses[1]  # two checked in, one did not
    # Dates are the bot's own (Europe/Istanbul), TO excluded: the span ending on the lesson's
    # day misses it, the one ending the day after holds it, whatever UTC's date is then.
    day = saved.start_time.astimezone(tz).date()
    before = attn("export", "--term", f"{day - timedelta(days=1)}..{day}", "--course", "YBSB1008",
                  cwd=tmp_path, **env)  # fmt: skip
    assert before.returncode == 1 and "no saved session" in before.stderr
    span = f"{day}..{day + timedelta(days=1)}"
    xlsx = attn("export", "--term", span, "--course", "YBSB1008", cwd=tmp_path, **env)
    assert xlsx.returncode == 0, xlsx.stderr
    [written] = list(tmp_path.glob("YBSB1008_*.xlsx"))
    sheet = openpyxl.load_workbook(written).worksheets[0]
    numbers = {str(row[0]) for row in sheet.iter_rows(values_only=True) if row and row[0]}
    assert {number for _, _, number in STUDENTS} <= numbers
    missing = attn("export", "--term", "1999-1", "--course", "YBSB1008", cwd=tmp_path, **env)
    assert missing.returncode == 1 and "1999-1" in missing.stderr

    # Notices still queued: one to the student, one to the teacher naming the student, one
    # unrelated; and a throttle counter of the student's account.
    outbox = Outbox(redis_raw)
    await outbox.add(
        [
            encode_text(STUDENT_IDS[0], "your attendance was saved"),
            encode_text(TEACHER_ID, f"{student_name} checked in"),
            encode_text(STUDENT_IDS[2], "unrelated"),
        ]
    )
    await redis_raw.set(f"throttle:checkin:{STUDENT_IDS[0]}", 1, ex=60)

    # --- forget the student ---------------------------------------------------------------
    student_needles = [student_number, student_name, str(STUDENT_IDS[0])]
    before = _traces(await _pg_rows(pg_dsn), await _redis_dump(redis_raw), student_needles)
    assert set(before) == set(student_needles), before  # the scan finds what is there
    done = attn("forget-user", student_number, cwd=tmp_path, **env)
    assert done.returncode == 0, done.stderr
    assert f"erased {student_number} (student): 1 attendance record(s)" in done.stdout
    assert "1 excuse request(s)" in done.stdout
    rows_after = await _pg_rows(pg_dsn)
    assert _traces(rows_after, await _redis_dump(redis_raw), student_needles) == {}
    assert await outbox.backlog() == 1  # only the unrelated notice is left
    others = [r for r in rows_after["attendance_records"] if STUDENTS[1][2] in r]
    assert len(others) == 1  # the classmates' records stay

    # --- forget the teacher: their sessions stay (the students' register), under a stand-in -
    teacher_needles = [teacher_number, teacher_name, str(TEACHER_ID), person_key(teacher_name)]
    before = _traces(rows_after, await _redis_dump(redis_raw), teacher_needles)
    assert teacher_number in before and teacher_name in before
    done = attn("forget-user", teacher_number, cwd=tmp_path, **env)
    assert done.returncode == 0, done.stderr
    assert "1 session(s) taught kept under X" in done.stdout
    final = await _pg_rows(pg_dsn)
    assert _traces(final, await _redis_dump(redis_raw), teacher_needles) == {}
    assert len(final["attendances"]) == 1
    assert len(final["attendance_records"]) == 2  # the two remaining students'
    assert any("(erased)" in row for row in final["users"])
    (kept,) = final["excuse_requests"]  # the classmate's request stays, naming no one
    assert "otobüs" in kept and "(erased) de aynı" in kept

    unknown = attn("forget-user", "0000000", cwd=tmp_path, **env)
    assert unknown.returncode == 1 and "no user 0000000" in unknown.stderr
