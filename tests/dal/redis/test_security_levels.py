"""The Redis side of security levels: every new write into a live session (the
location verdict, a code rotation, the cap) goes through a script that refuses it once the
session has ended by Redis's clock or is claimed (dal/redis/sessions.py's invariant)."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

import pytest

from dal.errors import NotFound
from dal.models import CachedAccount, LiveSession, Role
from dal.redis.sessions import AttendanceEnded
from dal.redis.stores import RedisStores
from services.checkin_outcomes import CheckInStatus
from tests.support import open_session, teacher_user

TEACHER = teacher_user()
ANCHOR = (41.0122, 28.9760)


async def _student(redis: RedisStores, number: str, telegram_id: int) -> None:
    await redis.users.save_user_session(
        session=CachedAccount(
            telegram_id=telegram_id,
            school_number=number,
            full_name=f"Öğrenci {number}",
            role=Role.STUDENT,
            logged_in_at=datetime.now(UTC),
        ),
        ttl_seconds=3_600,
    )


async def _open(
    redis: RedisStores, enrolled: list[str], *, level: int, seconds: float = 3_600
) -> LiveSession:
    now = datetime.now(UTC)
    session = await open_session(
        redis,
        teacher=TEACHER,
        start=now - timedelta(minutes=5),
        end=now + timedelta(seconds=seconds),
        enrolled=enrolled,
    )
    session = await redis.sessions.set_security_level(
        attendance_id=session.attendance_id, level=level
    )
    if level >= 2:
        session = await redis.sessions.set_anchor(
            attendance_id=session.attendance_id, latitude=ANCHOR[0], longitude=ANCHOR[1]
        )
    return session


async def _check_in(redis: RedisStores, telegram_id: int, code: str) -> CheckInStatus:
    result = await redis.checkins.check_in(
        telegram_id=telegram_id,
        code=code,
        now=datetime.now(UTC),
        throttle_key=f"throttle:checkin:{telegram_id}",
    )
    return CheckInStatus(result.status)


async def test_location_verdict_is_refused_once_the_session_has_ended(
    redis_client: RedisStores,
) -> None:
    await _student(redis_client, "S1", 9_000_000_001)
    session = await _open(redis_client, ["S1"], level=2, seconds=0.3)
    assert await _check_in(redis_client, 9_000_000_001, session.code) is CheckInStatus.OK_LOCATION
    await asyncio.sleep(0.4)  # ended by Redis's clock
    result = await redis_client.checkins.decide_location(telegram_id=9_000_000_001, reason=None)
    assert result.outcome == "ENDED"
    record = await redis_client.sessions.get_attendance_record(
        attendance_id=session.attendance_id, student_number="S1"
    )
    assert record is not None and not record.is_attended
    assert record.fail_reason == "LOCATION_MISSING"


async def test_location_does_not_overwrite_a_teachers_decision(
    redis_client: RedisStores,
) -> None:
    await _student(redis_client, "S1", 9_000_000_001)
    session = await _open(redis_client, ["S1"], level=2)
    await _check_in(redis_client, 9_000_000_001, session.code)
    waiting = await redis_client.sessions.get_attendance_record(
        attendance_id=session.attendance_id, student_number="S1"
    )
    assert waiting is not None
    rejected = waiting.model_copy(update={"fail_reason": "REJECTED", "teacher_note": "no"})
    await redis_client.sessions.update_attendance_record(record=rejected)
    result = await redis_client.checkins.decide_location(telegram_id=9_000_000_001, reason=None)
    assert result.outcome == "DECIDED"
    kept = await redis_client.sessions.get_attendance_record(
        attendance_id=session.attendance_id, student_number="S1"
    )
    assert kept is not None and kept.fail_reason == "REJECTED" and kept.teacher_note == "no"


async def test_rotation_keeps_one_previous_code_and_refuses_after_the_end(
    redis_client: RedisStores,
) -> None:
    await _student(redis_client, "S1", 9_000_000_001)
    await _student(redis_client, "S2", 9_000_000_002)
    session = await _open(redis_client, ["S1", "S2"], level=3, seconds=1.0)
    aid, code0 = session.attendance_id, session.code
    later = datetime.now(UTC) + timedelta(seconds=31)
    every = timedelta(seconds=30)
    codes = iter(["111111", "222222"])
    first = await redis_client.sessions.rotate_code(
        attendance_id=aid, now=later, every=every, code_factory=lambda: next(codes)
    )
    assert first is not None and (first.code, first.previous_code) == ("111111", code0)
    # Not due again yet: nothing changes.
    assert (
        await redis_client.sessions.rotate_code(attendance_id=aid, now=later, every=every) is None
    )
    second = await redis_client.sessions.rotate_code(
        attendance_id=aid,
        now=later + every,
        every=every,
        code_factory=lambda: next(codes),
    )
    assert second is not None and (second.code, second.previous_code) == ("222222", "111111")
    assert await _check_in(redis_client, 9_000_000_001, code0) is CheckInStatus.EXPIRED
    assert await redis_client.redis.get("throttle:checkin:9000000001") is None
    assert await _check_in(redis_client, 9_000_000_001, "111111") is CheckInStatus.OK_LOCATION
    assert await _check_in(redis_client, 9_000_000_002, "222222") is CheckInStatus.OK_LOCATION

    # Back to level 1: the last two codes still count, older ones stay expired.
    await redis_client.sessions.set_security_level(attendance_id=aid, level=1)
    assert await _check_in(redis_client, 9_000_000_001, code0) is CheckInStatus.DUPLICATE
    await _student(redis_client, "S3", 9_000_000_003)
    assert await _check_in(redis_client, 9_000_000_003, code0) is CheckInStatus.EXPIRED
    await redis_client.sessions.set_security_level(attendance_id=aid, level=3)

    await asyncio.sleep(1.1)  # ended by Redis's clock
    with pytest.raises(AttendanceEnded):
        await redis_client.sessions.rotate_code(
            attendance_id=aid, now=later + 3 * every, every=every, code_factory=lambda: "333333"
        )
    assert await redis_client.redis.get("attendances:code:333333") is None
    # Finalization's delete drops the current and the previous code's index entries.
    await redis_client.finalization.delete_attendance_keys(attendance_id=aid)
    assert await redis_client.redis.get("attendances:code:222222") is None
    assert await redis_client.redis.get("attendances:code:111111") is None
    with pytest.raises(NotFound):
        await redis_client.sessions.rotate_code(attendance_id=aid, now=later, every=every)


async def test_cap_counts_attended_records_only(redis_client: RedisStores) -> None:
    numbers = ["S1", "S2", "S3"]
    for n, number in enumerate(numbers):
        await _student(redis_client, number, 9_000_000_001 + n)
    session = await _open(redis_client, numbers, level=1)
    await redis_client.sessions.set_head_count_cap(attendance_id=session.attendance_id, cap=1)
    assert await _check_in(redis_client, 9_000_000_001, session.code) is CheckInStatus.OK_PRESENT
    assert await _check_in(redis_client, 9_000_000_002, session.code) is CheckInStatus.OK_PENDING
    # Raising the cap lets the next one in; the surplus already recorded stays pending.
    await redis_client.sessions.set_head_count_cap(attendance_id=session.attendance_id, cap=2)
    assert await _check_in(redis_client, 9_000_000_003, session.code) is CheckInStatus.OK_PRESENT
    records = await redis_client.sessions.get_attendance_records(
        attendance_id=session.attendance_id
    )
    assert {r.student_number: r.fail_reason for r in records} == {
        "S1": None,
        "S2": "OVER_CAP",
        "S3": None,
    }


async def test_a_session_stored_before_levels_reads_as_level_1(
    redis_client: RedisStores,
) -> None:
    session = await _open(redis_client, [], level=1)
    key = f"attendances:{{{session.attendance_id}}}"
    raw = await redis_client.redis.get(key)
    assert raw is not None and '"security_option":1' in raw
    legacy = raw.replace('"security_option":1', '"security_option":"code"')
    await redis_client.redis.set(key, legacy)
    loaded = await redis_client.sessions.get_attendance(attendance_id=session.attendance_id)
    assert loaded is not None and loaded.security_option == 1
