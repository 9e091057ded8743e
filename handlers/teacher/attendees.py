"""Teachers: the live attendee list, reviewing pending check-ins, adding a student by hand."""

from __future__ import annotations

from uuid import UUID

from aiogram import F, Router
from aiogram.filters import StateFilter
from aiogram.fsm.context import FSMContext
from aiogram.fsm.state import State, StatesGroup
from aiogram.types import CallbackQuery, Message
from aiogram.utils.callback_answer import CallbackAnswer

from handlers.deps import StatusBoard
from handlers.filters import has_text, on_command
from handlers.replies import Reply
from handlers.teacher.shared import message_of, recalled_aid, remember_aid
from services.attendance import AttendanceService
from services.errors import AlreadyOnList, RecordNotFound
from services.members import Member
from ui.callbacks import AttendeesPage, Review, Verdict
from ui.i18n import COMMANDS, t
from ui.render import attendees_page


class RejectForm(StatesGroup):
    reason = State()


class AddForm(StatesGroup):
    number = State()


async def send_attendees(
    target: Message,
    teacher: Member,
    attendance: AttendanceService,
    *,
    aid: UUID | None = None,
    page: int = 0,
    edit: bool = False,
) -> Reply:
    """The list as a new message, or (`edit`) in place of the one under the pressed button."""
    roster = await attendance.roster(teacher=teacher, attendance_id=aid)
    if roster is None:
        return target.answer(t("session.none_open"))
    text, keyboard = attendees_page(attendance, roster, page, tz=attendance.tz)
    if edit:
        return target.edit_text(text, reply_markup=keyboard)
    return target.answer(text, reply_markup=keyboard)


async def attendees(message: Message, user: Member, attendance: AttendanceService) -> Reply:
    return await send_attendees(message, user, attendance)


async def attendees_paged(
    query: CallbackQuery,
    callback_data: AttendeesPage,
    user: Member,
    attendance: AttendanceService,
) -> Reply:
    message = message_of(query)
    if message is None:
        return None
    return await send_attendees(
        message,
        user,
        attendance,
        aid=callback_data.attendance_id,
        page=callback_data.page,
        edit=True,
    )


async def accept(
    query: CallbackQuery,
    callback_data: Review,
    callback_answer: CallbackAnswer,
    user: Member,
    attendance: AttendanceService,
    board: StatusBoard,
) -> Reply:
    record = await attendance.review(
        teacher=user,
        attendance_id=callback_data.attendance_id,
        student_number=callback_data.student_number,
        accept=True,
    )
    board.touch(callback_data.attendance_id)
    callback_answer.text = t(
        "review.accepted", name=record.student_full_name, number=record.student_number
    )
    message = message_of(query)
    if message is None:
        return None
    return await send_attendees(
        message, user, attendance, aid=callback_data.attendance_id, edit=True
    )


async def reject_ask(
    query: CallbackQuery,
    callback_data: Review,
    user: Member,
    attendance: AttendanceService,
    state: FSMContext,
) -> Reply:
    roster = await attendance.roster(teacher=user, attendance_id=callback_data.attendance_id)
    record = (
        next((r for r in roster.records if r.student_number == callback_data.student_number), None)
        if roster
        else None
    )
    if record is None:
        raise RecordNotFound(callback_data.student_number)
    await remember_aid(
        state, RejectForm.reason, callback_data.attendance_id, sn=callback_data.student_number
    )
    message = message_of(query)
    if message is None:
        return None
    return message.answer(
        t("review.ask_reason", name=record.student_full_name, number=record.student_number)
    )


async def reject_reason(
    message: Message,
    user: Member,
    attendance: AttendanceService,
    board: StatusBoard,
    state: FSMContext,
) -> Reply:
    attendance_id, data = await recalled_aid(state)
    await state.clear()
    reason = (message.text or "").strip()
    record = await attendance.review(
        teacher=user,
        attendance_id=attendance_id,
        student_number=str(data.get("sn", "")),
        accept=False,
        reason=None if reason in ("", "-") else reason,
    )
    board.touch(attendance_id)
    return message.answer(
        t("review.rejected", name=record.student_full_name, number=record.student_number)
    )


async def add_number(
    message: Message,
    user: Member,
    attendance: AttendanceService,
    board: StatusBoard,
    state: FSMContext,
) -> Reply:
    attendance_id, _ = await recalled_aid(state)
    try:
        record = await attendance.add_student(
            teacher=user, attendance_id=attendance_id, student_number=message.text or ""
        )
    except AlreadyOnList as exc:
        await state.clear()
        return message.answer(t("add.already", number=exc.student_number))
    # A malformed number raises InvalidInput before this line and keeps the step open.
    await state.clear()
    board.touch(attendance_id)
    return message.answer(t("add.ok", number=record.student_number, name=record.student_full_name))


def router() -> Router:
    """The live session's list: pages, accept, reject, add; a new router each call."""
    routes = Router(name="teacher.attendees")
    routes.message.register(attendees, on_command("attendees"))
    routes.callback_query.register(attendees_paged, AttendeesPage.filter())
    routes.callback_query.register(accept, Review.filter(F.action == Verdict.ACCEPT))
    routes.callback_query.register(reject_ask, Review.filter(F.action == Verdict.REJECT))
    routes.message.register(
        reject_reason, StateFilter(RejectForm.reason), has_text, ~on_command(*COMMANDS)
    )
    routes.message.register(
        add_number, StateFilter(AddForm.number), has_text, ~on_command(*COMMANDS)
    )
    return routes
