"""`ScheduleStore` (dal/pg/schedules.py) against the real PostgreSQL server: replacing a cached
schedule, the lesson in progress, lessons by teacher key, enrolment, teachers' lessons due."""

from __future__ import annotations

from datetime import datetime, timedelta

import pytest

from dal.errors import NotFound
from dal.pg import Postgres
from tests.dal.pg.support import T0, TEACHER, entry, student


async def test_replace_schedule_replaces_the_previous_one(pg: Postgres) -> None:
    await pg.accounts.add_users(users=[student("1")])
    await pg.schedules.replace_schedule(school_number="1", entries=[entry("1", code="OLD1")])

    new = [entry("1", start=T0 + timedelta(hours=2), code="B"), entry("1", code="A")]
    await pg.schedules.replace_schedule(school_number="1", entries=[*new, new[0]])

    day = await pg.schedules.get_schedule(
        school_number="1", start=T0 - timedelta(hours=1), end=T0 + timedelta(days=1)
    )
    assert [(e.course_code, e.start_time) for e in day] == [
        ("A", T0),
        ("B", T0 + timedelta(hours=2)),
    ]
    assert day[0].teachers == "Dr. Ayşe Öğretmen"
    await pg.schedules.replace_schedule(school_number="1", entries=[])
    assert (
        await pg.schedules.get_schedule(school_number="1", start=T0, end=T0 + timedelta(days=1))
        == []
    )


async def test_replace_schedule_of_unknown_user_or_foreign_entries_fails(
    pg: Postgres,
) -> None:
    with pytest.raises(NotFound):
        await pg.schedules.replace_schedule(school_number="ghost", entries=[entry("ghost")])
    await pg.accounts.add_users(users=[student("1")])
    with pytest.raises(ValueError, match="given to"):
        await pg.schedules.replace_schedule(school_number="1", entries=[entry("2")])


async def test_get_schedule_finds_the_lesson_in_progress(pg: Postgres) -> None:
    await pg.accounts.add_users(users=[student("1")])
    await pg.schedules.replace_schedule(
        school_number="1",
        entries=[
            entry("1", code="MORNING"),
            entry("1", start=T0 + timedelta(hours=3), code="LATER"),
        ],
    )
    now = T0 + timedelta(minutes=20)

    current = await pg.schedules.get_schedule(
        school_number="1", start=now, end=now + timedelta(seconds=1)
    )

    assert [e.course_code for e in current] == ["MORNING"]
    with pytest.raises(ValueError, match="timezone-aware"):
        await pg.schedules.get_schedule(
            school_number="1",
            start=datetime(2025, 3, 10),  # noqa: DTZ001
            end=now,
        )


async def test_lessons_by_teacher_key_are_distinct_occurrences(pg: Postgres) -> None:
    await pg.accounts.add_users(users=[student("2"), student("1"), student("3")])
    for number in ("1", "2"):
        await pg.schedules.replace_schedule(
            school_number=number,
            entries=[
                entry(number),
                entry(number, start=T0 + timedelta(days=1)),
                entry(number, code="KIM101", key="başka hoca"),
            ],
        )
    await pg.schedules.replace_schedule(
        school_number="3", entries=[entry("3", start=T0 + timedelta(hours=1), code="FIZ102")]
    )

    found = await pg.schedules.find_lessons_by_teacher_key(
        teacher_key="ayse ogretmen", start=T0, end=T0 + timedelta(hours=12)
    )

    assert [(e.course_code, e.start_time) for e in found] == [
        ("FIZ101", T0),
        ("FIZ102", T0 + timedelta(hours=1)),
    ]
    assert found[0].school_number == "1"  # the lowest school number holding it


async def test_enrolled_students_are_students_with_the_course(pg: Postgres) -> None:
    await pg.accounts.add_users(users=[student("2"), student("1"), TEACHER, student("9")])
    for number in ("2", "1", TEACHER.user_school_number):
        await pg.schedules.replace_schedule(
            school_number=number,
            entries=[entry(number), entry(number, start=T0 + timedelta(days=7))],
        )
    await pg.schedules.replace_schedule(school_number="9", entries=[entry("9", code="OTHER")])

    entries = await pg.schedules.get_course_entries(course_code="FIZ101", term=None)
    assert sorted({e.school_number for e in entries}) == ["1", "2"]
    assert len(entries) == 4  # both weeks of both students
    assert await pg.schedules.get_course_entries(course_code="NONE", term=None) == []


async def test_teacher_lessons_starting_in_window(pg: Postgres) -> None:
    await pg.accounts.add_users(users=[TEACHER, student("1")])
    await pg.schedules.replace_schedule(
        school_number=TEACHER.user_school_number,
        entries=[
            entry(TEACHER.user_school_number),
            entry(TEACHER.user_school_number, start=T0 + timedelta(minutes=10), code="EDGE"),
        ],
    )
    await pg.schedules.replace_schedule(school_number="1", entries=[entry("1")])

    due = await pg.schedules.get_teacher_lessons_starting(
        start=T0 - timedelta(minutes=5), end=T0 + timedelta(minutes=10)
    )

    assert [(e.school_number, e.course_code) for e in due] == [("T0001", "FIZ101")]
