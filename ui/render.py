"""Turning service results into message text and keyboards (no decisions here)."""

from __future__ import annotations

import math
from collections.abc import Callable
from datetime import datetime
from zoneinfo import ZoneInfo

from aiogram.filters.callback_data import CallbackData
from aiogram.types import (
    InlineKeyboardButton,
    InlineKeyboardMarkup,
    KeyboardButton,
    ReplyKeyboardMarkup,
)
from aiogram.utils.keyboard import InlineKeyboardBuilder

from dal.models import AttendanceRecordRedis, AttendanceRedis, FailReason, RecordSource
from services.attendance import AttendanceService, Roster
from services.lesson_finder import Lesson
from ui.callbacks import (
    Act,
    AttendeesPage,
    Review,
    SessionAction,
    SessionLevel,
    Verdict,
)
from ui.i18n import Raw, t, time_text, tn

PAGE_SIZE = 20
# Pending reasons of security levels 2/3 and the head-count cap (issue 12), named in the list.
_REVIEW_REASONS = frozenset(
    {
        FailReason.LOCATION_TOO_FAR,
        FailReason.LOCATION_FORWARDED,
        FailReason.LOCATION_STALE,
        FailReason.LOCATION_MISSING,
        FailReason.LOCATION_VIA_BOT,
        FailReason.LOCATION_NO_ACCURACY,
        FailReason.LOCATION_INACCURATE,
        FailReason.OVER_CAP,
    }
)


def hhmm(moment: datetime, tz: ZoneInfo) -> str:
    return time_text(moment, tz)


def deep_link(bot_username: str, code: str) -> str:
    return f"https://t.me/{bot_username}?start=ci_{code}"


def level_name(level: int) -> str:
    return t(f"level.{level}")


def session_status(
    roster: Roster,
    *,
    tz: ZoneInfo,
    now: datetime,
    bot_username: str,
    projector_url: str | None = None,
) -> str:
    attendance = roster.attendance
    ended = attendance.end_time is not None and attendance.end_time <= now
    if ended and attendance.end_time is not None:
        time_left = t("session.closed_at", end=hhmm(attendance.end_time, tz))
    else:
        end = attendance.planned_end_time
        minutes = max(0, math.ceil((end - now).total_seconds() / 60))
        time_left = t("session.time_left", end=hhmm(end, tz), minutes=minutes)
    pending = (
        Raw(t("session.pending_part", pending=roster.tally.pending))
        if roster.tally.pending
        else Raw("")
    )
    level = t("session.level", name=level_name(attendance.security_option))
    if attendance.security_option >= 2 and not ended:
        anchored = attendance.anchor_latitude is not None
        level += "\n" + t("session.anchor_set" if anchored else "session.anchor_missing")
    if projector_url and not ended:
        level += "\n" + t("session.projector", url=projector_url)
    cap = attendance.head_count_cap
    present = f"{roster.tally.attended}" + (t("session.cap_part", cap=cap) if cap else "")
    return t(
        "session.status",
        lesson=attendance.lesson_name,
        code=attendance.code,
        time_left=Raw(time_left),
        level=Raw(level),
        present=Raw(present),
        pending=pending,
        link=deep_link(bot_username, attendance.code),
    )


def session_keyboard(attendance: AttendanceRedis) -> InlineKeyboardMarkup:
    aid = attendance.attendance_id
    builder = InlineKeyboardBuilder()
    builder.button(
        text=t("button.attendees"), callback_data=SessionAction(action=Act.LIST, aid=aid)
    )
    builder.button(text=t("button.end"), callback_data=SessionAction(action=Act.END, aid=aid))
    builder.button(text=t("button.cap"), callback_data=SessionAction(action=Act.CAP, aid=aid))
    for level in (1, 2, 3):
        key = "button.level_on" if level == attendance.security_option else "button.level"
        builder.button(text=t(key, level=level), callback_data=SessionLevel(aid=aid, level=level))
    builder.adjust(3, 3)
    return builder.as_markup()


def location_keyboard() -> ReplyKeyboardMarkup:
    """One tap sends the phone's current location (private chats only)."""
    button = KeyboardButton(text=t("button.send_location"), request_location=True)
    return ReplyKeyboardMarkup(keyboard=[[button]], resize_keyboard=True, one_time_keyboard=True)


def lesson_label(lesson: Lesson, tz: ZoneInfo) -> str:
    return f"{hhmm(lesson.start, tz)}–{hhmm(lesson.end, tz)} {lesson.title}"[:60]


def record_line(
    service: AttendanceService,
    attendance: AttendanceRedis,
    record: AttendanceRecordRedis,
    *,
    tz: ZoneInfo,
) -> str:
    if record.is_attended:
        icon = "✅"
        if record.source is RecordSource.TEACHER:
            note = t("note.added")
        elif service.is_late(attendance, record):
            note = t("note.late")
        else:
            note = ""
    elif record.fail_reason in (FailReason.NOT_IN_SCHEDULE, FailReason.ANOTHER_SECTION):
        icon, note = "🕓", t("note.pending")
    elif record.fail_reason in _REVIEW_REASONS:
        why = t(f"why.{record.fail_reason}")
        icon, note = "🕓", t("note.location", why=Raw(why))
    else:
        icon, note = "❌", t("note.rejected")
    return t(
        "attendees.line",
        icon=icon,
        name=record.student_full_name,
        number=record.student_number,
        time=hhmm(record.attendance_time, tz),
        note=Raw(note),
    )


def page_row(
    page: int, *, has_next: bool, to: Callable[[int], CallbackData]
) -> list[InlineKeyboardButton]:
    """The ◀️ / ▶️ buttons of a paged list (empty on a single page); `to(n)` is page n's data.
    The one builder of page buttons: live attendees, saved sheets and the history list."""
    row: list[InlineKeyboardButton] = []
    if page > 0:
        row.append(InlineKeyboardButton(text=t("button.prev"), callback_data=to(page - 1).pack()))
    if has_next:
        row.append(InlineKeyboardButton(text=t("button.next"), callback_data=to(page + 1).pack()))
    return row


def attendees_page(
    service: AttendanceService, roster: Roster, page: int, tz: ZoneInfo
) -> tuple[str, InlineKeyboardMarkup]:
    attendance = roster.attendance
    aid = attendance.attendance_id
    records = roster.records
    pages = max(1, math.ceil(len(records) / PAGE_SIZE))
    page = min(max(page, 0), pages - 1)
    chunk = records[page * PAGE_SIZE : (page + 1) * PAGE_SIZE]
    builder = InlineKeyboardBuilder()
    if not records:
        text = t("attendees.empty", lesson=attendance.lesson_name)
    else:
        lines = [
            tn(
                "attendees.header",
                len(records),
                lesson=attendance.lesson_name,
                total=len(records),
                page=page + 1,
                pages=pages,
            )
        ]
        lines += [record_line(service, attendance, r, tz=tz) for r in chunk]
        text = "\n".join(lines)
        for record in chunk:
            if record.is_attended:
                builder.button(
                    text=t("button.reject", number=record.student_number),
                    callback_data=Review(action=Verdict.REJECT, aid=aid, sn=record.student_number),
                )
            else:
                builder.button(
                    text=t("button.accept", number=record.student_number),
                    callback_data=Review(action=Verdict.ACCEPT, aid=aid, sn=record.student_number),
                )
        builder.adjust(3)
    nav = page_row(
        page,
        has_next=page < pages - 1,
        to=lambda n: AttendeesPage(aid=aid, page=n),
    )
    if nav:
        builder.row(*nav)
    builder.row(
        InlineKeyboardButton(
            text=t("button.add"),
            callback_data=SessionAction(action=Act.ADD, aid=aid).pack(),
        )
    )
    return text, builder.as_markup()
