"""`ExcuseStore` (dal/pg/excuses.py) against the real PostgreSQL server: a request about a saved
session or a planned lesson is stored and read back (one open request per session or lesson), a
request is decided once (a second or concurrent decision has no effect), the lists the services
read (a student's requests, the pending ones of sessions and of a creation window), an approved
apology in advance finding its saved session, a student's planned lessons with their teacher,
and the retention delete."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from typing import Any
from uuid import UUID

import pytest

from dal.errors import Conflict, NotFound
from dal.models import AttendanceRecord, FailReason, ScheduleEntry
from dal.pg import ExcuseRequest, ExcuseStatus, PlannedLesson, Postgres
from tests.dal.pg.support import T0, attendance, entry
from tests.support import student_user, teacher_user

pytestmark = pytest.mark.stores

TEACHER = teacher_user()
OTHER_TEACHER = teacher_user("T0002", "Mehmet Hoca")
STUDENT = student_user("2024001", "İpek Şahin")
OTHER_STUDENT = student_user("2024002")
NEXT_WEEK = T0 + timedelta(weeks=1)


async def _users(pg: Postgres) -> None:
    await pg.accounts.add_users(users=[TEACHER, OTHER_TEACHER, STUDENT, OTHER_STUDENT])


async def _missed_session(pg: Postgres, *students: str) -> UUID:
    """A saved session of TEACHER that `students` missed."""
    att = attendance()
    await pg.attendance.add_attendances(attendances=[att])
    await pg.attendance.add_attendance_records(
        records=[
            AttendanceRecord(
                attendance_id=att.attendance_id,
                student_number=number,
                is_attended=False,
                fail_reason=FailReason.ABSENT,
            )
            for number in students
        ]
    )
    return att.attendance_id


async def _about_session(
    pg: Postgres, attendance_id: UUID, student: str = STUDENT.user_school_number, **extra: Any
) -> ExcuseRequest:
    values: dict[str, Any] = {
        "student_number": student,
        "attendance_id": attendance_id,
        "lesson_code": "FIZ101",
        "lesson_name": "Fizik I",
        "lesson_start": T0,
        "teacher_school_number": TEACHER.user_school_number,
        "reason": "Hastaydım",
        "file_id": None,
        "file_kind": None,
    }
    return await pg.excuses.add_request(**{**values, **extra})


async def _in_advance(
    pg: Postgres, start: datetime = NEXT_WEEK, student: str = STUDENT.user_school_number
) -> ExcuseRequest:
    return await pg.excuses.add_request(
        student_number=student,
        attendance_id=None,
        lesson_code="FIZ101",
        lesson_name="Ders FIZ101",
        lesson_start=start,
        teacher_school_number=TEACHER.user_school_number,
        reason="Sınavım var",
        file_id=None,
        file_kind=None,
    )


async def _approve(pg: Postgres, request_id: int) -> ExcuseRequest | None:
    return await pg.excuses.decide(
        request_id=request_id,
        status=ExcuseStatus.APPROVED,
        decided_by=TEACHER.user_school_number,
        reason=None,
    )


async def _reject(pg: Postgres, request_id: int, reason: str = "Rapor yok") -> ExcuseRequest | None:
    return await pg.excuses.decide(
        request_id=request_id,
        status=ExcuseStatus.REJECTED,
        decided_by=TEACHER.user_school_number,
        reason=reason,
    )


def _entry_of(source: ScheduleEntry, number: str) -> ScheduleEntry:
    """The same lesson in another user's cached schedule."""
    return source.model_copy(update={"school_number": number})


async def _set_times(
    pg: Postgres, request_id: int, *, created: datetime, decided: datetime | None = None
) -> None:
    await pg.db.pool.execute(
        "UPDATE excuse_requests SET created_at = $2, decided_at = $3 WHERE request_id = $1",
        request_id,
        created,
        decided,
    )


# --- adding and reading -------------------------------------------------------------------


async def test_request_about_a_session_is_stored_pending_and_read_back(pg: Postgres) -> None:
    await _users(pg)
    session = await _missed_session(pg, STUDENT.user_school_number)
    began = datetime.now(UTC)

    added = await _about_session(pg, session, file_id="AgAD-photo", file_kind="photo")

    assert added == ExcuseRequest(
        request_id=added.request_id,
        student_number="2024001",
        student_name="İpek Şahin",
        attendance_id=session,
        lesson_code="FIZ101",
        lesson_name="Fizik I",
        lesson_start=T0,
        teacher_school_number="T0001",
        reason="Hastaydım",
        file_id="AgAD-photo",
        file_kind="photo",
        status=ExcuseStatus.PENDING,
        decided_by=None,
        decision_reason=None,
        created_at=added.created_at,
        decided_at=None,
    )
    assert added.created_at >= began - timedelta(seconds=5)
    assert await pg.excuses.get_request(request_id=added.request_id) == added
    assert await pg.excuses.get_student_requests(student_number="2024001") == [added]
    with pytest.raises(NotFound):
        await pg.excuses.get_request(request_id=added.request_id + 1000)


async def test_one_open_request_per_session_or_planned_lesson(pg: Postgres) -> None:
    await _users(pg)
    session = await _missed_session(
        pg, STUDENT.user_school_number, OTHER_STUDENT.user_school_number
    )
    first = await _about_session(pg, session)
    planned = await _in_advance(pg)

    with pytest.raises(Conflict):
        await _about_session(pg, session, reason="Bir daha")
    with pytest.raises(Conflict):
        await _in_advance(pg)
    # Another student, or another planned lesson, is another request.
    await _about_session(pg, session, student=OTHER_STUDENT.user_school_number)
    next_day = await _in_advance(pg, start=NEXT_WEEK + timedelta(days=1))
    # Once the first ones are rejected, the student may ask again.
    await _reject(pg, first.request_id)
    await _reject(pg, planned.request_id)
    again = await _about_session(pg, session, reason="Raporum ekte")
    planned_again = await _in_advance(pg)

    mine = await pg.excuses.get_student_requests(student_number=STUDENT.user_school_number)
    assert [(r.request_id, r.status) for r in mine] == [
        (first.request_id, ExcuseStatus.REJECTED),
        (planned.request_id, ExcuseStatus.REJECTED),
        (next_day.request_id, ExcuseStatus.PENDING),
        (again.request_id, ExcuseStatus.PENDING),
        (planned_again.request_id, ExcuseStatus.PENDING),
    ]
    assert mine[3].reason == "Raporum ekte"
    others = await pg.excuses.get_student_requests(student_number=OTHER_STUDENT.user_school_number)
    assert [r.student_number for r in others] == [OTHER_STUDENT.user_school_number]


# --- deciding -----------------------------------------------------------------------------


async def test_a_request_is_decided_once(pg: Postgres) -> None:
    await _users(pg)
    request = await _about_session(pg, await _missed_session(pg, STUDENT.user_school_number))

    approved = await _approve(pg, request.request_id)

    assert approved is not None
    assert (approved.status, approved.decided_by, approved.decision_reason) == (
        ExcuseStatus.APPROVED,
        "T0001",
        None,
    )
    assert approved.decided_at is not None
    assert approved.decided_at >= approved.created_at
    assert await _reject(pg, request.request_id) is None
    assert await _approve(pg, request.request_id) is None
    assert await pg.excuses.get_request(request_id=request.request_id) == approved
    assert await _approve(pg, request.request_id + 1000) is None


async def test_a_rejection_keeps_its_reason(pg: Postgres) -> None:
    await _users(pg)
    request = await _about_session(pg, await _missed_session(pg, STUDENT.user_school_number))

    rejected = await _reject(pg, request.request_id, "Rapor tarihi tutmuyor")

    assert rejected is not None
    assert (rejected.status, rejected.decision_reason) == (
        ExcuseStatus.REJECTED,
        "Rapor tarihi tutmuyor",
    )
    assert await pg.excuses.get_request(request_id=request.request_id) == rejected


async def test_pending_is_no_decision(pg: Postgres) -> None:
    await _users(pg)
    request = await _about_session(pg, await _missed_session(pg, STUDENT.user_school_number))

    with pytest.raises(ValueError, match="approved or rejected"):
        await pg.excuses.decide(
            request_id=request.request_id,
            status=ExcuseStatus.PENDING,
            decided_by="T0001",
            reason=None,
        )
    assert await pg.excuses.get_request(request_id=request.request_id) == request


async def test_of_concurrent_decisions_exactly_one_wins(pg: Postgres) -> None:
    await _users(pg)
    request = await _about_session(pg, await _missed_session(pg, STUDENT.user_school_number))

    results = await asyncio.gather(
        *(
            _approve(pg, request.request_id) if n % 2 else _reject(pg, request.request_id)
            for n in range(8)
        )
    )

    winners = [r for r in results if r is not None]
    assert len(winners) == 1
    assert await pg.excuses.get_request(request_id=request.request_id) == winners[0]


async def test_deciding_an_apology_in_advance_fills_in_its_session_once_known(
    pg: Postgres,
) -> None:
    await _users(pg)
    session = await _missed_session(pg, STUDENT.user_school_number)
    planned = await _in_advance(pg)
    about_session = await _about_session(pg, session)
    elsewhere = attendance(start=T0 + timedelta(days=1))
    await pg.attendance.add_attendances(attendances=[elsewhere])

    decided = await pg.excuses.decide(
        request_id=planned.request_id,
        status=ExcuseStatus.APPROVED,
        decided_by="T0001",
        reason=None,
        attendance_id=session,
    )
    kept = await pg.excuses.decide(
        request_id=about_session.request_id,
        status=ExcuseStatus.APPROVED,
        decided_by="T0001",
        reason=None,
        attendance_id=elsewhere.attendance_id,
    )

    assert decided is not None
    assert decided.attendance_id == session
    assert kept is not None
    assert kept.attendance_id == session  # a request's own session is never replaced


# --- the services' lists ------------------------------------------------------------------


async def test_pending_for_sessions_leaves_out_decided_requests_and_other_sessions(
    pg: Postgres,
) -> None:
    await _users(pg)
    numbers = (STUDENT.user_school_number, OTHER_STUDENT.user_school_number)
    session = await _missed_session(pg, *numbers)
    other_session = await _missed_session(pg, *numbers)
    first = await _about_session(pg, session)
    second = await _about_session(pg, session, student=OTHER_STUDENT.user_school_number)
    elsewhere = await _about_session(pg, other_session)
    await _in_advance(pg)
    await _reject(pg, second.request_id)

    assert await pg.excuses.get_pending_for_sessions(attendance_ids=[session]) == [first]
    both = await pg.excuses.get_pending_for_sessions(attendance_ids=[session, other_session])
    assert both == [first, elsewhere]
    assert await pg.excuses.get_pending_for_sessions(attendance_ids=[]) == []


async def test_pending_created_in_a_window_oldest_first(pg: Postgres) -> None:
    await _users(pg)
    session = await _missed_session(
        pg, STUDENT.user_school_number, OTHER_STUDENT.user_school_number
    )
    since, until = T0, T0 + timedelta(days=2)
    at_since = await _about_session(pg, session)
    later = await _about_session(pg, session, student=OTHER_STUDENT.user_school_number)
    at_until = await _in_advance(pg)
    before = await _in_advance(pg, start=NEXT_WEEK + timedelta(days=1))
    decided = await _in_advance(pg, start=NEXT_WEEK + timedelta(days=2))
    await _set_times(pg, later.request_id, created=since + timedelta(days=1))
    await _set_times(pg, at_since.request_id, created=since)
    await _set_times(pg, at_until.request_id, created=until)
    await _set_times(pg, before.request_id, created=since - timedelta(seconds=1))
    await _set_times(pg, decided.request_id, created=since + timedelta(hours=1))
    await _approve(pg, decided.request_id)

    found = await pg.excuses.get_pending_created(since=since, until=until)

    assert [r.request_id for r in found] == [at_since.request_id, later.request_id]
    assert found[0].created_at == since
    limited = await pg.excuses.get_pending_created(since=since, until=until, limit=1)
    assert [r.request_id for r in limited] == [at_since.request_id]


# --- apologies in advance -----------------------------------------------------------------


async def test_attach_session_gives_an_apology_its_session_once(pg: Postgres) -> None:
    await _users(pg)
    planned = await _in_advance(pg)
    await _approve(pg, planned.request_id)
    first, second = attendance(start=NEXT_WEEK), attendance(start=NEXT_WEEK)
    await pg.attendance.add_attendances(attendances=[first, second])

    assert await pg.excuses.attach_session(
        request_id=planned.request_id, attendance_id=first.attendance_id
    )
    assert not await pg.excuses.attach_session(
        request_id=planned.request_id, attendance_id=second.attendance_id
    )
    stored = await pg.excuses.get_request(request_id=planned.request_id)
    assert stored.attendance_id == first.attendance_id
    assert not await pg.excuses.attach_session(
        request_id=planned.request_id + 1000, attendance_id=first.attendance_id
    )


async def test_waiting_apologies_are_approved_ones_whose_lesson_was_saved(
    pg: Postgres,
) -> None:
    await _users(pg)
    on_time = await _in_advance(pg)  # its session started late, as scheduled at NEXT_WEEK
    unsaved = await _in_advance(pg, start=NEXT_WEEK + timedelta(days=1))
    other_teacher = await _in_advance(pg, start=NEXT_WEEK + timedelta(days=2))
    deleted = await _in_advance(pg, start=NEXT_WEEK + timedelta(days=3))
    await _in_advance(pg, start=NEXT_WEEK + timedelta(days=4))  # left pending
    too_old = await _in_advance(pg, start=T0 - timedelta(days=30))
    for request in (on_time, unsaved, other_teacher, deleted, too_old):
        await _approve(pg, request.request_id)
    held = attendance(start=NEXT_WEEK + timedelta(minutes=10)).model_copy(
        update={"scheduled_start": NEXT_WEEK}
    )
    by_other = attendance(start=NEXT_WEEK + timedelta(days=2), teacher="T0002")
    removed = attendance(start=NEXT_WEEK + timedelta(days=3))
    of_pending = attendance(start=NEXT_WEEK + timedelta(days=4))
    of_old = attendance(start=T0 - timedelta(days=30))
    await pg.attendance.add_attendances(attendances=[held, by_other, removed, of_pending, of_old])
    await pg.corrections.delete_attendance(attendance_id=removed.attendance_id, reason="yanlış")

    waiting = await pg.excuses.get_waiting_apologies(saved_since=T0)

    assert waiting == [(on_time.request_id, held.attendance_id)]
    await pg.excuses.attach_session(request_id=on_time.request_id, attendance_id=held.attendance_id)
    assert await pg.excuses.get_waiting_apologies(saved_since=T0) == []


async def test_planned_lessons_with_the_teacher_who_teaches_them(pg: Postgres) -> None:
    await _users(pg)
    number = STUDENT.user_school_number
    in_both = entry(number, start=NEXT_WEEK, code="FIZ101")
    by_session = entry(number, start=NEXT_WEEK + timedelta(days=1), code="MAT101")
    unknown = entry(number, start=NEXT_WEEK + timedelta(days=2), code="KIM101")
    outside = entry(number, start=NEXT_WEEK + timedelta(days=3), code="BIO101")
    await pg.schedules.replace_schedule(
        school_number=number, entries=[unknown, by_session, in_both, outside]
    )
    await pg.schedules.replace_schedule(
        school_number="T0001", entries=[_entry_of(in_both, "T0001")]
    )
    # A student's schedule with the same lesson does not make them its teacher.
    await pg.schedules.replace_schedule(
        school_number=OTHER_STUDENT.user_school_number,
        entries=[_entry_of(in_both, OTHER_STUDENT.user_school_number)],
    )
    older = attendance(start=T0 - timedelta(days=14), teacher="T0001").model_copy(
        update={"lesson_code": "MAT101"}
    )
    latest = attendance(start=T0 - timedelta(days=7), teacher="T0002").model_copy(
        update={"lesson_code": "MAT101"}
    )
    await pg.attendance.add_attendances(attendances=[older, latest])

    lessons = await pg.excuses.get_planned_lessons(
        student_number=number, start=NEXT_WEEK, end=outside.start_time
    )

    assert lessons == [
        PlannedLesson("FIZ101", "Ders FIZ101", NEXT_WEEK, "T0001"),
        PlannedLesson("MAT101", "Ders MAT101", by_session.start_time, "T0002"),
        PlannedLesson("KIM101", "Ders KIM101", unknown.start_time, None),
    ]
    assert (
        await pg.excuses.get_planned_lessons(
            student_number=OTHER_STUDENT.user_school_number,
            start=NEXT_WEEK + timedelta(seconds=1),
            end=NEXT_WEEK + timedelta(days=7),
        )
        == []
    )


# --- retention ----------------------------------------------------------------------------


async def test_delete_decided_before_drops_old_requests_and_keeps_newer_ones(
    pg: Postgres,
) -> None:
    await _users(pg)
    numbers = (STUDENT.user_school_number, OTHER_STUDENT.user_school_number)
    session = await _missed_session(pg, *numbers)
    cutoff = T0
    decided_long_ago = await _about_session(pg, session)
    await _approve(pg, decided_long_ago.request_id)
    await _set_times(
        pg,
        decided_long_ago.request_id,
        created=cutoff - timedelta(days=40),
        decided=cutoff - timedelta(days=30),
    )
    left_pending = await _in_advance(pg, start=T0 - timedelta(days=35))
    await _set_times(pg, left_pending.request_id, created=cutoff - timedelta(days=36))
    decided_recently = await _about_session(pg, session, student=OTHER_STUDENT.user_school_number)
    await _reject(pg, decided_recently.request_id)
    await _set_times(
        pg,
        decided_recently.request_id,
        created=cutoff - timedelta(days=40),
        decided=cutoff,
    )
    recent_pending = await _in_advance(pg)
    # The correction an approval caused is the institution's audit trail.
    await pg.corrections.set_record_attended(
        attendance_id=session,
        student_number=STUDENT.user_school_number,
        is_attended=False,
        fail_reason=FailReason.EXCUSED,
        changed_by="T0001",
        reason="Mazeret: Hastaydım",
    )

    assert await pg.excuses.delete_decided_before(before=cutoff) == 2

    kept = [
        *await pg.excuses.get_student_requests(student_number=STUDENT.user_school_number),
        *await pg.excuses.get_student_requests(student_number=OTHER_STUDENT.user_school_number),
    ]
    assert sorted(r.request_id for r in kept) == sorted(
        [recent_pending.request_id, decided_recently.request_id]
    )
    with pytest.raises(NotFound):
        await pg.excuses.get_request(request_id=decided_long_ago.request_id)
    corrections = await pg.corrections.get_corrections(attendance_id=session)
    assert [c.reason for c in corrections] == ["Mazeret: Hastaydım"]
    assert await pg.excuses.delete_decided_before(before=cutoff) == 0
