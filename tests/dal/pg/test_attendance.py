"""`AttendanceStore` (dal/pg/attendance.py) against the real PostgreSQL server: sessions and
records (both insert methods, duplicates, unknown students, translated errors) and the
exactly-once finalization writes (`persist_session`, `persist_sessions`, concurrent and
all-or-none)."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Sequence
from datetime import timedelta

import asyncpg
import pytest

from dal.errors import Conflict, NotFound
from dal.models import Attendance, AttendanceRecord, FailReason, RecordSource, User
from dal.pg import Postgres, RecordMethod
from tests.dal.pg.support import T0, TEACHER, _session, attendance, count, present, student

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


async def test_translated_errors_keep_driver_cause(pg: Postgres) -> None:
    await pg.accounts.add_users(users=[TEACHER])
    att = attendance()
    await pg.attendance.add_attendances(attendances=[att])
    with pytest.raises(Conflict) as caught:
        await pg.attendance.add_attendances(attendances=[att])
    assert isinstance(caught.value.__cause__, asyncpg.UniqueViolationError)


# --- records ------------------------------------------------------------------------------


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
