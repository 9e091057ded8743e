"""The Mini App's check-in screen (issue 24, item 3): the code, and at levels 2 and 3 the
device's location, sent from a page; the verdict is the HTTP answer, never a bot message.

The page (`static/check-in.html`) is opened by the projector's QR code
(`https://t.me/<bot>?startapp=ci_<code>`, or `ci` at level 3, where the code is typed from
the screen) or by the web_app button of the "attendance is open" notice. Its calls:

- `POST /app/api/checkin/open`: the screen's texts in the user's language and the code the
  launch payload carries (the `start_param` Telegram signed with the launch data);
- `POST /app/api/checkin`: the code. The same Lua check-in as a code sent in chat runs
  (`AttendanceService.check_in`, dal/redis/checkins.py), with the same wrong-code throttle
  (the same Redis key), so chat and page mix in one class. At levels 2 and 3 the answer is
  `location`: the record waits, LOCATION_MISSING, as it does in chat;
- `POST /app/api/checkin/location`: the position the page read with `navigator.geolocation`
  (or why it could not), decided by the same rule as a shared location
  (`AttendanceService.submit_location`, services/location.py): fresh (its age as the browser
  reports it), accurate enough, within the radius. A page that could not get one leaves the
  record pending, LOCATION_MISSING, as a student who never shares one in chat.

No lesson is looked up before a code is checked: that would be a code oracle outside the
wrong-code throttle. The lesson is named in the verdict.
"""

from __future__ import annotations

import html
import json
import math
import re
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from aiohttp import web

from bot.app import App
from bot.projector import PAGE_CSP, STATIC_DIR
from bot.webapp.initdata import InitDataInvalid, LaunchData, verify_init_data
from dal.redis.checkins import CheckInStatus
from ui.i18n import Raw, default_catalogs, pick_locale, t, use_locale
from ui.render import Answer, check_in_answer, location_answer

__all__ = [
    "LABELS",
    "BadRequest",
    "Location",
    "locale_of",
    "open_screen",
    "page_check_in",
    "page_location",
    "plain_text",
    "start_code",
]

_TAG = re.compile(r"<[^>]*>")
_START = re.compile(r"^ci(?:_(\d{6}))?$")
# A position the browser says it read longer ago than this is not used at all.
MAX_POSITION_AGE = timedelta(minutes=10)
# The screen's own texts (the verdicts are the chat's texts).
LABELS = (
    "page.checkin.title",
    "page.checkin.code",
    "page.checkin.submit",
    "page.checkin.sending",
    "page.checkin.locating",
    "page.error",
)
_RECORDED = (CheckInStatus.OK_PRESENT, CheckInStatus.OK_PENDING, CheckInStatus.OK_LOCATION)


class BadRequest(Exception):
    """A body the page would never send: answered 400, nothing changed."""


@dataclass(frozen=True, slots=True)
class Location:
    latitude: float
    longitude: float
    accuracy: float
    age_ms: float

    @classmethod
    def parse(cls, body: dict[str, Any]) -> Location | None:
        """The position in a location body; None when the page says it could not get one."""
        if body.get("error") is not None:
            if body["error"] not in ("denied", "unavailable", "timeout", "unsupported"):
                raise BadRequest("error")
            return None
        try:
            values = [float(body[k]) for k in ("latitude", "longitude", "accuracy", "age_ms")]
        except (KeyError, TypeError, ValueError):
            raise BadRequest("location") from None
        latitude, longitude, accuracy, age_ms = values
        if not all(math.isfinite(v) for v in values):
            raise BadRequest("location")
        if not (-90 <= latitude <= 90 and -180 <= longitude <= 180 and accuracy >= 0):
            raise BadRequest("location")
        return cls(latitude, longitude, accuracy, age_ms)


def locale_of(launch: LaunchData) -> str:
    """The page's language: the user's Telegram language, as a chat reply would use."""
    return pick_locale(launch.user.language_code, default_catalogs().locales)


def plain_text(message: str) -> str:
    """A chat text (Telegram HTML) as plain text for a page's `textContent`."""
    return html.unescape(_TAG.sub("", message))


def start_code(launch: LaunchData) -> str:
    """The code the launch payload carries (`ci_<code>`), or "" (`ci`, none, or another)."""
    found = _START.fullmatch(launch.start_param or "")
    return (found.group(1) or "") if found else ""


def _labels(keys: tuple[str, ...]) -> dict[str, str]:
    return {key.rsplit(".", 1)[-1]: plain_text(t(key)) for key in keys}


def _answer(answer: Answer, lesson: str | None) -> dict[str, Any]:
    return {"kind": answer.kind, "text": plain_text(answer.text), "lesson": lesson or ""}


def open_screen(launch: LaunchData) -> dict[str, Any]:
    locale = locale_of(launch)
    with use_locale(locale):
        return {"locale": locale, "labels": _labels(LABELS), "code": start_code(launch)}


async def page_check_in(app: App, launch: LaunchData, code: object) -> dict[str, Any]:
    """A code from the page: the chat's check-in, answered in the HTTP response."""
    if not isinstance(code, str) or len(code) > 32:
        raise BadRequest("code")
    result = await app.attendance.check_in(telegram_id=launch.user.id, code=code)
    app.metrics.check_in(result.status)
    session = result.attendance
    if session is not None and result.status in _RECORDED:
        app.board.touch(session.attendance_id)  # the teacher's status message
    with use_locale(locale_of(launch)):
        answer = check_in_answer(result, app.attendance)
        return _answer(answer, session.lesson_name if session else None)


async def page_location(app: App, launch: LaunchData, body: dict[str, Any]) -> dict[str, Any]:
    """The position the page read after a `location` answer, or why it has none."""
    location = Location.parse(body)
    attendance = app.attendance
    locale = locale_of(launch)
    if location is None:
        # Nothing changes: the record stays LOCATION_MISSING (pending review), as in chat
        # when no location comes; the student may still share one in chat meanwhile.
        waiting = await app.redis.checkins.location_wait(telegram_id=launch.user.id)
        session = (
            None
            if waiting is None
            else await app.redis.sessions.get_attendance(attendance_id=waiting)
        )
        with use_locale(locale):
            if session is None:
                return _answer(Answer("no_wait", t("location.no_wait")), None)
            why = t("why.LOCATION_MISSING")
            text = t("location.pending", lesson=session.lesson_name, why=Raw(why))
            return _answer(Answer("pending", text), session.lesson_name)
    # The browser stamps the position with its own clock; its age, not its time, is sent, so a
    # phone whose clock is off is judged by how old the reading is.
    age = min(timedelta(milliseconds=max(location.age_ms, 0.0)), MAX_POSITION_AGE)
    result = await attendance.submit_location(
        telegram_id=launch.user.id,
        latitude=location.latitude,
        longitude=location.longitude,
        accuracy=location.accuracy,
        sent_at=attendance.now() - age,
        forwarded=False,
    )
    if result.attendance is not None:
        app.board.touch(result.attendance.attendance_id)
    with use_locale(locale):
        answer = location_answer(result, attendance)
        return _answer(answer, result.attendance.lesson_name if result.attendance else None)


# --- routes (until the shared page plumbing lands: bot/webapp/pages.py) ---------------

_BODY_MAX = 8192
_INIT_MAX_AGE = timedelta(hours=1)
_STATIC_TYPES = {".js": "text/javascript", ".css": "text/css", ".html": "text/html"}


def _app(request: web.Request) -> App:
    from bot.web import APP_KEY

    return request.app[APP_KEY]


async def read_launch(request: web.Request) -> tuple[App, LaunchData, dict[str, Any]]:
    app = _app(request)
    if (request.content_length or 0) > _BODY_MAX:
        raise web.HTTPRequestEntityTooLarge(
            max_size=_BODY_MAX, actual_size=request.content_length or 0
        )
    raw = await request.content.read(_BODY_MAX + 1)
    if len(raw) > _BODY_MAX:
        raise web.HTTPRequestEntityTooLarge(max_size=_BODY_MAX, actual_size=len(raw))
    try:
        body = json.loads(raw)
    except ValueError:
        raise web.HTTPBadRequest(text='{"error":"json"}', content_type="application/json") from None
    if not isinstance(body, dict):
        raise web.HTTPBadRequest(text='{"error":"json"}', content_type="application/json")
    token = app.settings.bot_token
    assert token is not None
    try:
        launch = verify_init_data(
            str(body.get("init_data") or ""),
            bot_token=token.get_secret_value(),
            max_age=_INIT_MAX_AGE,
            now=app.attendance.now(),
        )
    except InitDataInvalid as exc:
        raise web.HTTPUnauthorized(
            text=json.dumps({"error": exc.reason}), content_type="application/json"
        ) from None
    return app, launch, body


def _json(data: dict[str, Any]) -> web.Response:
    return web.json_response(data, headers={"Cache-Control": "no-store"})


async def _open(request: web.Request) -> web.Response:
    _, launch, _ = await read_launch(request)
    return _json(open_screen(launch))


async def _check_in(request: web.Request) -> web.Response:
    app, launch, body = await read_launch(request)
    try:
        return _json(await page_check_in(app, launch, body.get("code")))
    except BadRequest as exc:
        raise web.HTTPBadRequest(
            text=json.dumps({"error": str(exc)}), content_type="application/json"
        ) from None


async def _location(request: web.Request) -> web.Response:
    app, launch, body = await read_launch(request)
    try:
        return _json(await page_location(app, launch, body))
    except BadRequest as exc:
        raise web.HTTPBadRequest(
            text=json.dumps({"error": str(exc)}), content_type="application/json"
        ) from None


def static_response(name: str) -> web.Response:
    path = STATIC_DIR / name
    headers = {"Cache-Control": "no-cache", "X-Content-Type-Options": "nosniff"}
    if name.endswith(".html"):
        headers.update({"Content-Security-Policy": PAGE_CSP, "Referrer-Policy": "no-referrer"})
    return web.Response(
        body=path.read_bytes(), content_type=_STATIC_TYPES[path.suffix], headers=headers
    )


async def _page(request: web.Request) -> web.Response:
    return static_response("check-in.html")


async def _static(request: web.Request) -> web.Response:
    name = request.match_info["name"]
    if not _STATIC_NAME.fullmatch(name) or not (STATIC_DIR / name).is_file():
        raise web.HTTPNotFound()
    return static_response(name)


_STATIC_NAME = re.compile(r"^[a-z]+\.(js|css)$")


def register(web_app: web.Application) -> None:
    web_app.router.add_get("/app/checkin", _page)
    web_app.router.add_get("/app/static/{name}", _static)
    web_app.router.add_post("/app/api/checkin/open", _open)
    web_app.router.add_post("/app/api/checkin", _check_in)
    web_app.router.add_post("/app/api/checkin/location", _location)
