"""Students: check in by sending the code; see their own attendance."""

from __future__ import annotations

from collections.abc import Sequence

from aiogram import F, Router
from aiogram.types import (
    CallbackQuery,
    InlineKeyboardButton,
    InlineKeyboardMarkup,
    Message,
    ReplyKeyboardRemove,
    WebAppInfo,
)
from aiogram.utils.keyboard import InlineKeyboardBuilder

from dal.models import RecordStatus
from dal.pg import StudentAttendanceRow
from handlers.access import MemberGate
from handlers.deps import AnswerQueue, Metrics, Settings, StatusBoard
from handlers.filters import on_command
from handlers.replies import Reply
from services.attendance import AttendanceService
from services.checkin_outcomes import CheckInStatus
from services.members import Member
from services.reports import CourseStanding, ReportService
from ui.callbacks import ExcuseSession, MyCourse, MyCourses
from ui.i18n import Raw, date_time_text, percent_number, t
from ui.render import (
    can_miss_part,
    check_in_answer,
    line_pages,
    location_answer,
    location_keyboard,
    page_row,
    row_mark,
)

_RECORDED = (CheckInStatus.OK_PRESENT, CheckInStatus.OK_PENDING)


async def reply_check_in(
    message: Message,
    code: str,
    *,
    attendance: AttendanceService,
    board: StatusBoard | None = None,
    metrics: Metrics | None = None,
    answers: AnswerQueue | None = None,
    busy_keys: Sequence[str] = (),
) -> Reply:
    """The answer to a check-in code: handed to `answers` when given (the hot path), else
    returned."""
    assert message.from_user is not None
    result = await attendance.check_in(
        telegram_id=message.from_user.id, code=code, busy_keys=busy_keys
    )
    if metrics is not None:
        metrics.check_in(result.status)
    answer = check_in_answer(result, attendance)
    session, status, text = result.attendance, result.status, answer.text
    if status is CheckInStatus.OK_LOCATION and session:
        if board is not None:
            board.touch(session.attendance_id)
        return message.answer(text, reply_markup=location_keyboard())
    if board is not None and session is not None and status in _RECORDED:
        board.touch(session.attendance_id)
    if answers is not None:  # handed off: the handler does not wait for the flood budget
        # A throttled sender hears "too many attempts" once per throttle window.
        quiet = float(result.retry_after or 60) if status is CheckInStatus.THROTTLED else 0.0
        answers.put(message.chat.id, text, kind=str(status), quiet_seconds=quiet)
        return None
    return message.answer(text)


async def code_message(
    message: Message,
    attendance: AttendanceService,
    board: StatusBoard,
    metrics: Metrics,
    answers: AnswerQueue | None = None,
    checkin_busy_keys: Sequence[str] = (),
) -> Reply:
    """A six-digit code outside any conversation: the hot path. Registered first on the root
    router (handlers.build_router) and reached without the user-context middleware: the
    check-in script reads the sender's linked account itself, and checks the keys bot/fsm.py
    gives (`checkin_busy_keys`) in the same call."""
    code = (message.text or "").strip()
    return await reply_check_in(
        message,
        code,
        attendance=attendance,
        board=board,
        metrics=metrics,
        answers=answers,
        busy_keys=checkin_busy_keys,
    )


def _course_label(course: CourseStanding) -> str:
    if course.course_key == course.lesson_name:
        return course.lesson_name
    return f"{course.course_key} · {course.lesson_name}"


def _course_list(
    standings: list[CourseStanding], reports: ReportService, settings: Settings
) -> tuple[str, InlineKeyboardMarkup]:
    threshold = percent_number(reports.rule.percent)
    lines = [t("my.courses")]
    builder = InlineKeyboardBuilder()
    for course in standings:
        rate = course.rate
        lines.append(
            t(
                "my.course_line",
                mark="⚠️" if course.below else "📘",
                lesson=_course_label(course),
                attended=rate.attended,
                held=rate.counted,
                percent=percent_number(rate.percent),
                below=Raw(
                    (t("my.below", threshold=threshold) if course.below else "")
                    + (
                        t("my.excused_part", excused=rate.counts.excused)
                        if rate.counts.excused
                        else ""
                    )
                    + can_miss_part(course.can_miss, reports.rule.percent)
                ),
            )
        )
        builder.button(
            text=course.lesson_name[:32]
            + " · "
            + t("my.percent", percent=percent_number(rate.percent)),
            callback_data=MyCourse(token=course.token),
        )
    if settings.public_url:
        # The same figures as a page of the Mini App (bot/webapp/figures.py).
        url = settings.public_url.rstrip("/") + "/app/figures"
        builder.button(text=t("button.figures_page"), web_app=WebAppInfo(url=url))
    builder.adjust(1)
    lines.append(t("my.course_hint"))
    return "\n".join(lines), builder.as_markup()


def _status_line(row: StudentAttendanceRow, reports: ReportService) -> str:
    icon, note = row_mark(row)
    return t(
        "my.line",
        icon=icon,
        date=date_time_text(row.start_time, reports.tz),
        lesson=row.lesson_name,
        note=Raw(note),
    )


async def my_attendance(
    message: Message, user: Member, reports: ReportService, settings: Settings
) -> Reply:
    """One line per course (attended / held, percentage, marked below the threshold), then
    a button per course for its dated list."""
    standings = await reports.my_courses(student=user)
    if not standings:
        return message.answer(t("my.empty"))
    text, keyboard = _course_list(standings, reports, settings)
    return message.answer(text, reply_markup=keyboard)


async def my_course(
    query: CallbackQuery,
    callback_data: MyCourse,
    user: Member,
    reports: ReportService,
) -> Reply:
    """A course's dated list, missed sessions first. The token is looked up among the
    presser's own courses: a forged one shows nothing of anyone else."""
    course = await reports.my_course(student=user, token=callback_data.token)
    header = t(
        "my.course_detail",
        lesson=_course_label(course),
        attended=course.rate.attended,
        held=course.rate.counted,
        percent=percent_number(course.rate.percent),
    )
    # Every session, paged under Telegram's message limit (a long title and a full term).
    pages = line_pages(header, [_status_line(row, reports) for row in course.missed_first()])
    page = min(max(callback_data.page, 0), len(pages) - 1)
    builder = InlineKeyboardBuilder()
    # Beside each missed session, a request to have it excused (handlers/excuse.py).
    for row in [r for r in course.missed_first() if r.status is RecordStatus.ABSENT][:10]:
        builder.row(
            InlineKeyboardButton(
                text=t("button.excuse_session", date=date_time_text(row.start_time, reports.tz)),
                callback_data=ExcuseSession(attendance_id=row.attendance_id).pack(),
            )
        )
    nav = page_row(
        page,
        has_next=page + 1 < len(pages),
        to=lambda n: MyCourse(token=callback_data.token, page=n),
    )
    if nav:
        builder.row(*nav)
    builder.row(InlineKeyboardButton(text=t("button.back"), callback_data=MyCourses().pack()))
    if not isinstance(query.message, Message):
        return None
    return query.message.edit_text(pages[page], reply_markup=builder.as_markup())


async def my_courses_again(
    query: CallbackQuery, user: Member, reports: ReportService, settings: Settings
) -> Reply:
    standings = await reports.my_courses(student=user)
    if not isinstance(query.message, Message) or not standings:
        return None
    text, keyboard = _course_list(standings, reports, settings)
    return query.message.edit_text(text, reply_markup=keyboard)


async def location_message(
    message: Message,
    user: Member,
    attendance: AttendanceService,
    board: StatusBoard,
) -> Reply:
    """A shared location: a teacher's anchors their open session, a student's decides the
    check-in waiting for it (security levels 2 and 3)."""
    location = message.location
    assert location is not None
    done = ReplyKeyboardRemove()
    if user.is_teacher:
        session = await attendance.share_teacher_location(
            teacher=user, latitude=location.latitude, longitude=location.longitude
        )
        if session is None:
            return message.answer(t("teacher.location_no_session"), reply_markup=done)
        board.touch(session.attendance_id)
        radius = round(attendance.location_radius_meters)
        return message.answer(
            t("teacher.location_saved", lesson=session.lesson_name, radius=radius),
            reply_markup=done,
        )
    result = await attendance.submit_location(
        telegram_id=user.telegram_id,
        latitude=location.latitude,
        longitude=location.longitude,
        accuracy=location.horizontal_accuracy,
        sent_at=message.date,
        forwarded=message.forward_origin is not None or message.forward_date is not None,
        via_bot=message.via_bot is not None,
    )
    session, text = result.attendance, location_answer(result, attendance).text
    if session is not None:
        board.touch(session.attendance_id)
    return message.answer(text, reply_markup=done)


def router() -> Router:
    """A student's /my_attendance pages and a shared location; a new router each call."""
    routes = Router(name="student")
    routes.message.middleware(MemberGate())
    routes.callback_query.middleware(MemberGate())
    routes.message.register(my_attendance, on_command("my_attendance"))
    routes.callback_query.register(my_course, MyCourse.filter())
    routes.callback_query.register(my_courses_again, MyCourses.filter())
    routes.message.register(location_message, F.location)
    return routes
