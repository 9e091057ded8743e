"""Reminders with a controllable clock: who hears what, when, and only once."""

from __future__ import annotations

from datetime import datetime, time, timedelta

from bot.delivery import render
from dal.models import CachedAccount, ScheduleEntry, User
from dal.pg import Postgres
from dal.redis.stores import RedisStores
from services.attendance import AttendanceService, Started
from services.checkin_outcomes import CheckInStatus
from services.notice_codec import decode, encode
from services.notify import Button
from services.reminders import ReminderService
from tests.support import (
    IST,
    Clock,
    RecordingNotifier,
    build_test_services,
    link,
    open_session,
    student_user,
    teacher_user,
)

# Tomorrow at 10:00: sessions opened on the test's clock must be live by Redis's own clock.
LESSON = datetime.combine(datetime.now(IST).date() + timedelta(days=1), time(10), IST)
LEAD = timedelta(minutes=10)
CLOSING = timedelta(minutes=5)
TEACHER = teacher_user("T0001", "Ayşe Öğretmen")


def entry(number: str, code: str = "FIZ101", start: datetime = LESSON) -> ScheduleEntry:
    return ScheduleEntry(
        school_number=number,
        start_time=start,
        end_time=start + timedelta(minutes=50),
        course_code=code,
        course_name="Fizik I" if code == "FIZ101" else "Matematik",
        teachers="Dr. Ayşe Öğretmen",
        teacher_key="ayse ogretmen",
    )


def reminders(
    pg: Postgres, redis: RedisStores, clock: Clock, notifier: RecordingNotifier
) -> ReminderService:
    notifier.redis = redis.redis  # dedupe markers in Redis, as the outbox keeps them
    return build_test_services(pg, redis, notifier, clock=clock).reminders


def attendance_service(
    pg: Postgres, redis: RedisStores, clock: Clock, notifier: RecordingNotifier
) -> AttendanceService:
    return build_test_services(pg, redis, notifier, clock=clock).attendance


def session_of(user: User, telegram_id: int) -> CachedAccount:
    return CachedAccount(
        telegram_id=telegram_id,
        school_number=user.user_school_number,
        full_name=user.user_full_name,
        role=user.role,
        logged_in_at=LESSON - timedelta(days=1),
    )


async def seed_class(pg: Postgres) -> dict[str, User]:
    """FIZ101 at 10:00 taught by T0001. Enrolled: S1 (linked), S2 (linked, opted out), S3 (not
    linked), S4 and S6 (linked). S5 is linked but takes another course."""
    students = {n: student_user(n) for n in ["S1", "S2", "S3", "S4", "S5", "S6"]}
    await pg.accounts.add_users(users=[TEACHER, *students.values()])
    await pg.schedules.replace_schedule(school_number="T0001", entries=[entry("T0001")])
    for number in ["S1", "S2", "S3", "S4", "S6"]:
        await pg.schedules.replace_schedule(school_number=number, entries=[entry(number)])
    await pg.schedules.replace_schedule(school_number="S5", entries=[entry("S5", code="MAT101")])
    await link(pg, TEACHER, 100)
    await link(pg, students["S1"], 201)
    await link(pg, students["S2"], 202, reminders=False)
    await link(pg, students["S4"], 204, language="tr")
    await link(pg, students["S5"], 205)
    await link(pg, students["S6"], 206)
    return students


async def test_teacher_reminder_fires_once_at_the_lead_time_with_a_start_button(
    pg_client: Postgres, redis_client: RedisStores
) -> None:
    await seed_class(pg_client)
    later = teacher_user("T0004", "Can Hoca")
    await pg_client.accounts.add_users(users=[later])
    await pg_client.schedules.replace_schedule(
        school_number="T0004",
        entries=[entry("T0004", code="MAT101", start=LESSON + timedelta(minutes=30))],
    )
    await link(pg_client, later, 400, language="tr")
    notifier = RecordingNotifier()
    clock = Clock(LESSON - LEAD - timedelta(seconds=1))
    job = reminders(pg_client, redis_client, clock, notifier)

    assert (await job.run_once()).teacher == 0
    clock.at(LESSON - LEAD)
    assert (await job.run_once()).teacher == 1
    (notice,) = notifier.sent
    assert (notice.telegram_id, notice.key, notice.language) == (100, "remind.teacher", "en")
    assert notice.values["lesson"] == "FIZ101 - Fizik I"
    assert "10:00" in render(decode(encode(notice))[0])[0]  # in the recipient's locale
    assert notice.buttons == (
        Button("button.start_attendance", "start_lesson", ("FIZ101", int(LESSON.timestamp()))),
    )
    for moment in (LESSON - LEAD + timedelta(seconds=30), LESSON - timedelta(minutes=1), LESSON):
        clock.at(moment)
        assert (await job.run_once()).teacher == 0
    clock.at(LESSON + timedelta(minutes=20))
    assert (await job.run_once()).teacher == 1
    (reminder,) = notifier.sent[1:]
    assert reminder.telegram_id == 400
    assert "10:30" in render(decode(encode(reminder))[0])[0]


async def test_teacher_reminder_respects_opt_out_link_and_an_already_open_session(
    pg_client: Postgres, redis_client: RedisStores
) -> None:
    opted_out, unlinked, busy = (
        teacher_user("T0002", "Bir Hoca"),
        teacher_user("T0003", "İki Hoca"),
        teacher_user("T0005", "Üç Hoca"),
    )
    await pg_client.accounts.add_users(users=[opted_out, unlinked, busy])
    for teacher in (opted_out, unlinked, busy):
        number = teacher.user_school_number
        await pg_client.schedules.replace_schedule(school_number=number, entries=[entry(number)])
    await link(pg_client, opted_out, 302, reminders=False)
    await link(pg_client, busy, 305)
    # T0005 opened attendance for the lesson early, before the reminder was due.
    await open_session(
        redis_client,
        teacher=busy,
        start=LESSON - LEAD - timedelta(minutes=1),
        end=LESSON + timedelta(minutes=50),
        enrolled=["S1"],
    )
    notifier = RecordingNotifier()

    report = await reminders(pg_client, redis_client, Clock(LESSON - LEAD), notifier).run_once()

    assert report.teacher == 0
    assert notifier.sent == []


async def test_open_reminder_reaches_the_enrolled_linked_students_who_did_not_opt_out(
    pg_client: Postgres, redis_client: RedisStores
) -> None:
    await seed_class(pg_client)
    notifier = RecordingNotifier()
    service = attendance_service(
        pg_client, redis_client, Clock(LESSON + timedelta(minutes=2)), notifier
    )

    outcome = await service.start_session(teacher=session_of(TEACHER, 100), chat_id=100)

    assert isinstance(outcome, Started)
    assert outcome.enrolled == 5
    assert sorted((n.telegram_id, n.key, n.language) for n in notifier.sent) == [
        (201, "remind.open", "en"),
        (204, "remind.open", "tr"),
        (206, "remind.open", "en"),
    ]
    assert {n.values["lesson"] for n in notifier.sent} == {"FIZ101 - Fizik I"}


async def test_closing_reminder_reaches_enrolled_students_not_checked_in_once(
    pg_client: Postgres, redis_client: RedisStores
) -> None:
    students = await seed_class(pg_client)
    clock = Clock(LESSON + timedelta(minutes=2))
    opened = RecordingNotifier()
    service = attendance_service(pg_client, redis_client, clock, opened)
    outcome = await service.start_session(teacher=session_of(TEACHER, 100), chat_id=100)
    assert isinstance(outcome, Started)
    code = outcome.attendance.code
    clock.advance(minutes=1)
    for number, telegram_id in (("S1", 201), ("S5", 205)):
        await redis_client.users.save_user_session(
            session=session_of(students[number], telegram_id), ttl_seconds=3600
        )
    result = await service.check_in(telegram_id=201, code=code)
    assert result.status is CheckInStatus.OK_PRESENT
    result = await service.check_in(telegram_id=205, code=code)
    assert result.status is CheckInStatus.OK_PENDING  # not enrolled: never reminded anyway
    notifier = RecordingNotifier()
    job = reminders(pg_client, redis_client, clock, notifier)
    end = outcome.attendance.planned_end_time
    assert end == LESSON + timedelta(minutes=50)

    clock.at(end - CLOSING - timedelta(seconds=1))
    assert (await job.run_once()).closing == 0
    clock.at(end - CLOSING)
    assert (await job.run_once()).closing == 2
    assert sorted((n.telegram_id, n.key, n.language) for n in notifier.sent) == [
        (204, "remind.closing", "tr"),
        (206, "remind.closing", "en"),
    ]
    assert notifier.sent[0].values["lesson"] == "FIZ101 - Fizik I"
    assert "10:50" in render(decode(encode(notifier.sent[0]))[0])[0]
    clock.at(end - timedelta(minutes=1))
    assert (await job.run_once()).closing == 0
    assert len(notifier.sent) == 2


async def test_no_closing_reminder_for_a_session_the_teacher_already_ended(
    pg_client: Postgres, redis_client: RedisStores
) -> None:
    await seed_class(pg_client)
    clock = Clock(LESSON + timedelta(minutes=2))
    service = attendance_service(pg_client, redis_client, clock, RecordingNotifier())
    outcome = await service.start_session(teacher=session_of(TEACHER, 100), chat_id=100)
    assert isinstance(outcome, Started)
    clock.at(LESSON + timedelta(minutes=30))
    # By id: `open_session()` (no id) asks Redis with the real time, not the service clock.
    roster = await service.end_session(
        teacher=session_of(TEACHER, 100), attendance_id=outcome.attendance.attendance_id
    )
    assert roster is not None and roster.attendance.end_time == clock()
    notifier = RecordingNotifier()

    clock.at(outcome.attendance.planned_end_time - CLOSING)
    report = await reminders(pg_client, redis_client, clock, notifier).run_once()

    assert report.closing == 0
    assert notifier.sent == []


async def test_closing_reminder_skips_a_session_without_known_enrolment(
    pg_client: Postgres, redis_client: RedisStores
) -> None:
    await seed_class(pg_client)
    clock = Clock(LESSON + timedelta(minutes=2))
    service = attendance_service(pg_client, redis_client, clock, RecordingNotifier())
    outcome = await service.start_session(
        teacher=session_of(TEACHER, 100), chat_id=100, lesson_name="Özel seminer"
    )
    assert isinstance(outcome, Started)
    assert outcome.enrolled == 0
    notifier = RecordingNotifier()
    clock.at(outcome.attendance.planned_end_time - CLOSING)

    assert (await reminders(pg_client, redis_client, clock, notifier).run_once()).closing == 0
    assert notifier.sent == []
