"""/my_attendance's course detail: a long course title and a full term of sessions are paged
under Telegram's 4,096-character limit, every session on exactly one page, no line cut."""

from __future__ import annotations

import re
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import asyncpg
import pytest

from dal.pg.counts import REBUILD_SQL
from tests.fakes.aksis_server import FakeAksis, portal_lesson
from tests.harness import PASSWORD, reply, running_bot

CODE = "YBSB1008"
TITLE = "İLERİ DÜZEY " + "VERİ TABANI YÖNETİM SİSTEMLERİ VE UYGULAMALARI " * 5
SESSIONS = 90  # three lessons a week over a term and a half: well past one message
NUMBER = "2025300101"


@pytest.fixture
async def portal() -> AsyncIterator[FakeAksis]:
    async with FakeAksis() as fake:
        now = datetime.now(UTC)
        lesson = portal_lesson(now + timedelta(days=1), code=CODE, name=TITLE, hocalar="Dr. A B")
        fake.add_student("uzun.baslik", PASSWORD, "ELA UZUN", NUMBER, lessons=[lesson])
        yield fake


async def test_a_long_course_detail_is_paged_and_holds_every_session(
    pg_dsn: str, redis_url: str, portal: FakeAksis
) -> None:
    async with running_bot(pg_dsn=pg_dsn, redis_url=redis_url, aksis=portal) as bot:
        student = bot.user(7_500_000_001, "Ela")
        assert "ELA UZUN" in str((await bot.login(student, "uzun.baslik")).get("text"))
        first = datetime(2026, 9, 1, 9, 0, tzinfo=UTC)
        conn = await asyncpg.connect(pg_dsn)
        try:
            term = await conn.fetchval("SELECT max(term) FROM schedule_entries")
            await conn.execute(
                "INSERT INTO users (user_school_number, user_full_name, role)"
                " VALUES ('T1', 'Dr. A B', 'teacher')"
            )
            for n in range(SESSIONS):
                aid = uuid.uuid4()
                start = first + timedelta(days=2 * n)
                await conn.execute(
                    "INSERT INTO attendances (attendance_id, teacher_school_number, lesson_name,"
                    " lesson_code, start_time, end_time, term) VALUES ($1, 'T1', $2, $3, $4, $5,"
                    " $6)",
                    aid,
                    TITLE,
                    CODE,
                    start,
                    start + timedelta(minutes=50),
                    term,
                )
                attended = n % 3 != 0
                await conn.execute(
                    "INSERT INTO attendance_records (attendance_id, student_number, is_attended,"
                    " attendance_time, fail_reason, status) VALUES ($1, $2, $3, $4, $5, $6)",
                    aid,
                    NUMBER,
                    attended,
                    start + timedelta(minutes=3) if attended else None,
                    None if attended else "absent",
                    "present" if attended else "absent",
                )
            # Written past the finalizer: the per-course counts are rebuilt from the records.
            await conn.execute(REBUILD_SQL)
        finally:
            await conn.close()

        student.mark_read()
        await student.send("/my_attendance")
        listing = await reply(student)
        assert f"/{SESSIONS}" in str(listing.get("text"))
        course_button = next(
            b["text"]
            for row in listing["reply_markup"]["inline_keyboard"]
            for b in row
            if b["callback_data"].startswith("mc:")
        )
        message_id = listing["message_id"]

        def shown() -> dict[str, object]:
            return next(m for m in student.messages if m["message_id"] == message_id)

        last = str(listing["text"])
        await student.click_button(course_button, listing)
        pages: list[str] = []
        for _ in range(20):
            await student.wait_until(
                lambda seen=last: str(shown().get("text")) != seen,
                timeout=10,
                what="the next page",
            )
            message = shown()
            last = str(message["text"])
            pages.append(last)
            markup = message["reply_markup"]
            assert isinstance(markup, dict)
            buttons = [b["text"] for row in markup["inline_keyboard"] for b in row]
            if "▶️" not in buttons:
                break
            await student.click_button("▶️", message)

    assert len(pages) > 1
    assert all(len(page) <= 4096 for page in pages), [len(p) for p in pages]
    assert [f"(page {n}/{len(pages)})" in page for n, page in enumerate(pages, 1)] == [True] * len(
        pages
    )
    # Every session exactly once, each on a whole line of its own (a date and the title).
    dated = [
        line
        for page in pages
        for line in page.splitlines()[1:]
        if re.search(r"\d{2}\.\d{2}\.\d{4}|\d{4}", line)
    ]
    assert len(dated) == SESSIONS
    assert all(TITLE.strip() in line for line in dated)
