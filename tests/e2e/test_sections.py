"""The sheet belongs to the right lesson: sections, namesake teachers and terms, end
to end through the local Bot API and portal servers, real PostgreSQL and Redis."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from uuid import UUID

import pytest

from dal.models import FailReason, RecordStatus
from tests.fakes.aksis_server import FakeAksis, portal_lesson
from tests.fakes.telegram_server import FakeUser
from tests.harness import Running, reply, running_bot
from tests.support import build_test_services

ELIF = "Doç. Dr. ELİF KARTAL"
MEHMET = "Dr. Öğr. Üyesi MEHMET DEMİR"
SECTION_1 = [("s1a", "AYŞE YILDIZ", "2024101"), ("s1b", "BURAK ER", "2024102")]
SECTION_2 = [
    ("s2a", "CEM TAN", "2024201"),
    ("s2b", "DİLEK SU", "2024202"),
    ("s2c", "EMRE UZ", "2024203"),
]


def _text(message: dict[str, object]) -> str:
    return str(message.get("text") or "")


def _section_1(now: datetime) -> object:
    return portal_lesson(now - timedelta(minutes=5), minutes=60, hocalar=ELIF)


def _section_2(now: datetime) -> object:
    # The same course another day, another hour, another teacher.
    return portal_lesson(now + timedelta(days=1, hours=2), minutes=60, hocalar=MEHMET)


async def _only_session_id(bot: Running) -> UUID:
    ids = await bot.app.redis.sessions.get_due_attendance_ids(
        now=datetime.now(UTC) + timedelta(days=1)
    )
    assert len(ids) == 1
    return ids[0]


async def _finalize(bot: Running) -> None:
    """End-of-session work as the scheduler does it, without waiting for its tick."""
    services = build_test_services(
        bot.app.pg,
        bot.app.redis,
        bot.app.notifier,
        settings=bot.settings,
        owner="test",
        finalizer={"settle_seconds": 0},
    )
    await services.finalizer.run_once()


async def _quiet(user: FakeUser, seconds: float = 1.0) -> list[str]:
    """What `user` was sent and has not read, after waiting `seconds` (nothing expected)."""
    await asyncio.sleep(seconds)
    return [_text(m) for m in user.unread]


@pytest.fixture
async def portal() -> AsyncIterator[FakeAksis]:
    async with FakeAksis() as fake:
        now = datetime.now(UTC)
        fake.add_teacher("elif", "pw", ELIF, lessons=[_section_1(now)])
        fake.add_teacher("mehmet", "pw", MEHMET, lessons=[_section_2(now)])
        for username, name, number in SECTION_1:
            fake.add_student(username, "pw", name, number, lessons=[_section_1(now)])
        for username, name, number in SECTION_2:
            fake.add_student(username, "pw", name, number, lessons=[_section_2(now)])
        yield fake


@pytest.fixture
async def bot(pg_dsn: str, redis_url: str, portal: FakeAksis) -> AsyncIterator[Running]:
    async with running_bot(pg_dsn=pg_dsn, redis_url=redis_url, aksis=portal) as running:
        yield running


async def test_two_sections_only_the_opened_section_is_notified_listed_and_absent(
    bot: Running,
) -> None:
    elif_ = bot.user(100, "Elif")
    await bot.login(elif_, "elif", "pw")
    await bot.login(bot.user(101, "Mehmet"), "mehmet", "pw")
    section_1 = [bot.user(200 + i, u) for i, (u, _, _) in enumerate(SECTION_1)]
    section_2 = [bot.user(300 + i, u) for i, (u, _, _) in enumerate(SECTION_2)]
    for user, (username, _, _) in zip(
        [*section_1, *section_2], [*SECTION_1, *SECTION_2], strict=True
    ):
        await bot.login(user, username, "pw")

    code = await bot.start_session(elif_)
    for student in section_1:
        assert "Attendance is open" in _text(await student.next_message())
    for student in section_2:
        assert await _quiet(student, 0.3) == [], "another section's student was notified"

    s1a, _s1b = section_1
    s2a = section_2[0]
    await s1a.send(code)
    assert "checked in" in _text(await reply(s1a))
    await s2a.send(code)
    answer = _text(await reply(s2a))
    assert "another section" in answer
    roster = await bot.app.attendance.status(attendance_id=await _only_session_id(bot))
    assert roster is not None
    by_number = {r.student_number: r for r in roster.records}
    assert by_number["2024201"].fail_reason == FailReason.ANOTHER_SECTION
    assert not by_number["2024201"].is_attended

    aid = await _only_session_id(bot)
    elif_.mark_read()
    await elif_.send("/end_session")
    await elif_.next_message()
    await _finalize(bot)

    stored = {
        r.student_number: r
        for r in await bot.app.pg.attendance.get_attendance_records(attendance_id=aid)
    }
    assert {n: r.status for n, r in stored.items()} == {
        "2024101": RecordStatus.PRESENT,
        "2024102": RecordStatus.ABSENT,
        "2024201": RecordStatus.PENDING,  # another section: pending review, never absent
    }
    assert stored["2024201"].fail_reason == FailReason.ANOTHER_SECTION
    # Section 2's students who stayed home are on no sheet and see nothing in /my_attendance.
    stayed_home = section_2[1]
    stayed_home.mark_read()
    await stayed_home.send("/my_attendance")
    assert "absent" not in _text(await reply(stayed_home)).lower()
    assert await bot.app.pg.reports.get_student_records(student_number="2024202") == []


async def test_a_namesake_teacher_without_a_schedule_reaches_no_student_of_the_course(
    pg_dsn: str, redis_url: str
) -> None:
    now = datetime.now(UTC)
    async with FakeAksis() as portal:
        portal.add_teacher("elif", "pw", ELIF, lessons=[_section_1(now)])
        # A second staff account with the same name after titles and case: no schedule page.
        portal.add_teacher("elif2", "pw", "Dr. Elif KARTAL", lessons=None)
        for username, name, number in SECTION_1:
            portal.add_student(username, "pw", name, number, lessons=[_section_1(now)])
        async with running_bot(pg_dsn=pg_dsn, redis_url=redis_url, aksis=portal) as bot:
            await bot.login(bot.user(100, "Elif"), "elif", "pw")
            namesake = bot.user(101, "Other Elif")
            await bot.login(namesake, "elif2", "pw")
            students = [bot.user(200 + i, u) for i, (u, _, _) in enumerate(SECTION_1)]
            for user, (username, _, _) in zip(students, SECTION_1, strict=True):
                await bot.login(user, username, "pw")

            namesake.mark_read()
            await namesake.send("/start_session")
            answer = _text(await namesake.next_message())
            assert "YBSB1008" not in answer  # not offered, not opened
            for student in students:
                assert await _quiet(student, 0.3) == []
            ids = await bot.app.redis.sessions.get_due_attendance_ids(now=now + timedelta(days=1))
            assert ids == []

            # Typing the course opens an ad-hoc session: no enrolment, and the teacher is told.
            namesake.mark_read()
            await namesake.send("/start_session YBSB1008")
            await namesake.next_message()
            note = _text(await namesake.next_message())
            assert "no enrolment" in note
            for student in students:
                assert await _quiet(student, 0.3) == []


async def test_a_schedule_from_an_old_term_does_not_enrol_and_its_owner_is_asked_to_login(
    pg_dsn: str, redis_url: str
) -> None:
    now = datetime.now(UTC)
    async with FakeAksis() as portal:
        portal.term = (2024, 1)
        portal.add_teacher("elif", "pw", ELIF, lessons=[_section_1(now)])
        portal.add_student("old", "pw", "ESKİ ÖĞRENCİ", "2023001", lessons=[_section_1(now)])
        portal.add_student("new", "pw", "YENİ ÖĞRENCİ", "2024001", lessons=[_section_1(now)])
        async with running_bot(pg_dsn=pg_dsn, redis_url=redis_url, aksis=portal) as bot:
            old = bot.user(200, "Old")
            await bot.login(old, "old", "pw")  # last term
            portal.term = (2024, 2)  # the new term begins
            elif_ = bot.user(100, "Elif")
            await bot.login(elif_, "elif", "pw")
            asked = _text(await old.next_message())
            assert "new term" in asked and "/login" in asked
            new = bot.user(201, "New")
            await bot.login(new, "new", "pw")
            assert await _quiet(old, 0.3) == []  # asked once only

            code = await bot.start_session(elif_)
            assert "Attendance is open" in _text(await new.next_message())
            assert await _quiet(old, 0.3) == []
            aid = await _only_session_id(bot)
            await old.send(code)  # the stale schedule says nothing about this term
            assert "not in your Aksis" in _text(await reply(old))
            elif_.mark_read()
            await elif_.send("/end_session")
            await elif_.next_message()
            await _finalize(bot)
            stored = {
                r.student_number: r.status
                for r in await bot.app.pg.attendance.get_attendance_records(attendance_id=aid)
            }
            assert stored == {"2024001": RecordStatus.ABSENT, "2023001": RecordStatus.PENDING}


async def test_one_early_page_of_next_term_changes_nobodys_enrolment(
    pg_dsn: str, redis_url: str
) -> None:
    """The session's term is its lesson's. The newest term any cache held
    used to be "current": one student reading next term's page before it began emptied every
    enrolment of this term and asked everyone to /login again."""
    now = datetime.now(UTC)
    async with FakeAksis() as portal:
        portal.term = (2024, 2)
        portal.add_teacher("elif", "pw", ELIF, lessons=[_section_1(now)])
        for username, name, number in SECTION_1:
            portal.add_student(username, "pw", name, number, lessons=[_section_1(now)])
        next_term = portal_lesson(now + timedelta(days=40), minutes=60, hocalar=MEHMET)
        portal.add_student("early", "pw", "ERKEN ÖĞRENCİ", "2024999", lessons=[next_term])
        async with running_bot(pg_dsn=pg_dsn, redis_url=redis_url, aksis=portal) as bot:
            elif_ = bot.user(100, "Elif")
            await bot.login(elif_, "elif", "pw")
            students = [bot.user(200 + i, u) for i, (u, _, _) in enumerate(SECTION_1)]
            for user, (username, _, _) in zip(students, SECTION_1, strict=True):
                await bot.login(user, username, "pw")

            portal.term = (2025, 1)  # the portal already serves next term's page
            await bot.login(bot.user(299, "Early"), "early", "pw")
            for user in (elif_, *students):
                assert await _quiet(user, 0.3) == []  # nobody is asked to log in again

            code = await bot.start_session(elif_)
            for user in students:
                assert "Attendance is open" in _text(await user.next_message())
            await students[0].send(code)
            answer = _text(await reply(students[0]))
            assert "checked in" in answer and "not in your Aksis" not in answer
