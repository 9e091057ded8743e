"""Teachers: saved sessions (/history), corrections, excused absences, one-session CSV."""

from __future__ import annotations

from uuid import UUID

from aiogram import Router
from aiogram.filters import StateFilter
from aiogram.fsm.context import FSMContext
from aiogram.fsm.state import State, StatesGroup
from aiogram.types import (
    BufferedInputFile,
    CallbackQuery,
    InlineKeyboardButton,
    InlineKeyboardMarkup,
    Message,
)
from aiogram.utils.callback_answer import CallbackAnswer
from aiogram.utils.keyboard import InlineKeyboardBuilder

from dal.models import RecordStatus
from handlers.filters import has_text, on_command
from handlers.replies import Reply
from handlers.teacher.excuses import decision_keyboard
from handlers.teacher.shared import message_of, recalled_aid, remember_aid
from services.attendance import AttendanceService
from services.errors import AlreadyOnList, InvalidInput
from services.excuses import ExcuseService
from services.members import Member
from services.reports import ReportService, SavedSheet
from ui.callbacks import (
    HistoryAdd,
    HistoryCsv,
    HistoryExcuse,
    HistoryExcuseList,
    HistoryList,
    HistoryOpen,
    HistoryRequests,
    HistoryToggle,
)
from ui.i18n import COMMANDS, date_time_text, t
from ui.render import page_row

HISTORY_PAGE = 8
SHEET_PAGE = 24


class ExcuseForm(StatesGroup):
    reason = State()


class SavedAddForm(StatesGroup):
    number = State()


def _sheet_view(
    sheet: SavedSheet, page: int, reports: ReportService, requests: int = 0
) -> tuple[str, InlineKeyboardMarkup]:
    attendance = sheet.attendance
    aid = attendance.attendance_id
    date = date_time_text(attendance.start_time, reports.tz)
    text = t(
        "history.detail",
        lesson=attendance.lesson_name,
        date=date,
        present=sheet.counts.present,
        late=sheet.counts.late,
        absent=sheet.counts.absent,
        excused=sheet.counts.excused,
        pending=sheet.counts.pending,
        rejected=sheet.counts.rejected,
    )
    pages = max(1, -(-len(sheet.rows) // SHEET_PAGE))
    page = min(max(page, 0), pages - 1)
    builder = InlineKeyboardBuilder()
    for row in sheet.rows[page * SHEET_PAGE : (page + 1) * SHEET_PAGE]:
        status = row.record.status
        icon = "✅" if status.attended else "🩺" if status is RecordStatus.EXCUSED else "❌"
        builder.button(
            text=f"{icon} {row.student_number} {row.full_name}"[:40],
            callback_data=HistoryToggle(
                attendance_id=aid, student_number=row.student_number, page=page
            ),
        )
    builder.adjust(2)
    nav = page_row(
        page, has_next=page < pages - 1, to=lambda n: HistoryOpen(attendance_id=aid, page=n)
    )
    if nav:
        builder.row(*nav)
    builder.row(
        InlineKeyboardButton(
            text=t("button.excuse"), callback_data=HistoryExcuseList(attendance_id=aid).pack()
        ),
        InlineKeyboardButton(
            text=t("button.add_saved"), callback_data=HistoryAdd(attendance_id=aid).pack()
        ),
    )
    if requests:  # students' excuse requests waiting for a decision
        builder.row(
            InlineKeyboardButton(
                text=t("button.excuse_requests", count=requests),
                callback_data=HistoryRequests(attendance_id=aid).pack(),
            )
        )
    builder.row(
        InlineKeyboardButton(
            text=t("button.csv"), callback_data=HistoryCsv(attendance_id=aid).pack()
        ),
        InlineKeyboardButton(text=t("button.back"), callback_data=HistoryList().pack()),
    )
    return text, builder.as_markup()


async def _history_list(
    target: Message,
    teacher: Member,
    reports: ReportService,
    *,
    page: int = 0,
    edit: bool = False,
) -> Reply:
    sheets = await reports.history(
        teacher=teacher, limit=HISTORY_PAGE + 1, offset=page * HISTORY_PAGE
    )
    if not sheets and page == 0:
        return target.answer(t("history.empty"))
    builder = InlineKeyboardBuilder()
    for sheet in sheets[:HISTORY_PAGE]:
        attendance = sheet.attendance
        builder.button(
            text=t(
                "history.line",
                date=date_time_text(attendance.start_time, reports.tz, year=False),
                lesson=attendance.lesson_name[:30],
                present=sheet.counts.attended,
                total=len(sheet.rows),
            ),
            callback_data=HistoryOpen(attendance_id=attendance.attendance_id),
        )
    builder.adjust(1)
    nav = page_row(page, has_next=len(sheets) > HISTORY_PAGE, to=lambda n: HistoryList(page=n))
    if nav:
        builder.row(*nav)
    text = t("history.header")
    if edit:
        return target.edit_text(text, reply_markup=builder.as_markup())
    return target.answer(text, reply_markup=builder.as_markup())


async def history(message: Message, user: Member, reports: ReportService) -> Reply:
    return await _history_list(message, user, reports)


async def history_list(
    query: CallbackQuery,
    callback_data: HistoryList,
    user: Member,
    reports: ReportService,
) -> Reply:
    message = message_of(query)
    if message is None:
        return None
    return await _history_list(message, user, reports, page=callback_data.page, edit=True)


async def history_open(
    query: CallbackQuery,
    callback_data: HistoryOpen,
    user: Member,
    reports: ReportService,
    excuses: ExcuseService,
) -> Reply:
    return await _show_sheet(
        query, user, reports, callback_data.attendance_id, callback_data.page, excuses=excuses
    )


async def _show_sheet(
    query: CallbackQuery,
    user: Member,
    reports: ReportService,
    attendance_id: UUID,
    page: int,
    *,
    excuses: ExcuseService | None = None,
) -> Reply:
    """The saved sheet, read again, in place of the pressed message."""
    sheet = await reports.sheet(teacher=user, attendance_id=attendance_id)
    message = message_of(query)
    if message is None:
        return None
    waiting = (
        await excuses.waiting_for(teacher=user, attendance_id=attendance_id) if excuses else []
    )
    text, keyboard = _sheet_view(sheet, page, reports, len(waiting))
    return message.edit_text(text, reply_markup=keyboard)


async def history_requests(
    query: CallbackQuery,
    callback_data: HistoryRequests,
    user: Member,
    reports: ReportService,
    excuses: ExcuseService,
) -> Reply:
    """The session's pending excuse requests, one message each with Approve / Reject (the
    same buttons as the notice, handlers/teacher/excuses.py)."""
    await reports.sheet(teacher=user, attendance_id=callback_data.attendance_id)  # ownership
    waiting = await excuses.waiting_for(teacher=user, attendance_id=callback_data.attendance_id)
    message = message_of(query)
    if message is None:
        return None
    if not waiting:
        return message.answer(t("excreq.none_waiting"))
    for request in waiting[:10]:
        await message.answer(
            t(
                "excreq.notice",
                id=request.request_id,
                name=request.student_name,
                number=request.student_number,
                lesson=request.lesson_name,
                date=date_time_text(request.lesson_start, reports.tz),
                reason=request.reason,
            ),
            reply_markup=decision_keyboard(request.request_id),
        )
        if request.file_id and request.file_kind == "photo":
            await message.answer_photo(request.file_id)
        elif request.file_id:
            await message.answer_document(request.file_id)
    return None


async def history_toggle(
    query: CallbackQuery,
    callback_data: HistoryToggle,
    callback_answer: CallbackAnswer,
    user: Member,
    reports: ReportService,
    excuses: ExcuseService,
) -> Reply:
    attendance_id = callback_data.attendance_id
    record = await reports.toggle(
        teacher=user, attendance_id=attendance_id, student_number=callback_data.student_number
    )
    state_word = t("state.present" if record.is_attended else "state.absent")
    callback_answer.text = t("history.corrected", number=record.student_number, state=state_word)
    return await _show_sheet(
        query, user, reports, attendance_id, callback_data.page, excuses=excuses
    )


async def history_csv(
    query: CallbackQuery, callback_data: HistoryCsv, user: Member, reports: ReportService
) -> Reply:
    name, data = await reports.export_csv(teacher=user, attendance_id=callback_data.attendance_id)
    message = message_of(query)
    if message is None:
        return None
    return message.answer_document(BufferedInputFile(data, filename=name))


# --- excused absences ------------------------------------------------------------


async def excuse_list(
    query: CallbackQuery,
    callback_data: HistoryExcuseList,
    user: Member,
    reports: ReportService,
) -> Reply:
    sheet = await reports.sheet(teacher=user, attendance_id=callback_data.attendance_id)
    message = message_of(query)
    if message is None:
        return None
    absent = [row for row in sheet.rows if row.record.status is RecordStatus.ABSENT]
    if not absent:
        return message.answer(t("excuse.none"))
    builder = InlineKeyboardBuilder()
    for row in absent[:90]:
        builder.button(
            text=f"❌ {row.student_number} {row.full_name}"[:40],
            callback_data=HistoryExcuse(
                attendance_id=callback_data.attendance_id, student_number=row.student_number
            ),
        )
    builder.adjust(2)
    return message.answer(t("excuse.choose"), reply_markup=builder.as_markup())


async def excuse_pick(
    query: CallbackQuery,
    callback_data: HistoryExcuse,
    user: Member,
    reports: ReportService,
    state: FSMContext,
) -> Reply:
    """Ask for the reason; ownership is checked now and again when the reason arrives."""
    await reports.sheet(teacher=user, attendance_id=callback_data.attendance_id)
    await remember_aid(
        state, ExcuseForm.reason, callback_data.attendance_id, sn=callback_data.student_number
    )
    message = message_of(query)
    if message is None:
        return None
    return message.answer(t("excuse.ask_reason", number=callback_data.student_number))


async def excuse_reason(
    message: Message,
    user: Member,
    reports: ReportService,
    state: FSMContext,
) -> Reply:
    attendance_id, data = await recalled_aid(state)
    try:
        record = await reports.excuse(
            teacher=user,
            attendance_id=attendance_id,
            student_number=str(data.get("sn", "")),
            reason=message.text or "",
        )
    except InvalidInput:
        raise  # the step stays open for another try
    except Exception:
        await state.clear()
        raise
    await state.clear()
    return message.answer(
        t("excuse.ok", number=record.student_number, reason=record.teacher_note or "")
    )


async def saved_add_ask(
    query: CallbackQuery,
    callback_data: HistoryAdd,
    user: Member,
    reports: ReportService,
    state: FSMContext,
) -> Reply:
    """Add a student to a saved session: ask for the number (ownership checked now and when
    the number arrives)."""
    await reports.sheet(teacher=user, attendance_id=callback_data.attendance_id)
    await remember_aid(state, SavedAddForm.number, callback_data.attendance_id)
    message = message_of(query)
    if message is None:
        return None
    return message.answer(t("add.ask_number"))


async def saved_add_number(
    message: Message,
    user: Member,
    reports: ReportService,
    attendance: AttendanceService,
    state: FSMContext,
) -> Reply:
    attendance_id, _ = await recalled_aid(state)
    try:
        record = await reports.add_to_saved(
            teacher=user,
            attendance_id=attendance_id,
            student_number=message.text or "",
            at=attendance.now(),
        )
    except InvalidInput:
        raise  # a malformed number keeps the step open
    except AlreadyOnList as exc:
        await state.clear()
        return message.answer(t("add.already", number=exc.student_number))
    except Exception:
        await state.clear()
        raise
    await state.clear()
    return message.answer(t("history.added", number=record.student_number))


def router() -> Router:
    """/history: saved sessions, corrections, excuses, CSV; a new router each call."""
    routes = Router(name="teacher.history")
    routes.message.register(history, on_command("history"))
    routes.callback_query.register(history_list, HistoryList.filter())
    routes.callback_query.register(history_open, HistoryOpen.filter())
    routes.callback_query.register(history_requests, HistoryRequests.filter())
    routes.callback_query.register(history_toggle, HistoryToggle.filter())
    routes.callback_query.register(history_csv, HistoryCsv.filter())
    routes.callback_query.register(excuse_list, HistoryExcuseList.filter())
    routes.callback_query.register(excuse_pick, HistoryExcuse.filter())
    routes.message.register(
        excuse_reason, StateFilter(ExcuseForm.reason), has_text, ~on_command(*COMMANDS)
    )
    routes.callback_query.register(saved_add_ask, HistoryAdd.filter())
    routes.message.register(
        saved_add_number, StateFilter(SavedAddForm.number), has_text, ~on_command(*COMMANDS)
    )
    return routes
