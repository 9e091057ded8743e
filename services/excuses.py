"""Excuse requests: a student asks, the lesson's teacher decides, the record follows.

A student picks a session they are marked absent in (until `deadline_days` after it) or a
lesson still to come in their schedule (an apology in advance), writes a reason and may attach
a photo or a PDF, kept as Telegram's `file_id` only. The teacher hears of it once, through the
durable outbox, with the file and Approve / Reject buttons. A request is decided once.

Nothing here changes a record on the student's word: an approval goes through the teacher's
own correction path (`ReportService.excuse`), so the record becomes excused with a row in the
audit trail that names the teacher. An approved apology in advance waits for its session to be
saved (`apply_waiting`, after each finalization), then takes the same path.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from uuid import UUID
from zoneinfo import ZoneInfo

from dal.errors import Conflict, NotFound
from dal.models import RecordStatus, Role
from dal.pg import (
    AccountStore,
    AttendanceStore,
    ExcuseRequest,
    ExcuseStatus,
    ExcuseStore,
    LinkedUser,
    PlannedLesson,
    ReportStore,
)
from services.errors import (
    AlreadyDecided,
    ExcuseRefused,
    InvalidInput,
    NotOwner,
    RecordNotFound,
)
from services.members import Identity, require_teacher
from services.notify import RESULT, Attachment, Button, Moment, Notice, Notifier
from services.reports import MAX_REASON_LENGTH, ReportService

log = logging.getLogger(__name__)

# The student's reason, kept short enough that the correction's reason ("#id reason") and the
# teacher's notice (a photo caption: 1024 characters) hold it whole.
MAX_EXCUSE_REASON = 250
MAX_PDF_BYTES = 10 * 1024 * 1024
PDF_MIME = "application/pdf"
# How far ahead a coming lesson can be apologised for.
ADVANCE_DAYS = 14


@dataclass(frozen=True, slots=True)
class Target:
    """What a request is about: a saved session (`attendance_id`) or a planned lesson."""

    lesson_name: str
    lesson_start: datetime
    teacher_school_number: str
    attendance_id: UUID | None = None
    lesson_code: str | None = None

    @property
    def in_advance(self) -> bool:
        return self.attendance_id is None


@dataclass(frozen=True, slots=True)
class Missed:
    attendance_id: UUID
    lesson_name: str
    start_time: datetime


@dataclass(frozen=True, slots=True)
class Candidates:
    missed: list[Missed]
    planned: list[PlannedLesson]


@dataclass(frozen=True, slots=True)
class Decision:
    request: ExcuseRequest
    applied: bool  # the record is excused now (False: an apology waiting for its session)


@dataclass(frozen=True, slots=True)
class _Deciding:
    """The teacher who approved an apology, acting again when its session is saved."""

    school_number: str
    telegram_id: int = 0
    full_name: str = ""
    role: Role = Role.TEACHER


def check_attachment(*, kind: str, mime_type: str | None, size: int | None) -> str:
    """The stored kind of an attachment ("photo" or "pdf"), or ExcuseRefused: a photo, or a
    PDF document of at most MAX_PDF_BYTES; anything else is refused."""
    if kind == "photo":
        if size is not None and size > MAX_PDF_BYTES:
            raise ExcuseRefused("excreq.file_too_big")
        return "photo"
    if kind == "document" and mime_type == PDF_MIME:
        if size is None or size > MAX_PDF_BYTES:
            raise ExcuseRefused("excreq.file_too_big")
        return "pdf"
    raise ExcuseRefused("excreq.bad_file")


def clean_reason(text: str) -> str:
    """A student's reason, spaces collapsed; ExcuseRefused when empty or too long."""
    reason = " ".join(text.split())
    if not reason or len(reason) > MAX_EXCUSE_REASON:
        raise ExcuseRefused("excreq.reason_invalid")
    return reason


# The teacher's notice of a request is queued once: its marker lives a week, and the sweep
# (`announce_pending`) looks at requests younger than that, old enough for their own submit
# to have queued the notice.
ANNOUNCED_MARKER_SECONDS = 7 * 86400
ANNOUNCE_WITHIN = timedelta(days=6)
ANNOUNCE_AFTER = timedelta(minutes=2)


class ExcuseService:
    def __init__(
        self,
        *,
        excuses: ExcuseStore,
        attendance: AttendanceStore,
        accounts: AccountStore,
        reports: ReportStore,
        report_service: ReportService,
        notifier: Notifier,
        tz: ZoneInfo,
        deadline_days: int,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self._excuses = excuses
        self._attendance = attendance
        self._accounts = accounts
        self._reports = reports
        self._report_service = report_service
        self._notifier = notifier
        self._tz = tz
        self._deadline = timedelta(days=deadline_days)
        self.deadline_days = deadline_days
        self._clock = clock

    @property
    def tz(self) -> ZoneInfo:
        return self._tz

    # --- the student's side ------------------------------------------------------------

    async def candidates(self, *, student: Identity) -> Candidates:
        """The sessions the student may ask about now: missed ones within the deadline and
        coming lessons of their schedule, without a request waiting or approved."""
        now = self._clock()
        asked = await self._excuses.get_student_requests(student_number=student.school_number)
        open_sessions = {r.attendance_id for r in asked if r.status is not ExcuseStatus.REJECTED}
        open_planned = {
            (r.lesson_code, r.lesson_start)
            for r in asked
            if r.status is not ExcuseStatus.REJECTED and r.attendance_id is None
        }
        rows = await self._reports.get_student_records(student_number=student.school_number)
        missed = [
            Missed(r.attendance_id, r.lesson_name, r.start_time)
            for r in sorted(rows, key=lambda r: r.start_time, reverse=True)
            if r.status is RecordStatus.ABSENT
            and now <= r.start_time + self._deadline
            and r.attendance_id not in open_sessions
        ]
        planned = [
            p
            for p in await self._excuses.get_planned_lessons(
                student_number=student.school_number,
                start=now,
                end=now + timedelta(days=ADVANCE_DAYS),
            )
            if (p.course_code, p.start_time) not in open_planned
            and p.teacher_school_number is not None
        ]
        return Candidates(missed=missed[:20], planned=planned[:10])

    async def session_target(self, *, student: Identity, attendance_id: UUID) -> Target:
        """A saved session the student may ask to have excused, or ExcuseRefused with why."""
        try:
            session = await self._attendance.get_attendance_by_id(attendance_id=attendance_id)
        except NotFound:
            raise ExcuseRefused("excreq.not_yours") from None
        records = await self._attendance.get_attendance_records(attendance_id=attendance_id)
        record = next((r for r in records if r.student_number == student.school_number), None)
        if record is None:
            raise ExcuseRefused("excreq.not_yours")
        if record.status is RecordStatus.EXCUSED:
            raise ExcuseRefused("excreq.already_excused")
        if record.status is not RecordStatus.ABSENT:
            raise ExcuseRefused("excreq.not_absent")
        if self._clock() > session.start_time + self._deadline:
            raise ExcuseRefused("excreq.too_late", days=self.deadline_days, at=session.start_time)
        await self._no_open_request(student, attendance_id=attendance_id)
        return Target(
            lesson_name=session.lesson_name,
            lesson_start=session.start_time,
            teacher_school_number=session.teacher_school_number,
            attendance_id=attendance_id,
            lesson_code=session.lesson_code,
        )

    async def planned_target(self, *, student: Identity, code: str, start: datetime) -> Target:
        """A coming lesson of the student's schedule, or ExcuseRefused with why."""
        now = self._clock()
        lessons = await self._excuses.get_planned_lessons(
            student_number=student.school_number, start=start, end=start + timedelta(seconds=1)
        )
        lesson = next((p for p in lessons if p.course_code == code), None)
        if lesson is None or lesson.start_time <= now:
            raise ExcuseRefused("excreq.lesson_gone")
        if lesson.teacher_school_number is None:
            raise ExcuseRefused("excreq.no_teacher")
        await self._no_open_request(student, lesson_code=code, lesson_start=lesson.start_time)
        return Target(
            lesson_name=lesson.course_name,
            lesson_start=lesson.start_time,
            teacher_school_number=lesson.teacher_school_number,
            lesson_code=code,
        )

    async def submit(
        self,
        *,
        student: Identity,
        reason: str,
        attendance_id: UUID | None = None,
        lesson_code: str | None = None,
        lesson_start: datetime | None = None,
        attachment: Attachment | None = None,
    ) -> ExcuseRequest:
        """Store the request about a saved session (`attendance_id`) or a planned lesson
        (`lesson_code`, `lesson_start`), every check made again (the conversation took a
        while), and queue the teacher's notice."""
        if attendance_id is not None:
            target = await self.session_target(student=student, attendance_id=attendance_id)
        elif lesson_code is not None and lesson_start is not None:
            target = await self.planned_target(
                student=student, code=lesson_code, start=lesson_start
            )
        else:
            raise ExcuseRefused("excreq.lesson_gone")
        reason = clean_reason(reason)
        if attachment is not None and attachment.kind not in ("photo", "pdf"):
            raise ExcuseRefused("excreq.bad_file")
        # A teacher who cannot be reached (not linked now, or blocked the bot) would never see
        # it: the student is told so instead of waiting for a decision that cannot come.
        teachers = await self._accounts.get_contacts(school_numbers=[target.teacher_school_number])
        if not teachers:
            raise ExcuseRefused("excreq.no_teacher")
        try:
            request = await self._excuses.add_request(
                student_number=student.school_number,
                attendance_id=target.attendance_id,
                lesson_code=target.lesson_code,
                lesson_name=target.lesson_name,
                lesson_start=target.lesson_start,
                teacher_school_number=target.teacher_school_number,
                reason=reason,
                file_id=attachment.file_id if attachment else None,
                file_kind=attachment.kind if attachment else None,
            )
        except Conflict:
            raise ExcuseRefused("excreq.already_requested") from None
        await self._tell_teacher(request, teachers[0])
        return request

    async def _no_open_request(
        self,
        student: Identity,
        *,
        attendance_id: UUID | None = None,
        lesson_code: str | None = None,
        lesson_start: datetime | None = None,
    ) -> None:
        for r in await self._excuses.get_student_requests(student_number=student.school_number):
            if r.status is ExcuseStatus.REJECTED:
                continue
            same = (
                r.attendance_id == attendance_id
                if attendance_id is not None
                else r.attendance_id is None
                and (r.lesson_code, r.lesson_start) == (lesson_code, lesson_start)
            )
            if same:
                raise ExcuseRefused(
                    "excreq.already_requested"
                    if r.status is ExcuseStatus.PENDING
                    else "excreq.already_excused"
                )

    async def _tell_teacher(self, request: ExcuseRequest, teacher: LinkedUser) -> bool:
        """Queue the teacher's notice of the request, once (False: queued before)."""
        rid = request.request_id
        notice = Notice(
            telegram_id=teacher.telegram_id,
            language=teacher.language,
            key="excreq.notice_advance" if request.attendance_id is None else "excreq.notice",
            values={
                "id": rid,
                "name": request.student_name,
                "number": request.student_number,
                "lesson": request.lesson_name,
                "date": Moment(request.lesson_start, self._tz.key),
                "reason": request.reason,
            },
            buttons=(
                Button("button.excuse_approve", "excuse_approve", (rid,)),
                Button("button.excuse_reject", "excuse_reject", (rid,)),
            ),
            attachment=(
                Attachment(request.file_kind, request.file_id)
                if request.file_id and request.file_kind
                else None
            ),
        )
        return await self._notifier.enqueue(
            [notice], once=f"excuse:{rid}", once_ttl=ANNOUNCED_MARKER_SECONDS
        )

    async def announce_pending(self) -> int:
        """Queue the teacher's notice of every pending request of the last days again. Its
        `once` marker makes this a no-op for a request already announced; a request stored
        by a process that stopped before it queued the notice (a crash between the two) is
        announced now instead of waiting unseen. Returns how many were queued."""
        now = self._clock()
        requests = await self._excuses.get_pending_created(
            since=now - ANNOUNCE_WITHIN, until=now - ANNOUNCE_AFTER
        )
        if not requests:
            return 0
        numbers = sorted({r.teacher_school_number for r in requests if r.teacher_school_number})
        contacts = await self._accounts.get_contacts(school_numbers=numbers)
        teachers = {c.school_number: c for c in contacts}
        queued = 0
        for request in requests:
            teacher = teachers.get(request.teacher_school_number or "")
            if teacher is not None and await self._tell_teacher(request, teacher):
                queued += 1
        if queued:
            log.warning("%d excuse requests had no teacher's notice; queued now", queued)
        return queued

    # --- the teacher's side ------------------------------------------------------------

    async def pending(self, *, teacher: Identity, request_id: int) -> ExcuseRequest:
        """The request, if this teacher may decide it and it is still pending."""
        require_teacher(teacher)
        try:
            request = await self._excuses.get_request(request_id=request_id)
        except NotFound:
            raise AlreadyDecided from None
        if request.teacher_school_number != teacher.school_number:
            raise NotOwner
        if request.status is not ExcuseStatus.PENDING:
            raise AlreadyDecided
        return request

    async def waiting_for(self, *, teacher: Identity, attendance_id: UUID) -> list[ExcuseRequest]:
        """The pending requests about one of the teacher's saved sessions (/history)."""
        require_teacher(teacher)
        requests = await self._excuses.get_pending_for_sessions(attendance_ids=[attendance_id])
        return [r for r in requests if r.teacher_school_number == teacher.school_number]

    async def approve(self, *, teacher: Identity, request_id: int) -> Decision:
        request = await self.pending(teacher=teacher, request_id=request_id)
        if request.attendance_id is None:
            decided = await self._mark_approved(teacher=teacher, request_id=request_id)
            await self._tell_student(decided, applied=False)
            await self.apply_waiting()  # its session may have been saved already
            return Decision(decided, applied=False)
        try:
            await self._report_service.excuse(
                teacher=teacher,
                attendance_id=request.attendance_id,
                student_number=request.student_number,
                reason=_correction_reason(request),
            )
        except RecordNotFound:
            # The record is not absent now: a concurrent approval excused it, or the teacher
            # changed it in /history meanwhile.
            again = await self._excuses.get_request(request_id=request_id)
            records = await self._attendance.get_attendance_records(
                attendance_id=request.attendance_id
            )
            now_excused = any(
                r.student_number == request.student_number and r.status is RecordStatus.EXCUSED
                for r in records
            )
            if again.status is not ExcuseStatus.PENDING or now_excused:
                raise AlreadyDecided from None
            raise ExcuseRefused("excreq.record_changed") from None
        decided = await self._mark_approved(teacher=teacher, request_id=request_id)
        await self._tell_student(decided, applied=True)
        return Decision(decided, applied=True)

    async def _mark_approved(self, *, teacher: Identity, request_id: int) -> ExcuseRequest:
        """The request decided as approved by `teacher`; `AlreadyDecided` when another decision
        came first (the store decides a request once)."""
        decided = await self._excuses.decide(
            request_id=request_id,
            status=ExcuseStatus.APPROVED,
            decided_by=teacher.school_number,
            reason=None,
        )
        if decided is None:
            raise AlreadyDecided
        return decided

    async def reject(self, *, teacher: Identity, request_id: int, reason: str) -> ExcuseRequest:
        await self.pending(teacher=teacher, request_id=request_id)
        why = " ".join(reason.split())
        if not why or len(why) > MAX_REASON_LENGTH:
            raise InvalidInput("excuse.reason_invalid")  # the teacher's own rule (/history)
        decided = await self._excuses.decide(
            request_id=request_id,
            status=ExcuseStatus.REJECTED,
            decided_by=teacher.school_number,
            reason=why,
        )
        if decided is None:
            raise AlreadyDecided
        await self._tell_student(decided, applied=False)
        return decided

    async def apply_waiting(self) -> int:
        """Approved apologies in advance whose session has been saved: the student's absent
        record becomes excused, by the approving teacher's correction. Returns how many."""
        since = self._clock() - self._deadline - timedelta(days=ADVANCE_DAYS)
        applied = 0
        for request_id, attendance_id in await self._excuses.get_waiting_apologies(
            saved_since=since
        ):
            if not await self._excuses.attach_session(
                request_id=request_id, attendance_id=attendance_id
            ):
                continue  # another replica took it
            request = await self._excuses.get_request(request_id=request_id)
            if request.decided_by is None:
                continue
            try:
                await self._report_service.excuse(
                    teacher=_Deciding(request.decided_by),
                    attendance_id=attendance_id,
                    student_number=request.student_number,
                    reason=_correction_reason(request),
                )
            except (RecordNotFound, NotOwner):
                # Attended after all, or not absent on the sheet: nothing to excuse.
                log.info("approved apology %s: no absent record to excuse", request_id)
                continue
            applied += 1
        return applied

    async def _tell_student(self, request: ExcuseRequest, *, applied: bool) -> None:
        contacts = await self._accounts.get_contacts(school_numbers=[request.student_number])
        if not contacts:
            return
        student = contacts[0]
        if request.status is ExcuseStatus.REJECTED:
            key = "excreq.rejected_notice"
        elif applied:
            key = "excreq.approved_notice"
        else:
            key = "excreq.approved_advance_notice"
        values: dict[str, object] = {
            "lesson": request.lesson_name,
            "date": Moment(request.lesson_start, self._tz.key),
        }
        if request.status is ExcuseStatus.REJECTED:
            values["reason"] = request.decision_reason or ""
        await self._notifier.enqueue(
            [Notice(student.telegram_id, student.language, key, values, lane=RESULT)],
            once=f"excuse:decided:{request.request_id}",
            once_ttl=7 * 86400,
        )


def _correction_reason(request: ExcuseRequest) -> str:
    return f"#{request.request_id} {request.reason}"[:MAX_REASON_LENGTH]
