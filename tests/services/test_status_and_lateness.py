"""One lateness rule and one status vocabulary.

Lateness counts from the later of the lesson's scheduled start and the opening, plus
LATE_AFTER_MINUTES (ad-hoc sessions: from the opening), with a clock the test moves. The
teacher's summary, /history, the CSV export, /my_attendance and the PostgreSQL summary give
the same counts for one session. Real PostgreSQL and Redis.
"""

from __future__ import annotations

import csv
import io
import logging
from collections import Counter
from datetime import UTC, datetime, time, timedelta

import pytest

from dal.models import (
    CachedAccount,
    FailReason,
    LiveSession,
    RecordStatus,
    Role,
)
from dal.pg import Postgres
from dal.redis.stores import RedisStores
from services.accounts import lesson_to_entry
from services.attendance import AttendanceService, ChooseLesson, Started
from services.checkin_outcomes import CheckInStatus
from services.finalize import build_sheet
from services.lesson_finder import Lesson
from services.reports import ReportService
from services.text import teacher_keys
from tests.support import (
    IST,
    Clock,
    RecordingNotifier,
    build_test_services,
    link,
    open_session,
    put_records,
    record,
    student_user,
    teacher_user,
)

LATE_AFTER = timedelta(minutes=15)
TEACHER = teacher_user("T0001", "Elif Kartal")
HOCALAR = "Doç. Dr. ELİF KARTAL"


def service(pg: Postgres, redis: RedisStores, clock: Clock) -> AttendanceService:
    return build_test_services(pg, redis, clock=clock).attendance


def session_of(number: str, name: str, role: Role, telegram_id: int) -> CachedAccount:
    return CachedAccount(
        telegram_id=telegram_id,
        school_number=number,
        full_name=name,
        role=role,
        logged_in_at=datetime.now(UTC),
    )


def lesson(start: datetime) -> Lesson:
    return Lesson(
        start=start,
        end=start + timedelta(minutes=50),
        course_code="FIZ101",
        course_name="Fizik I",
        teachers=HOCALAR,
        teacher_keys=tuple(teacher_keys(HOCALAR)),
    )


async def scheduled_class(pg: Postgres, start: datetime) -> None:
    """The teacher and students S1..S4 with FIZ101 at `start` in their cached schedules."""
    students = [student_user(f"S{n}") for n in range(1, 5)]
    await pg.accounts.add_users(users=[TEACHER, *students])
    for user in [TEACHER, *students]:
        number = user.user_school_number
        await pg.schedules.replace_schedule(
            school_number=number, entries=[lesson_to_entry(number, lesson(start))]
        )


async def check_in_at(
    svc: AttendanceService,
    redis: RedisStores,
    clock: Clock,
    attendance: LiveSession,
    number: str,
    moment: datetime,
) -> bool:
    """`number` checks in at `moment` (the replica's clock); returns whether it is late."""
    telegram_id = 500 + int(number[1:])
    await redis.users.save_user_session(
        session=session_of(number, f"Öğrenci {number}", Role.STUDENT, telegram_id),
        ttl_seconds=3_600,
    )
    clock.at(moment)
    result = await svc.check_in(telegram_id=telegram_id, code=attendance.code)
    assert result.status is CheckInStatus.OK_PRESENT, result.status
    assert result.record is not None
    late = svc.is_late(attendance, result.record)
    sheet = build_sheet(
        attendance=attendance,
        records=[result.record],
        enrolled=[],
        known_users={},
        late_after=LATE_AFTER,
    )
    assert (sheet.records[0].status is RecordStatus.LATE) is late  # finalization agrees
    # The check-in's answer carries the same status: the reply is told from it alone.
    assert result.recorded is sheet.records[0].status
    return late


def _future_start() -> datetime:
    # Tomorrow at noon: sessions must be live by Redis's own clock, and the lesson on the same
    # local day as the moments the tests open it.
    return datetime.combine(datetime.now(IST).date() + timedelta(days=1), time(12), IST)


async def test_opened_10_minutes_before_the_lesson_lateness_counts_from_the_start(
    pg_client: Postgres, redis_client: RedisStores
) -> None:
    start = _future_start()
    await scheduled_class(pg_client, start)
    clock = Clock(start - timedelta(minutes=10))
    svc = service(pg_client, redis_client, clock)
    outcome = await svc.start_session(
        teacher=session_of("T0001", "Elif Kartal", Role.TEACHER, 1), chat_id=1
    )
    assert isinstance(outcome, Started)
    attendance = outcome.attendance
    assert attendance.scheduled_start == start
    assert attendance.start_time == start - timedelta(minutes=10)

    edge = start + LATE_AFTER
    assert not await check_in_at(svc, redis_client, clock, attendance, "S1", edge)
    assert await check_in_at(
        svc, redis_client, clock, attendance, "S2", edge + timedelta(seconds=1)
    )


async def test_opened_20_minutes_after_the_start_lateness_counts_from_the_opening(
    pg_client: Postgres, redis_client: RedisStores
) -> None:
    start = _future_start()
    await scheduled_class(pg_client, start)
    opened = start + timedelta(minutes=20)
    clock = Clock(opened)
    svc = service(pg_client, redis_client, clock)
    outcome = await svc.start_session(
        teacher=session_of("T0001", "Elif Kartal", Role.TEACHER, 1), chat_id=1
    )
    assert isinstance(outcome, Started)
    attendance = outcome.attendance
    assert attendance.scheduled_start == start

    # By the start alone everyone would be late; they count from the opening.
    edge = opened + LATE_AFTER
    assert not await check_in_at(svc, redis_client, clock, attendance, "S1", edge)
    assert await check_in_at(
        svc, redis_client, clock, attendance, "S2", edge + timedelta(seconds=1)
    )


async def test_an_ad_hoc_session_counts_from_the_opening(
    pg_client: Postgres, redis_client: RedisStores
) -> None:
    await pg_client.accounts.add_users(users=[TEACHER])
    opened = datetime.now(UTC).replace(microsecond=0)
    clock = Clock(opened)
    svc = service(pg_client, redis_client, clock)
    outcome = await svc.start_session(
        teacher=session_of("T0001", "Elif Kartal", Role.TEACHER, 1),
        chat_id=1,
        lesson_name="Seminer",
    )
    assert isinstance(outcome, Started)
    assert outcome.ad_hoc and outcome.enrolled == 0
    assert outcome.attendance.scheduled_start is None
    edge = opened + LATE_AFTER
    assert not await check_in_at(svc, redis_client, clock, outcome.attendance, "S1", edge)
    assert await check_in_at(
        svc, redis_client, clock, outcome.attendance, "S2", edge + timedelta(seconds=1)
    )


async def test_two_linked_namesakes_pick_the_lesson_and_the_choice_is_logged(
    pg_client: Postgres,
    redis_client: RedisStores,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Neither namesake has a schedule of their own: the lesson is offered, never opened."""
    start = datetime.now(IST).replace(second=0, microsecond=0) - timedelta(minutes=5)
    student = student_user("S1")
    await pg_client.accounts.add_users(users=[student])
    await pg_client.schedules.replace_schedule(
        school_number="S1", entries=[lesson_to_entry("S1", lesson(start))]
    )
    first, second = teacher_user("TA", "Elif Kartal"), teacher_user("TB", "ELİF KARTAL")
    await link(pg_client, first, 1)
    await link(pg_client, second, 2)
    svc = service(pg_client, redis_client, Clock(datetime.now(UTC)))
    teacher = session_of("TB", "ELİF KARTAL", Role.TEACHER, 2)

    outcome = await svc.start_session(teacher=teacher, chat_id=2)
    assert isinstance(outcome, ChooseLesson)
    assert [x.course_code for x in outcome.lessons] == ["FIZ101"]

    caplog.set_level(logging.INFO, logger="services.attendance")
    picked = outcome.lessons[0]
    started = await svc.start_chosen(
        teacher=teacher,
        chat_id=2,
        course_code=picked.course_code,
        start_epoch=int(picked.start.timestamp()),
    )
    assert isinstance(started, Started)
    assert any("a teacher picked lesson FIZ101" in r.getMessage() for r in caplog.records)
    assert not any("TB" in r.getMessage() for r in caplog.records)  # no staff number logged


async def test_summary_history_export_and_my_attendance_give_the_same_counts(
    pg_client: Postgres, redis_client: RedisStores
) -> None:
    """One session with present, late, absent, pending and rejected records."""
    now = datetime.now(UTC).replace(microsecond=0)
    students = [student_user(f"S{n}") for n in range(1, 6)]
    await pg_client.accounts.add_users(users=[TEACHER, *students])
    await link(pg_client, TEACHER, 100)
    for n in range(1, 6):
        await link(pg_client, students[n - 1], 100 + n)
    attendance = await open_session(
        redis_client,
        teacher=TEACHER,
        start=now - timedelta(hours=1),
        end=now - timedelta(minutes=1),
        enrolled=["S1", "S2", "S3", "S5"],
    )
    await put_records(
        redis_client,
        [
            record(attendance, "S1", minutes=3),  # present
            record(attendance, "S2", minutes=20),  # late
            record(  # not enrolled: pending review
                attendance,
                "S4",
                minutes=5,
                is_attended=False,
                fail_reason=FailReason.NOT_IN_SCHEDULE,
            ),
            record(attendance, "S5", minutes=6, is_attended=False, fail_reason="REJECTED"),
        ],
    )  # S3: enrolled, never came: absent
    notifier = RecordingNotifier()
    job = build_test_services(
        pg_client, redis_client, notifier, owner="t", finalizer={"settle_seconds": 0}
    ).finalizer
    assert (await job.run_once()).finalized == 1
    expected = {"present": 1, "late": 1, "absent": 1, "pending": 1, "rejected": 1}

    (summary,) = notifier.keys("final.teacher")
    assert {k: summary.values[k] for k in expected} == expected

    reports = ReportService(
        accounts=pg_client.accounts,
        attendance=pg_client.attendance,
        corrections=pg_client.corrections,
        reports=pg_client.reports,
        tz=IST,
    )
    teacher = session_of("T0001", TEACHER.user_full_name, Role.TEACHER, 100)
    sheet = await reports.sheet(teacher=teacher, attendance_id=attendance.attendance_id)
    counts = sheet.counts
    assert {k: getattr(counts, k) for k in expected} == expected
    (listed,) = await reports.history(teacher=teacher)
    assert listed.counts == counts

    _, data = await reports.export_csv(teacher=teacher, attendance_id=attendance.attendance_id)
    rows = list(csv.DictReader(io.StringIO(data.decode("utf-8-sig")), delimiter=";"))
    words = Counter(row["status"] for row in rows)
    assert words == {"present": 1, "late": 1, "absent": 1, "pending review": 1, "rejected": 1}

    mine = Counter()
    for n in range(1, 6):
        student = session_of(f"S{n}", f"Öğrenci S{n}", Role.STUDENT, 100 + n)
        (course,) = await reports.my_courses(student=student, with_rows=True)
        (row,) = course.rows
        mine[row.status.value] += 1
    assert dict(mine) == expected

    records = await pg_client.attendance.get_attendance_records(
        attendance_id=attendance.attendance_id
    )
    stored = Counter(r.status.value for r in records)
    assert {k: stored[k] for k in expected} == expected
