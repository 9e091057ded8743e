"""The per-(student, course, term) counts on real PostgreSQL: after finalizations (batched and
one by one, each run twice: exactly once), a teacher's corrections from /history (present ↔
absent, excused, a student added), a record and a whole session soft-deleted, the table holds
exactly what a recount of the records gives; and "how many more can be missed" with the warning
levels it drives, from a student's weekly slots over the term's weeks."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

import pytest

from bot.delivery import render
from dal.models import Attendance, AttendanceRecord, FailReason, Role, ScheduleEntry
from dal.pg import LinkedUser, Postgres
from dal.pg.counts import COUNT_COLUMNS, RECOUNT_SQL
from services.attendance_status import AttendanceRate, StatusCounts
from services.notice_codec import decode, encode
from services.reports import ReportService
from services.warnings import AttendanceWarnings, WarningRule, planned_sessions
from tests.support import (
    IST,
    RecordingNotifier,
    signed_in,
    student_user,
    teacher_user,
)

pytestmark = pytest.mark.stores

START = datetime(2026, 2, 16, 9, 0, tzinfo=IST)  # a Monday
COURSE = "YBS101"
LESSON = "Veri Yapıları"
STUDENTS = ("2024001", "2024002", "2024003")


async def _table(pg: Postgres) -> dict[tuple[str, str, str], tuple[int, ...]]:
    rows = await pg.db.pool.fetch(
        f"SELECT student_number, term, course_key, {', '.join(COUNT_COLUMNS)}"
        " FROM attendance_course_counts"
    )
    return {
        (r["student_number"], r["term"], r["course_key"]): tuple(r[c] for c in COUNT_COLUMNS)
        for r in rows
        if any(r[c] for c in COUNT_COLUMNS)
    }


async def _recount(pg: Postgres) -> dict[tuple[str, str, str], tuple[int, ...]]:
    rows = await pg.db.pool.fetch(RECOUNT_SQL)
    return {
        (r["student_number"], r["term"], r["course_key"]): tuple(r[c] for c in COUNT_COLUMNS)
        for r in rows
    }


def _session_of(week: int, term: str | None = "2025-2", code: str = COURSE) -> Attendance:
    start = START + timedelta(weeks=week)
    return Attendance(
        attendance_id=uuid.uuid4(),
        teacher_school_number="T0001",
        lesson_name=LESSON,
        lesson_code=code,
        start_time=start,
        end_time=start + timedelta(minutes=50),
        term=term,
    )


def _sheet(attendance: Attendance, letters: str) -> list[AttendanceRecord]:
    records = []
    for number, letter in zip(STUDENTS, letters, strict=True):
        attended = letter in "PL"
        records.append(
            AttendanceRecord(
                attendance_id=attendance.attendance_id,
                student_number=number,
                is_attended=attended,
                is_late=letter == "L",
                attendance_time=attendance.start_time + timedelta(minutes=2) if attended else None,
                fail_reason=None if attended else FailReason.ABSENT.value,
            )
        )
    return records


async def test_counts_equal_a_recount_after_finalizations_and_corrections(
    pg_client: Postgres,
) -> None:
    pg = pg_client
    users = [teacher_user(), *(student_user(n) for n in STUDENTS)]
    await pg.accounts.add_users(users=users)
    batch = [_session_of(0), _session_of(1), _session_of(2, term=None)]
    sheets = {
        a.attendance_id: _sheet(a, letters)
        for a, letters in zip(batch, ("PAL", "AAP", "PPA"), strict=True)
    }
    records = [r for a in batch for r in sheets[a.attendance_id]]

    # A batch stored by finalization, then the same batch again (a re-run after a crash).
    assert (
        len(await pg.attendance.persist_sessions(users=users, attendances=batch, records=records))
        == 3
    )
    first = await _table(pg)
    assert first == await _recount(pg)
    assert first[("2024002", "2025-2", COURSE)] == (0, 0, 2, 0, 0, 0)
    assert first[("2024001", "", COURSE)] == (1, 0, 0, 0, 0, 0)  # the term unknown
    assert (
        await pg.attendance.persist_sessions(users=users, attendances=batch, records=records)
        == set()
    )
    assert await _table(pg) == first

    # One session stored alone (a refused batch retried one by one), twice.
    alone = _session_of(3)
    for _ in range(2):
        await pg.attendance.persist_session(
            users=users, attendance=alone, records=_sheet(alone, "APP")
        )
    assert await _table(pg) == await _recount(pg)
    assert (await _table(pg))[("2024001", "2025-2", COURSE)] == (1, 0, 2, 0, 0, 0)

    # A teacher's corrections from /history.
    reports = ReportService(
        accounts=pg.accounts,
        attendance=pg.attendance,
        corrections=pg.corrections,
        reports=pg.reports,
        tz=IST,
    )
    teacher = signed_in("T0001", Role.TEACHER)
    await reports.toggle(
        teacher=teacher, attendance_id=batch[1].attendance_id, student_number="2024001"
    )
    await reports.excuse(
        teacher=teacher,
        attendance_id=batch[1].attendance_id,
        student_number="2024002",
        reason="rapor",
    )
    await reports.toggle(
        teacher=teacher, attendance_id=batch[0].attendance_id, student_number="2024003"
    )
    await pg.accounts.add_users(users=[student_user("2024009")])
    await reports.add_to_saved(
        teacher=teacher,
        attendance_id=alone.attendance_id,
        student_number="2024009",
        at=alone.start_time,
    )
    after = await _table(pg)
    assert after == await _recount(pg)
    assert after[("2024002", "2025-2", COURSE)] == (1, 0, 1, 0, 0, 1)
    assert after[("2024009", "2025-2", COURSE)] == (1, 0, 0, 0, 0, 0)

    # A record, then a whole session, soft-deleted; a deleted record's student added back.
    await pg.corrections.delete_attendance_record(
        attendance_id=alone.attendance_id,
        student_number="2024003",
        reason="yanlış",
        changed_by="T0001",
    )
    assert await _table(pg) == await _recount(pg)
    await reports.add_to_saved(
        teacher=teacher,
        attendance_id=alone.attendance_id,
        student_number="2024003",
        at=alone.start_time,
    )
    await pg.corrections.delete_attendance(
        attendance_id=batch[0].attendance_id, reason="çift kayıt", changed_by="T0001"
    )
    final = await _table(pg)
    assert final == await _recount(pg)
    assert final[("2024003", "2025-2", COURSE)] == (2, 0, 0, 0, 0, 0)

    # /my_attendance's summary reads the counts of the current term (the schedules' newest).
    await pg.schedules.replace_schedule(
        school_number="2024002",
        entries=[
            ScheduleEntry(
                school_number="2024002",
                start_time=START + timedelta(days=d),
                end_time=START + timedelta(days=d, minutes=50),
                course_code=COURSE,
                course_name=LESSON,
                teachers="Ayşe Öğretmen",
                teacher_key="ayse ogretmen",
                term="2025-2",
            )
            for d in (0, 2, 7)  # Monday and Wednesday, the Monday again: two weekly slots
        ],
    )
    (standing,) = await reports.my_courses(student=signed_in("2024002", Role.STUDENT))
    assert standing.rate.counts == StatusCounts(present=1, excused=1)
    assert standing.rows == []
    # 2 slots x 14 weeks = 28 planned, 27 counted (one excused): 18.9 to attend; 1 attended
    # and 26 to come leave 8.1.
    assert standing.can_miss == 8


def _rate(**counts: int) -> AttendanceRate:
    return AttendanceRate(StatusCounts(**counts))


def test_how_many_more_can_be_missed() -> None:
    rule = WarningRule(percent=70, min_sessions=3, term_weeks=10)
    assert rule.can_miss(_rate(), None) is None
    assert rule.can_miss(_rate(), 10) == 3  # 7 of 10 needed
    assert rule.can_miss(_rate(absent=2), 10) == 1
    assert rule.can_miss(_rate(absent=3), 10) == 0
    assert rule.can_miss(_rate(absent=4), 10) == -1
    assert rule.can_miss(_rate(absent=2, excused=1), 10) == 0  # 6.3 of 9 needed, 7 to come
    assert rule.can_miss(_rate(present=9), 10) == 1  # never more than what is left
    assert rule.level(_rate(absent=2), 10) == 1
    assert rule.level(_rate(absent=1), 10) == 0
    assert rule.level(_rate(absent=3), 10) == 2  # 0/3 is below now
    assert (
        planned_sessions([START, START + timedelta(days=7), START + timedelta(days=2)], IST, 10)
        == 20
    )
    assert planned_sessions([], IST, 10) is None


async def test_the_last_chance_and_the_crossing_warn_once_each(pg_client: Postgres) -> None:
    pg = pg_client
    await pg.accounts.add_users(users=[teacher_user(), student_user("2024050")])
    await pg.schedules.replace_schedule(
        school_number="2024050",
        entries=[
            ScheduleEntry(
                school_number="2024050",
                start_time=START,
                end_time=START + timedelta(minutes=50),
                course_code=COURSE,
                course_name=LESSON,
                teachers="Ayşe Öğretmen",
                teacher_key="ayse ogretmen",
                term="2025-2",
            )
        ],
    )
    notifier = RecordingNotifier()
    warnings = AttendanceWarnings(
        reports=pg.reports,
        notifier=notifier,
        rule=WarningRule(percent=70, min_sessions=4, term_weeks=10),
        tz=IST,
    )
    contact = LinkedUser(
        school_number="2024050",
        full_name="Deniz",
        role=Role.STUDENT,
        telegram_id=5050,
        language="tr",
        reminders_enabled=True,
        linked_at=datetime.now(UTC),
    )
    keys: list[list[str]] = []
    # A: can miss 2 more; A: 1 more (warned); P: still 1; A: 1/4 is below (warned); A: below.
    for week, letter in enumerate("AAPAA"):
        attendance = _session_of(week)
        record = AttendanceRecord(
            attendance_id=attendance.attendance_id,
            student_number="2024050",
            is_attended=letter == "P",
            attendance_time=attendance.start_time if letter == "P" else None,
            fail_reason=None if letter == "P" else FailReason.ABSENT.value,
        )
        await pg.attendance.persist_sessions(users=[], attendances=[attendance], records=[record])
        before = len(notifier.sent)
        await warnings.check([(attendance, ["2024050"])], {"2024050": contact})
        # Looking again (finalization re-run, a restart) repeats nothing.
        await warnings.check([(attendance, ["2024050"])], {"2024050": contact})
        keys.append([n.key for n in notifier.sent[before:]])
    assert keys == [[], ["warning.miss_one"], [], ["warning.below"], []]
    (last,) = notifier.keys("warning.miss_one")
    assert last.values["attended"] == 0 and last.values["held"] == 2
    # In the student's language when the outbox delivers it.
    text = render(decode(encode(last))[0])[0]
    assert "yalnızca 1 derse daha" in text and "%70" in text
