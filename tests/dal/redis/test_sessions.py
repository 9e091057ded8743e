"""RedisStores against a real Redis (the test db of ATTN_TEST_REDIS_DB), fixed clock."""

from __future__ import annotations

import asyncio
import json
import re
import time
import zlib
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime, timedelta
from uuid import UUID, uuid4

import pytest
import redis.asyncio as aioredis

from dal.errors import Conflict, NotFound, RedisUnavailable
from dal.models import (
    AttendanceRecordRedis,
    AttendanceRedis,
    RecordSource,
    Role,
    UserSessionRedis,
)
from dal.redis.accounts import AccountMarks, UserStore, session_ttl_seconds
from dal.redis.checkins import CheckInReply
from dal.redis.finalization import ClaimOutcome
from dal.redis.keys import DUE as DUE_KEY
from dal.redis.keys import attendance as attendance_key
from dal.redis.keys import claim as claim_key
from dal.redis.keys import code as code_key
from dal.redis.keys import enrolled as enrolled_key
from dal.redis.keys import records as records_key
from dal.redis.keys import teacher as teacher_key
from dal.redis.sessions import AttendanceAlreadyOpen
from dal.redis.stores import RedisStores
from services.checkin_outcomes import CheckInStatus

# Real time: "ended" is judged by Redis's own clock, so live sessions must be live by it.
NOW = datetime.now(UTC).replace(microsecond=0)
TURKISH = "İlkay Şükrü Ağaoğlu Işıl"


@pytest.fixture
async def client(redis_url: str, redis_raw: aioredis.Redis) -> AsyncIterator[RedisStores]:
    async with RedisStores.from_url(redis_url, max_connections=16) as c:
        yield c


def make_attendance(
    *, teacher: str = "T001", start: datetime = NOW, minutes: int = 50
) -> AttendanceRedis:
    return AttendanceRedis(
        attendance_id=uuid4(),
        teacher_school_number=teacher,
        teacher_full_name="Doç. Dr. Gökçe Öztürk",
        teacher_telegram_id=5_000_000_001,
        lesson_name="Bilgisayar Ağları",
        lesson_code="BIL301",
        code="000000",
        start_time=start,
        planned_end_time=start + timedelta(minutes=minutes),
    )


def codes(*values: str) -> Callable[[], str]:
    it = iter(values)
    return lambda: next(it)


async def open_session(
    client: RedisStores,
    *,
    teacher: str = "T001",
    enrolled: tuple[str, ...] = ("S1", "S2"),
    code: str | None = None,
    start: datetime = NOW,
    minutes: int = 50,
) -> AttendanceRedis:
    return await client.sessions.open_attendance(
        attendance=make_attendance(teacher=teacher, start=start, minutes=minutes),
        enrolled=enrolled,
        code_factory=codes(code) if code else None,
        now=start,
    )


async def check_in(
    client: RedisStores,
    code: str,
    student: str,
    *,
    now: datetime = NOW + timedelta(minutes=1),
    throttle_key: str | None = None,
    name: str = TURKISH,
    telegram_id: int | None = None,
    courses: tuple[str, ...] = (),
) -> CheckInReply:
    """Link `student` (a user session in Redis, as a login leaves it), then check in."""
    tid = telegram_id if telegram_id is not None else zlib.crc32(student.encode()) + 1
    await client.users.save_user_session(
        session=UserSessionRedis(
            telegram_id=tid,
            school_number=student,
            full_name=name,
            role=Role.STUDENT,
            logged_in_at=NOW,
            courses=list(courses),
        ),
        ttl_seconds=3600,
    )
    return await client.checkins.check_in(
        telegram_id=tid,
        code=code,
        now=now,
        throttle_key=throttle_key or f"throttle:checkin:{student}",
    )


# --- connection ----------------------------------------------------------------------------


async def test_ping_answers_on_a_live_server(client: RedisStores) -> None:
    await client.ping()
    assert await client.redis.ping()


async def test_unreachable_redis_raises_redis_unavailable_with_masked_url() -> None:
    url = "redis://attn:s3cret-pw@127.0.0.1:1/0"
    async with RedisStores.from_url(url, timeout=1.0) as dead:
        with pytest.raises(RedisUnavailable) as ping_error:
            await dead.ping()
        with pytest.raises(RedisUnavailable) as call_error:
            await dead.users.get_user_session(telegram_id=1)
    for error in (ping_error.value, call_error.value):
        assert "s3cret-pw" not in str(error)
        assert "attn:***@127.0.0.1:1" in str(error)


# --- user sessions -------------------------------------------------------------------------


def test_session_ttl_depends_on_role() -> None:
    assert session_ttl_seconds(Role.STUDENT, student_days=120, teacher_days=30) == 120 * 86_400
    assert session_ttl_seconds(Role.TEACHER, student_days=120, teacher_days=30) == 30 * 86_400


async def test_user_session_round_trips_turkish_names_with_ttl(
    client: RedisStores, redis_raw: aioredis.Redis
) -> None:
    session = UserSessionRedis(
        telegram_id=6_123_456_789_012,
        school_number="1306190001",
        full_name=TURKISH,
        role=Role.STUDENT,
        language="tr",
        logged_in_at=NOW,
    )
    await client.users.save_user_session(session=session, ttl_seconds=120 * 86_400)

    assert await client.users.get_user_session(telegram_id=session.telegram_id) == session
    ttl = await redis_raw.ttl(f"users:{session.telegram_id}")
    assert 120 * 86_400 - 5 <= ttl <= 120 * 86_400

    await client.users.delete_user_session(telegram_id=session.telegram_id)
    assert await client.users.get_user_session(telegram_id=session.telegram_id) is None


async def test_mark_keys_read_back_the_marks_the_store_writes(
    client: RedisStores, redis_raw: aioredis.Redis
) -> None:
    # The check-in's long way reads these keys in its own MGET (bot/fsm.py): they must be the
    # ones the store's writes set and clears, or a password typed late becomes a check-in.
    tid = 6_000_000_000_017

    async def read() -> AccountMarks:
        return UserStore.marks(await redis_raw.mget(*UserStore.mark_keys(tid)))

    assert await read() == AccountMarks(login_prompt=False, undeliverable=False)
    await client.users.set_login_prompt(telegram_id=tid, step="password", ttl_seconds=60)
    assert await read() == AccountMarks(login_prompt=True, undeliverable=False)
    await client.users.add_undeliverable(telegram_ids=[tid], ttl_seconds=60)
    assert await read() == AccountMarks(login_prompt=True, undeliverable=True)
    await client.users.clear_login_prompt(telegram_id=tid)
    await client.users.remove_undeliverable(telegram_id=tid)
    assert await read() == AccountMarks(login_prompt=False, undeliverable=False)


# --- opening, reading, finishing -------------------------------------------------------------


async def test_open_attendance_writes_every_key(
    client: RedisStores, redis_raw: aioredis.Redis
) -> None:
    opened = await open_session(client, enrolled=("S1", "S2", "S2"))
    aid = opened.attendance_id

    assert re.fullmatch(r"\d{6}", opened.code)
    assert await client.sessions.get_attendance(attendance_id=aid) == opened
    assert await client.sessions.get_attendance_id_by_code(code=opened.code) == aid
    assert await client.sessions.get_enrolled(attendance_id=aid) == {"S1", "S2"}
    assert await redis_raw.get(teacher_key("T001")) == str(aid)
    assert await redis_raw.zscore(DUE_KEY, str(aid)) == opened.planned_end_time.timestamp()
    open_now = await client.sessions.get_open_attendance(teacher_school_number="T001", now=NOW)
    assert open_now == opened
    stored = await client.sessions.get_attendance(attendance_id=aid)
    assert stored is not None
    assert stored.teacher_full_name == "Doç. Dr. Gökçe Öztürk"


async def test_large_enrolment_is_stored_whole(client: RedisStores) -> None:
    students = tuple(f"2025{n:06d}" for n in range(2500))  # more than one SADD batch
    opened = await open_session(client, enrolled=students)
    assert await client.sessions.get_enrolled(attendance_id=opened.attendance_id) == set(students)


async def test_unknown_keys_read_as_none(client: RedisStores) -> None:
    assert await client.sessions.get_attendance(attendance_id=uuid4()) is None
    assert await client.sessions.get_attendance_id_by_code(code="123456") is None
    assert await client.sessions.get_open_attendance(teacher_school_number="T404", now=NOW) is None
    assert await client.sessions.get_enrolled(attendance_id=uuid4()) == set()


async def test_teacher_cannot_open_a_second_session(client: RedisStores) -> None:
    first = await open_session(client)
    with pytest.raises(AttendanceAlreadyOpen) as error:
        await open_session(client)
    assert error.value.attendance_id == first.attendance_id
    assert isinstance(error.value, Conflict)
    # the refused attempt reserved nothing
    assert await client.sessions.get_attendance(attendance_id=first.attendance_id) == first


async def test_teacher_can_open_again_after_finishing_or_after_the_planned_end(
    client: RedisStores,
) -> None:
    first = await open_session(client)
    await client.sessions.finish_attendance(attendance_id=first.attendance_id, end_time=NOW)
    second = await open_session(client, start=NOW + timedelta(minutes=1))
    # the second one is never finished: its planned end passes and it no longer blocks
    third = await open_session(client, start=NOW + timedelta(hours=2))
    assert len({first.code, second.code, third.code}) == 3
    later = NOW + timedelta(hours=2, minutes=1)
    open_later = await client.sessions.get_open_attendance(teacher_school_number="T001", now=later)
    assert open_later == third


async def test_concurrent_opens_with_colliding_codes_get_different_codes(
    client: RedisStores,
) -> None:
    factory = codes("111111", "111111", "222222", "333333")
    a, b = await asyncio.gather(
        client.sessions.open_attendance(
            attendance=make_attendance(teacher="TA"), enrolled=["S1"], code_factory=factory, now=NOW
        ),
        client.sessions.open_attendance(
            attendance=make_attendance(teacher="TB"), enrolled=["S1"], code_factory=factory, now=NOW
        ),
    )
    assert {a.code, b.code} == {"111111", "222222"}
    assert await client.sessions.get_attendance_id_by_code(code=a.code) == a.attendance_id
    assert await client.sessions.get_attendance_id_by_code(code=b.code) == b.attendance_id


async def test_concurrent_opens_by_one_teacher_open_exactly_one(client: RedisStores) -> None:
    results = await asyncio.gather(
        *(open_session(client) for _ in range(5)), return_exceptions=True
    )
    opened = [r for r in results if isinstance(r, AttendanceRedis)]
    refused = [r for r in results if isinstance(r, AttendanceAlreadyOpen)]
    assert len(opened) == 1
    assert len(refused) == 4
    assert all(r.attendance_id == opened[0].attendance_id for r in refused)


async def test_open_gives_up_when_every_code_is_taken(client: RedisStores) -> None:
    await open_session(client, teacher="TA", code="424242")
    with pytest.raises(Conflict, match="no free check-in code"):
        await client.sessions.open_attendance(
            attendance=make_attendance(teacher="TB"),
            enrolled=[],
            code_factory=lambda: "424242",
            max_tries=3,
            now=NOW,
        )
    assert await client.sessions.get_open_attendance(teacher_school_number="TB", now=NOW) is None


async def test_finish_sets_end_time_and_deletes_nothing(
    client: RedisStores, redis_raw: aioredis.Redis
) -> None:
    opened = await open_session(client)
    aid = opened.attendance_id
    assert (await check_in(client, opened.code, "S1")).status == CheckInStatus.OK_PRESENT
    end = NOW + timedelta(minutes=20)

    before = time.time()
    finished = await client.sessions.finish_attendance(attendance_id=aid, end_time=end)

    assert finished.end_time == end
    assert await client.sessions.get_attendance(attendance_id=aid) == finished
    # A caller's clock running ahead cannot keep the session open: it ends by Redis's now.
    score = await redis_raw.zscore(DUE_KEY, str(aid))
    assert score is not None
    assert before - 1 <= score <= time.time() + 1
    assert await redis_raw.exists(teacher_key("T001")) == 0
    assert await client.sessions.get_open_attendance(teacher_school_number="T001", now=NOW) is None
    assert await client.sessions.count_attendance_records(attendance_id=aid) == 1
    assert await client.sessions.get_attendance_id_by_code(code=opened.code) == aid
    assert await client.sessions.get_enrolled(attendance_id=aid) == {"S1", "S2"}
    # finishing twice keeps the first end time
    again = await client.sessions.finish_attendance(
        attendance_id=aid, end_time=end + timedelta(hours=1)
    )
    assert again.end_time == end


async def test_finish_leaves_a_teacher_key_that_points_elsewhere(
    client: RedisStores, redis_raw: aioredis.Redis
) -> None:
    opened = await open_session(client)
    await redis_raw.set(teacher_key("T001"), "other")
    await client.sessions.finish_attendance(attendance_id=opened.attendance_id, end_time=NOW)
    assert await redis_raw.get(teacher_key("T001")) == "other"


async def test_changing_a_gone_session_raises_not_found(client: RedisStores) -> None:
    gone = uuid4()
    with pytest.raises(NotFound):
        await client.sessions.finish_attendance(attendance_id=gone, end_time=NOW)
    with pytest.raises(NotFound):
        await client.sessions.set_status_message(attendance_id=gone, chat_id=1, message_id=2)


async def test_status_message_is_remembered_with_large_chat_ids(client: RedisStores) -> None:
    opened = await open_session(client)
    chat_id = -1_002_345_678_901_234  # beyond cjson's 14 significant digits
    await client.sessions.set_status_message(
        attendance_id=opened.attendance_id, chat_id=chat_id, message_id=77
    )
    stored = await client.sessions.get_attendance(attendance_id=opened.attendance_id)
    assert stored is not None
    assert (stored.status_chat_id, stored.status_message_id) == (chat_id, 77)
    assert stored.code == opened.code


# --- records -------------------------------------------------------------------------------


def make_record(
    aid: UUID, student: str, minute: int, *, attended: bool = True
) -> AttendanceRecordRedis:
    return AttendanceRecordRedis(
        attendance_id=aid,
        student_number=student,
        student_full_name=TURKISH,
        is_attended=attended,
        attendance_time=NOW + timedelta(minutes=minute),
        source=RecordSource.TEACHER,
    )


async def test_records_add_get_list_update_count(
    client: RedisStores, redis_raw: aioredis.Redis
) -> None:
    aid = (await open_session(client)).attendance_id
    late, early = make_record(aid, "S2", 9), make_record(aid, "S1", 3)

    assert await client.sessions.add_attendance_record(record=late) is True
    assert await client.sessions.add_attendance_record(record=early) is True
    assert await client.sessions.add_attendance_record(record=make_record(aid, "S1", 30)) is False

    assert (
        await client.sessions.get_attendance_record(attendance_id=aid, student_number="S1") == early
    )
    assert (
        await client.sessions.get_attendance_record(attendance_id=aid, student_number="S9") is None
    )
    assert await client.sessions.get_attendance_records(attendance_id=aid) == [early, late]
    assert await client.sessions.count_attendance_records(attendance_id=aid) == 2
    raw = await redis_raw.hget(records_key(aid), "S1")
    assert raw is not None
    stored = json.loads(raw)
    assert "attendance_id" not in stored
    assert stored["student_full_name"] == TURKISH

    rejected = early.model_copy(update={"is_attended": False, "fail_reason": "REJECTED: kopya"})
    await client.sessions.update_attendance_record(record=rejected)
    stored_now = await client.sessions.get_attendance_record(attendance_id=aid, student_number="S1")
    assert stored_now == rejected


async def test_record_writes_to_a_gone_session_raise_not_found(
    client: RedisStores, redis_raw: aioredis.Redis
) -> None:
    gone = uuid4()
    with pytest.raises(NotFound):
        await client.sessions.add_attendance_record(record=make_record(gone, "S1", 1))
    with pytest.raises(NotFound):
        await client.sessions.update_attendance_record(record=make_record(gone, "S1", 1))
    assert await redis_raw.exists(records_key(gone)) == 0


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


# --- finalization support ------------------------------------------------------------------


async def test_due_ids_are_those_ended_by_now_earliest_first(client: RedisStores) -> None:
    base = NOW - timedelta(hours=1)
    late = await open_session(client, teacher="TA", start=base, minutes=120)
    early = await open_session(client, teacher="TB", start=base, minutes=20)
    middle = await open_session(client, teacher="TC", start=base, minutes=50)
    await client.sessions.finish_attendance(
        attendance_id=middle.attendance_id, end_time=base + timedelta(minutes=40)
    )

    at = base + timedelta(minutes=45)
    assert await client.sessions.get_due_attendance_ids(now=at) == [
        early.attendance_id,
        middle.attendance_id,
    ]
    assert await client.sessions.get_due_attendance_ids(now=at, limit=1) == [early.attendance_id]
    assert await client.sessions.get_due_attendance_ids(now=base + timedelta(hours=2)) == [
        early.attendance_id,
        middle.attendance_id,
        late.attendance_id,
    ]
    assert await client.sessions.get_due_attendance_ids(now=base) == []


async def test_claims_are_exclusive_expire_and_release_only_for_their_owner(
    client: RedisStores, redis_raw: aioredis.Redis
) -> None:
    still_open = (await open_session(client, teacher="T2")).attendance_id
    outcome = await client.finalization.claim_attendance(
        attendance_id=still_open, owner="a", ttl_seconds=120
    )
    assert outcome is ClaimOutcome.OPEN  # not ended by Redis's clock: no claim
    assert await redis_raw.exists(claim_key(still_open)) == 0

    aid = (await open_session(client, start=NOW - timedelta(hours=2))).attendance_id
    claim = client.finalization.claim_attendance
    assert (
        await claim(attendance_id=aid, owner="replica-a", ttl_seconds=120) is ClaimOutcome.CLAIMED
    )
    assert await claim(attendance_id=aid, owner="replica-b", ttl_seconds=120) is ClaimOutcome.HELD
    assert 0 < await redis_raw.ttl(claim_key(aid)) <= 120

    assert await client.finalization.release_claim(attendance_id=aid, owner="replica-b") is False
    assert await redis_raw.get(claim_key(aid)) == "replica-a"
    assert await client.finalization.release_claim(attendance_id=aid, owner="replica-a") is True
    assert (
        await claim(attendance_id=aid, owner="replica-b", ttl_seconds=120) is ClaimOutcome.CLAIMED
    )


async def test_delete_attendance_keys_removes_the_session_and_spares_others(
    client: RedisStores, redis_raw: aioredis.Redis
) -> None:
    doomed = await open_session(client, teacher="TA")
    kept = await open_session(client, teacher="TB")
    for session in (doomed, kept):
        await check_in(client, session.code, "S1")
        # planned end passed (the teacher pointer stays, as when nobody ended it)
        await redis_raw.zadd(DUE_KEY, {str(session.attendance_id): time.time() - 1})
        await client.finalization.claim_attendance(
            attendance_id=session.attendance_id, owner="o", ttl_seconds=60
        )
    kept_keys = {key async for key in redis_raw.scan_iter()}
    doomed_id = str(doomed.attendance_id)
    doomed_keys = {
        attendance_key(doomed_id),
        records_key(doomed_id),
        enrolled_key(doomed_id),
        claim_key(doomed_id),
        code_key(doomed.code),
        teacher_key("TA"),
    }
    assert doomed_keys <= kept_keys

    await client.finalization.delete_attendance_keys(attendance_id=doomed.attendance_id)

    remaining = {key async for key in redis_raw.scan_iter()}
    assert remaining == kept_keys - doomed_keys
    assert await redis_raw.zrange(DUE_KEY, 0, -1) == [str(kept.attendance_id)]
    assert await client.sessions.get_attendance(attendance_id=kept.attendance_id) == kept
    assert await client.sessions.count_attendance_records(attendance_id=kept.attendance_id) == 1
    # and the freed code is a wrong code now
    result = await check_in(client, doomed.code, "S2")
    assert result.status == CheckInStatus.WRONG_CODE


async def test_delete_keeps_code_and_teacher_keys_reused_by_a_newer_session(
    client: RedisStores, redis_raw: aioredis.Redis
) -> None:
    old = await open_session(client, teacher="TA")
    await redis_raw.set(code_key(old.code), "newer")
    await redis_raw.set(teacher_key("TA"), "newer")
    await client.finalization.delete_attendance_keys(attendance_id=old.attendance_id)
    assert await redis_raw.get(code_key(old.code)) == "newer"
    assert await redis_raw.get(teacher_key("TA")) == "newer"
    assert await redis_raw.exists(attendance_key(old.attendance_id)) == 0


# --- throttles, dedupe, locks, scan --------------------------------------------------------


async def test_counter_window_starts_at_first_hit(
    client: RedisStores, redis_raw: aioredis.Redis
) -> None:
    key = "throttle:login:123"
    assert await client.guards.get_counter(key=key) == (0, 0)
    assert await client.guards.hit_counter(key=key, window_seconds=300) == 1
    await redis_raw.expire(key, 100)  # time passes: a later hit must not restart the window
    assert await client.guards.hit_counter(key=key, window_seconds=300) == 2
    count, ttl = await client.guards.get_counter(key=key)
    assert count == 2
    assert 0 < ttl <= 100
    await client.guards.reset_counter(key=key)
    assert await client.guards.get_counter(key=key) == (0, 0)


async def test_mark_once_is_true_only_the_first_time(
    client: RedisStores, redis_raw: aioredis.Redis
) -> None:
    key = "once:reminder:S1:2025-03-10T09:00"
    assert await client.guards.mark_once(key=key, ttl_seconds=3600) is True
    assert await client.guards.mark_once(key=key, ttl_seconds=3600) is False
    assert 3590 <= await redis_raw.ttl(key) <= 3600


async def test_job_lock_is_exclusive_and_owner_only(
    client: RedisStores, redis_raw: aioredis.Redis
) -> None:
    assert await client.guards.acquire_lock(name="finalize", owner="a", ttl_seconds=30) is True
    assert await client.guards.acquire_lock(name="finalize", owner="b", ttl_seconds=30) is False
    assert 0 < await redis_raw.ttl("locks:finalize") <= 30
    assert await client.guards.release_lock(name="finalize", owner="b") is False
    assert await client.guards.acquire_lock(name="finalize", owner="b", ttl_seconds=30) is False
    assert await client.guards.release_lock(name="finalize", owner="a") is True
    assert await client.guards.acquire_lock(name="finalize", owner="b", ttl_seconds=30) is True


async def test_scan_keys_finds_every_match_without_others(
    client: RedisStores, redis_raw: aioredis.Redis
) -> None:
    for n in range(1200):
        await redis_raw.set(f"users:{n}", "{}")
    await redis_raw.set("throttle:checkin:1", "1")
    found = [key async for key in client.purge.scan_keys(match="users:*", count=100)]
    assert set(found) == {f"users:{n}" for n in range(1200)}


# --- purge support: batched scans and check-and-delete scripts ------------------------------


async def test_scan_key_batches_cover_every_match_in_bounded_batches(
    client: RedisStores, redis_raw: aioredis.Redis
) -> None:
    wanted = {f"once:test:{n}" for n in range(25)}
    await redis_raw.mset({key: "1" for key in wanted} | {"throttle:checkin:1": "1"})
    batches = [b async for b in client.purge.scan_key_batches(match="once:*", batch=7)]
    assert batches and all(1 <= len(b) <= 7 for b in batches)
    assert {key for b in batches for key in b} == wanted
    assert [b async for b in client.purge.scan_key_batches(match="nothing:*", batch=7)] == []
    with pytest.raises(ValueError, match="batch size"):
        [b async for b in client.purge.scan_key_batches(match="once:*", batch=0)]


async def test_scan_due_id_batches_list_every_due_member(client: RedisStores) -> None:
    opened = [await open_session(client, teacher=f"T{n}") for n in range(5)]
    batches = [b async for b in client.purge.scan_due_id_batches(batch=2)]
    assert all(1 <= len(b) <= 2 for b in batches)
    assert {i for b in batches for i in b} == {str(a.attendance_id) for a in opened}


async def test_drop_session_orphans_deletes_only_parts_of_gone_sessions(
    client: RedisStores, redis_raw: aioredis.Redis
) -> None:
    live = await open_session(client)
    gone = str(uuid4())
    await redis_raw.sadd(enrolled_key(gone), "S1")
    await redis_raw.hset(records_key(gone), "S1", "{}")
    await redis_raw.set(claim_key(live.attendance_id), "worker", ex=60)
    live_id = live.attendance_id
    keys = [enrolled_key(gone), records_key(gone), claim_key(gone)]
    keys += [enrolled_key(live_id), claim_key(live_id)]
    ids = [gone, gone, gone, str(live_id), str(live_id)]

    # the claim key of the gone session does not exist: it counts as nothing
    assert await client.purge.drop_session_orphans(keys=keys, session_ids=ids) == 2
    assert await redis_raw.exists(enrolled_key(gone), records_key(gone)) == 0
    assert await redis_raw.smembers(enrolled_key(live_id)) == {"S1", "S2"}
    assert await redis_raw.get(claim_key(live_id)) == "worker"
    assert await client.purge.drop_session_orphans(keys=[], session_ids=[]) == 0
    with pytest.raises(ValueError, match="1 keys but 0 session ids"):
        await client.purge.drop_session_orphans(keys=[records_key(gone)], session_ids=[])


async def test_drop_dangling_pointers_spares_pointers_to_live_sessions(
    client: RedisStores, redis_raw: aioredis.Redis
) -> None:
    live = await open_session(client, teacher="TL", code="123456")
    await redis_raw.set(code_key("654321"), str(uuid4()))
    await redis_raw.set(teacher_key("TG"), str(uuid4()))
    keys = [code_key("123456"), teacher_key("TL"), code_key("654321"), teacher_key("TG")]

    assert await client.purge.drop_dangling_pointers(keys=[*keys, code_key("000001")]) == 2
    assert await redis_raw.get(code_key("123456")) == str(live.attendance_id)
    assert await redis_raw.get(teacher_key("TL")) == str(live.attendance_id)
    assert await redis_raw.exists(code_key("654321"), teacher_key("TG")) == 0
    assert await client.purge.drop_dangling_pointers(keys=keys) == 0


async def test_drop_due_orphans_removes_only_ids_of_gone_sessions(
    client: RedisStores, redis_raw: aioredis.Redis
) -> None:
    live = await open_session(client)
    gone = str(uuid4())
    await redis_raw.zadd(DUE_KEY, {gone: NOW.timestamp()})

    assert (
        await client.purge.drop_due_orphans(ids=[str(live.attendance_id), gone, str(uuid4())]) == 1
    )
    assert await redis_raw.zrange(DUE_KEY, 0, -1) == [str(live.attendance_id)]
    assert await client.purge.drop_due_orphans(ids=[]) == 0


async def test_drop_keys_without_expiry_spares_keys_that_expire(
    client: RedisStores, redis_raw: aioredis.Redis
) -> None:
    await redis_raw.set("throttle:checkin:1", 5)
    await redis_raw.set("throttle:checkin:2", 2, ex=60)
    await redis_raw.set("locks:job:x", "gone-replica")

    keys = ["throttle:checkin:1", "throttle:checkin:2", "locks:job:x", "once:missing"]
    assert await client.purge.drop_keys_without_expiry(keys=keys) == 2
    assert await redis_raw.keys("*") == ["throttle:checkin:2"]
    assert await client.purge.drop_keys_without_expiry(keys=[]) == 0


async def test_drop_fsm_keys_keeps_only_kept_states_that_still_expire(
    client: RedisStores, redis_raw: aioredis.Redis
) -> None:
    await redis_raw.set("fsm:1:1:state", "LoginForm:password", ex=900)  # kept
    await redis_raw.set("fsm:1:1:data", "{}", ex=900)
    await redis_raw.set("fsm:2:2:state", "LoginForm:username")  # kept state, no expiry: gone
    await redis_raw.set("fsm:3:3:state", "RejectForm:reason", ex=900)  # other state: gone
    await redis_raw.set("fsm:3:3:data", "{}", ex=900)
    await redis_raw.set("fsm:4:4:data", "{}")  # data without a state: gone
    pairs = [(f"fsm:{n}:{n}:state", f"fsm:{n}:{n}:data") for n in range(1, 5)]
    keep = ["LoginForm:username", "LoginForm:password"]

    assert await client.purge.drop_fsm_keys(pairs=pairs, keep_states=keep) == 4
    assert sorted(await redis_raw.keys("*")) == ["fsm:1:1:data", "fsm:1:1:state"]
    assert await client.purge.drop_fsm_keys(pairs=pairs) == 2  # nothing kept without keep_states
    assert await client.purge.drop_fsm_keys(pairs=[], keep_states=keep) == 0


@pytest.mark.parametrize(
    ("method", "kwargs"),
    [
        ("scan_key_batches", {"match": "once:*"}),
        ("scan_due_id_batches", {}),
        ("drop_session_orphans", {"keys": ["k"], "session_ids": ["id"]}),
        ("drop_dangling_pointers", {"keys": ["k"]}),
        ("drop_due_orphans", {"ids": ["id"]}),
        ("drop_keys_without_expiry", {"keys": ["k"]}),
        ("drop_fsm_keys", {"pairs": [("s", "d")], "keep_states": ["x"]}),
    ],
)
async def test_purge_methods_raise_redis_unavailable_when_redis_is_down(
    method: str, kwargs: dict[str, object]
) -> None:
    async with RedisStores.from_url("redis://127.0.0.1:1/0", timeout=1.0) as dead:
        outcome = getattr(dead.purge, method)(**kwargs)
        with pytest.raises(RedisUnavailable):
            await (anext(outcome) if hasattr(outcome, "__anext__") else outcome)


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
        session=UserSessionRedis(
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
            session=UserSessionRedis(
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
