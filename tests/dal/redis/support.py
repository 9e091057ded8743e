"""What the RedisStores tests of this directory share: a session as a teacher opens it, a
check-in as a linked student makes it, a record, at a fixed time read from Redis's clock."""

from __future__ import annotations

import zlib
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from uuid import UUID, uuid4

from dal.models import (
    CachedAccount,
    LiveRecord,
    LiveSession,
    RecordSource,
    Role,
)
from dal.redis.checkins import CheckInReply
from dal.redis.stores import RedisStores

# Real time: "ended" is judged by Redis's own clock, so live sessions must be live by it.
NOW = datetime.now(UTC).replace(microsecond=0)
TURKISH = "İlkay Şükrü Ağaoğlu Işıl"


def make_attendance(
    *, teacher: str = "T001", start: datetime = NOW, minutes: int = 50
) -> LiveSession:
    return LiveSession(
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
) -> LiveSession:
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
        session=CachedAccount(
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


def make_record(aid: UUID, student: str, minute: int, *, attended: bool = True) -> LiveRecord:
    return LiveRecord(
        attendance_id=aid,
        student_number=student,
        student_full_name=TURKISH,
        is_attended=attended,
        attendance_time=NOW + timedelta(minutes=minute),
        source=RecordSource.TEACHER,
    )
