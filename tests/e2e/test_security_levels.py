"""Security levels end to end: the real bot against the local Bot API server and
portal, real PostgreSQL and Redis."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
import pytest

from dal.redis.connection import client as redis_client
from tests.fakes.aksis_server import FakeAksis, portal_lesson
from tests.harness import PASSWORD, Running, reply, running_bot

TEACHER_NAME = "Doç. Dr. ELİF KARTAL"
STUDENTS = [
    ("student1", "AYŞE YILDIZ", "2024001"),
    ("student2", "İSMAİL IŞIK", "2024002"),
    ("student3", "ÇAĞRI ÖZGÜR", "2024003"),
    ("student4", "DENİZ AK", "2024004"),
    ("student5", "EMRE TAŞ", "2024005"),
    ("student6", "FATMA UÇAR", "2024006"),
    ("student7", "GÖKHAN EREN", "2024007"),
    ("student8", "HALE SEZER", "2024008"),
]


def _lesson(now: datetime) -> object:
    return portal_lesson(now - timedelta(minutes=5), minutes=60, hocalar=TEACHER_NAME)


@pytest.fixture
async def portal() -> AsyncIterator[FakeAksis]:
    async with FakeAksis() as fake:
        now = datetime.now(UTC)
        fake.add_teacher("teacher1", PASSWORD, TEACHER_NAME, lessons=[_lesson(now)])
        fake.add_teacher("teacher2", PASSWORD, "Dr. OSMAN KAYA", lessons=[])
        for username, name, number in STUDENTS:
            fake.add_student(username, PASSWORD, name, number, lessons=[_lesson(now)])
        yield fake


@pytest.fixture
async def bot(pg_dsn: str, redis_url: str, portal: FakeAksis) -> AsyncIterator[Running]:
    async with running_bot(
        pg_dsn=pg_dsn, redis_url=redis_url, aksis=portal, finalize_interval_seconds=1
    ) as running:
        yield running


def _teacher_id(bot: Running, username: str = "teacher1") -> str:
    from services.aksis import staff_identifier

    return staff_identifier(username, bot.settings.key("staff_id_key"))


def _text(message: dict[str, Any]) -> str:
    return str(message.get("text") or "")


def _status(teacher: Any, code: str) -> dict[str, Any]:
    return next(m for m in teacher.messages if code in _text(m) and "🛡" in str(m))


async def test_level_shown_at_start_and_changed_by_the_owner_only(
    bot: Running, pg_dsn: str
) -> None:
    teacher = bot.user(100, "Elif")
    other = bot.user(101, "Osman")
    await bot.login(teacher, "teacher1")
    await bot.login(other, "teacher2")

    code = await bot.start_session(teacher)
    status = _status(teacher, code)
    assert "Security: level 1 · code" in _text(status)
    labels = [b["text"] for b in teacher.inline_buttons(status)]
    assert "🛡 1 ✓" in labels and "🛡 2" in labels and "🛡 3" in labels
    data = next(b["callback_data"] for b in teacher.inline_buttons(status) if b["text"] == "🛡 3")
    assert len(data.encode()) <= 64

    # Another teacher pressing the same button (forged): refused, nothing changes.
    query = await other.click(status, data)
    answer = await other.callback_answer(query)
    assert "Security is now" not in str(answer.get("text"))
    session = await bot.app.redis.sessions.get_open_attendance(
        teacher_school_number=_teacher_id(bot)
    )
    assert session is not None and session.security_option == 1
    aid = session.attendance_id

    query = await teacher.click_button("🛡 3", status)
    answer = await teacher.callback_answer(query)
    assert "level 3" in str(answer.get("text"))
    await teacher.wait_until(
        lambda: "Security: level 3 · rotating code and place" in _text(_status(teacher, code)),
        timeout=10,
        what="the level on the status message",
    )
    session = await bot.app.redis.sessions.get_attendance(attendance_id=aid)
    assert session is not None and session.security_option == 3

    # Stored as the integer in PostgreSQL once finalized.
    await teacher.send("/end_session")
    await reply(teacher)
    for _ in range(150):  # finalization waits a few seconds after the end, then runs
        saved = await bot.app.pg.reports.get_attendances(teacher_school_number=_teacher_id(bot))
        if saved:
            break
        await asyncio.sleep(0.1)
    assert [a.security_option for a in saved] == [3]
    conn = await asyncpg.connect(pg_dsn)
    try:
        stored = await conn.fetchval("SELECT security_option FROM attendances")
    finally:
        await conn.close()
    assert stored == 3


ANCHOR = (41.0122, 28.9760)
METERS_PER_DEGREE_LAT = 111_195.08


def _north(meters: float) -> tuple[float, float]:
    return ANCHOR[0] + meters / METERS_PER_DEGREE_LAT, ANCHOR[1]


def _requests_location(bot: Running, user: Any) -> bool:
    markup = bot.telegram._chats[user.id].reply_keyboard or {}
    return any(
        isinstance(b, dict) and b.get("request_location")
        for row in markup.get("keyboard", [])
        for b in row
    )


async def _logged_in_class(bot: Running) -> tuple[Any, list[Any]]:
    teacher = bot.user(100, "Elif")
    await bot.login(teacher, "teacher1")
    students = []
    for i, (username, name, _) in enumerate(STUDENTS):
        student = bot.user(200 + i, name.split()[0])
        await bot.login(student, username)
        students.append(student)
    return teacher, students


async def test_level_2_location_decides_each_check_in(bot: Running, redis_url: str) -> None:
    teacher, students = await _logged_in_class(bot)
    near, far, forwarded, stale, silent, via_bot, pinned, vague = students
    code = await bot.start_session(teacher)
    status = _status(teacher, code)
    teacher.mark_read()
    await teacher.click_button("🛡 2", status)
    ask = await reply(teacher)
    assert "share your location" in _text(ask)
    assert _requests_location(bot, teacher)  # one tap
    await teacher.wait_until(
        lambda: "Waiting for your location" in _text(_status(teacher, code)),
        timeout=10,
        what="the anchor note",
    )
    await teacher.send_location(*ANCHOR)
    assert "Location saved" in _text(await reply(teacher))
    await teacher.wait_until(
        lambda: "📍 Location set" in _text(_status(teacher, code)), timeout=10, what="anchor"
    )

    for student in students:
        student.mark_read()
        await student.send(code)
        asked = await reply(student)
        assert "send your location" in _text(asked), _text(asked)
        assert _requests_location(bot, student)

    await near.send_location(*_north(120), horizontal_accuracy=20)
    assert "Location confirmed" in _text(await reply(near))
    await far.send_location(*_north(2_000), horizontal_accuracy=20)
    assert "too far" in _text(await reply(far))
    await forwarded.send_location(*ANCHOR, forwarded_from=near.as_user())
    assert "forwarded" in _text(await reply(forwarded))
    await stale.send_location(*ANCHOR, age_seconds=120, horizontal_accuracy=5)
    assert "not sent just now" in _text(await reply(stale))
    # Locations that prove nothing, each at the anchor itself.
    inline_bot = {"id": 777, "is_bot": True, "first_name": "Places", "username": "places_bot"}
    await via_bot.send_location(*ANCHOR, horizontal_accuracy=5, via_bot=inline_bot)
    assert "inline bot" in _text(await reply(via_bot))
    await pinned.send_location(*ANCHOR)
    assert "carries no accuracy" in _text(await reply(pinned))
    await vague.send_location(*ANCHOR, horizontal_accuracy=1_500)
    assert "not accurate enough" in _text(await reply(vague))
    # The silent student never sends one: once the wait is over, a late location is refused.
    raw = redis_client(redis_url, decode_responses=True)
    try:
        assert await raw.expire(f"checkin:location:{silent.id}", 1)
        await asyncio.sleep(1.2)
    finally:
        await raw.aclose()
    await silent.send_location(*ANCHOR, horizontal_accuracy=5)
    assert "No check-in is waiting" in _text(await reply(silent))

    session = await bot.app.redis.sessions.get_open_attendance(
        teacher_school_number=_teacher_id(bot)
    )
    assert session is not None
    records = {
        r.student_number: r
        for r in await bot.app.redis.sessions.get_attendance_records(
            attendance_id=session.attendance_id
        )
    }
    assert {n: (r.is_attended, r.fail_reason) for n, r in records.items()} == {
        "2024001": (True, None),
        "2024002": (False, "LOCATION_TOO_FAR"),
        "2024003": (False, "LOCATION_FORWARDED"),
        "2024004": (False, "LOCATION_STALE"),
        "2024005": (False, "LOCATION_MISSING"),
        "2024006": (False, "LOCATION_VIA_BOT"),
        "2024007": (False, "LOCATION_NO_ACCURACY"),
        "2024008": (False, "LOCATION_INACCURATE"),
    }

    # The teacher sees the reasons and accepts the far one by hand.
    teacher.mark_read()
    await teacher.send("/attendees")
    listing = await reply(teacher)
    assert "too far from the classroom" in _text(listing) and "no location" in _text(listing)
    await teacher.click_button("✅ 2024002", listing)
    await far.wait_until(lambda: "accepted" in _text(far.messages[-1]).lower(), timeout=10)
    accepted = await bot.app.redis.sessions.get_attendance_record(
        attendance_id=session.attendance_id, student_number="2024002"
    )
    assert accepted is not None and accepted.is_attended and accepted.fail_reason is None


def _by_id(user: Any, message_id: int) -> dict[str, Any]:
    return next(m for m in user.messages if m["message_id"] == message_id)


class OffsetClock:
    """Real time plus an offset the test moves forward (time keeps flowing)."""

    def __init__(self) -> None:
        self.offset = timedelta()

    def __call__(self) -> datetime:
        return datetime.now(UTC) + self.offset

    def advance(self, seconds: float) -> None:
        self.offset += timedelta(seconds=seconds)


async def test_level_3_codes_rotate_previous_accepted_older_expired(
    pg_dsn: str, redis_url: str, portal: FakeAksis
) -> None:
    clock = OffsetClock()
    async with running_bot(
        pg_dsn=pg_dsn,
        redis_url=redis_url,
        aksis=portal,
        clock=clock,
        security_level_default=3,
        code_rotation_seconds=30,
    ) as bot:
        teacher, students = await _logged_in_class(bot)
        a, b, c = students[:3]
        code0 = await bot.start_session(teacher)
        status = _status(teacher, code0)
        assert "level 3" in _text(status)
        assert "share your location" in _text(await reply(teacher))  # asked at the opening
        await teacher.send_location(*ANCHOR)
        await reply(teacher)
        session = await bot.app.redis.sessions.get_open_attendance(
            teacher_school_number=_teacher_id(bot)
        )
        assert session is not None
        aid = session.attendance_id

        async def rotated_from(old: str) -> str:
            clock.advance(31)

            def changed() -> bool:
                return old not in _text(_by_id(teacher, status["message_id"]))

            await teacher.wait_until(changed, timeout=10, what="the rotated code on the status")
            current = await bot.app.redis.sessions.get_attendance(attendance_id=aid)
            assert current is not None and current.previous_code == old
            shown = _by_id(teacher, status["message_id"])
            assert f"<code>{current.code}</code>" in _text(shown)
            return current.code

        code1 = await rotated_from(code0)
        # The previous code still counts.
        await a.send(code0)
        assert "send your location" in _text(await reply(a))
        await a.send_location(*_north(30), horizontal_accuracy=10)
        assert "Location confirmed" in _text(await reply(a))

        code2 = await rotated_from(code1)
        assert len({code0, code1, code2}) == 3
        # Two rotations back: expired, and not counted as a wrong code.
        await b.send(code0)
        assert "expired: use the one on the screen now" in _text(await reply(b))
        raw = redis_client(redis_url, decode_responses=True)
        try:
            assert await raw.get(f"throttle:checkin:{b.id}") is None
            await b.send(code2)
            assert "send your location" in _text(await reply(b))
            # A code that never belonged to an open session is a wrong code (counted).
            never = next(
                f"{n:06d}" for n in range(1_000_000) if f"{n:06d}" not in (code0, code1, code2)
            )
            await c.send(never)
            assert "does not match" in _text(await reply(c))
            assert await raw.get(f"throttle:checkin:{c.id}") == "1"
        finally:
            await raw.aclose()


async def test_head_count_cap_boundary(bot: Running) -> None:
    teacher, students = await _logged_in_class(bot)
    code = await bot.start_session(teacher)
    status = _status(teacher, code)
    teacher.mark_read()
    await teacher.click_button("👥 Head count", status)
    assert "How many students" in _text(await reply(teacher))
    await teacher.send("two")
    assert "whole number" in _text(await reply(teacher))  # asked again, nothing changed
    await teacher.send("2")
    assert "Head count set to 2" in _text(await reply(teacher))

    first, second, third = students[:3]
    for student in (first, second):
        await student.send(code)
        assert "checked in" in _text(await reply(student))
    await third.send(code)
    answer = _text(await reply(third))
    assert "more students checked in than the teacher counted" in answer
    await teacher.wait_until(
        lambda: "Checked in: <b>2 of 2 in the room</b>" in _text(_status(teacher, code)),
        timeout=10,
        what="the capped count",
    )
    session = await bot.app.redis.sessions.get_open_attendance(
        teacher_school_number=_teacher_id(bot)
    )
    assert session is not None
    record = await bot.app.redis.sessions.get_attendance_record(
        attendance_id=session.attendance_id, student_number="2024003"
    )
    assert record is not None and not record.is_attended and record.fail_reason == "OVER_CAP"
