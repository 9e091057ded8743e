"""The Mini App's figures page: `/my_attendance` as a page.

Per course: attended / held and the percentage (drawn as a bar), marked below the warning
threshold, then the dated list, missed sessions first; in the user's language. The figures are
`ReportService.my_courses` of the account linked to the Telegram user the launch data names:
only the user's own, and nothing another user could open (the page asks with its own signed
launch data). `POST /app/api/figures` answers them; `static/figures.html` draws them.
"""

from __future__ import annotations

from typing import Any

from aiohttp import web

from bot.app import App
from bot.webapp.pages import add_page, app_of, launch, locale_of, ok, plain, rate_limit
from dal.models import Role
from services.members import Member
from services.reports import CourseStanding
from ui.i18n import date_time_text, percent_number, t, use_locale
from ui.render import row_mark

__all__ = ["LABELS", "MAX_ROWS", "figures", "setup"]

LABELS = ("page.figures.title", "page.figures.attended", "page.error")
# The dated list of a course, as in chat (handlers/student.my_course).
MAX_ROWS = 60


def _course(course: CourseStanding, app: App) -> dict[str, Any]:
    rate = course.rate
    label = (
        course.lesson_name
        if course.course_key == course.lesson_name
        else f"{course.course_key} · {course.lesson_name}"
    )
    rows = []
    for row in course.missed_first()[:MAX_ROWS]:
        icon, note = row_mark(row)
        rows.append(
            {
                "icon": icon,
                "date": date_time_text(row.start_time, app.reports.tz),
                "lesson": row.lesson_name,
                "status": str(row.status),
                "note": plain(note).strip(" ·"),
            }
        )
    threshold = percent_number(app.reports.rule.percent)
    return {
        "label": label,
        "attended": rate.attended,
        "held": rate.counted,
        "excused": rate.counts.excused,
        "percent": round(rate.percent, 1),
        "percent_text": plain(t("my.percent", percent=percent_number(rate.percent))),
        "below": course.below,
        "below_text": plain(t("my.below", threshold=threshold)).strip() if course.below else "",
        "rows": rows,
    }


async def figures(app: App, telegram_id: int, locale: str) -> dict[str, Any]:
    """The page's data for this Telegram user: `linked` False (with the chat's text) when no
    student account is linked to it."""
    account = await app.accounts.current_user(telegram_id=telegram_id)
    with use_locale(locale):
        if account is None or account.role is not Role.STUDENT:
            text = t("auth.not_linked") if account is None else t("page.figures.teacher")
            return {"locale": locale, "linked": False, "text": plain(text)}
        standings = await app.reports.my_courses(student=Member.of(account), with_rows=True)
        return {
            "locale": locale,
            "linked": True,
            "text": "" if standings else plain(t("my.empty")),
            "courses": [_course(course, app) for course in standings],
        }


# The page asks once when it opens; a few reloads are fine, a loop is not.
REQUESTS_PER_MINUTE = 20


async def _figures(request: web.Request) -> web.Response:
    launch_data, _ = await launch(request)
    await rate_limit(
        request,
        scope="figures",
        telegram_id=launch_data.user.id,
        limit=REQUESTS_PER_MINUTE,
        window_seconds=60,
    )
    return ok(await figures(app_of(request), launch_data.user.id, locale_of(launch_data)))


def setup(sub: web.Application, app: App) -> None:
    """`GET /app/figures` and its call (register_webapp in bot/web.py)."""
    add_page(sub, "figures", texts=LABELS)
    sub.router.add_post("/api/figures", _figures)
