"""Inline button payloads. Telegram allows 64 bytes of callback data: ids only, never names.

Every handler that receives one of these re-checks on the server that the presser may act
(role and ownership), so forged data changes nothing.
"""

from __future__ import annotations

from uuid import UUID

from aiogram.filters.callback_data import CallbackData


class LessonPick(CallbackData, prefix="lp"):
    code: str
    start: int


class SessionAction(CallbackData, prefix="sa"):
    action: str  # "end" | "list" | "add"
    aid: str  # attendance id, 32 hex digits


class SessionLevel(CallbackData, prefix="sl"):
    aid: str  # attendance id, 32 hex digits ("sl:<32>:<1>": 37 bytes)
    level: int


class AttendeesPage(CallbackData, prefix="ap"):
    aid: str
    page: int


class Review(CallbackData, prefix="rv"):
    action: str  # "a" accept | "r" reject
    aid: str
    sn: str


class HistoryOpen(CallbackData, prefix="ho"):
    aid: str
    page: int = 0


class HistoryToggle(CallbackData, prefix="ht"):
    aid: str
    sn: str
    page: int = 0


class HistoryCsv(CallbackData, prefix="hc"):
    aid: str


class HistoryList(CallbackData, prefix="hl"):
    page: int = 0


class HistoryExcuseList(CallbackData, prefix="hx"):
    aid: str


class HistoryExcuse(CallbackData, prefix="he"):
    aid: str
    sn: str


class HistoryAdd(CallbackData, prefix="hd"):
    aid: str


class MyCourse(CallbackData, prefix="mc"):
    token: str  # services.reports.course_token


class MyCourses(CallbackData, prefix="ms"):
    pass


class ExportCourse(CallbackData, prefix="ec"):
    token: str


class ExportFormat(CallbackData, prefix="ef"):
    token: str
    fmt: str  # "xlsx" | "csv" | "both"


def parse_aid(value: str) -> UUID | None:
    """The attendance id carried in a button, or None when it is not one (forged or stale)."""
    try:
        return UUID(hex=value)
    except ValueError:
        return None
