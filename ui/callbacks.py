"""Inline button payloads. Telegram allows 64 bytes of callback data: ids only, never names.

Fields are typed: aiogram packs a `UUID` as its 32 hex digits and an `Enum` as its value, and
unpacks both with validation, so a forged or mangled payload matches no handler (it gets the
"outdated button" answer, handlers.common.outdated_button). The wire format is the one older
buttons already in chats carry (`sa:end:<32 hex>`), so they keep working. It is the prefix and
the values in field order, never the field names: a field may be renamed, but moving, adding or
removing one changes what the buttons already sent mean (tests/handlers/test_replies.py keeps
the packed forms of earlier releases).

Every handler that receives one of these re-checks on the server that the presser may act
(role and ownership), so forged data changes nothing.
"""

from __future__ import annotations

from enum import StrEnum
from uuid import UUID

from aiogram.filters.callback_data import CallbackData


class Act(StrEnum):
    """What a button on the status message asks for."""

    END = "end"
    LIST = "list"
    CAP = "cap"
    ADD = "add"


class Verdict(StrEnum):
    ACCEPT = "a"
    REJECT = "r"


class Fmt(StrEnum):
    XLSX = "xlsx"
    CSV = "csv"
    BOTH = "both"
    MOODLE = "moodle"  # mod_attendance import and gradebook import files


class LessonPick(CallbackData, prefix="lp"):
    code: str
    start: int


class SessionAction(CallbackData, prefix="sa"):
    action: Act
    attendance_id: UUID


class SessionLevel(CallbackData, prefix="sl"):
    attendance_id: UUID  # "sl:<32 hex>:<1>": 37 bytes
    level: int


class AttendeesPage(CallbackData, prefix="ap"):
    attendance_id: UUID
    page: int


class Review(CallbackData, prefix="rv"):
    action: Verdict
    attendance_id: UUID
    student_number: str


class HistoryOpen(CallbackData, prefix="ho"):
    attendance_id: UUID
    page: int = 0


class HistoryToggle(CallbackData, prefix="ht"):
    attendance_id: UUID
    student_number: str
    page: int = 0


class HistoryCsv(CallbackData, prefix="hc"):
    attendance_id: UUID


class HistoryList(CallbackData, prefix="hl"):
    page: int = 0


class HistoryExcuseList(CallbackData, prefix="hx"):
    attendance_id: UUID


class HistoryExcuse(CallbackData, prefix="he"):
    attendance_id: UUID
    student_number: str


class HistoryAdd(CallbackData, prefix="hd"):
    attendance_id: UUID


class MyCourse(CallbackData, prefix="mc"):
    token: str  # services.reports.course_token
    page: int = 0  # of the dated list (ui.render.line_pages)


class MyCourses(CallbackData, prefix="ms"):
    pass


class ExportCourse(CallbackData, prefix="ec"):
    token: str


class ExportFormat(CallbackData, prefix="ef"):
    token: str
    fmt: Fmt


class ExcuseSession(CallbackData, prefix="xs"):
    """A student asks to have a saved session excused (/excuse, /my_attendance)."""

    attendance_id: UUID


class ExcusePlanned(CallbackData, prefix="xp"):
    """A student apologises in advance for a coming lesson of their schedule."""

    code: str
    start: int  # epoch seconds of the planned start


class ExcuseNoFile(CallbackData, prefix="xn"):
    """Send the excuse request without a document."""


class ExcuseCancel(CallbackData, prefix="xc"):
    pass


class ExcuseDecision(CallbackData, prefix="xd"):
    """The teacher's Approve / Reject under an excuse request's notice."""

    action: Verdict
    request_id: int


class HistoryRequests(CallbackData, prefix="hq"):
    """A saved session's pending excuse requests (/history)."""

    attendance_id: UUID
