"""Postgres against the real PostgreSQL server (fresh database for the run)."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Sequence
from datetime import datetime, timedelta
from urllib.parse import urlsplit, urlunsplit
from zoneinfo import ZoneInfo

import asyncpg
import pytest

from dal.errors import Conflict, DatabaseUnavailable, NotFound, mask_url
from dal.models import (
    Attendance,
    AttendanceRecord,
    FailReason,
    RecordSource,
    Role,
    ScheduleEntry,
    User,
)
from dal.pg import Postgres, RecordMethod

IST = ZoneInfo("Europe/Istanbul")
T0 = datetime(2025, 3, 10, 9, 0, tzinfo=IST)
TEACHER = User(user_school_number="T0001", user_full_name="Ayşe Öğretmen", role=Role.TEACHER)
TURKISH_NAME = "İpek Şahin Ağaoğlu Işık"


@pytest.fixture
async def pg(pg_dsn: str) -> AsyncIterator[Postgres]:
    client = await Postgres.connect(pg_dsn, max_size=4)
    await client.db.pool.execute(
        "TRUNCATE users, attendances, attendance_records, schedule_entries CASCADE"
    )
    try:
        yield client
    finally:
        await client.db.close()


def student(number: str, name: str | None = None) -> User:
    return User(
        user_school_number=number, user_full_name=name or f"Öğrenci {number}", role=Role.STUDENT
    )


def attendance(
    *, start: datetime = T0, teacher: str = TEACHER.user_school_number, name: str = "Fizik I"
) -> Attendance:
    return Attendance(
        attendance_id=uuid.uuid4(),
        teacher_school_number=teacher,
        lesson_name=name,
        lesson_code="FIZ101",
        start_time=start,
        end_time=start + timedelta(minutes=50),
    )


def present(att: Attendance, number: str, *, minutes: int = 2) -> AttendanceRecord:
    return AttendanceRecord(
        attendance_id=att.attendance_id,
        student_number=number,
        is_attended=True,
        attendance_time=att.start_time + timedelta(minutes=minutes),
    )


def entry(
    number: str,
    *,
    start: datetime = T0,
    code: str = "FIZ101",
    key: str = "ayse ogretmen",
    minutes: int = 50,
) -> ScheduleEntry:
    return ScheduleEntry(
        school_number=number,
        start_time=start,
        end_time=start + timedelta(minutes=minutes),
        course_code=code,
        course_name=f"Ders {code}",
        teachers="Dr. Ayşe Öğretmen",
        teacher_key=key,
    )


async def count(pg: Postgres, table: str) -> int:
    value: int = await pg.db.pool.fetchval(f"SELECT count(*) FROM {table}")
    return value


# --- connection ---------------------------------------------------------------------------


async def test_unreachable_server_raises_one_line_with_masked_password() -> None:
    dsn = "postgresql://attn:hunter2-secret@127.0.0.1:1/attn"

    with pytest.raises(DatabaseUnavailable) as caught:
        await Postgres.connect(dsn, connect_timeout=2)

    message = str(caught.value)
    assert message.startswith("PostgreSQL unreachable at postgresql://attn:***@127.0.0.1:1/attn: ")
    assert "hunter2-secret" not in message
    assert "\n" not in message
    assert caught.value.__cause__ is None
    assert caught.value.__suppress_context__


async def test_missing_database_is_reported_as_unavailable(pg_dsn: str) -> None:
    dsn = urlunsplit(urlsplit(pg_dsn)._replace(path="/attn_no_such_db_x"))
    with pytest.raises(DatabaseUnavailable, match="attn_no_such_db_x"):
        await Postgres.connect(dsn)


def test_mask_url_hides_passwords_in_authority_and_query() -> None:
    assert mask_url("postgresql://u:p@h:5432/d") == "postgresql://u:***@h:5432/d"
    assert mask_url("postgresql://u@h/d") == "postgresql://u@h/d"
    assert "sekrit" not in mask_url("postgresql://h/d?user=u&password=sekrit")


async def test_ping_reports_a_server_that_is_gone() -> None:
    # min_size=0 opens no connection up front, so connect() relies on ping() to notice.
    with pytest.raises(DatabaseUnavailable, match=r"postgresql://attn:\*\*\*@127\.0\.0\.1:1/attn"):
        await Postgres.connect("postgresql://attn:pw@127.0.0.1:1/attn", min_size=0, migrate=False)


async def test_ping_and_pool(pg: Postgres) -> None:
    await pg.db.ping()
    assert await pg.db.pool.fetchval("SELECT max(version) FROM schema_migrations") >= 1


async def test_connect_without_migrating_still_checks_the_server(pg_dsn: str) -> None:
    client = await Postgres.connect(pg_dsn, min_size=0, migrate=False)
    try:
        await client.db.ping()
    finally:
        await client.db.close()


# --- users --------------------------------------------------------------------------------


async def test_turkish_names_round_trip(pg: Postgres) -> None:
    await pg.accounts.add_users(users=[student("2024001", TURKISH_NAME)])

    (user,) = await pg.accounts.get_users(school_numbers=["2024001"])

    assert user.user_full_name == TURKISH_NAME
    assert user.role is Role.STUDENT


async def test_add_users_updates_name_and_role_but_keeps_the_telegram_link(
    pg: Postgres,
) -> None:
    await pg.accounts.link_telegram(user=student("1"), telegram_id=500, language="tr")

    await pg.accounts.add_users(
        users=[User(user_school_number="1", user_full_name="Yeni Ad", role=Role.TEACHER)]
    )

    assert await pg.accounts.get_users(school_numbers=["1"]) == [
        User(user_school_number="1", user_full_name="Yeni Ad", role=Role.TEACHER)
    ]
    linked = await pg.accounts.get_linked_user(telegram_id=500)
    assert linked is not None
    assert linked.language == "tr"
    assert linked.full_name == "Yeni Ad"


async def test_repeated_school_number_in_one_batch_keeps_the_last(pg: Postgres) -> None:
    await pg.accounts.add_users(users=[student("1", "Eski"), student("1", "Son")])
    (user,) = await pg.accounts.get_users(school_numbers=["1"])
    assert user.user_full_name == "Son"


async def test_get_users_all_or_selected(pg: Postgres) -> None:
    await pg.accounts.add_users(users=[student("3"), student("1"), student("2")])

    assert [u.user_school_number for u in await pg.accounts.get_users()] == ["1", "2", "3"]
    chosen = await pg.accounts.get_users(school_numbers=["3", "1", "9"])
    assert [u.user_school_number for u in chosen] == ["1", "3"]
    assert await pg.accounts.get_users(school_numbers=[]) == []


# --- Telegram link ------------------------------------------------------------------------


async def test_login_from_second_account_moves_link_and_names_the_first(
    pg: Postgres,
) -> None:
    assert (
        await pg.accounts.link_telegram(user=student("1"), telegram_id=100, language="en") is None
    )

    previous = await pg.accounts.link_telegram(user=student("1"), telegram_id=200, language="tr")

    assert previous == 100
    assert await pg.accounts.get_linked_user(telegram_id=100) is None
    linked = await pg.accounts.get_linked_user(telegram_id=200)
    assert linked is not None
    assert (linked.school_number, linked.role, linked.language) == ("1", Role.STUDENT, "tr")
    assert linked.linked_at.utcoffset() is not None


async def test_relogin_from_same_account_reports_no_previous(pg: Postgres) -> None:
    await pg.accounts.link_telegram(user=student("1"), telegram_id=100, language="en")
    assert (
        await pg.accounts.link_telegram(user=student("1"), telegram_id=100, language="en") is None
    )


async def test_account_logging_in_as_another_school_number_leaves_the_first(
    pg: Postgres,
) -> None:
    await pg.accounts.link_telegram(user=student("1"), telegram_id=100, language="en")

    assert (
        await pg.accounts.link_telegram(user=student("2"), telegram_id=100, language="en") is None
    )

    assert await pg.accounts.get_contacts(school_numbers=["1", "2"]) == [
        await pg.accounts.get_linked_user(telegram_id=100)
    ]
    linked = await pg.accounts.get_linked_user(telegram_id=100)
    assert linked is not None
    assert linked.school_number == "2"


async def test_concurrent_links_of_one_account_leave_one_link(pg: Postgres) -> None:
    await asyncio.gather(
        *(
            pg.accounts.link_telegram(user=student(str(n)), telegram_id=777, language="en")
            for n in range(6)
        )
    )
    linked = await pg.db.pool.fetchval("SELECT count(*) FROM users WHERE telegram_id = 777")
    assert linked == 1


async def test_reminders_setting(pg: Postgres) -> None:
    await pg.accounts.link_telegram(user=student("1"), telegram_id=100, language="en")

    await pg.accounts.set_reminders(school_number="1", enabled=False)

    linked = await pg.accounts.get_linked_user(telegram_id=100)
    assert linked is not None
    assert linked.reminders_enabled is False
    with pytest.raises(NotFound):
        await pg.accounts.set_reminders(school_number="nope", enabled=True)


async def test_contacts_only_include_linked_users(pg: Postgres) -> None:
    await pg.accounts.add_users(users=[student("1"), student("2")])
    await pg.accounts.link_telegram(user=student("3"), telegram_id=300, language="en")

    contacts = await pg.accounts.get_contacts(school_numbers=["1", "2", "3"])

    assert [(c.school_number, c.telegram_id) for c in contacts] == [("3", 300)]
    assert await pg.accounts.get_contacts(school_numbers=[]) == []


# --- schedule -----------------------------------------------------------------------------


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


# --- attendances --------------------------------------------------------------------------


async def test_attendance_round_trip_and_newest_first(pg: Postgres) -> None:
    await pg.accounts.add_users(users=[TEACHER])
    older, newer = attendance(start=T0), attendance(start=T0 + timedelta(days=1), name="Şiir")
    await pg.attendance.add_attendances(attendances=[older, newer])

    assert await pg.attendance.get_attendance_by_id(attendance_id=older.attendance_id) == older
    listed = await pg.reports.get_attendances(teacher_school_number="T0001")
    assert [a.attendance_id for a in listed] == [newer.attendance_id, older.attendance_id]
    page = await pg.reports.get_attendances(teacher_school_number="T0001", limit=1, offset=1)
    assert [a.attendance_id for a in page] == [older.attendance_id]


async def test_duplicate_or_orphan_attendance_is_refused_whole(pg: Postgres) -> None:
    await pg.accounts.add_users(users=[TEACHER])
    first = attendance()
    await pg.attendance.add_attendances(attendances=[first])

    with pytest.raises(Conflict):
        await pg.attendance.add_attendances(attendances=[attendance(), first])
    with pytest.raises(NotFound):
        await pg.attendance.add_attendances(attendances=[attendance(), attendance(teacher="ghost")])
    assert await count(pg, "attendances") == 1


async def test_soft_deleted_attendance_disappears_with_its_records(
    pg: Postgres,
) -> None:
    await pg.accounts.add_users(users=[TEACHER, student("1")])
    att = attendance()
    await pg.attendance.add_attendances(attendances=[att])
    await pg.attendance.add_attendance_records(records=[present(att, "1")])

    await pg.corrections.delete_attendance(attendance_id=att.attendance_id, reason="yanlış ders")

    assert await pg.reports.get_attendances(teacher_school_number="T0001") == []
    with pytest.raises(NotFound):
        await pg.attendance.get_attendance_by_id(attendance_id=att.attendance_id)
    assert await pg.attendance.get_attendance_records(attendance_id=att.attendance_id) == []
    assert await pg.reports.get_student_records(student_number="1") == []
    with pytest.raises(NotFound):
        await pg.corrections.delete_attendance(attendance_id=att.attendance_id, reason="again")
    row = await pg.db.pool.fetchrow(
        "SELECT deletion_reason, deletion_time FROM attendances WHERE attendance_id = $1",
        att.attendance_id,
    )
    assert row is not None
    assert row["deletion_reason"] == "yanlış ders"
    assert row["deletion_time"] is not None


# --- records ------------------------------------------------------------------------------


async def _session(pg: Postgres, students: int) -> Attendance:
    await pg.accounts.add_users(users=[TEACHER, *(student(f"{n:04d}") for n in range(students))])
    att = attendance()
    await pg.attendance.add_attendances(attendances=[att])
    return att


@pytest.mark.parametrize("method", ["copy", "executemany"])
async def test_records_round_trip_and_duplicates_are_harmless(
    pg: Postgres, method: RecordMethod
) -> None:
    att = await _session(pg, 3)
    records = [
        present(att, "0002"),
        AttendanceRecord(
            attendance_id=att.attendance_id,
            student_number="0000",
            is_attended=False,
            fail_reason=FailReason.ABSENT,
        ),
        AttendanceRecord(
            attendance_id=att.attendance_id,
            student_number="0001",
            is_attended=True,
            attendance_time=T0,
            source=RecordSource.TEACHER,
        ),
    ]

    assert await pg.attendance.add_attendance_records(records=records, method=method) == 3
    assert (
        await pg.attendance.add_attendance_records(records=[*records, records[0]], method=method)
        == 0
    )

    stored = await pg.attendance.get_attendance_records(attendance_id=att.attendance_id)
    assert stored == sorted(records, key=lambda r: r.student_number)
    assert stored[1].source is RecordSource.TEACHER
    assert await pg.attendance.add_attendance_records(records=[], method=method) == 0


@pytest.mark.parametrize("method", ["copy", "executemany"])
async def test_bulk_insert_of_ten_thousand_records(pg: Postgres, method: RecordMethod) -> None:
    await pg.accounts.add_users(users=[TEACHER, *(student(f"{n:03d}") for n in range(100))])
    sessions = [attendance(start=T0 + timedelta(days=d)) for d in range(100)]
    await pg.attendance.add_attendances(attendances=sessions)
    records = [present(att, f"{n:03d}") for att in sessions for n in range(100)]

    assert await pg.attendance.add_attendance_records(records=records, method=method) == 10_000

    assert await count(pg, "attendance_records") == 10_000
    assert (
        len(await pg.attendance.get_attendance_records(attendance_id=sessions[5].attendance_id))
        == 100
    )


@pytest.mark.parametrize("method", ["copy", "executemany"])
async def test_record_for_unknown_student_inserts_nothing(
    pg: Postgres, method: RecordMethod
) -> None:
    att = await _session(pg, 1)
    with pytest.raises(NotFound, match="ghost"):
        await pg.attendance.add_attendance_records(
            records=[present(att, "0000"), present(att, "ghost")], method=method
        )
    assert await count(pg, "attendance_records") == 0


async def test_unknown_insert_method_is_refused(pg: Postgres) -> None:
    with pytest.raises(ValueError, match="unknown insert method"):
        await pg.attendance.add_attendance_records(records=[], method="turbo")  # type: ignore[arg-type]


async def test_soft_deleted_record_is_excluded(pg: Postgres) -> None:
    att = await _session(pg, 2)
    await pg.attendance.add_attendance_records(records=[present(att, "0000"), present(att, "0001")])

    await pg.corrections.delete_attendance_record(
        attendance_id=att.attendance_id, student_number="0000", reason="kopya"
    )

    stored = await pg.attendance.get_attendance_records(attendance_id=att.attendance_id)
    assert [r.student_number for r in stored] == ["0001"]
    assert await pg.reports.get_student_records(student_number="0000") == []
    with pytest.raises(NotFound):
        await pg.corrections.delete_attendance_record(
            attendance_id=att.attendance_id, student_number="0000", reason="again"
        )
    with pytest.raises(NotFound):
        await pg.corrections.set_record_attended(
            attendance_id=att.attendance_id,
            student_number="0000",
            is_attended=True,
            fail_reason=None,
        )


async def test_teacher_accepts_then_rejects_a_pending_record(pg: Postgres) -> None:
    att = await _session(pg, 1)
    await pg.attendance.add_attendance_records(
        records=[
            AttendanceRecord(
                attendance_id=att.attendance_id,
                student_number="0000",
                is_attended=False,
                attendance_time=T0,
                fail_reason=FailReason.NOT_IN_SCHEDULE,
            )
        ]
    )

    accepted = await pg.corrections.set_record_attended(
        attendance_id=att.attendance_id, student_number="0000", is_attended=True, fail_reason=None
    )
    assert (accepted.is_attended, accepted.fail_reason) == (True, None)
    rejected = await pg.corrections.set_record_attended(
        attendance_id=att.attendance_id,
        student_number="0000",
        is_attended=False,
        fail_reason="REJECTED: başka şube",
    )

    assert rejected.fail_reason == "REJECTED: başka şube"
    assert await pg.attendance.get_attendance_records(attendance_id=att.attendance_id) == [rejected]
    with pytest.raises(NotFound):
        await pg.corrections.set_record_attended(
            attendance_id=att.attendance_id,
            student_number="nobody",
            is_attended=True,
            fail_reason=None,
        )
    with pytest.raises(ValueError, match="no fail_reason"):
        await pg.corrections.set_record_attended(
            attendance_id=att.attendance_id,
            student_number="0000",
            is_attended=True,
            fail_reason="ABSENT",
        )


async def test_student_records_oldest_first_every_status(pg: Postgres) -> None:
    await pg.accounts.add_users(users=[TEACHER, student("1")])
    sessions = [attendance(start=T0 + timedelta(days=d), name=f"Ders {d}") for d in range(3)]
    await pg.attendance.add_attendances(attendances=sessions)
    await pg.attendance.add_attendance_records(
        records=[
            present(sessions[0], "1"),
            AttendanceRecord(
                attendance_id=sessions[1].attendance_id,
                student_number="1",
                is_attended=True,
                attendance_time=T0,
                is_late=True,
            ),
            AttendanceRecord(
                attendance_id=sessions[2].attendance_id,
                student_number="1",
                is_attended=False,
                fail_reason=FailReason.ABSENT,
            ),
        ]
    )

    history = await pg.reports.get_student_records(student_number="1")

    assert [(h.lesson_name, h.is_attended, h.is_late, h.fail_reason) for h in history] == [
        ("Ders 0", True, False, None),
        ("Ders 1", True, True, None),
        ("Ders 2", False, False, "ABSENT"),
    ]
    assert history[2].lesson_code == "FIZ101"
    assert history[2].start_time == T0 + timedelta(days=2)


# --- finalization -------------------------------------------------------------------------


def _finished_session(students: int) -> tuple[list[User], Attendance, list[AttendanceRecord]]:
    users = [TEACHER, *(student(f"S{n:04d}", f"Öğrenci İş {n}") for n in range(students))]
    att = attendance()
    records = [present(att, u.user_school_number) for u in users[1:]]
    return users, att, records


async def test_persist_session_twice_leaves_one_copy(pg: Postgres) -> None:
    users, att, records = _finished_session(40)

    assert await pg.attendance.persist_session(users=users, attendance=att, records=records) is True
    assert (
        await pg.attendance.persist_session(users=users, attendance=att, records=records) is False
    )

    assert await count(pg, "attendances") == 1
    assert await count(pg, "attendance_records") == 40
    assert await pg.attendance.get_attendance_records(attendance_id=att.attendance_id) == records
    (user,) = await pg.accounts.get_users(school_numbers=["S0003"])
    assert user.user_full_name == "Öğrenci İş 3"


async def test_persist_session_keeps_existing_telegram_links(pg: Postgres) -> None:
    users, att, records = _finished_session(2)
    await pg.accounts.link_telegram(user=users[1], telegram_id=4242, language="tr")

    await pg.attendance.persist_session(users=users, attendance=att, records=records)

    linked = await pg.accounts.get_linked_user(telegram_id=4242)
    assert linked is not None
    assert linked.school_number == users[1].user_school_number


async def test_failed_persist_leaves_nothing(pg: Postgres) -> None:
    users, att, records = _finished_session(5)
    orphan = present(att, "not-in-users")

    with pytest.raises(NotFound, match="not-in-users"):
        await pg.attendance.persist_session(users=users, attendance=att, records=[*records, orphan])

    assert await count(pg, "users") == 0
    assert await count(pg, "attendances") == 0
    assert await count(pg, "attendance_records") == 0
    # The same session, fixed, then goes through.
    assert await pg.attendance.persist_session(users=users, attendance=att, records=records) is True


async def test_persist_without_the_teacher_leaves_nothing(pg: Postgres) -> None:
    users, att, records = _finished_session(3)

    with pytest.raises(NotFound, match="T0001"):
        await pg.attendance.persist_session(users=users[1:], attendance=att, records=records)

    assert await count(pg, "users") == 0


async def test_persist_refuses_records_of_another_session(pg: Postgres) -> None:
    users, att, records = _finished_session(1)
    stray = present(attendance(), users[1].user_school_number)
    with pytest.raises(ValueError, match="given with"):
        await pg.attendance.persist_session(users=users, attendance=att, records=[*records, stray])


async def test_concurrent_persists_of_one_session_store_it_once(pg: Postgres) -> None:
    users, att, records = _finished_session(30)

    results: Sequence[bool] = await asyncio.gather(
        *(
            pg.attendance.persist_session(users=users, attendance=att, records=records)
            for _ in range(3)
        )
    )

    assert sorted(results) == [False, False, True]
    assert await count(pg, "attendance_records") == 30


async def test_persist_sessions_stores_a_batch_once_and_reports_the_new_ones(
    pg: Postgres,
) -> None:
    users, first, first_records = _finished_session(30)
    second = attendance(start=T0 + timedelta(hours=2), name="Kimya")
    second_records = [present(second, u.user_school_number, minutes=20) for u in users[1:]]
    # The first session was stored on its own before (a crash after its commit).
    assert await pg.attendance.persist_session(users=users, attendance=first, records=first_records)

    new = await pg.attendance.persist_sessions(
        users=users,
        attendances=[first, second],
        records=[*first_records, *second_records],
    )
    again = await pg.attendance.persist_sessions(
        users=users,
        attendances=[first, second],
        records=[*first_records, *second_records],
    )

    assert (new, again) == ({second.attendance_id}, set())
    assert await count(pg, "attendances") == 2
    assert await count(pg, "attendance_records") == 60
    assert (
        await pg.attendance.get_attendance_records(attendance_id=second.attendance_id)
        == second_records
    )
    assert (
        await pg.attendance.get_attendance_records(attendance_id=first.attendance_id)
        == first_records
    )


async def test_persist_sessions_is_all_or_none(pg: Postgres) -> None:
    users, good, good_records = _finished_session(5)
    bad = attendance(start=T0 + timedelta(hours=2))
    bad_records = [present(bad, "not-in-users")]

    with pytest.raises(NotFound, match="not-in-users"):
        await pg.attendance.persist_sessions(
            users=users, attendances=[good, bad], records=[*good_records, *bad_records]
        )

    assert await count(pg, "users") == 0
    assert await count(pg, "attendances") == 0
    assert await count(pg, "attendance_records") == 0


async def test_persist_sessions_refuses_stray_records_and_repeated_sessions(
    pg: Postgres,
) -> None:
    users, att, records = _finished_session(1)
    stray = present(attendance(), users[1].user_school_number)
    with pytest.raises(ValueError, match="given without it"):
        await pg.attendance.persist_sessions(
            users=users, attendances=[att], records=[*records, stray]
        )
    with pytest.raises(ValueError, match="given twice"):
        await pg.attendance.persist_sessions(users=users, attendances=[att, att], records=records)
    assert await pg.attendance.persist_sessions(users=users, attendances=[], records=[]) == set()
    assert await count(pg, "users") == 0


async def test_concurrent_batches_sharing_sessions_store_each_once(
    pg: Postgres,
) -> None:
    users, _, _ = _finished_session(50)
    sessions = [attendance(start=T0 + timedelta(hours=h)) for h in range(6)]
    rows = {
        a.attendance_id: [present(a, u.user_school_number) for u in users[1:]] for a in sessions
    }

    def batch(chosen: list[Attendance]) -> list[AttendanceRecord]:
        return [r for a in chosen for r in rows[a.attendance_id]]

    results: Sequence[set[uuid.UUID]] = await asyncio.gather(
        pg.attendance.persist_sessions(
            users=users, attendances=sessions[:4], records=batch(sessions[:4])
        ),
        pg.attendance.persist_sessions(
            users=users, attendances=sessions[2:], records=batch(sessions[2:])
        ),
        pg.attendance.persist_sessions(users=users, attendances=sessions, records=batch(sessions)),
    )

    stored = [i for new in results for i in new]
    assert sorted(stored) == sorted(a.attendance_id for a in sessions)  # each new exactly once
    assert await count(pg, "attendance_records") == 6 * 50


async def test_translated_errors_keep_driver_cause(pg: Postgres) -> None:
    await pg.accounts.add_users(users=[TEACHER])
    att = attendance()
    await pg.attendance.add_attendances(attendances=[att])
    with pytest.raises(Conflict) as caught:
        await pg.attendance.add_attendances(attendances=[att])
    assert isinstance(caught.value.__cause__, asyncpg.UniqueViolationError)


async def test_close_is_bounded_when_a_connection_is_never_released(pg_dsn: str) -> None:
    """Shutdown regression: asyncpg's pool.close() waits for every acquired connection, so a
    task still holding one kept the process (and a test's teardown) waiting for ever."""
    client = await Postgres.connect(pg_dsn, migrate=False)
    held = await client.db.pool.acquire()  # never released, as by a task stuck at shutdown
    began = asyncio.get_running_loop().time()
    await client.db.close(grace_seconds=0.5)
    assert asyncio.get_running_loop().time() - began < 3
    assert client.db.pool.is_closing()
    del held
