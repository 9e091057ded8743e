"""A local Aksis portal that speaks the protocol of docs/portal.md over real HTTP.

Use it to run the real `LiveAksisClient` end to end:

    async with FakeAksis() as portal:
        portal.add_teacher("12345678901", "s3cret", "Doç. Dr. ELİF KARTAL")
        start = datetime(2025, 2, 18, 14, 40, tzinfo=ISTANBUL)
        portal.add_student("98765432109", "pw", "AYŞE YILMAZ", "2024001", [
            portal_lesson(start, hocalar="Doç. Dr. ELİF KARTAL"),
        ])
        client = portal.live_client()          # or Settings(**portal.settings_overrides())
        result = await client.login("98765432109", "pw")

What it does like the real portal: the login page carries an anti-forgery token bound to a
cookie set on the same response (a POST whose token does not match its cookie gets HTTP 400);
wrong credentials come back as the login page with a `validation-summary-errors` div; a good
sign-on sets an auth cookie and redirects to the landing page (staff: `h4` "ÖYS AKADEMİSYEN" and
the titled name in `h5.m-t-0.m-b-0`); the OBS profile has the `Ad Soyad` / `Numara` table;
the schedule page names `Plans_Read` in an inline script with `\\u0026` escapes; `Plans_Read`
answers `{"Data": [...]}` with `\\/Date(ms)\\/` dates. Pages behind sign-on redirect to the
login page without the auth cookie.

Failure switches (plain attributes, reset by `reset()`): `fail_with_500`,
`fail_schedule_with_500`, `delay_seconds`, `changed_login_page`, `changed_landing_page`,
`schedule_without_plans_read`, `malformed_schedule_json`, `plans_read_style`. Every request
is recorded in `requests` (the Password field redacted).
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import hmac
import html
import itertools
import json
import secrets
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Literal, NoReturn
from zoneinfo import ZoneInfo

from aiohttp import web

from dal.models import Role
from services.aksis import LiveAksisClient
from services.lesson_finder import Lesson

TOKEN_COOKIE = "__RequestVerificationToken"
AUTH_COOKIE = ".ASPXAUTH"
LOGIN_PATH = "/Account/LogOn"
LANDING_PATH = "/"
OBS_PATH = "/obs/"
SCHEDULE_PATH = "/obs/OgrenimBilgileri/DersProgramiYeni/Index"
PLANS_READ_PATH = "/obs/OgrenimBilgileri/DersProgramiYeni/Plans_Read"
ISTANBUL = ZoneInfo("Europe/Istanbul")
REDACTED = "<redacted>"
# Keys for live-mode settings in tests (live mode refuses missing or public ones).
TEST_STAFF_ID_KEY = "test-staff-id-key-0123456789abcdefghij"
TEST_SECRET_KEY = "test-secret-key-0123456789abcdefghijklm"

PlansReadStyle = Literal["path", "fragment", "absolute"]


@dataclass(frozen=True, slots=True)
class PortalLesson:
    """One schedule occurrence as the portal serves it."""

    start: datetime
    end: datetime
    title: str  # "CODE - NAME"
    hocalar: str  # teachers with titles

    def to_json(self) -> dict[str, Any]:
        return {
            "Start": _ms_date(self.start),
            "End": _ms_date(self.end),
            "Title": self.title,
            "Hocalar": self.hocalar,
            "IsAllDay": False,
        }


def portal_lesson(
    start: datetime,
    *,
    minutes: int = 50,
    code: str = "YBSB1008",
    name: str = "DATA STRUCTURES AND MANAGEMENT",
    hocalar: str = "Doç. Dr. ELİF KARTAL",
) -> PortalLesson:
    """A lesson occurrence with sensible defaults; `start` must be timezone-aware."""
    if start.tzinfo is None:
        raise ValueError("start must be timezone-aware")
    return PortalLesson(start, start + timedelta(minutes=minutes), f"{code} - {name}", hocalar)


def _ms_date(value: datetime) -> str:
    if value.tzinfo is None:
        raise ValueError("lesson times must be timezone-aware")
    return f"/Date({round(value.timestamp() * 1000)})/"


def _entry(lesson: PortalLesson | Lesson | Mapping[str, Any]) -> dict[str, Any]:
    if isinstance(lesson, PortalLesson):
        return lesson.to_json()
    if isinstance(lesson, Lesson):
        return PortalLesson(lesson.start, lesson.end, lesson.title, lesson.teachers).to_json()
    return dict(lesson)  # raw entries, passed through as given (malformed ones included)


@dataclass
class FakeAccount:
    username: str
    password: str
    role: Role
    display_name: str  # students: "Ad Soyad"; staff: titled name as in the h5
    school_number: str | None
    portal_id: int  # the portal's internal id, sent as OgrenciId
    lessons: list[dict[str, Any]] | None  # None: no schedule page data (staff without one)


@dataclass(frozen=True, slots=True)
class RecordedRequest:
    method: str
    path: str
    query: dict[str, str]
    cookies: dict[str, str]
    form: dict[str, str]  # the Password field is redacted
    user_agent: str | None = None


@dataclass
class _Switches:
    fail_with_500: bool = False
    fail_schedule_with_500: bool = False
    delay_seconds: float = 0.0
    changed_login_page: bool = False
    changed_landing_page: bool = False
    schedule_without_plans_read: bool = False
    malformed_schedule_json: bool = False
    plans_read_style: PlansReadStyle = "path"


class FakeAksis:
    """The fake portal. `await start()` (or `async with`) binds 127.0.0.1 on a free port."""

    def __init__(self, *, plans_read_style: PlansReadStyle = "path") -> None:
        self._secret = secrets.token_bytes(16)
        self._accounts: dict[str, FakeAccount] = {}
        self._sessions: dict[str, str] = {}  # auth cookie value -> user name
        self._ids = itertools.count(100001)
        self._runner: web.AppRunner | None = None
        self._stopping = asyncio.Event()
        self._port: int | None = None
        self._default_style: PlansReadStyle = plans_read_style
        self.requests: list[RecordedRequest] = []
        # Failure switches; `reset()` puts them back to these values.
        self.fail_with_500 = False
        self.term = (2024, 2)  # Yil and Donem of the schedule data URL (the current term)
        self.fail_schedule_with_500 = False  # only the schedule page and Plans_Read
        self.delay_seconds = 0.0  # before every answer
        self.changed_login_page = False  # login page without the token
        self.changed_landing_page = False  # staff landing page without the h4 marker
        self.schedule_without_plans_read = False
        self.malformed_schedule_json = False  # Plans_Read answers truncated JSON
        self.plans_read_style: PlansReadStyle = plans_read_style  # how the script names it

    # --- lifecycle ----------------------------------------------------------------------

    async def start(self) -> FakeAksis:
        app = web.Application(middlewares=[self._middleware])
        app.router.add_get(LOGIN_PATH, self._login_page)
        app.router.add_post(LOGIN_PATH, self._sign_on)
        app.router.add_get(LANDING_PATH, self._landing)
        app.router.add_get(OBS_PATH, self._profile)
        app.router.add_get(SCHEDULE_PATH, self._schedule_page)
        app.router.add_post(PLANS_READ_PATH, self._plans_read)
        self._stopping.clear()
        self._runner = web.AppRunner(
            app, handler_cancellation=True, shutdown_timeout=1.0, access_log=None
        )
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        address = self._runner.addresses[0]
        self._port = int(address[1])
        return self

    async def stop(self) -> None:
        self._stopping.set()
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def __aenter__(self) -> FakeAksis:
        return await self.start()

    async def __aexit__(self, *exc_info: object) -> None:
        await self.stop()

    # --- addresses ----------------------------------------------------------------------

    @property
    def base_url(self) -> str:
        if self._port is None:
            raise RuntimeError("FakeAksis is not started")
        return f"http://127.0.0.1:{self._port}"

    @property
    def login_url(self) -> str:
        return f"{self.base_url}{LOGIN_PATH}?ReturnUrl=%2f"

    @property
    def obs_url(self) -> str:
        return f"{self.base_url}{OBS_PATH}"

    @property
    def schedule_url(self) -> str:
        return f"{self.base_url}{SCHEDULE_PATH}"

    def settings_overrides(self) -> dict[str, Any]:
        """Keyword arguments for `Settings(...)` / `load_settings(...)` pointing at this portal
        (live mode, so with the two keys live mode requires)."""
        return {
            "aksis_mode": "live",
            "staff_id_key": TEST_STAFF_ID_KEY,
            "secret_key": TEST_SECRET_KEY,
            "aksis_login_url": self.login_url,
            "aksis_obs_url": self.obs_url,
            "aksis_schedule_url": self.schedule_url,
        }

    def live_client(
        self,
        *,
        timeout_seconds: float = 5.0,
        staff_id_key: str = TEST_STAFF_ID_KEY,
        tz: ZoneInfo = ISTANBUL,
    ) -> LiveAksisClient:
        return LiveAksisClient(
            login_url=self.login_url,
            obs_url=self.obs_url,
            schedule_url=self.schedule_url,
            timeout_seconds=timeout_seconds,
            staff_id_key=staff_id_key,
            tz=tz,
        )

    # --- accounts -----------------------------------------------------------------------

    def add_student(
        self,
        username: str,
        password: str,
        full_name: str,
        school_number: str,
        lessons: Iterable[PortalLesson | Lesson | Mapping[str, Any]] = (),
    ) -> FakeAccount:
        account = FakeAccount(
            username=username,
            password=password,
            role=Role.STUDENT,
            display_name=full_name,
            school_number=school_number,
            portal_id=next(self._ids),
            lessons=[_entry(x) for x in lessons],
        )
        self._accounts[username] = account
        return account

    def add_teacher(
        self,
        username: str,
        password: str,
        display_name_with_titles: str,
        lessons: Iterable[PortalLesson | Lesson | Mapping[str, Any]] | None = None,
    ) -> FakeAccount:
        """A staff account; `lessons=None` means the schedule page offers no data URL."""
        account = FakeAccount(
            username=username,
            password=password,
            role=Role.TEACHER,
            display_name=display_name_with_titles,
            school_number=None,
            portal_id=next(self._ids),
            lessons=None if lessons is None else [_entry(x) for x in lessons],
        )
        self._accounts[username] = account
        return account

    def set_lessons(
        self, username: str, lessons: Iterable[PortalLesson | Lesson | Mapping[str, Any]] | None
    ) -> None:
        self._accounts[username].lessons = None if lessons is None else [_entry(x) for x in lessons]

    # --- inspection ---------------------------------------------------------------------

    def requests_to(self, path: str, method: str | None = None) -> list[RecordedRequest]:
        return [
            r
            for r in self.requests
            if r.path == path and (method is None or r.method == method.upper())
        ]

    def reset(self) -> None:
        """Clear recorded requests, sign-on sessions and every failure switch."""
        self.requests.clear()
        self._sessions.clear()
        switches = _Switches(plans_read_style=self._default_style)
        for name, value in vars(switches).items():
            setattr(self, name, value)

    # --- plumbing -----------------------------------------------------------------------

    @web.middleware
    async def _middleware(
        self,
        request: web.Request,
        handler: Callable[[web.Request], Awaitable[web.StreamResponse]],
    ) -> web.StreamResponse:
        form: dict[str, str] = {}
        if request.method == "POST":
            form = {k: str(v) for k, v in (await request.post()).items()}
            if "Password" in form:
                form["Password"] = REDACTED
        self.requests.append(
            RecordedRequest(
                method=request.method,
                path=request.path,
                query=dict(request.query),
                cookies=dict(request.cookies),
                form=form,
                user_agent=request.headers.get("User-Agent"),
            )
        )
        if self.delay_seconds > 0:
            # Wakes early when the portal stops, so slow answers never hold up shutdown.
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stopping.wait(), self.delay_seconds)
        schedule_paths = {SCHEDULE_PATH, PLANS_READ_PATH}
        if self.fail_with_500 or (self.fail_schedule_with_500 and request.path in schedule_paths):
            return _page("Server Error", "<h1>Server Error in '/' Application.</h1>", status=500)
        return await handler(request)

    def _form_token(self, cookie_token: str) -> str:
        return hmac.new(self._secret, cookie_token.encode(), hashlib.sha256).hexdigest()

    def _user(self, request: web.Request) -> FakeAccount | None:
        username = self._sessions.get(request.cookies.get(AUTH_COOKIE, ""))
        return self._accounts.get(username) if username is not None else None

    def _to_login(self, request: web.Request) -> NoReturn:
        raise web.HTTPFound(f"{LOGIN_PATH}?ReturnUrl={request.path}")

    # --- pages --------------------------------------------------------------------------

    def _login_response(self, *, error: str | None = None) -> web.Response:
        cookie_token = secrets.token_urlsafe(24)
        token_input = (
            ""
            if self.changed_login_page
            else '<input name="__RequestVerificationToken" type="hidden" '
            f'value="{self._form_token(cookie_token)}" />'
        )
        errors = (
            f'<div class="validation-summary-errors"><ul><li>{html.escape(error)}</li></ul></div>'
            if error
            else '<div class="validation-summary-valid"><ul><li></li></ul></div>'
        )
        body = f"""
<h2>AKSİS - Akademik Kadro Sistemi</h2>
<form action="{LOGIN_PATH}?ReturnUrl=%2f" method="post">
  {token_input}
  {errors}
  <label for="UserName">T.C. Kimlik No</label>
  <input id="UserName" name="UserName" type="text" value="" />
  <label for="Password">Şifre</label>
  <input id="Password" name="Password" type="password" />
  <button type="submit">Giriş</button>
</form>"""
        response = _page("Oturum Aç", body)
        if not self.changed_login_page:
            response.set_cookie(TOKEN_COOKIE, cookie_token, path="/", httponly=True)
        return response

    async def _login_page(self, request: web.Request) -> web.StreamResponse:
        return self._login_response()

    async def _sign_on(self, request: web.Request) -> web.StreamResponse:
        form = await request.post()
        cookie_token = request.cookies.get(TOKEN_COOKIE, "")
        form_token = str(form.get(TOKEN_COOKIE, ""))
        if not cookie_token or not hmac.compare_digest(form_token, self._form_token(cookie_token)):
            # ASP.NET MVC: HttpAntiForgeryException -> "400 Bad Request".
            return _page(
                "Bad Request",
                "<h1>The required anti-forgery cookie or form field is not present or does "
                "not match.</h1>",
                status=400,
            )
        account = self._accounts.get(str(form.get("UserName", "")).strip())
        password = str(form.get("Password", ""))
        if account is None or not hmac.compare_digest(password.encode(), account.password.encode()):
            return self._login_response(error="Kullanıcı adı veya şifre hatalı")
        session_id = secrets.token_hex(16)
        self._sessions[session_id] = account.username
        return_url = request.query.get("ReturnUrl") or LANDING_PATH
        if not return_url.startswith("/"):
            return_url = LANDING_PATH
        response = web.HTTPFound(return_url)
        response.set_cookie(AUTH_COOKIE, session_id, path="/", httponly=True)
        response.del_cookie(TOKEN_COOKIE, path="/")
        raise response

    async def _landing(self, request: web.Request) -> web.StreamResponse:
        account = self._user(request)
        if account is None:
            return self._to_login(request)
        if account.role is Role.TEACHER:
            marker = "ÖYS PERSONEL PANELİ" if self.changed_landing_page else "ÖYS AKADEMİSYEN"
            header = (
                f'<h4>{marker}</h4><h5 class="m-t-0 m-b-0">{html.escape(account.display_name)}</h5>'
            )
        else:
            header = (
                "<h4>ÖYS ÖĞRENCİ</h4>"
                f'<h5 class="m-t-0 m-b-0">{html.escape(account.display_name)}</h5>'
            )
        return _page("AKSİS", f'<div class="profile-info">{header}</div><p>Hoş geldiniz.</p>')

    async def _profile(self, request: web.Request) -> web.StreamResponse:
        account = self._user(request)
        if account is None:
            return self._to_login(request)
        if account.role is Role.TEACHER or account.school_number is None:
            return _page("OBS", "<p>Öğrenci kaydı bulunamadı.</p>")
        table = f"""
<img src="/obs/Ogrenci/Fotograf" alt="Fotoğraf" class="img-thumbnail" />
<table class="table table-bordered">
  <tr><th>Ad Soyad</th><td>{html.escape(account.display_name)}</td></tr>
  <tr><th>Numara</th><td>{html.escape(account.school_number)}</td></tr>
  <tr><th>Fakülte</th><td>İşletme Fakültesi</td></tr>
</table>"""
        return _page("OBS - Öğrenci Bilgileri", table)

    def _plans_read_reference(self, account: FakeAccount) -> str:
        year, semester = self.term
        query = (
            f"OgrenciId={account.portal_id}\\u0026BirimId=4711"
            f"\\u0026Yil={year}\\u0026Donem={semester}"
        )
        if self.plans_read_style == "fragment":
            return f"Plans_Read?{query}"
        if self.plans_read_style == "absolute":
            return f"{self.base_url}{PLANS_READ_PATH}?{query}"
        return f"{PLANS_READ_PATH}?{query}"

    async def _schedule_page(self, request: web.Request) -> web.StreamResponse:
        account = self._user(request)
        if account is None:
            return self._to_login(request)
        scripts = '<script src="/obs/Scripts/kendo.all.min.js"></script>'
        scripts += "<script>window.dataLayer = window.dataLayer || [];</script>"
        if account.lessons is not None and not self.schedule_without_plans_read:
            url = self._plans_read_reference(account)
            scripts += (
                '<script>jQuery(function(){jQuery("#scheduler").kendoScheduler({'
                '"date":new Date(2025,1,18,0,0,0,0),"dataSource":{"type":"aspnetmvc-ajax",'
                f'"transport":{{"read":{{"url":"{url}"}}}},'
                '"schema":{"data":"Data","total":"Total","errors":"Errors"}}});});</script>'
            )
        body = f'<h3>Haftalık Ders Programı</h3><div id="scheduler"></div>{scripts}'
        return _page("Ders Programı", body)

    async def _plans_read(self, request: web.Request) -> web.StreamResponse:
        account = self._user(request)
        if account is None:
            return self._to_login(request)
        if request.query.get("OgrenciId") != str(account.portal_id) or account.lessons is None:
            return _page("Forbidden", "<h1>403</h1>", status=403)
        if self.malformed_schedule_json:
            return web.Response(
                text='{"Data":[{"Start":"\\/Date(17398788', content_type="application/json"
            )
        payload = {
            "Data": account.lessons,
            "Total": len(account.lessons),
            "AggregateResults": None,
            "Errors": None,
        }
        # ASP.NET's JavaScriptSerializer writes dates as "\/Date(ms)\/".
        text = json.dumps(payload, ensure_ascii=False).replace('"/Date(', '"\\/Date(')
        text = text.replace(')/"', ')\\/"')
        return web.Response(text=text, content_type="application/json")


def _page(title: str, body: str, *, status: int = 200) -> web.Response:
    document = f"""<!DOCTYPE html>
<html lang="tr"><head><meta charset="utf-8" /><title>{html.escape(title)}</title></head>
<body>{body}</body></html>"""
    return web.Response(text=document, status=status, content_type="text/html", charset="utf-8")


__all__ = [
    "FakeAccount",
    "FakeAksis",
    "PortalLesson",
    "RecordedRequest",
    "portal_lesson",
]
