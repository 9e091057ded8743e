"""Teachers: open, watch, correct and end a session; history, corrections and export."""

from __future__ import annotations

from aiogram import F, Router
from aiogram.filters import Command, CommandObject, StateFilter
from aiogram.fsm.context import FSMContext
from aiogram.fsm.state import State, StatesGroup
from aiogram.types import (
    BufferedInputFile,
    CallbackQuery,
    InlineKeyboardButton,
    InlineKeyboardMarkup,
    KeyboardButton,
    Message,
    ReplyKeyboardMarkup,
)
from aiogram.utils.keyboard import InlineKeyboardBuilder

from bot.i18n import COMMANDS, Raw, t
from dal.models import RecordStatus, UserSessionRedis
from handlers.deps import StatusBoard
from handlers.filters import has_text
from handlers.guards import require_user
from services.attendance import (
    AlreadyOpen,
    AttendanceService,
    ChooseLesson,
    Started,
    StartOutcome,
)
from services.errors import AlreadyOnList, InvalidInput, RecordNotFound, SessionGone
from services.reports import ReportService, SavedSheet, course_token
from services.status import percent_text
from ui.callbacks import (
    AttendeesPage,
    ExportCourse,
    ExportFormat,
    HistoryAdd,
    HistoryCsv,
    HistoryExcuse,
    HistoryExcuseList,
    HistoryList,
    HistoryOpen,
    HistoryToggle,
    LessonPick,
    Review,
    SessionAction,
    SessionLevel,
    parse_aid,
)
from ui.render import attendees_page, lesson_label

router = Router(name="teacher")

HISTORY_PAGE = 8
SHEET_PAGE = 24


class RejectForm(StatesGroup):
    reason = State()


class AddForm(StatesGroup):
    number = State()


class ExcuseForm(StatesGroup):
    reason = State()


class SavedAddForm(StatesGroup):
    number = State()


class CapForm(StatesGroup):
    count = State()


def _message_of(query: CallbackQuery) -> Message | None:
    return query.message if isinstance(query.message, Message) else None


async def _show_start(
    target: Message,
    outcome: StartOutcome,
    *,
    lang: str,
    attendance: AttendanceService,
    board: StatusBoard,
) -> None:
    if isinstance(outcome, Started):
        await board.post(outcome.attendance, chat_id=target.chat.id, lang=lang)
        if outcome.ad_hoc:
            await target.answer(t("session.ad_hoc", lang))
        if outcome.attendance.security_option >= 2:
            await ask_teacher_location(target, outcome.attendance.security_option, lang)
    elif isinstance(outcome, AlreadyOpen):
        await target.answer(
            t(
                "session.already_open",
                lang,
                lesson=outcome.attendance.lesson_name,
                code=outcome.attendance.code,
            )
        )
    elif isinstance(outcome, ChooseLesson):
        builder = InlineKeyboardBuilder()
        for lesson in outcome.lessons[:20]:
            builder.button(
                text=lesson_label(lesson, attendance.tz),
                callback_data=LessonPick(
                    code=lesson.course_code[:24], start=int(lesson.start.timestamp())
                ),
            )
        builder.adjust(1)
        await target.answer(t("session.choose", lang), reply_markup=builder.as_markup())
    else:
        await target.answer(t("session.no_lessons", lang))


@router.message(Command("start_session"))
async def start_session(
    message: Message,
    command: CommandObject,
    user: UserSessionRedis | None,
    lang: str,
    attendance: AttendanceService,
    board: StatusBoard,
) -> None:
    teacher = require_user(user)
    outcome = await attendance.start_session(
        teacher=teacher, chat_id=message.chat.id, lesson_name=command.args
    )
    await _show_start(message, outcome, lang=lang, attendance=attendance, board=board)


@router.callback_query(LessonPick.filter())
async def lesson_picked(
    query: CallbackQuery,
    callback_data: LessonPick,
    user: UserSessionRedis | None,
    lang: str,
    attendance: AttendanceService,
    board: StatusBoard,
) -> None:
    teacher = require_user(user)
    message = _message_of(query)
    if message is None:
        await query.answer()
        return
    outcome = await attendance.start_chosen(
        teacher=teacher,
        chat_id=message.chat.id,
        course_code=callback_data.code,
        start_epoch=callback_data.start,
    )
    await query.answer()
    await _show_start(message, outcome, lang=lang, attendance=attendance, board=board)


async def _end(
    target: Message,
    teacher: UserSessionRedis,
    lang: str,
    attendance: AttendanceService,
    board: StatusBoard,
    aid: str | None = None,
) -> None:
    attendance_id = parse_aid(aid) if aid is not None else None
    if aid is not None and attendance_id is None:
        raise SessionGone
    roster = await attendance.end_session(teacher=teacher, attendance_id=attendance_id)
    if roster is None:
        await target.answer(t("session.none_open", lang))
        return
    await board.refresh(roster.attendance.attendance_id)
    pending = roster.tally.pending
    await target.answer(
        t(
            "session.ended",
            lang,
            lesson=roster.attendance.lesson_name,
            present=roster.tally.attended,
            pending=Raw(t("session.pending_part", lang, pending=pending) if pending else ""),
        )
    )


@router.message(Command("end_session"))
async def end_session(
    message: Message,
    user: UserSessionRedis | None,
    lang: str,
    attendance: AttendanceService,
    board: StatusBoard,
) -> None:
    await _end(message, require_user(user), lang, attendance, board)


async def _send_attendees(
    target: Message,
    teacher: UserSessionRedis,
    lang: str,
    attendance: AttendanceService,
    *,
    aid: str | None = None,
    page: int = 0,
    edit: bool = False,
) -> None:
    attendance_id = parse_aid(aid) if aid is not None else None
    if aid is not None and attendance_id is None:
        raise SessionGone
    roster = await attendance.roster(teacher=teacher, attendance_id=attendance_id)
    if roster is None:
        await target.answer(t("session.none_open", lang))
        return
    text, keyboard = attendees_page(attendance, roster, page, lang=lang, tz=attendance.tz)
    if edit:
        await target.edit_text(text, reply_markup=keyboard)
    else:
        await target.answer(text, reply_markup=keyboard)


@router.message(Command("attendees"))
async def attendees(
    message: Message, user: UserSessionRedis | None, lang: str, attendance: AttendanceService
) -> None:
    await _send_attendees(message, require_user(user), lang, attendance)


@router.callback_query(SessionAction.filter())
async def session_action(
    query: CallbackQuery,
    callback_data: SessionAction,
    user: UserSessionRedis | None,
    lang: str,
    attendance: AttendanceService,
    board: StatusBoard,
    state: FSMContext,
) -> None:
    teacher = require_user(user)
    message = _message_of(query)
    if message is None:
        await query.answer()
        return
    # The query is answered after the service call: a refusal answers it with an alert.
    if callback_data.action == "end":
        await _end(message, teacher, lang, attendance, board, aid=callback_data.aid)
        await query.answer()
    elif callback_data.action == "list":
        await _send_attendees(message, teacher, lang, attendance, aid=callback_data.aid)
        await query.answer()
    elif callback_data.action == "cap":
        attendance_id = parse_aid(callback_data.aid)
        if attendance_id is None:
            raise SessionGone
        await attendance.owned_session(teacher=teacher, attendance_id=attendance_id)
        await query.answer()
        await state.set_state(CapForm.count)
        await state.set_data({"aid": callback_data.aid})
        await message.answer(t("cap.ask", lang))
    elif callback_data.action == "add":
        attendance_id = parse_aid(callback_data.aid)
        if attendance_id is None:
            raise SessionGone
        await attendance.owned_session(teacher=teacher, attendance_id=attendance_id)
        await query.answer()
        await state.set_state(AddForm.number)
        await state.set_data({"aid": callback_data.aid})
        await message.answer(t("add.ask_number", lang))
    else:
        await query.answer()


@router.callback_query(SessionLevel.filter())
async def session_level(
    query: CallbackQuery,
    callback_data: SessionLevel,
    user: UserSessionRedis | None,
    lang: str,
    attendance: AttendanceService,
    board: StatusBoard,
) -> None:
    """A level button on the status message: the service checks that the presser owns the
    open session (forged or stale data changes nothing)."""
    teacher = require_user(user)
    attendance_id = parse_aid(callback_data.aid)
    if attendance_id is None:
        raise SessionGone
    session = await attendance.set_security_level(
        teacher=teacher, attendance_id=attendance_id, level=callback_data.level
    )
    await board.refresh(attendance_id)
    name = t(f"level.{session.security_option}", lang)
    await query.answer(t("level.changed", lang, name=name))
    message = _message_of(query)
    if message is not None and session.security_option >= 2 and session.anchor_latitude is None:
        await ask_teacher_location(message, session.security_option, lang)


async def ask_teacher_location(target: Message, level: int, lang: str) -> None:
    """One tap shares the teacher's location (levels 2 and 3 anchor the session to it)."""
    button = KeyboardButton(text=t("button.send_location", lang), request_location=True)
    keyboard = ReplyKeyboardMarkup(
        keyboard=[[button]], resize_keyboard=True, one_time_keyboard=True
    )
    await target.answer(t("teacher.ask_location", lang, level=level), reply_markup=keyboard)


@router.message(StateFilter(CapForm.count), has_text, ~Command(*COMMANDS))
async def cap_count(
    message: Message,
    user: UserSessionRedis | None,
    lang: str,
    attendance: AttendanceService,
    board: StatusBoard,
    state: FSMContext,
) -> None:
    teacher = require_user(user)
    data = await state.get_data()
    attendance_id = parse_aid(str(data.get("aid", "")))
    if attendance_id is None:
        await state.clear()
        raise SessionGone
    text = (message.text or "").strip()
    if not text.isdecimal() or len(text) > 5:
        raise InvalidInput("cap.bad")  # the step stays open for another try
    count = int(text)
    await attendance.set_head_count_cap(
        teacher=teacher, attendance_id=attendance_id, cap=count or None
    )
    await state.clear()
    board.touch(attendance_id)
    await message.answer(t("cap.set", lang, cap=count) if count else t("cap.cleared", lang))


@router.callback_query(AttendeesPage.filter())
async def attendees_paged(
    query: CallbackQuery,
    callback_data: AttendeesPage,
    user: UserSessionRedis | None,
    lang: str,
    attendance: AttendanceService,
) -> None:
    teacher = require_user(user)
    message = _message_of(query)
    if message is not None:
        await _send_attendees(
            message,
            teacher,
            lang,
            attendance,
            aid=callback_data.aid,
            page=callback_data.page,
            edit=True,
        )
    await query.answer()


@router.callback_query(Review.filter(F.action == "a"))
async def accept(
    query: CallbackQuery,
    callback_data: Review,
    user: UserSessionRedis | None,
    lang: str,
    attendance: AttendanceService,
    board: StatusBoard,
) -> None:
    teacher = require_user(user)
    attendance_id = parse_aid(callback_data.aid)
    if attendance_id is None:
        raise SessionGone
    record = await attendance.review(
        teacher=teacher,
        attendance_id=attendance_id,
        student_number=callback_data.sn,
        accept=True,
    )
    board.touch(attendance_id)
    await query.answer(
        t("review.accepted", lang, name=record.student_full_name, number=record.student_number)
    )
    message = _message_of(query)
    if message is not None:
        await _send_attendees(message, teacher, lang, attendance, aid=callback_data.aid, edit=True)


@router.callback_query(Review.filter(F.action == "r"))
async def reject_ask(
    query: CallbackQuery,
    callback_data: Review,
    user: UserSessionRedis | None,
    lang: str,
    attendance: AttendanceService,
    state: FSMContext,
) -> None:
    teacher = require_user(user)
    attendance_id = parse_aid(callback_data.aid)
    if attendance_id is None:
        raise SessionGone
    roster = await attendance.roster(teacher=teacher, attendance_id=attendance_id)
    record = (
        next((r for r in roster.records if r.student_number == callback_data.sn), None)
        if roster
        else None
    )
    if record is None:
        raise RecordNotFound(callback_data.sn)
    await query.answer()
    await state.set_state(RejectForm.reason)
    await state.set_data({"aid": callback_data.aid, "sn": callback_data.sn})
    message = _message_of(query)
    if message is not None:
        await message.answer(
            t(
                "review.ask_reason",
                lang,
                name=record.student_full_name,
                number=record.student_number,
            )
        )


@router.message(StateFilter(RejectForm.reason), has_text, ~Command(*COMMANDS))
async def reject_reason(
    message: Message,
    user: UserSessionRedis | None,
    lang: str,
    attendance: AttendanceService,
    board: StatusBoard,
    state: FSMContext,
) -> None:
    teacher = require_user(user)
    data = await state.get_data()
    await state.clear()
    attendance_id = parse_aid(str(data.get("aid", "")))
    if attendance_id is None:
        raise SessionGone
    reason = (message.text or "").strip()
    record = await attendance.review(
        teacher=teacher,
        attendance_id=attendance_id,
        student_number=str(data.get("sn", "")),
        accept=False,
        reason=None if reason in ("", "-") else reason,
    )
    board.touch(attendance_id)
    await message.answer(
        t("review.rejected", lang, name=record.student_full_name, number=record.student_number)
    )


@router.message(StateFilter(AddForm.number), has_text, ~Command(*COMMANDS))
async def add_number(
    message: Message,
    user: UserSessionRedis | None,
    lang: str,
    attendance: AttendanceService,
    board: StatusBoard,
    state: FSMContext,
) -> None:
    teacher = require_user(user)
    data = await state.get_data()
    attendance_id = parse_aid(str(data.get("aid", "")))
    if attendance_id is None:
        await state.clear()
        raise SessionGone
    try:
        record = await attendance.add_student(
            teacher=teacher, attendance_id=attendance_id, student_number=message.text or ""
        )
    except AlreadyOnList as exc:
        await state.clear()
        await message.answer(t("add.already", lang, number=exc.student_number))
        return
    # A malformed number raises InvalidInput before this line and keeps the step open.
    await state.clear()
    board.touch(attendance_id)
    await message.answer(
        t("add.ok", lang, number=record.student_number, name=record.student_full_name)
    )


# --- history, corrections, export ---------------------------------------------------------


def _sheet_view(
    sheet: SavedSheet, page: int, lang: str, reports: ReportService
) -> tuple[str, InlineKeyboardMarkup]:
    attendance = sheet.attendance
    aid = attendance.attendance_id.hex
    date = attendance.start_time.astimezone(reports.tz).strftime("%d.%m.%Y %H:%M")
    text = t(
        "history.detail",
        lang,
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
            callback_data=HistoryToggle(aid=aid, sn=row.student_number, page=page),
        )
    builder.adjust(2)
    nav = []
    if page > 0:
        nav.append(
            InlineKeyboardButton(
                text=t("button.prev", lang),
                callback_data=HistoryOpen(aid=aid, page=page - 1).pack(),
            )
        )
    if page < pages - 1:
        nav.append(
            InlineKeyboardButton(
                text=t("button.next", lang),
                callback_data=HistoryOpen(aid=aid, page=page + 1).pack(),
            )
        )
    if nav:
        builder.row(*nav)
    builder.row(
        InlineKeyboardButton(
            text=t("button.excuse", lang), callback_data=HistoryExcuseList(aid=aid).pack()
        ),
        InlineKeyboardButton(
            text=t("button.add_saved", lang), callback_data=HistoryAdd(aid=aid).pack()
        ),
    )
    builder.row(
        InlineKeyboardButton(text=t("button.csv", lang), callback_data=HistoryCsv(aid=aid).pack()),
        InlineKeyboardButton(text=t("button.back", lang), callback_data=HistoryList().pack()),
    )
    return text, builder.as_markup()


async def _history_list(
    target: Message,
    teacher: UserSessionRedis,
    lang: str,
    reports: ReportService,
    *,
    page: int = 0,
    edit: bool = False,
) -> None:
    sheets = await reports.history(
        teacher=teacher, limit=HISTORY_PAGE + 1, offset=page * HISTORY_PAGE
    )
    if not sheets and page == 0:
        await target.answer(t("history.empty", lang))
        return
    builder = InlineKeyboardBuilder()
    for sheet in sheets[:HISTORY_PAGE]:
        attendance = sheet.attendance
        builder.button(
            text=t(
                "history.line",
                lang,
                date=attendance.start_time.astimezone(reports.tz).strftime("%d.%m %H:%M"),
                lesson=attendance.lesson_name[:30],
                present=sheet.counts.attended,
                total=len(sheet.rows),
            ),
            callback_data=HistoryOpen(aid=attendance.attendance_id.hex),
        )
    builder.adjust(1)
    nav = []
    if page > 0:
        nav.append(
            InlineKeyboardButton(
                text=t("button.prev", lang), callback_data=HistoryList(page=page - 1).pack()
            )
        )
    if len(sheets) > HISTORY_PAGE:
        nav.append(
            InlineKeyboardButton(
                text=t("button.next", lang), callback_data=HistoryList(page=page + 1).pack()
            )
        )
    if nav:
        builder.row(*nav)
    text = t("history.header", lang)
    if edit:
        await target.edit_text(text, reply_markup=builder.as_markup())
    else:
        await target.answer(text, reply_markup=builder.as_markup())


@router.message(Command("history"))
async def history(
    message: Message, user: UserSessionRedis | None, lang: str, reports: ReportService
) -> None:
    await _history_list(message, require_user(user), lang, reports)


@router.callback_query(HistoryList.filter())
async def history_list(
    query: CallbackQuery,
    callback_data: HistoryList,
    user: UserSessionRedis | None,
    lang: str,
    reports: ReportService,
) -> None:
    teacher = require_user(user)
    message = _message_of(query)
    if message is not None:
        await _history_list(message, teacher, lang, reports, page=callback_data.page, edit=True)
    await query.answer()


@router.callback_query(HistoryOpen.filter())
async def history_open(
    query: CallbackQuery,
    callback_data: HistoryOpen,
    user: UserSessionRedis | None,
    lang: str,
    reports: ReportService,
) -> None:
    teacher = require_user(user)
    attendance_id = parse_aid(callback_data.aid)
    if attendance_id is None:
        raise SessionGone
    sheet = await reports.sheet(teacher=teacher, attendance_id=attendance_id)
    await query.answer()
    message = _message_of(query)
    if message is not None:
        text, keyboard = _sheet_view(sheet, callback_data.page, lang, reports)
        await message.edit_text(text, reply_markup=keyboard)


@router.callback_query(HistoryToggle.filter())
async def history_toggle(
    query: CallbackQuery,
    callback_data: HistoryToggle,
    user: UserSessionRedis | None,
    lang: str,
    reports: ReportService,
) -> None:
    teacher = require_user(user)
    attendance_id = parse_aid(callback_data.aid)
    if attendance_id is None:
        raise SessionGone
    record = await reports.toggle(
        teacher=teacher, attendance_id=attendance_id, student_number=callback_data.sn
    )
    state_word = t("state.present" if record.is_attended else "state.absent", lang)
    await query.answer(t("history.corrected", lang, number=record.student_number, state=state_word))
    sheet = await reports.sheet(teacher=teacher, attendance_id=attendance_id)
    message = _message_of(query)
    if message is not None:
        text, keyboard = _sheet_view(sheet, callback_data.page, lang, reports)
        await message.edit_text(text, reply_markup=keyboard)


@router.callback_query(HistoryCsv.filter())
async def history_csv(
    query: CallbackQuery,
    callback_data: HistoryCsv,
    user: UserSessionRedis | None,
    reports: ReportService,
) -> None:
    teacher = require_user(user)
    attendance_id = parse_aid(callback_data.aid)
    if attendance_id is None:
        raise SessionGone
    name, data = await reports.export_csv(teacher=teacher, attendance_id=attendance_id)
    await query.answer()
    message = _message_of(query)
    if message is not None:
        await message.answer_document(BufferedInputFile(data, filename=name))


# --- excused absences (issue 13) ------------------------------------------------------------


@router.callback_query(HistoryExcuseList.filter())
async def excuse_list(
    query: CallbackQuery,
    callback_data: HistoryExcuseList,
    user: UserSessionRedis | None,
    lang: str,
    reports: ReportService,
) -> None:
    teacher = require_user(user)
    attendance_id = parse_aid(callback_data.aid)
    if attendance_id is None:
        raise SessionGone
    sheet = await reports.sheet(teacher=teacher, attendance_id=attendance_id)
    await query.answer()
    message = _message_of(query)
    if message is None:
        return
    absent = [row for row in sheet.rows if row.record.status is RecordStatus.ABSENT]
    if not absent:
        await message.answer(t("excuse.none", lang))
        return
    builder = InlineKeyboardBuilder()
    for row in absent[:90]:
        builder.button(
            text=f"❌ {row.student_number} {row.full_name}"[:40],
            callback_data=HistoryExcuse(aid=callback_data.aid, sn=row.student_number),
        )
    builder.adjust(2)
    await message.answer(t("excuse.choose", lang), reply_markup=builder.as_markup())


@router.callback_query(HistoryExcuse.filter())
async def excuse_pick(
    query: CallbackQuery,
    callback_data: HistoryExcuse,
    user: UserSessionRedis | None,
    lang: str,
    reports: ReportService,
    state: FSMContext,
) -> None:
    """Ask for the reason; ownership is checked now and again when the reason arrives."""
    teacher = require_user(user)
    attendance_id = parse_aid(callback_data.aid)
    if attendance_id is None:
        raise SessionGone
    await reports.sheet(teacher=teacher, attendance_id=attendance_id)
    await query.answer()
    await state.set_state(ExcuseForm.reason)
    await state.set_data({"aid": callback_data.aid, "sn": callback_data.sn})
    message = _message_of(query)
    if message is not None:
        await message.answer(t("excuse.ask_reason", lang, number=callback_data.sn))


@router.message(StateFilter(ExcuseForm.reason), has_text, ~Command(*COMMANDS))
async def excuse_reason(
    message: Message,
    user: UserSessionRedis | None,
    lang: str,
    reports: ReportService,
    state: FSMContext,
) -> None:
    teacher = require_user(user)
    data = await state.get_data()
    attendance_id = parse_aid(str(data.get("aid", "")))
    if attendance_id is None:
        await state.clear()
        raise SessionGone
    try:
        record = await reports.excuse(
            teacher=teacher,
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
    await message.answer(
        t("excuse.ok", lang, number=record.student_number, reason=record.teacher_note or "")
    )


@router.callback_query(HistoryAdd.filter())
async def saved_add_ask(
    query: CallbackQuery,
    callback_data: HistoryAdd,
    user: UserSessionRedis | None,
    lang: str,
    reports: ReportService,
    state: FSMContext,
) -> None:
    """Add a student to a saved session: ask for the number (ownership checked now and when
    the number arrives)."""
    teacher = require_user(user)
    attendance_id = parse_aid(callback_data.aid)
    if attendance_id is None:
        raise SessionGone
    await reports.sheet(teacher=teacher, attendance_id=attendance_id)
    await query.answer()
    await state.set_state(SavedAddForm.number)
    await state.set_data({"aid": callback_data.aid})
    message = _message_of(query)
    if message is not None:
        await message.answer(t("add.ask_number", lang))


@router.message(StateFilter(SavedAddForm.number), has_text, ~Command(*COMMANDS))
async def saved_add_number(
    message: Message,
    user: UserSessionRedis | None,
    lang: str,
    reports: ReportService,
    attendance: AttendanceService,
    state: FSMContext,
) -> None:
    teacher = require_user(user)
    data = await state.get_data()
    attendance_id = parse_aid(str(data.get("aid", "")))
    if attendance_id is None:
        await state.clear()
        raise SessionGone
    try:
        record = await reports.add_to_saved(
            teacher=teacher,
            attendance_id=attendance_id,
            student_number=message.text or "",
            at=attendance.now(),
        )
    except InvalidInput:
        raise  # a malformed number keeps the step open
    except AlreadyOnList as exc:
        await state.clear()
        await message.answer(t("add.already", lang, number=exc.student_number))
        return
    except Exception:
        await state.clear()
        raise
    await state.clear()
    await message.answer(t("history.added", lang, number=record.student_number))


# --- /export: a course's term documents (issue 13) ---------------------------------------


@router.message(Command("export"))
async def export(
    message: Message, user: UserSessionRedis | None, lang: str, reports: ReportService
) -> None:
    teacher = require_user(user)
    courses = await reports.export_courses(teacher=teacher)
    if not courses:
        await message.answer(t("export.none", lang))
        return
    builder = InlineKeyboardBuilder()
    for course in courses[:30]:
        builder.button(
            text=t(
                "export.course_button",
                lang,
                lesson=course.lesson_name[:40],
                sessions=course.sessions,
            ),
            callback_data=ExportCourse(token=course_token(course.course_key)),
        )
    builder.adjust(1)
    await message.answer(t("export.choose_course", lang), reply_markup=builder.as_markup())


@router.callback_query(ExportCourse.filter())
async def export_course(
    query: CallbackQuery,
    callback_data: ExportCourse,
    user: UserSessionRedis | None,
    lang: str,
    reports: ReportService,
) -> None:
    teacher = require_user(user)
    course = await reports.course_by_token(teacher=teacher, token=callback_data.token)
    await query.answer()
    token = callback_data.token
    builder = InlineKeyboardBuilder()
    builder.button(text="XLSX", callback_data=ExportFormat(token=token, fmt="xlsx"))
    builder.button(text="CSV", callback_data=ExportFormat(token=token, fmt="csv"))
    builder.button(text=t("export.both", lang), callback_data=ExportFormat(token=token, fmt="both"))
    builder.adjust(3)
    message = _message_of(query)
    if message is not None:
        await message.answer(
            t("export.choose_format", lang, lesson=course.lesson_name),
            reply_markup=builder.as_markup(),
        )


@router.callback_query(ExportFormat.filter())
async def export_format(
    query: CallbackQuery,
    callback_data: ExportFormat,
    user: UserSessionRedis | None,
    lang: str,
    reports: ReportService,
    attendance: AttendanceService,
) -> None:
    """The documents, preceded by a preview naming the students below the threshold. The
    course is looked up among the presser's own: a forged token exports nothing."""
    teacher = require_user(user)
    course = await reports.course_by_token(teacher=teacher, token=callback_data.token)
    formats = ("xlsx", "csv") if callback_data.fmt == "both" else (callback_data.fmt,)
    if not set(formats) <= {"xlsx", "csv"}:
        raise SessionGone
    data = await reports.course_data(teacher=teacher, course_key=course.course_key)
    documents = reports.render_documents(data, formats=formats, now=attendance.now())
    await query.answer()
    message = _message_of(query)
    if message is None:
        return
    below = reports.below_threshold(data)
    names = ", ".join(
        f"{line.full_name} ({line.student_number},"
        f" {t('my.percent', lang, percent=percent_text(line.rate.percent))})"
        for line in below[:40]
    )
    await message.answer(
        t(
            "export.preview",
            lang,
            lesson=course.lesson_name,
            sessions=len(data.sessions),
            students=len(data.students()),
            threshold=percent_text(reports.rule.percent),
            below=names or t("export.nobody", lang),
        )
    )
    for name, content in documents:
        await message.answer_document(BufferedInputFile(content, filename=name))
