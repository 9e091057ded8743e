"""A student's check-in by code (handlers/student.py): a code for a lesson not in their schedule
is recorded pending, also through a deep link, and wrong codes are throttled before the code is
looked up."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from uuid import UUID

from dal.models import FailReason
from tests.client import ChatClient


async def _only_session_id(client: ChatClient) -> UUID:
    ids = await client.app.redis.sessions.get_due_attendance_ids(
        now=datetime.now(UTC) + timedelta(days=1)
    )
    assert len(ids) == 1
    return ids[0]


async def test_a_pending_check_in_and_a_deep_link(client: ChatClient) -> None:
    teacher = client.user(100, "Elif")
    outsider = client.user(204, "Deniz")
    await client.login(teacher, "teacher1")
    await client.login(outsider, "student4")
    code, _ = await client.start_session(teacher)
    assert "not in your Aksis schedule" in (await outsider.send(f"/start ci_{code}")).text
    roster = await client.app.attendance.status(attendance_id=await _only_session_id(client))
    assert roster is not None
    assert roster.records[0].fail_reason == FailReason.NOT_IN_SCHEDULE


async def test_wrong_codes_are_throttled_without_a_lookup(client: ChatClient) -> None:
    teacher = client.user(100, "Elif")
    student = client.user(201, "Ayşe")
    await client.login(teacher, "teacher1")
    await client.login(student, "student1")
    code, _ = await client.start_session(teacher)
    wrong = [f"{(int(code) + i) % 1_000_000:06d}" for i in range(1, 6)]
    for guess in wrong:
        assert "does not match" in (await student.send(guess)).text
    # The sixth try within a minute, even with the right code.
    assert "Too many wrong codes" in (await student.send(code)).text
    roster = await client.app.attendance.status(attendance_id=await _only_session_id(client))
    assert roster is not None and roster.records == []
