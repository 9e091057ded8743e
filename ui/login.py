"""The texts and the button of signing in, shared by the chat flow (handlers/login.py), the
sign-in page (bot/webapp/login.py) and the login queue's worker (bot/login_worker.py): the same
outcome reads the same wherever the user signed in."""

from __future__ import annotations

from aiogram.types import InlineKeyboardButton, InlineKeyboardMarkup, WebAppInfo

from services.login_queue import Queued, SignOnResult, minutes
from ui.i18n import t, tn

SIGN_IN_PAGE = "login"


def webapp_url(public_url: str, page: str) -> str:
    """A Mini App page's address (bot/webapp/pages.py serves `/app/<page>`)."""
    return f"{public_url.rstrip('/')}/app/{page}"


def sign_in_keyboard(public_url: str) -> InlineKeyboardMarkup:
    """The "Sign in" button that opens the sign-in page inside Telegram."""
    button = InlineKeyboardButton(
        text=t("webapp.sign_in_button"),
        web_app=WebAppInfo(url=webapp_url(public_url, SIGN_IN_PAGE)),
    )
    return InlineKeyboardMarkup(inline_keyboard=[[button]])


def result_text(result: SignOnResult) -> str:
    """A sign-on's outcome in the current locale (HTML, as the chat shows it)."""
    if result.kind == "ok":
        return tn(
            "login.ok",
            result.lessons,
            name=result.name,
            role=t(f"role.{result.role}"),
            number=result.number,
            lessons=result.lessons,
        )
    if result.kind == "throttled":
        return t("login.throttled", minutes=minutes(result.retry_after))
    if result.kind == "wrong":
        return t("login.wrong")
    if result.kind == "portal_changed":
        return t("login.portal_changed")
    if result.kind == "expired":
        return t("login.queue_expired")
    return t("login.portal_down")


def queued_text(queued: Queued) -> str:
    """Where a queued sign-on stands: its place and about how long until its turn."""
    if queued.place <= 0:
        return t("login.checking")
    return t("login.queued", place=queued.place, minutes=minutes(queued.wait_seconds))


def page_confirmation(result: SignOnResult) -> str:
    """The one chat message after a sign-in on the page: who is now linked, as what."""
    return t(
        "login.page_confirmation",
        name=result.name,
        role=t(f"role.{result.role}"),
        number=result.number,
    )
