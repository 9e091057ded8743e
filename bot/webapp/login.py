"""The sign-in page: the portal user name and password go from the Mini App straight to this
server, never through a Telegram message.

- `GET /app/login`: the page (static/login.html, static/login.js);
- `POST /app/api/login` `{init_data, username, password}`: the launch data is verified first
  (bot/webapp/pages.py), then the same sign-on as the chat's /login runs (the login queue's
  `submit`: `AccountService.login` with its throttles, or a place in line when the portal's
  pace is used up). The answer is the outcome's text in the user's Telegram language; after a
  success the chat gets one confirmation (name and role) through the outbox.
- `POST /app/api/login/status` `{init_data, ticket}`: a queued sign-on's place and estimate,
  then its outcome; only for the account that queued it (404 for anyone else).

The password is never logged, stored or echoed: it lives in this request's locals, and sealed
in the queue's ticket while waiting.
"""

from __future__ import annotations

from typing import Any

from aiohttp import web

from bot.app import App
from bot.login_worker import page_notice
from bot.webapp.pages import WebAppError, add_page, app_of, launch, locale_of, ok, plain, rate_limit
from services.accounts import MAX_PASSWORD_LENGTH, valid_username
from services.login_queue import Queued, SignOnResult, minutes
from ui.i18n import t, use_locale
from ui.login import page_confirmation, result_text

# Sign-in attempts from one account a minute (the portal's failure throttles come on top, as in
# the chat); status polls (the page asks every 2 s while in line).
LOGIN_POSTS_PER_MINUTE = 10
STATUS_POLLS_PER_MINUTE = 90

PAGE_TEXTS = (
    "webapp.login.title",
    "webapp.login.hint",
    "webapp.login.username",
    "webapp.login.password",
    "webapp.login.submit",
    "webapp.login.working",
    "webapp.login.no_launch",
    "webapp.error",
)


def _answer(outcome: SignOnResult | Queued) -> dict[str, Any]:
    """The page's view of an outcome, in the current locale (plain text)."""
    if isinstance(outcome, Queued):
        return {
            "state": "queued",
            "ticket": outcome.ticket,
            "place": outcome.place,
            "minutes": minutes(outcome.wait_seconds),
            "wait_seconds": outcome.wait_seconds,
            "message": plain(
                t("webapp.login.queued", place=outcome.place, minutes=minutes(outcome.wait_seconds))
                if outcome.place > 0
                else t("login.checking")
            ),
        }
    return {
        "state": "done",
        "verdict": outcome.kind,
        "success": outcome.kind == "ok",
        "message": plain(result_text(outcome)),
    }


async def sign_in(request: web.Request) -> web.Response:
    data, body = await launch(request)
    await rate_limit(
        request,
        scope="login",
        telegram_id=data.user.id,
        limit=LOGIN_POSTS_PER_MINUTE,
        window_seconds=60,
    )
    app = app_of(request)
    locale = locale_of(data)
    username = body.get("username")
    password = body.get("password")
    with use_locale(locale):
        if not isinstance(username, str) or not valid_username(username.strip()):
            raise WebAppError(400, "bad_username", message=plain(t("login.bad_username")))
        if not isinstance(password, str) or not 0 < len(password) <= MAX_PASSWORD_LENGTH:
            raise WebAppError(400, "bad_password", message=plain(t("webapp.login.bad_password")))
        outcome = await app.login_queue.submit(
            telegram_id=data.user.id,
            language=locale,
            username=username.strip(),
            password=password,
            channel="page",
        )
        del password
        if isinstance(outcome, SignOnResult) and outcome.kind == "ok":
            # The one chat message of a page sign-in, through the outbox (paced, durable).
            await app.notifier.enqueue([page_notice(data.user.id, page_confirmation(outcome))])
        return ok(_answer(outcome))


async def sign_in_status(request: web.Request) -> web.Response:
    data, body = await launch(request)
    await rate_limit(
        request,
        scope="login-status",
        telegram_id=data.user.id,
        limit=STATUS_POLLS_PER_MINUTE,
        window_seconds=60,
    )
    ticket = body.get("ticket")
    with use_locale(locale_of(data)):
        if not isinstance(ticket, str) or not ticket.isalnum() or len(ticket) > 64:
            raise WebAppError(400, "bad_request")
        outcome = await app_of(request).login_queue.status(ticket=ticket, telegram_id=data.user.id)
        if outcome is None:
            raise WebAppError(404, "not_found", message=plain(t("login.queue_expired")))
        return ok(_answer(outcome))


def setup(sub: web.Application, app: App) -> None:
    add_page(sub, "login", texts=PAGE_TEXTS)
    sub.router.add_post("/api/login", sign_in)
    sub.router.add_post("/api/login/status", sign_in_status)
