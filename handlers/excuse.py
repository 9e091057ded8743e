"""Students: /excuse, a request to have a missed session excused (or an apology in advance).

The conversation: pick the session (a button of /excuse, or the one beside a missed session in
/my_attendance), write the reason, attach a photo or a PDF or send without one. Every step has
a Cancel button (and /cancel); a wrong kind of message is answered and the step stays. The
decisions are services.excuses'; a student never changes a record, only asks.

A six-digit code sent in the middle of it is a check-in (the student may be in class now): it
is taken as one, and the request waits at its step.
"""

from __future__ import annotations

from datetime import UTC, datetime
from uuid import UUID

from aiogram import Router
from aiogram.filters import StateFilter
from aiogram.fsm.context import FSMContext
from aiogram.fsm.state import State, StatesGroup
from aiogram.types import CallbackQuery, InlineKeyboardMarkup, Message
from aiogram.utils.callback_answer import CallbackAnswer
from aiogram.utils.keyboard import InlineKeyboardBuilder

from handlers.access import MemberGate
from handlers.deps import Metrics, StatusBoard
from handlers.filters import check_in_code, has_text, on_command
from handlers.replies import Reply
from handlers.student import reply_check_in
from services.attendance import AttendanceService
from services.errors import ExcuseRefused
from services.excuses import (
    MAX_EXCUSE_REASON,
    MAX_PDF_BYTES,
    ExcuseService,
    check_attachment,
    clean_reason,
)
from services.members import Member
from services.notify import Attachment
from ui.callbacks import ExcuseCancel, ExcuseNoFile, ExcusePlanned, ExcuseSession
from ui.i18n import COMMANDS, Raw, date_time_text, t, tn


class ExcuseRequestForm(StatesGroup):
    reason = State()
    document = State()


_STEPS = (ExcuseRequestForm.reason, ExcuseRequestForm.document)
_STEP_NAMES = frozenset(s.state for s in _STEPS)
# Refusals after which the step stays open for another try.
_RETRY = frozenset({"excreq.bad_file", "excreq.file_too_big", "excreq.reason_invalid"})


def days_text(count: int) -> Raw:
    return Raw(tn("count.days", count, count=count))


def _cancel_row(builder: InlineKeyboardBuilder) -> None:
    builder.button(text=t("button.cancel"), callback_data=ExcuseCancel())


def _cancel_only() -> InlineKeyboardMarkup:
    builder = InlineKeyboardBuilder()
    _cancel_row(builder)
    return builder.as_markup()


def _message(query: CallbackQuery) -> Message | None:
    return query.message if isinstance(query.message, Message) else None


async def excuse_start(
    message: Message, user: Member, excuses: ExcuseService, state: FSMContext
) -> Reply:
    if await state.get_state() in _STEP_NAMES:
        await state.clear()  # starting again
    found = await excuses.candidates(student=user)
    days = days_text(excuses.deadline_days)
    if not found.missed and not found.planned:
        return message.answer(t("excreq.nothing", days=days))
    builder = InlineKeyboardBuilder()
    for missed in found.missed:
        builder.button(
            text=t(
                "excreq.missed_button",
                date=date_time_text(missed.start_time, excuses.tz, year=False),
                lesson=missed.lesson_name[:28],
            ),
            callback_data=ExcuseSession(attendance_id=missed.attendance_id),
        )
    for lesson in found.planned:
        builder.button(
            text=t(
                "excreq.planned_button",
                date=date_time_text(lesson.start_time, excuses.tz, year=False),
                lesson=lesson.course_name[:28],
            ),
            callback_data=ExcusePlanned(
                code=lesson.course_code[:24], start=int(lesson.start_time.timestamp())
            ),
        )
    _cancel_row(builder)
    builder.adjust(1)
    return message.answer(t("excreq.choose", days=days), reply_markup=builder.as_markup())


async def _ask_reason(
    query: CallbackQuery,
    state: FSMContext,
    excuses: ExcuseService,
    data: dict[str, object],
    lesson: str,
    start: datetime,
) -> Reply:
    await state.set_state(ExcuseRequestForm.reason)
    await state.set_data(data)
    message = _message(query)
    if message is None:
        return None
    return message.answer(
        t(
            "excreq.ask_reason",
            lesson=lesson,
            date=date_time_text(start, excuses.tz),
            max=MAX_EXCUSE_REASON,
        ),
        reply_markup=_cancel_only(),
    )


async def pick_session(
    query: CallbackQuery,
    callback_data: ExcuseSession,
    user: Member,
    excuses: ExcuseService,
    state: FSMContext,
) -> Reply:
    """Checked now (the student's own absent record, within the deadline) and again when the
    request is sent."""
    target = await excuses.session_target(student=user, attendance_id=callback_data.attendance_id)
    data: dict[str, object] = {"aid": callback_data.attendance_id.hex}
    return await _ask_reason(query, state, excuses, data, target.lesson_name, target.lesson_start)


async def pick_planned(
    query: CallbackQuery,
    callback_data: ExcusePlanned,
    user: Member,
    excuses: ExcuseService,
    state: FSMContext,
) -> Reply:
    start = datetime.fromtimestamp(callback_data.start, UTC)
    target = await excuses.planned_target(student=user, code=callback_data.code, start=start)
    data: dict[str, object] = {"code": callback_data.code, "start": callback_data.start}
    return await _ask_reason(query, state, excuses, data, target.lesson_name, target.lesson_start)


async def cancel_button(
    query: CallbackQuery, state: FSMContext, callback_answer: CallbackAnswer
) -> Reply:
    """Ends this conversation only: a Cancel left in the chat does not end another one."""
    if await state.get_state() in _STEP_NAMES:
        await state.clear()
    callback_answer.text = t("excreq.cancelled")
    message = _message(query)
    if message is None:
        return None
    return message.answer(t("excreq.cancelled"))


async def code_mid_excuse(
    message: Message,
    attendance: AttendanceService,
    board: StatusBoard,
    metrics: Metrics,
) -> Reply:
    """A check-in code: answered as a check-in; the request waits at its step."""
    code = (message.text or "").strip()
    return await reply_check_in(message, code, attendance=attendance, board=board, metrics=metrics)


async def reason_text(message: Message, state: FSMContext) -> Reply:
    reason = clean_reason(message.text or "")  # refused: the step stays for another try
    await state.update_data(reason=reason)
    await state.set_state(ExcuseRequestForm.document)
    builder = InlineKeyboardBuilder()
    builder.button(text=t("button.excuse_no_file"), callback_data=ExcuseNoFile())
    _cancel_row(builder)
    builder.adjust(1)
    return message.answer(
        t("excreq.ask_file", mb=MAX_PDF_BYTES // (1024 * 1024)), reply_markup=builder.as_markup()
    )


async def reason_not_text(message: Message) -> Reply:
    return message.answer(t("excreq.reason_text_only"), reply_markup=_cancel_only())


def _attachment(message: Message) -> Attachment:
    """The photo or PDF of the message, checked (ExcuseRefused for anything else)."""
    if message.photo:
        largest = message.photo[-1]
        kind = check_attachment(kind="photo", mime_type=None, size=largest.file_size)
        return Attachment(kind, largest.file_id)
    if message.document is not None:
        document = message.document
        kind = check_attachment(
            kind="document", mime_type=document.mime_type, size=document.file_size
        )
        return Attachment(kind, document.file_id)
    raise ExcuseRefused("excreq.bad_file")


async def document_text(message: Message) -> Reply:
    return message.answer(
        t("excreq.file_or_skip", mb=MAX_PDF_BYTES // (1024 * 1024)), reply_markup=_cancel_only()
    )


async def document_file(
    message: Message, user: Member, excuses: ExcuseService, state: FSMContext
) -> Reply:
    attachment = _attachment(message)  # refused: the step stays
    return await _submit(message, user, excuses, state, attachment)


async def no_file(
    query: CallbackQuery, user: Member, excuses: ExcuseService, state: FSMContext
) -> Reply:
    message = _message(query)
    if await state.get_state() != ExcuseRequestForm.document.state or message is None:
        raise ExcuseRefused("excreq.step_over")
    return await _submit(message, user, excuses, state, None)


def _planned_start(data: dict[str, object]) -> datetime | None:
    start = data.get("start")
    return datetime.fromtimestamp(start, UTC) if isinstance(start, int) else None


def _aid(data: dict[str, object]) -> UUID | None:
    try:
        return UUID(hex=str(data["aid"])) if "aid" in data else None
    except ValueError:
        return None


async def _submit(
    message: Message,
    user: Member,
    excuses: ExcuseService,
    state: FSMContext,
    attachment: Attachment | None,
) -> Reply:
    data = await state.get_data()
    code = data.get("code")
    try:
        request = await excuses.submit(
            student=user,
            reason=str(data.get("reason", "")),
            attendance_id=_aid(data),
            lesson_code=str(code) if code is not None else None,
            lesson_start=_planned_start(data),
            attachment=attachment,
        )
    except ExcuseRefused as exc:
        if exc.key not in _RETRY or exc.key == "excreq.reason_invalid":
            await state.clear()  # nothing more this conversation can do
        raise
    await state.clear()
    return message.answer(
        t(
            "excreq.sent_advance" if request.attendance_id is None else "excreq.sent",
            lesson=request.lesson_name,
            date=date_time_text(request.lesson_start, excuses.tz),
        )
    )


def router() -> Router:
    """A student's excuse request, from the lesson to the document; a new router each call."""
    routes = Router(name="excuse")
    routes.message.middleware(MemberGate())
    routes.callback_query.middleware(MemberGate())
    routes.message.register(excuse_start, on_command("excuse"))
    routes.callback_query.register(pick_session, ExcuseSession.filter())
    routes.callback_query.register(pick_planned, ExcusePlanned.filter())
    routes.callback_query.register(cancel_button, ExcuseCancel.filter())
    routes.message.register(code_mid_excuse, StateFilter(*_STEPS), check_in_code)
    routes.message.register(
        reason_text, StateFilter(ExcuseRequestForm.reason), has_text, ~on_command(*COMMANDS)
    )
    routes.message.register(
        reason_not_text, StateFilter(ExcuseRequestForm.reason), ~on_command(*COMMANDS)
    )
    routes.message.register(
        document_text, StateFilter(ExcuseRequestForm.document), has_text, ~on_command(*COMMANDS)
    )
    routes.message.register(
        document_file, StateFilter(ExcuseRequestForm.document), ~on_command(*COMMANDS)
    )
    routes.callback_query.register(no_file, ExcuseNoFile.filter())
    return routes
