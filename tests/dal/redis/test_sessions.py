"""Attendance sessions in RedisStores (dal/redis/sessions.py) against a real Redis (the test db
of ATTN_TEST_REDIS_DB): opening, reading and finishing a session, and its records."""

from __future__ import annotations

import asyncio
import json
import re
import time
from datetime import timedelta
from uuid import uuid4

import pytest
import redis.asyncio as aioredis

from dal.errors import Conflict, NotFound
from dal.models import (
    LiveSession,
)
from dal.redis.keys import DUE as DUE_KEY
from dal.redis.keys import records as records_key
from dal.redis.keys import teacher as teacher_key
from dal.redis.sessions import AttendanceAlreadyOpen
from dal.redis.stores import RedisStores
from services.checkin_outcomes import CheckInStatus
from tests.dal.redis.support import (
    NOW,
    TURKISH,
    check_in,
    codes,
    make_attendance,
    make_record,
    open_session,
)

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
    opened = [r for r in results if isinstance(r, LiveSession)]
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
