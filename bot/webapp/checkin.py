"""The Mini App's check-in screen: the code, and at levels 2 and 3 the
device's location, sent from a page; the verdict is the HTTP answer, never a bot message.

The page (`static/checkin.html`) is opened by the projector's QR code
(`https://t.me/<bot>?startapp=ci_<code>`, or `ci` at level 3, where the code is typed from
the screen) or by the web_app button of the "attendance is open" notice. Its calls:

- `GET /app/checkin/texts`: the screen's texts (bot/webapp/pages.py); the page fills in the
  code the launch payload carries (`start_param` `ci_<code>`), which the server checks like
  any typed code;
- `POST /app/api/checkin`: the code. The same Lua check-in as a code sent in chat runs
  (`CheckInService.check_in`, services/attendance/checkins.py), with the same wrong-code throttle
  (the same Redis key), so chat and page mix in one class. At levels 2 and 3 the answer is
  `location`: the record waits, LOCATION_MISSING, as it does in chat;
- `POST /app/api/checkin/location`: the position the page read with `navigator.geolocation`
  (or why it could not), decided by the same rule as a shared location
  (`CheckInService.submit_location`, services/location.py): fresh (its age as the browser
  reports it), accurate enough, within the radius. A page that could not get one leaves the
  record pending, LOCATION_MISSING, as a student who never shares one in chat.

No lesson is looked up before a code is checked: that would be a code oracle outside the
wrong-code throttle. The lesson is named in the verdict.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from aiohttp import web

from bot.app import App
from bot.webapp.initdata import LaunchData
from bot.webapp.pages import WebAppError, add_page, app_of, launch, locale_of, ok, plain, rate_limit
from services.attendance import AttendanceService
from services.checkin_outcomes import CheckInStatus, LocationResult
from ui.i18n import use_locale
from ui.render import Answer, check_in_answer, location_answer

__all__ = [
    "LABELS",
    "BadRequest",
    "Location",
    "page_check_in",
    "page_location",
    "setup",
]

# An age above this is taken as this: stale either way (services/location.py: 60 s), and a
# huge number cannot overflow the date arithmetic.
MAX_POSITION_AGE_MS = 10 * 60 * 1000
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


def _answer(answer: Answer, lesson: str | None) -> dict[str, Any]:
    return {"kind": answer.kind, "text": plain(answer.text), "lesson": lesson or ""}


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
        result = await attendance.without_location(telegram_id=launch.user.id)
    else:
        result = await _submit(attendance, launch, location)
    if location is not None and result.attendance is not None:
        app.board.touch(result.attendance.attendance_id)
    with use_locale(locale):
        answer = location_answer(result, attendance)
        return _answer(answer, result.attendance.lesson_name if result.attendance else None)


async def _submit(
    attendance: AttendanceService, launch: LaunchData, location: Location
) -> LocationResult:
    # The browser stamps the position with its own clock; its age, not its time, is sent, so a
    # phone whose clock is off is judged by how old the reading is.
    age = timedelta(milliseconds=min(max(location.age_ms, 0.0), MAX_POSITION_AGE_MS))
    return await attendance.submit_location(
        telegram_id=launch.user.id,
        latitude=location.latitude,
        longitude=location.longitude,
        accuracy=location.accuracy,
        sent_at=attendance.now() - age,
        forwarded=False,
    )


# --- routes (bot/webapp/pages.py) ----------------------------------------------------

# Page requests a student makes around one check-in: a code, perhaps a location, a retry.
# Wrong codes have their own, tighter limit in the check-in script (the chat's, same key);
# this one caps everything else a page could be made to send.
REQUESTS_PER_MINUTE = 30


async def _limited(request: web.Request) -> tuple[App, LaunchData, dict[str, Any]]:
    launch_data, body = await launch(request)
    await rate_limit(
        request,
        scope="checkin",
        telegram_id=launch_data.user.id,
        limit=REQUESTS_PER_MINUTE,
        window_seconds=60,
    )
    return app_of(request), launch_data, body


async def _check_in(request: web.Request) -> web.Response:
    app, launch_data, body = await _limited(request)
    try:
        return ok(await page_check_in(app, launch_data, body.get("code")))
    except BadRequest as exc:
        raise WebAppError(400, "bad_request") from exc


async def _location(request: web.Request) -> web.Response:
    app, launch_data, body = await _limited(request)
    try:
        return ok(await page_location(app, launch_data, body))
    except BadRequest as exc:
        raise WebAppError(400, "bad_request") from exc


def setup(sub: web.Application, app: App) -> None:
    """`GET /app/checkin` and its calls (register_webapp in bot/web.py)."""
    add_page(sub, "checkin", texts=LABELS)
    sub.router.add_post("/api/checkin", _check_in)
    sub.router.add_post("/api/checkin/location", _location)
