"""`ErasureStore` (dal/pg/erasure.py) against the real PostgreSQL server: erasing a student
removes their user row, records, corrections, excuse requests, warning states, counts and cached
schedule, and their name from other people's texts, while the other students' rows stay;
erasing a teacher keeps the sessions they taught and the corrections they made under a tombstone
user, takes them off other students' excuse requests and replaces their name and key in others'
cached schedules and sessions' lesson slots; a person with nothing to keep needs no tombstone."""

from __future__ import annotations

import re
from uuid import UUID

import pytest

from dal.models import AttendanceRecord, FailReason, RecordStatus
from dal.pg import ErasedPerson, ExcuseStatus, Postgres
from dal.pg.erasure import ERASED_NAME, erase_slot_key, name_pattern
from services.text import person_key
from tests.dal.pg.support import T0, attendance, count, entry, present
from tests.support import link, student_user, teacher_user

pytestmark = pytest.mark.stores

TEACHER = teacher_user()  # T0001, Ayşe Öğretmen
OTHER_TEACHER = teacher_user("T0002", "Mehmet Hoca")
ERASED = student_user("1", "Can Yılmaz")
OTHER = student_user("2", "Deniz Kaya")

# Every table and the column that names the person a row is about.
_PERSONAL = (
    ("users", "user_school_number"),
    ("attendance_records", "student_number"),
    ("record_corrections", "student_number"),
    ("excuse_requests", "student_number"),
    ("attendance_warnings", "student_number"),
    ("attendance_course_counts", "student_number"),
    ("schedule_entries", "school_number"),
)


async def _rows_about(pg: Postgres, number: str) -> dict[str, int]:
    return {
        table: await pg.db.pool.fetchval(
            f"SELECT count(*) FROM {table} WHERE {column} = $1", number
        )
        for table, column in _PERSONAL
    }


async def _request(
    pg: Postgres,
    student: str,
    reason: str,
    *,
    attendance_id: UUID | None = None,
    code: str = "FIZ101",
) -> int:
    request = await pg.excuses.add_request(
        student_number=student,
        attendance_id=attendance_id,
        lesson_code=code,
        lesson_name="Fizik I",
        lesson_start=T0,
        teacher_school_number=TEACHER.user_school_number,
        reason=reason,
        file_id="AgAD-doc",
        file_kind="pdf",
    )
    return request.request_id


async def test_get_person_and_an_unknown_person(pg: Postgres) -> None:
    await link(pg, ERASED, 100)
    await pg.accounts.add_users(users=[OTHER])

    assert await pg.erasure.get_person(school_number="1") == ("Can Yılmaz", "student", 100)
    assert await pg.erasure.get_person(school_number="2") == ("Deniz Kaya", "student", None)
    assert await pg.erasure.get_person(school_number="nobody") is None
    assert await pg.erasure.erase_person(school_number="nobody", name_key="nobody") is None
    assert await count(pg, "users") == 2


async def test_erasing_a_student_removes_their_rows_and_name_and_keeps_the_others(
    pg: Postgres,
) -> None:
    await pg.accounts.add_users(users=[TEACHER, OTHER])
    await link(pg, ERASED, 100)
    att = attendance()
    await pg.attendance.add_attendances(attendances=[att])
    await pg.attendance.add_attendance_records(records=[present(att, "1"), present(att, "2")])
    await pg.corrections.set_record_attended(
        attendance_id=att.attendance_id,
        student_number="1",
        is_attended=False,
        fail_reason=FailReason.MARKED_ABSENT,
        changed_by="T0001",
        reason="erken çıktı",
    )
    await pg.corrections.set_record_attended(
        attendance_id=att.attendance_id,
        student_number="2",
        is_attended=True,
        fail_reason=None,
        changed_by="T0001",
        reason="Can Yılmaz ile karıştırıldı",
        note="Can Yılmaz yanında oturuyordu",
    )
    await _request(pg, "1", "Hastaydım", attendance_id=att.attendance_id)
    other_request = await _request(pg, "2", "Can Yılmaz ile hastaydık", code="MAT101")
    await pg.reports.set_warning_levels(course_key="FIZ101", levels={"1": 2, "2": 1})
    for number in ("1", "2"):
        await pg.schedules.replace_schedule(school_number=number, entries=[entry(number)])
    assert set((await _rows_about(pg, "1")).values()) == {1}
    kept_before = await _rows_about(pg, "2")

    erased = await pg.erasure.erase_person(school_number="1", name_key=person_key("Can Yılmaz"))

    assert erased == ErasedPerson(
        school_number="1",
        full_name="Can Yılmaz",
        role="student",
        telegram_id=100,
        records=1,
        sessions_kept=0,
        tombstone=None,
        excuse_requests=1,
    )
    assert set((await _rows_about(pg, "1")).values()) == {0}
    assert await _rows_about(pg, "2") == kept_before
    assert await pg.erasure.get_person(school_number="1") is None
    assert await pg.accounts.get_linked_user(telegram_id=100) is None
    # The session and the other student's record stay, the name gone from their texts.
    assert (await pg.attendance.get_attendance_by_id(attendance_id=att.attendance_id)) == att
    (record,) = await pg.attendance.get_attendance_records(attendance_id=att.attendance_id)
    assert (record.student_number, record.teacher_note) == ("2", "(erased) yanında oturuyordu")
    (correction,) = await pg.corrections.get_corrections(attendance_id=att.attendance_id)
    assert (correction.student_number, correction.reason) == ("2", "(erased) ile karıştırıldı")
    request = await pg.excuses.get_request(request_id=other_request)
    assert request.reason == "(erased) ile hastaydık"
    assert await count(pg, "users") == 2  # no tombstone: the student taught nothing
    # A second erasure finds no one.
    assert await pg.erasure.erase_person(school_number="1", name_key="can yılmaz") is None


async def test_erasing_a_teacher_keeps_sessions_and_corrections_under_a_tombstone(
    pg: Postgres,
) -> None:
    await pg.accounts.add_users(users=[OTHER_TEACHER, ERASED])
    await link(pg, TEACHER, 900)
    key = person_key(TEACHER.user_full_name)
    taught = attendance().model_copy(
        update={"lesson_slot": f"FIZ101|1|09:00|{key},mehmet hoca", "term": "2024-2"}
    )
    deleted = attendance(start=T0.replace(day=11))
    others = attendance(teacher="T0002", name="Matematik").model_copy(
        update={"lesson_slot": f"MAT101|1|09:00|{key}oğlu,mehmet hoca"}
    )
    await pg.attendance.add_attendances(attendances=[taught, deleted, others])
    await pg.attendance.add_attendance_records(
        records=[
            AttendanceRecord(
                attendance_id=taught.attendance_id,
                student_number="1",
                is_attended=False,
                fail_reason=FailReason.ABSENT,
            )
        ]
    )
    await pg.corrections.set_record_attended(
        attendance_id=taught.attendance_id,
        student_number="1",
        is_attended=False,
        fail_reason=FailReason.EXCUSED,
        changed_by="T0001",
        reason="Mazeret: rapor",
    )
    await pg.corrections.delete_attendance(
        attendance_id=deleted.attendance_id,
        reason="Ayşe Öğretmen izinliydi",
        changed_by="T0001",
    )
    decided = await _request(pg, "1", "Hastaydım", attendance_id=taught.attendance_id)
    await pg.excuses.decide(
        request_id=decided,
        status=ExcuseStatus.APPROVED,
        decided_by="T0001",
        reason="Ayşe Öğretmen onayladı",
    )
    waiting = await _request(pg, "1", "Sınavım var", code="KIM101")
    await pg.schedules.replace_schedule(
        school_number="1",
        entries=[
            entry("1").model_copy(
                update={
                    "teachers": "Dr. Ayşe Öğretmen, Mehmet Hoca",
                    "teacher_key": f"{key}|mehmet hoca",
                }
            )
        ],
    )
    await pg.schedules.replace_schedule(school_number="T0001", entries=[entry("T0001")])

    erased = await pg.erasure.erase_person(school_number="T0001", name_key=key)

    assert erased is not None
    tombstone = erased.tombstone
    assert tombstone is not None
    assert re.fullmatch(r"X[0-9A-F]{15}", tombstone)
    assert (erased.role, erased.telegram_id, erased.records, erased.sessions_kept) == (
        "teacher",
        900,
        0,
        2,
    )
    assert erased.excuse_requests == 0
    assert await pg.erasure.get_person(school_number="T0001") is None
    assert await pg.erasure.get_person(school_number=tombstone) == (ERASED_NAME, "teacher", None)
    assert await pg.accounts.get_linked_user(telegram_id=900) is None
    # The sessions taught, the deleted one too, are the tombstone's; the other teacher's stay.
    sessions = {
        r["attendance_id"]: (r["teacher_school_number"], r["lesson_slot"], r["deletion_reason"])
        for r in await pg.db.pool.fetch(
            "SELECT attendance_id, teacher_school_number, lesson_slot, deletion_reason"
            " FROM attendances"
        )
    }
    assert sessions == {
        taught.attendance_id: (tombstone, "FIZ101|1|09:00|(erased),mehmet hoca", None),
        deleted.attendance_id: (tombstone, None, "(erased) izinliydi"),
        others.attendance_id: ("T0002", others.lesson_slot, None),
    }
    # The student's record and the corrections (now the tombstone's) stay.
    (record,) = await pg.attendance.get_attendance_records(attendance_id=taught.attendance_id)
    assert record.status is RecordStatus.EXCUSED
    changed_by = await pg.db.pool.fetch(
        "SELECT changed_by, action FROM record_corrections ORDER BY correction_id"
    )
    assert [tuple(r) for r in changed_by] == [
        (tombstone, "excused"),
        (tombstone, "session_deleted"),
    ]
    # The student's requests stay, naming no teacher (the pending one cannot be decided now).
    approved = await pg.excuses.get_request(request_id=decided)
    assert (approved.status, approved.teacher_school_number, approved.decided_by) == (
        ExcuseStatus.APPROVED,
        None,
        None,
    )
    assert approved.decision_reason == "(erased) onayladı"
    pending = await pg.excuses.get_request(request_id=waiting)
    assert (pending.status, pending.teacher_school_number) == (ExcuseStatus.PENDING, None)
    # Others' cached schedules no longer spell the name or its key; the teacher's own is gone.
    (cached,) = await pg.db.pool.fetch(
        "SELECT school_number, teachers, teacher_key FROM schedule_entries"
    )
    assert tuple(cached) == ("1", "Dr. (erased), Mehmet Hoca", "(erased)|mehmet hoca")


async def test_a_teacher_who_taught_and_corrected_nothing_needs_no_tombstone(
    pg: Postgres,
) -> None:
    await pg.accounts.add_users(users=[TEACHER, OTHER_TEACHER])
    att = attendance()  # taught by T0001, not the erased teacher
    await pg.attendance.add_attendances(attendances=[att])

    erased = await pg.erasure.erase_person(school_number="T0002", name_key="mehmet hoca")

    assert erased is not None
    assert (erased.role, erased.sessions_kept, erased.tombstone) == ("teacher", 0, None)
    assert [u.user_school_number for u in await pg.accounts.get_users()] == ["T0001"]
    assert await pg.attendance.get_attendance_by_id(attendance_id=att.attendance_id) == att


def test_erase_slot_key_replaces_only_the_exact_key() -> None:
    assert erase_slot_key("FIZ101|1|09:00|ali veli,ayşe öğretmen", "ayşe öğretmen") == (
        "FIZ101|1|09:00|ali veli,(erased)"
    )
    assert erase_slot_key("FIZ101|1|09:00|ayşe öğretmenoğlu", "ayşe öğretmen") == (
        "FIZ101|1|09:00|ayşe öğretmenoğlu"
    )
    assert erase_slot_key("no slot", "ayşe öğretmen") == "no slot"


async def test_the_name_is_erased_in_every_spelling_and_only_as_a_whole_name(
    pg: Postgres,
) -> None:
    """The portal spells names in capitals and with titles, teachers type them as they like:
    each spelling of the erased person's name goes, while other people's names that merely
    contain it (or are contained in it) stay as they were written."""
    await pg.accounts.add_users(users=[OTHER_TEACHER, OTHER])
    await link(pg, TEACHER, 900)  # Ayşe Öğretmen
    att = attendance(teacher="T0002", name="Matematik")
    await pg.attendance.add_attendances(attendances=[att])
    await pg.attendance.add_attendance_records(records=[present(att, "2")])
    await pg.corrections.set_record_attended(
        attendance_id=att.attendance_id,
        student_number="2",
        is_attended=True,
        fail_reason=None,
        changed_by="T0002",
        reason="AYŞE  ÖĞRETMEN'in listesinden; Ayşegül Öğretmen değil",
        note="ayşe öğretmen gönderdi, Hayşe Öğretmen değil",
    )
    await pg.schedules.replace_schedule(
        school_number="2",
        entries=[
            entry("2").model_copy(
                update={
                    "teachers": "Doç. Dr. AYŞE ÖĞRETMEN, Mehmet Hoca",
                    "teacher_key": "ayse ogretmen|mehmet hoca",
                }
            )
        ],
    )

    await pg.erasure.erase_person(school_number="T0001", name_key=person_key("Ayşe Öğretmen"))

    (record,) = await pg.attendance.get_attendance_records(attendance_id=att.attendance_id)
    assert record.teacher_note == "(erased) gönderdi, Hayşe Öğretmen değil"
    (correction,) = await pg.corrections.get_corrections(attendance_id=att.attendance_id)
    assert correction.reason == "(erased)'in listesinden; Ayşegül Öğretmen değil"
    teachers = await pg.db.pool.fetchval(
        "SELECT teachers FROM schedule_entries WHERE school_number = '2'"
    )
    assert teachers == "Doç. Dr. (erased), Mehmet Hoca"


def test_name_pattern_of_a_name_without_words_is_none() -> None:
    assert name_pattern(" \t") is None
