"""Excuse requests at the service level, on real PostgreSQL: an apology in advance, approved
before its lesson, excuses the absence once the session is saved (by the approving teacher's
correction, once); another teacher cannot decide a request; a reason out of bounds and the
wrong kind of file are refused; retention deletes requests decided long ago; a notice's
attachment survives the outbox's encoding."""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta

import pytest

from dal.models import Attendance, AttendanceRecord, FailReason, RecordStatus, ScheduleEntry
from dal.pg import ExcuseStatus, Postgres
from services.errors import AlreadyDecided, ExcuseRefused, InvalidInput, NotOwner
from services.excuses import MAX_PDF_BYTES, ExcuseService, check_attachment
from services.members import Member
from services.notice_codec import decode, encode
from services.notify import Attachment, Notice
from services.reports import ReportService
from tests.support import (
    IST,
    Clock,
    RecordingNotifier,
    link,
    student_user,
    teacher_user,
)

pytestmark = pytest.mark.stores

LESSON_AT = datetime(2026, 3, 2, 9, 0, tzinfo=IST)
TEACHER, OTHER = teacher_user("T0001"), teacher_user("T0002", "Başka Hoca")


def _member(user: object, telegram_id: int) -> Member:
    from dal.models import User

    assert isinstance(user, User)
    return Member(telegram_id, user.user_school_number, user.user_full_name, user.role, "en", True)


def _entry(number: str) -> ScheduleEntry:
    return ScheduleEntry(
        school_number=number,
        start_time=LESSON_AT,
        end_time=LESSON_AT + timedelta(minutes=50),
        course_code="YBS101",
        course_name="Veri Yapıları",
        teachers="Ayşe Öğretmen",
        teacher_key="AYSE OGRETMEN",
        term="2025-2",
    )


async def _service(pg: Postgres, clock: Clock) -> tuple[ExcuseService, RecordingNotifier]:
    student = student_user("2024001", "Çağrı Şahin")
    await pg.accounts.add_users(users=[TEACHER, OTHER, student])
    await link(pg, TEACHER, 100)
    await link(pg, OTHER, 101)
    await link(pg, student, 201, language="tr")
    for number in ("T0001", "2024001"):
        await pg.schedules.replace_schedule(school_number=number, entries=[_entry(number)])
    notifier = RecordingNotifier()
    reports = ReportService(
        accounts=pg.accounts,
        attendance=pg.attendance,
        corrections=pg.corrections,
        reports=pg.reports,
        tz=IST,
    )
    service = ExcuseService(
        excuses=pg.excuses,
        attendance=pg.attendance,
        accounts=pg.accounts,
        reports=pg.reports,
        report_service=reports,
        notifier=notifier,
        tz=IST,
        deadline_days=7,
        clock=clock,
    )
    return service, notifier


async def test_an_apology_in_advance_excuses_the_saved_absence(pg_client: Postgres) -> None:
    clock = Clock(LESSON_AT - timedelta(days=2))
    service, notifier = await _service(pg_client, clock)
    student = _member(student_user("2024001", "Çağrı Şahin"), 201)
    teacher, other = _member(TEACHER, 100), _member(OTHER, 101)

    found = await service.candidates(student=student)
    assert found.missed == [] and [p.course_code for p in found.planned] == ["YBS101"]
    assert found.planned[0].teacher_school_number == "T0001"
    with pytest.raises(ExcuseRefused) as refused:
        await service.submit(
            student=student, reason="  ", lesson_code="YBS101", lesson_start=LESSON_AT
        )
    assert refused.value.key == "excreq.reason_invalid"
    request = await service.submit(
        student=student,
        reason="Hastane   randevusu",
        lesson_code="YBS101",
        lesson_start=LESSON_AT,
        attachment=Attachment("pdf", "BQPDF"),
    )
    assert request.reason == "Hastane randevusu" and request.attendance_id is None
    (notice,) = notifier.to(100)
    assert notice.key == "excreq.notice_advance" and notice.attachment == Attachment("pdf", "BQPDF")
    assert [b.action for b in notice.buttons] == ["excuse_approve", "excuse_reject"]
    with pytest.raises(ExcuseRefused) as refused:  # one open request per lesson
        await service.submit(
            student=student, reason="tekrar", lesson_code="YBS101", lesson_start=LESSON_AT
        )
    assert refused.value.key == "excreq.already_requested"

    with pytest.raises(NotOwner):
        await service.approve(teacher=other, request_id=request.request_id)
    decision = await service.approve(teacher=teacher, request_id=request.request_id)
    assert decision.applied is False and decision.request.status is ExcuseStatus.APPROVED
    assert [n.key for n in notifier.to(201)] == ["excreq.approved_advance_notice"]
    with pytest.raises(AlreadyDecided):
        await service.reject(teacher=teacher, request_id=request.request_id, reason="geç")

    # The lesson is held, the student does not come, the sheet is saved.
    aid = uuid.uuid4()
    await pg_client.attendance.add_attendances(
        attendances=[
            Attendance(
                attendance_id=aid,
                teacher_school_number="T0001",
                lesson_name="YBS101 - Veri Yapıları",
                lesson_code="YBS101",
                start_time=LESSON_AT + timedelta(minutes=3),
                end_time=LESSON_AT + timedelta(minutes=50),
                scheduled_start=LESSON_AT,
            )
        ]
    )
    await pg_client.attendance.add_attendance_records(
        records=[
            AttendanceRecord(
                attendance_id=aid,
                student_number="2024001",
                is_attended=False,
                fail_reason=FailReason.ABSENT.value,
            )
        ]
    )
    clock.now = LESSON_AT + timedelta(hours=1)
    assert await service.apply_waiting() == 1
    assert await service.apply_waiting() == 0  # once
    (saved,) = await pg_client.attendance.get_attendance_records(attendance_id=aid)
    assert saved.status is RecordStatus.EXCUSED
    (trail,) = await pg_client.corrections.get_corrections(attendance_id=aid)
    assert (trail.action, trail.changed_by) == ("excused", "T0001")
    assert trail.reason == f"#{request.request_id} Hastane randevusu"
    stored = await pg_client.excuses.get_request(request_id=request.request_id)
    assert stored.attendance_id == aid

    # Now a saved session: asking again is refused, it is excused already.
    with pytest.raises(ExcuseRefused) as refused:
        await service.session_target(student=student, attendance_id=aid)
    assert refused.value.key == "excreq.already_excused"

    # A teacher's rejection reason has the /history rule; retention deletes old requests.
    clock.now = LESSON_AT + timedelta(days=1)
    second = await pg_client.excuses.add_request(
        student_number="2024001",
        attendance_id=None,
        lesson_code="YBS101",
        lesson_name="Veri Yapıları",
        lesson_start=LESSON_AT + timedelta(days=7),
        teacher_school_number="T0001",
        reason="x",
        file_id=None,
        file_kind=None,
    )
    with pytest.raises(InvalidInput):
        await service.reject(teacher=teacher, request_id=second.request_id, reason="a" * 301)
    rejected = await service.reject(teacher=teacher, request_id=second.request_id, reason="Hayır")
    assert rejected.status is ExcuseStatus.REJECTED and rejected.decision_reason == "Hayır"
    future = datetime.now(IST) + timedelta(days=1)
    assert await pg_client.excuses.delete_decided_before(before=future - timedelta(days=3)) == 0
    assert await pg_client.excuses.delete_decided_before(before=future) == 2
    assert await pg_client.excuses.get_student_requests(student_number="2024001") == []


def test_only_a_photo_or_a_small_pdf_is_taken() -> None:
    assert check_attachment(kind="photo", mime_type=None, size=90_000) == "photo"
    assert check_attachment(kind="document", mime_type="application/pdf", size=1000) == "pdf"
    for kind, mime, size, key in (
        ("document", "application/pdf", MAX_PDF_BYTES + 1, "excreq.file_too_big"),
        ("document", "application/pdf", None, "excreq.file_too_big"),
        ("document", "image/jpeg", 1000, "excreq.bad_file"),
        ("document", "application/zip", 1000, "excreq.bad_file"),
        ("video", None, 1000, "excreq.bad_file"),
    ):
        with pytest.raises(ExcuseRefused) as refused:
            check_attachment(kind=kind, mime_type=mime, size=size)
        assert refused.value.key == key


def test_a_notice_keeps_its_attachment_through_the_outbox() -> None:
    notice = Notice(100, "tr", "excreq.notice", {"id": 3}, attachment=Attachment("photo", "Ag1"))
    decoded, _tries = decode(encode(notice))
    assert decoded.attachment == Attachment("photo", "Ag1")
    plain, _tries = decode(encode(Notice(100, "tr", "excreq.notice", {"id": 3})))
    assert plain.attachment is None


async def test_a_request_whose_notice_was_never_queued_reaches_the_teacher_once(
    pg_client: Postgres,
) -> None:
    """A process that stored the request and stopped before queuing the teacher's notice (a
    crash between the two steps) left the request pending unseen; the student waited for a
    decision that could not come. The reminders tick now queues the notice of such a
    request, once, and never a second notice of a request already announced."""
    clock = Clock(LESSON_AT - timedelta(days=2))
    service, notifier = await _service(pg_client, clock)
    student = _member(student_user("2024001", "Çağrı Şahin"), 201)
    announced = await service.submit(
        student=student, reason="Sınav", lesson_code="YBS101", lesson_start=LESSON_AT
    )
    clock.now = datetime.now(IST) + timedelta(
        minutes=5
    )  # the requests' own clock is the database's
    assert [n.values["id"] for n in notifier.to(100)] == [announced.request_id]
    # Stored, but the process stopped before the notice: as `submit` leaves it then.
    lost = await pg_client.excuses.add_request(
        student_number="2024001",
        attendance_id=None,
        lesson_code="YBS101",
        lesson_name="Veri Yapıları",
        lesson_start=LESSON_AT + timedelta(days=7),
        teacher_school_number="T0001",
        reason="Rapor",
        file_id=None,
        file_kind=None,
    )
    assert await service.announce_pending() == 1
    assert await service.announce_pending() == 0
    notices = notifier.to(100)
    assert [n.values["id"] for n in notices] == [announced.request_id, lost.request_id]
    assert notices[1].key == "excreq.notice_advance"
    assert [b.action for b in notices[1].buttons] == ["excuse_approve", "excuse_reject"]
    # A decided request is not announced again, nor one too old for its marker to be trusted.
    await service.approve(teacher=_member(TEACHER, 100), request_id=lost.request_id)
    notifier.markers.clear()
    clock.now = datetime.now(IST) + timedelta(days=8)
    assert await service.announce_pending() == 0
