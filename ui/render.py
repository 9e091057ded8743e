"""Turning service results into message text and keyboards (no decisions here)."""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

from aiogram.filters.callback_data import CallbackData
from aiogram.types import (
    InlineKeyboardButton,
    InlineKeyboardMarkup,
    KeyboardButton,
    ReplyKeyboardMarkup,
)
from aiogram.utils.keyboard import InlineKeyboardBuilder

from dal.models import (
    FailReason,
    LiveRecord,
    LiveSession,
    RecordSource,
    RecordStatus,
    Security,
)
from dal.pg import StudentAttendanceRow
from services.attendance import AttendanceService, Roster
from services.checkin_outcomes import (
    CheckInResult,
    CheckInStatus,
    LocationOutcome,
    LocationResult,
)
from services.lesson_finder import Lesson
from ui.callbacks import (
    Act,
    AttendeesPage,
    Review,
    SessionAction,
    SessionLevel,
    Verdict,
)
from ui.i18n import Raw, percent_number, t, time_text, tn

PAGE_SIZE = 20
# Pending reasons of security levels 2/3 and the head-count cap, named in the list.
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


def mini_app_link(bot_username: str, payload: str) -> str:
    """The bot's main Mini App opened with `payload` as its `start_param` (the operator enables
    the main Mini App with @BotFather; README "Mini App")."""
    return f"https://t.me/{bot_username}?startapp={payload}"


@dataclass(frozen=True, slots=True)
class Answer:
    """A check-in's answer: `kind` names it for a page (`ok`, `late`, `pending`, `location`,
    `expired`, `duplicate`, `closed`, `throttled`, `not_linked`, `teacher`, `wrong`,
    `decided`, `no_wait`), `text` is the chat's message in the current locale."""

    kind: str
    text: str


# What a check-in answers, by its outcome: (the page's `kind`, the catalog key, the values the
# text names). A recorded check-in (OK_PRESENT, OK_PENDING) is told by the record instead.
_CHECK_IN_TEXTS: dict[CheckInStatus, tuple[str, str, tuple[str, ...]]] = {
    CheckInStatus.OK_LOCATION: ("location", "checkin.need_location", ("lesson", "minutes")),
    CheckInStatus.EXPIRED: ("expired", "checkin.expired", ()),
    CheckInStatus.DUPLICATE: ("duplicate", "checkin.duplicate", ("lesson", "time")),
    CheckInStatus.ENDED: ("closed", "checkin.ended", ("lesson",)),
    CheckInStatus.THROTTLED: ("throttled", "checkin.throttled", ("seconds",)),
    CheckInStatus.NOT_LINKED: ("not_linked", "auth.not_linked", ()),
    CheckInStatus.NOT_STUDENT: ("teacher", "checkin.teacher", ()),
    CheckInStatus.WRONG_CODE: ("wrong", "checkin.wrong", ()),
}
_WRONG = _CHECK_IN_TEXTS[CheckInStatus.WRONG_CODE]
# A recorded check-in, by the record's status; a pending one by its reason.
_RECORDED_TEXTS: dict[RecordStatus, tuple[str, str]] = {
    RecordStatus.LATE: ("late", "checkin.ok_late"),
    RecordStatus.PRESENT: ("ok", "checkin.ok"),
}
_PENDING_TEXTS: dict[str | None, tuple[str, str]] = {
    FailReason.ANOTHER_SECTION: ("pending", "checkin.another_section"),
    FailReason.OVER_CAP: ("pending", "location.pending"),
}
_PENDING = ("pending", "checkin.pending")


def _check_in_values(
    names: tuple[str, ...], result: CheckInResult, service: AttendanceService
) -> dict[str, Any]:
    values: dict[str, Any] = {}
    for name in names:
        if name == "lesson":
            values[name] = result.attendance.lesson_name if result.attendance else ""
        elif name == "time":
            record = result.record
            values[name] = hhmm(record.attendance_time, service.tz) if record else ""
        elif name == "minutes":
            values[name] = max(1, service.location_wait_seconds // 60)
        elif name == "seconds":
            values[name] = result.retry_after or 60
    return values


def check_in_answer(result: CheckInResult, service: AttendanceService) -> Answer:
    """The answer to a check-in code, the same in chat and on the Mini App page."""
    session, record, recorded = result.attendance, result.record, result.recorded
    if (
        result.status in (CheckInStatus.OK_PRESENT, CheckInStatus.OK_PENDING)
        and session
        and record
        and recorded is not None
    ):
        kind, key = _RECORDED_TEXTS.get(recorded) or _PENDING_TEXTS.get(
            record.fail_reason, _PENDING
        )
        extra = {"why": Raw(t("why.OVER_CAP"))} if record.fail_reason == FailReason.OVER_CAP else {}
        time = hhmm(record.attendance_time, service.tz)
        return Answer(kind, t(key, lesson=session.lesson_name, time=time, **extra))
    status = result.status
    kind, key, names = _CHECK_IN_TEXTS.get(status, _WRONG)
    if (status is CheckInStatus.OK_LOCATION and session is None) or (
        status is CheckInStatus.DUPLICATE and record is None
    ):
        kind, key, names = _WRONG  # never sent: the script names both
    return Answer(kind, t(key, **_check_in_values(names, result, service)))


def row_mark(row: StudentAttendanceRow) -> tuple[str, str]:
    """The icon and note of one line of a student's own dated list (/my_attendance and the
    figures page)."""
    if row.status.attended:
        return "✅", t("note.late") if row.status is RecordStatus.LATE else ""
    if row.status is RecordStatus.PENDING:
        return "🕓", t("note.pending")
    if row.status is RecordStatus.EXCUSED:
        return "🩺", t("note.excused")
    return "❌", t("note.rejected") if row.status is RecordStatus.REJECTED else ""


# What a location answers, by its outcome: (the page's `kind`, the catalog key). A pending
# one names its reason (the record's, or LOCATION_MISSING when the page could not read one).
_LOCATION_TEXTS: dict[LocationOutcome, tuple[str, str]] = {
    LocationOutcome.OK_PRESENT: ("ok", "location.present"),
    LocationOutcome.OK_PENDING: ("pending", "location.pending"),
    LocationOutcome.MISSING: ("pending", "location.pending"),
    LocationOutcome.ENDED: ("closed", "checkin.ended"),
    LocationOutcome.DECIDED: ("decided", "location.decided"),
    LocationOutcome.NO_WAIT: ("no_wait", "location.no_wait"),
}
_NO_WAIT = _LOCATION_TEXTS[LocationOutcome.NO_WAIT]


def location_answer(result: LocationResult, service: AttendanceService) -> Answer:
    """What a student's location decided, the same in chat and on the Mini App page."""
    session, record, outcome = result.attendance, result.record, result.outcome
    if outcome in (LocationOutcome.OK_PRESENT, LocationOutcome.OK_PENDING) and not (
        session and record
    ):
        outcome = LocationOutcome.NO_WAIT  # never sent: the script names both
    if outcome is LocationOutcome.MISSING and session is None:
        outcome = LocationOutcome.NO_WAIT
    kind, key = _LOCATION_TEXTS.get(outcome, _NO_WAIT)
    values: dict[str, Any] = {}
    if outcome is not LocationOutcome.DECIDED and outcome is not LocationOutcome.NO_WAIT:
        values["lesson"] = session.lesson_name if session else ""
    if outcome is LocationOutcome.OK_PRESENT and record:
        values["time"] = hhmm(record.attendance_time, service.tz)
    elif outcome is LocationOutcome.OK_PENDING and record:
        values["why"] = Raw(t(f"why.{record.fail_reason}"))
    elif outcome is LocationOutcome.MISSING:
        values["why"] = Raw(t("why.LOCATION_MISSING"))
    return Answer(kind, t(key, **values))


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
    if attendance.security_option >= Security.LOCATION and not ended:
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


def session_keyboard(attendance: LiveSession) -> InlineKeyboardMarkup:
    aid = attendance.attendance_id
    builder = InlineKeyboardBuilder()
    builder.button(
        text=t("button.attendees"), callback_data=SessionAction(action=Act.LIST, attendance_id=aid)
    )
    builder.button(
        text=t("button.end"), callback_data=SessionAction(action=Act.END, attendance_id=aid)
    )
    builder.button(
        text=t("button.cap"), callback_data=SessionAction(action=Act.CAP, attendance_id=aid)
    )
    for level in (1, 2, 3):
        key = "button.level_on" if level == attendance.security_option else "button.level"
        builder.button(
            text=t(key, level=level), callback_data=SessionLevel(attendance_id=aid, level=level)
        )
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
    attendance: LiveSession,
    record: LiveRecord,
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


# Telegram's limit on a message's text. Counted here in UTF-16 code units of the text as sent
# (HTML tags included), which is never less than what Telegram counts.
MESSAGE_LIMIT = 4096


def _units(text: str) -> int:
    return len(text.encode("utf-16-le")) // 2


def line_pages(header: str, lines: Sequence[str], *, limit: int = MESSAGE_LIMIT) -> list[str]:
    """`lines` under `header`, split into as few pages as fit `limit` each: whole lines only,
    in order, every line on exactly one page. With more than one page the header carries
    "page n/m" (`my.page`), so a student knows there is more behind ▶️."""
    pages: list[list[str]] = [[]]
    # Room for the widest page marker this split could need (the count is not known yet).
    marker = t("my.page", page=len(lines) or 1, pages=len(lines) or 1)
    room = limit - _units(header) - _units(marker) - 1
    used = 0
    for line in lines:
        size = _units(line) + 1  # and its newline
        if pages[-1] and used + size > room:
            pages.append([])
            used = 0
        pages[-1].append(line)
        used += size
    if len(pages) == 1:
        return ["\n".join([header, *pages[0]])]
    return [
        "\n".join([header + t("my.page", page=n, pages=len(pages)), *chunk])
        for n, chunk in enumerate(pages, start=1)
    ]


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
                    callback_data=Review(
                        action=Verdict.REJECT,
                        attendance_id=aid,
                        student_number=record.student_number,
                    ),
                )
            else:
                builder.button(
                    text=t("button.accept", number=record.student_number),
                    callback_data=Review(
                        action=Verdict.ACCEPT,
                        attendance_id=aid,
                        student_number=record.student_number,
                    ),
                )
        builder.adjust(3)
    nav = page_row(
        page,
        has_next=page < pages - 1,
        to=lambda n: AttendeesPage(attendance_id=aid, page=n),
    )
    if nav:
        builder.row(*nav)
    builder.row(
        InlineKeyboardButton(
            text=t("button.add"),
            callback_data=SessionAction(action=Act.ADD, attendance_id=aid).pack(),
        )
    )
    return text, builder.as_markup()


def can_miss_part(can_miss: int | None, threshold_percent: float) -> str:
    """The end of a /my_attendance course line: how many more sessions the student can miss
    this term and still end it at the threshold (services.warnings.WarningRule.can_miss);
    nothing where the course's planned sessions are unknown."""
    if can_miss is None:
        return ""
    if can_miss > 0:
        return tn("my.can_miss", can_miss, count=can_miss)
    if can_miss == 0:
        return t("my.can_miss_none")
    return t("my.out_of_reach", threshold=percent_number(threshold_percent))
