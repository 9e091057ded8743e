"""Teachers: open a session, change its level or head-count cap, end it."""

from __future__ import annotations

from uuid import UUID

from aiogram import Router
from aiogram.filters import CommandObject, StateFilter
from aiogram.fsm.context import FSMContext
from aiogram.fsm.state import State, StatesGroup
from aiogram.methods import SendMessage
from aiogram.types import CallbackQuery, Message
from aiogram.utils.callback_answer import CallbackAnswer
from aiogram.utils.keyboard import InlineKeyboardBuilder

from dal.models import Security
from handlers.deps import StatusBoard
from handlers.filters import has_text, on_command
from handlers.replies import Reply
from handlers.teacher.attendees import AddForm, send_attendees
from handlers.teacher.shared import message_of, recalled_aid, remember_aid
from services.attendance import AlreadyOpen, AttendanceService, ChooseLesson, Started, StartOutcome
from services.errors import InvalidInput
from services.members import Member
from ui.callbacks import Act, LessonPick, SessionAction, SessionLevel
from ui.i18n import COMMANDS, Raw, t
from ui.render import lesson_label, location_keyboard


class CapForm(StatesGroup):
    count = State()


def ask_teacher_location(target: Message, level: int) -> SendMessage:
    """One tap shares the teacher's location (levels 2 and 3 anchor the session to it)."""
    return target.answer(t("teacher.ask_location", level=level), reply_markup=location_keyboard())


async def _show_start(
    target: Message,
    outcome: StartOutcome,
    *,
    attendance: AttendanceService,
    board: StatusBoard,
) -> Reply:
    if isinstance(outcome, Started):
        # Awaited, not returned: the status board keeps the sent message's id to edit it.
        await board.post(outcome.attendance, chat_id=target.chat.id)
        level = outcome.attendance.security_option
        ask = ask_teacher_location(target, level) if level >= Security.LOCATION else None
        if not outcome.ad_hoc:
            return ask
        note = target.answer(t("session.ad_hoc"))
        if ask is None:
            return note
        await note  # two replies: the first is awaited so that they arrive in order
        return ask
    if isinstance(outcome, AlreadyOpen):
        return target.answer(
            t(
                "session.already_open",
                lesson=outcome.attendance.lesson_name,
                code=outcome.attendance.code,
            )
        )
    if isinstance(outcome, ChooseLesson):
        builder = InlineKeyboardBuilder()
        for lesson in outcome.lessons[:20]:
            builder.button(
                text=lesson_label(lesson, attendance.tz),
                callback_data=LessonPick(
                    code=lesson.course_code[:24], start=int(lesson.start.timestamp())
                ),
            )
        builder.adjust(1)
        return target.answer(t("session.choose"), reply_markup=builder.as_markup())
    return target.answer(t("session.no_lessons"))


async def start_session(
    message: Message,
    command: CommandObject,
    user: Member,
    attendance: AttendanceService,
    board: StatusBoard,
) -> Reply:
    outcome = await attendance.start_session(
        teacher=user, chat_id=message.chat.id, lesson_name=command.args
    )
    return await _show_start(message, outcome, attendance=attendance, board=board)


async def lesson_picked(
    query: CallbackQuery,
    callback_data: LessonPick,
    user: Member,
    attendance: AttendanceService,
    board: StatusBoard,
) -> Reply:
    message = message_of(query)
    if message is None:
        return None
    outcome = await attendance.start_chosen(
        teacher=user,
        chat_id=message.chat.id,
        course_code=callback_data.code,
        start_epoch=callback_data.start,
    )
    return await _show_start(message, outcome, attendance=attendance, board=board)


async def _end(
    target: Message,
    teacher: Member,
    attendance: AttendanceService,
    board: StatusBoard,
    attendance_id: UUID | None = None,
) -> Reply:
    roster = await attendance.end_session(teacher=teacher, attendance_id=attendance_id)
    if roster is None:
        return target.answer(t("session.none_open"))
    await board.refresh(roster.attendance.attendance_id)
    pending = roster.tally.pending
    return target.answer(
        t(
            "session.ended",
            lesson=roster.attendance.lesson_name,
            present=roster.tally.attended,
            pending=Raw(t("session.pending_part", pending=pending) if pending else ""),
        )
    )


async def end_session(
    message: Message, user: Member, attendance: AttendanceService, board: StatusBoard
) -> Reply:
    return await _end(message, user, attendance, board)


async def session_action(
    query: CallbackQuery,
    callback_data: SessionAction,
    user: Member,
    attendance: AttendanceService,
    board: StatusBoard,
    state: FSMContext,
) -> Reply:
    message = message_of(query)
    if message is None:
        return None
    action, aid = callback_data.action, callback_data.attendance_id
    if action is Act.END:
        return await _end(message, user, attendance, board, attendance_id=aid)
    if action is Act.LIST:
        return await send_attendees(message, user, attendance, aid=aid)
    await attendance.owned_session(teacher=user, attendance_id=aid)
    if action is Act.CAP:
        await remember_aid(state, CapForm.count, aid)
        return message.answer(t("cap.ask"))
    await remember_aid(state, AddForm.number, aid)
    return message.answer(t("add.ask_number"))


async def session_level(
    query: CallbackQuery,
    callback_data: SessionLevel,
    callback_answer: CallbackAnswer,
    user: Member,
    attendance: AttendanceService,
    board: StatusBoard,
) -> Reply:
    """A level button on the status message: the service checks that the presser owns the
    open session (forged or stale data changes nothing)."""
    session = await attendance.set_security_level(
        teacher=user, attendance_id=callback_data.attendance_id, level=callback_data.level
    )
    await board.refresh(callback_data.attendance_id)
    name = t(f"level.{session.security_option}")
    callback_answer.text = t("level.changed", name=name)
    message = message_of(query)
    if (
        message is not None
        and session.security_option >= Security.LOCATION
        and session.anchor_latitude is None
    ):
        return ask_teacher_location(message, session.security_option)
    return None


async def cap_count(
    message: Message,
    user: Member,
    attendance: AttendanceService,
    board: StatusBoard,
    state: FSMContext,
) -> Reply:
    attendance_id, _ = await recalled_aid(state)
    text = (message.text or "").strip()
    if not text.isdecimal() or len(text) > 5:
        raise InvalidInput("cap.bad")  # the step stays open for another try
    count = int(text)
    await attendance.set_head_count_cap(
        teacher=user, attendance_id=attendance_id, cap=count or None
    )
    await state.clear()
    board.touch(attendance_id)
    return message.answer(t("cap.set", cap=count) if count else t("cap.cleared"))


def router() -> Router:
    """Opening, changing and ending a live session; a new router each call."""
    routes = Router(name="teacher.session")
    routes.message.register(start_session, on_command("start_session"))
    routes.callback_query.register(lesson_picked, LessonPick.filter())
    routes.message.register(end_session, on_command("end_session"))
    routes.callback_query.register(session_action, SessionAction.filter())
    routes.callback_query.register(session_level, SessionLevel.filter())
    routes.message.register(cap_count, StateFilter(CapForm.count), has_text, ~on_command(*COMMANDS))
    return routes
