"""Teachers: /export, a course's term documents (XLSX and CSV)."""

from __future__ import annotations

from aiogram import Router
from aiogram.types import BufferedInputFile, CallbackQuery, Message
from aiogram.utils.keyboard import InlineKeyboardBuilder

from handlers.filters import on_command
from handlers.replies import Reply
from handlers.teacher.shared import message_of
from services.attendance import AttendanceService
from services.members import Member
from services.reports import ReportService, course_token
from ui.callbacks import ExportCourse, ExportFormat, Fmt
from ui.i18n import Raw, percent_number, t, tn

# The documents each format button sends; MOODLE: the mod_attendance import and the gradebook.
_FORMATS: dict[Fmt, tuple[str, ...]] = {
    Fmt.BOTH: (Fmt.XLSX.value, Fmt.CSV.value),
    Fmt.MOODLE: ("moodle", "grades"),
}


async def export(message: Message, user: Member, reports: ReportService) -> Reply:
    courses = await reports.export_courses(teacher=user)
    if not courses:
        return message.answer(t("export.none"))
    builder = InlineKeyboardBuilder()
    for course in courses[:30]:
        builder.button(
            text=tn(
                "export.course_button",
                course.sessions,
                lesson=course.lesson_name[:40],
                sessions=course.sessions,
            ),
            callback_data=ExportCourse(token=course_token(course.course_key)),
        )
    builder.adjust(1)
    return message.answer(t("export.choose_course"), reply_markup=builder.as_markup())


async def export_course(
    query: CallbackQuery,
    callback_data: ExportCourse,
    user: Member,
    reports: ReportService,
) -> Reply:
    course = await reports.course_by_token(teacher=user, token=callback_data.token)
    token = callback_data.token
    builder = InlineKeyboardBuilder()
    builder.button(text="XLSX", callback_data=ExportFormat(token=token, fmt=Fmt.XLSX))
    builder.button(text="CSV", callback_data=ExportFormat(token=token, fmt=Fmt.CSV))
    builder.button(text=t("export.both"), callback_data=ExportFormat(token=token, fmt=Fmt.BOTH))
    builder.button(text=t("export.moodle"), callback_data=ExportFormat(token=token, fmt=Fmt.MOODLE))
    builder.adjust(3, 1)
    message = message_of(query)
    if message is None:
        return None
    return message.answer(
        t("export.choose_format", lesson=course.lesson_name),
        reply_markup=builder.as_markup(),
    )


async def export_format(
    query: CallbackQuery,
    callback_data: ExportFormat,
    user: Member,
    reports: ReportService,
    attendance: AttendanceService,
) -> Reply:
    """The documents, preceded by a preview naming the students below the threshold. The
    course is looked up among the presser's own: a forged token exports nothing."""
    course = await reports.course_by_token(teacher=user, token=callback_data.token)
    fmt = callback_data.fmt
    formats = _FORMATS.get(fmt, (fmt.value,))
    data = await reports.course_data(teacher=user, course_key=course.course_key)
    documents = reports.render_documents(data, formats=formats, now=attendance.now())
    message = message_of(query)
    if message is None:
        return None
    below = reports.below_threshold(data)
    names = ", ".join(
        f"{line.full_name} ({line.student_number},"
        f" {t('my.percent', percent=percent_number(line.rate.percent))})"
        for line in below[:40]
    )
    sessions, students = len(data.sessions), len(data.students())
    # Several messages in a fixed order: all but the last are awaited.
    await message.answer(
        t(
            "export.preview",
            lesson=course.lesson_name,
            sessions=Raw(tn("count.sessions", sessions, count=sessions)),
            students=Raw(tn("count.students", students, count=students)),
            threshold=percent_number(reports.rule.percent),
            below=names or t("export.nobody"),
        )
    )
    if fmt is Fmt.MOODLE and data.pending:
        await message.answer(tn("export.moodle_pending", data.pending, count=data.pending))
    *first, (name, content) = documents
    for earlier, payload in first:
        await message.answer_document(BufferedInputFile(payload, filename=earlier))
    return message.answer_document(BufferedInputFile(content, filename=name))


def router() -> Router:
    """/export: course, then format; a new router each call."""
    routes = Router(name="teacher.export")
    routes.message.register(export, on_command("export"))
    routes.callback_query.register(export_course, ExportCourse.filter())
    routes.callback_query.register(export_format, ExportFormat.filter())
    return routes
