"""Check-ins in RedisStores (dal/redis/checkins.py) against a real Redis: who is recorded
present, pending, duplicate or ended, wrong codes throttled, the linked account read, and
the slot of another section or term told apart."""

from __future__ import annotations

import asyncio
import zlib
from datetime import timedelta

import redis.asyncio as aioredis

from dal.models import (
    CachedAccount,
    Role,
)
from dal.redis.checkins import CheckInReply
from dal.redis.keys import attendance as attendance_key
from dal.redis.stores import RedisStores
from services.checkin_outcomes import CheckInStatus
from tests.dal.redis.support import (
    NOW,
    TURKISH,
    check_in,
    make_attendance,
    open_session,
)

# --- check-in --------------------------------------------------------------------------------


async def test_enrolled_student_is_recorded_present(client: RedisStores) -> None:
    opened = await open_session(client)
    moment = NOW + timedelta(minutes=2)
    result = await check_in(
        client,
        opened.code,
        "S1",
        telegram_id=8_100_200_300,
        now=moment,
        throttle_key="throttle:checkin:8100200300",
    )
    assert result.status == CheckInStatus.OK_PRESENT
    assert result.attendance == opened
    assert result.record is not None
    assert result.record.attendance_id == opened.attendance_id
    assert result.record.is_attended is True
    assert result.record.fail_reason is None
    assert result.record.attendance_time == moment
    stored = await client.sessions.get_attendance_record(
        attendance_id=opened.attendance_id, student_number="S1"
    )
    assert stored == result.record
    assert stored is not None
    assert stored.student_full_name == TURKISH


async def test_student_not_in_schedule_is_recorded_pending(client: RedisStores) -> None:
    opened = await open_session(client)
    result = await check_in(
        client,
        opened.code,
        "S99",
        name="Ömer Çağrı",
        now=NOW + timedelta(minutes=2),
        throttle_key="throttle:checkin:x",
    )
    assert result.status == CheckInStatus.OK_PENDING
    assert result.record is not None
    assert (result.record.is_attended, result.record.fail_reason) == (False, "NOT_IN_SCHEDULE")
    stored = await client.sessions.get_attendance_record(
        attendance_id=opened.attendance_id, student_number="S99"
    )
    assert stored == result.record


async def test_second_check_in_is_duplicate_with_the_first_time(client: RedisStores) -> None:
    opened = await open_session(client)
    first = await check_in(
        client,
        opened.code,
        "S1",
        telegram_id=1,
        now=NOW + timedelta(minutes=1),
        throttle_key="throttle:checkin:1",
    )
    again = await check_in(
        client,
        opened.code,
        "S1",
        telegram_id=1,
        now=NOW + timedelta(minutes=7),
        throttle_key="throttle:checkin:1",
    )
    assert again.status == CheckInStatus.DUPLICATE
    assert again.record == first.record
    assert again.record is not None
    assert again.record.attendance_time == NOW + timedelta(minutes=1)
    assert await client.sessions.count_attendance_records(attendance_id=opened.attendance_id) == 1


async def test_check_in_after_finish_or_after_planned_end_is_ended(client: RedisStores) -> None:
    finished = await open_session(client, teacher="TA")
    await client.sessions.finish_attendance(
        attendance_id=finished.attendance_id, end_time=NOW + timedelta(minutes=5)
    )
    expired = await open_session(
        client, teacher="TB", start=NOW - timedelta(minutes=31), minutes=30
    )
    live = await open_session(client, teacher="TC", minutes=30)

    # Judged by Redis's clock: callers whose clocks run behind are refused all the same.
    r1 = await check_in(client, finished.code, "S1", now=NOW - timedelta(minutes=1))
    r2 = await check_in(client, expired.code, "S1", now=NOW - timedelta(minutes=5))
    ok = await check_in(client, live.code, "S2", now=NOW + timedelta(hours=2))

    assert r1.status == CheckInStatus.ENDED
    assert r1.attendance is not None
    assert r1.attendance.attendance_id == finished.attendance_id
    assert r2.status == CheckInStatus.ENDED
    assert ok.status == CheckInStatus.OK_PRESENT
    assert await client.sessions.count_attendance_records(attendance_id=finished.attendance_id) == 0


async def test_wrong_codes_count_and_the_sixth_is_throttled_without_lookup(
    client: RedisStores, redis_raw: aioredis.Redis
) -> None:
    key = "throttle:checkin:42"
    for attempt in range(1, 6):
        result = await check_in(client, "999999", "S1", throttle_key=key)
        assert result.status == CheckInStatus.WRONG_CODE
        count, ttl = await client.guards.get_counter(key=key)
        assert count == attempt
        assert 0 < ttl <= 60

    # the code now exists: a throttled user still cannot reach it
    opened = await open_session(client, code="999999")
    throttled = await check_in(client, opened.code, "S1", throttle_key=key)
    assert throttled.status == CheckInStatus.THROTTLED
    assert throttled.retry_after is not None
    assert 0 < throttled.retry_after <= 60
    assert await client.sessions.count_attendance_records(attendance_id=opened.attendance_id) == 0
    assert (await client.guards.get_counter(key=key))[0] == 5  # throttled tries do not extend it

    await client.guards.reset_counter(key=key)
    result = await check_in(client, opened.code, "S1", throttle_key=key)
    assert result.status == CheckInStatus.OK_PRESENT


async def test_stale_code_of_a_deleted_session_is_wrong_code(
    client: RedisStores, redis_raw: aioredis.Redis
) -> None:
    opened = await open_session(client)
    await redis_raw.delete(attendance_key(opened.attendance_id))
    result = await check_in(client, opened.code, "S1")
    assert result.status == CheckInStatus.WRONG_CODE


async def test_burst_of_300_concurrent_check_ins_through_16_connections(
    client: RedisStores,
) -> None:
    students = [f"2025{n:06d}" for n in range(300)]
    opened = await open_session(client, enrolled=tuple(students[:200]))
    results = await asyncio.gather(
        *(check_in(client, opened.code, s, throttle_key=f"throttle:checkin:{s}") for s in students)
    )
    statuses = [r.status for r in results]
    assert statuses.count(CheckInStatus.OK_PRESENT) == 200
    assert statuses.count(CheckInStatus.OK_PENDING) == 100
    assert await client.sessions.count_attendance_records(attendance_id=opened.attendance_id) == 300
    records = await client.sessions.get_attendance_records(attendance_id=opened.attendance_id)
    assert {r.student_number for r in records} == set(students)


# --- check-in reads the linked account --------------------------------------------------


async def test_check_in_of_an_unlinked_account_records_nothing_and_is_throttled(
    client: RedisStores,
) -> None:
    """Codes from an account with no user session count like wrong codes (the caller looks
    such an account up in PostgreSQL, so they must not be free)."""
    opened = await open_session(client)
    for attempt in range(1, 4):
        result = await client.checkins.check_in(
            telegram_id=42,
            code=opened.code,
            now=NOW + timedelta(minutes=1),
            throttle_key="t:42",
            throttle_limit=3,
        )
        assert result.status == CheckInStatus.NOT_LINKED
        assert (await client.guards.get_counter(key="t:42"))[0] == attempt
    result = await client.checkins.check_in(
        telegram_id=42,
        code=opened.code,
        now=NOW + timedelta(minutes=1),
        throttle_key="t:42",
        throttle_limit=3,
    )
    assert result.status == CheckInStatus.THROTTLED and result.retry_after
    assert await client.sessions.get_attendance_records(attendance_id=opened.attendance_id) == []


async def test_a_teacher_cannot_check_in(client: RedisStores) -> None:
    opened = await open_session(client)
    await client.users.save_user_session(
        session=CachedAccount(
            telegram_id=43,
            school_number="T1",
            full_name="Hoca",
            role=Role.TEACHER,
            logged_in_at=NOW,
        ),
        ttl_seconds=60,
    )
    result = await client.checkins.check_in(
        telegram_id=43, code=opened.code, now=NOW + timedelta(minutes=1), throttle_key="t:43"
    )
    assert result.status == CheckInStatus.NOT_STUDENT
    assert await client.sessions.get_attendance_records(attendance_id=opened.attendance_id) == []


async def test_the_lesson_code_in_the_students_courses_counts_as_enrolled(
    client: RedisStores,
) -> None:
    opened = await open_session(client)  # enrolled set: S1, S2
    assert opened.lesson_code
    result = await check_in(client, opened.code, "S77", courses=("X1", opened.lesson_code))
    assert result.status == CheckInStatus.OK_PRESENT
    other = await check_in(client, opened.code, "S78", courses=("X1",))
    assert other.status == CheckInStatus.OK_PENDING


async def test_the_record_keeps_a_long_telegram_id_and_odd_names(client: RedisStores) -> None:
    opened = await open_session(client)
    name = 'Ayşe "Ş/ğ" \\ İnce'
    result = await check_in(client, opened.code, "S1", name=name, telegram_id=4_503_599_627_370_495)
    assert result.record is not None
    stored = await client.sessions.get_attendance_record(
        attendance_id=opened.attendance_id, student_number="S1"
    )
    assert stored == result.record
    assert (stored.telegram_id, stored.student_full_name) == (4_503_599_627_370_495, name)


# --- sections and terms ------------------------------------------------------------


async def test_check_in_tells_the_slot_from_another_section_and_another_term(
    client: RedisStores,
) -> None:
    """Not in the enrolled set: the slot in the student's cached schedule (linked after the
    opening) makes them present; the course in another slot is ANOTHER_SECTION; cached data
    of another term counts for nothing."""
    slot, other = "BIL301|1|09:00|gokce ozturk", "BIL301|3|13:00|ali veli"
    draft = make_attendance().model_copy(update={"slot": slot, "term": "2024-2"})
    opened = await client.sessions.open_attendance(attendance=draft, enrolled=["S1"], now=NOW)

    async def send(student: str, slots: list[str], term: str | None) -> CheckInReply:
        tid = zlib.crc32(student.encode()) + 1
        await client.users.save_user_session(
            session=CachedAccount(
                telegram_id=tid,
                school_number=student,
                full_name=TURKISH,
                role=Role.STUDENT,
                logged_in_at=NOW,
                courses=["BIL301"],
                slots=slots,
                term=term,
            ),
            ttl_seconds=3600,
        )
        return await client.checkins.check_in(
            telegram_id=tid, code=opened.code, now=NOW, throttle_key=f"throttle:{student}"
        )

    late_linker = await send("S2", [slot], "2024-2")
    other_section = await send("S3", [other], "2024-2")
    old_term = await send("S4", [slot], "2024-1")

    assert late_linker.status == CheckInStatus.OK_PRESENT
    assert other_section.status == CheckInStatus.OK_PENDING
    assert other_section.record is not None
    assert other_section.record.fail_reason == "ANOTHER_SECTION"
    assert old_term.status == CheckInStatus.OK_PENDING
    assert old_term.record is not None
    assert old_term.record.fail_reason == "NOT_IN_SCHEDULE"
