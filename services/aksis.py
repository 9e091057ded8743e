"""Signing in to Aksis like a browser, and reading who the user is and their schedule.

The portal has no API (docs/portal.md): the client fetches pages, keeps cookies for one sign-on in
its own jar, and reads the few markers docs/portal.md lists. Whenever a page does not look as
expected it raises `PortalChanged`; it never guesses a role.

The user name (possibly a national ID number) and the password are as sensitive as each
other: they live only in the locals of `login()`, are never logged, never stored, and never
part of an error message.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import re
from dataclasses import dataclass
from typing import Protocol
from urllib.parse import parse_qs, urljoin, urlsplit
from zoneinfo import ZoneInfo

import aiohttp
from selectolax.lexbor import LexborHTMLParser, LexborNode

from dal.models import Role
from services.lesson_finder import Lesson, parse_schedule
from services.text import strip_titles, turkish_casefold

__all__ = [
    "AksisClient",
    "AksisError",
    "InvalidCredentials",
    "LiveAksisClient",
    "LoginResult",
    "MalformedSchedule",
    "PortalChanged",
    "PortalIdentity",
    "PortalUnavailable",
    "staff_identifier",
]

log = logging.getLogger(__name__)

TOKEN_FIELD = "__RequestVerificationToken"  # noqa: S105 - a form field name
STAFF_MARKER = "ÖYS AKADEMİSYEN"
PLANS_READ_FIELDS = ("OgrenciId", "BirimId", "Yil", "Donem")
# Pages are a few hundred kB at most; refuse anything absurd instead of buffering it.
MAX_BODY_BYTES = 5 * 1024 * 1024
_USER_AGENT = "Mozilla/5.0 (compatible; ATTN attendance bot)"

# A URL containing `Plans_Read` inside script text: the full path or the `Plans_Read?` fragment.
_PLANS_READ = re.compile(r"""[^\s"'<>(){};,]*Plans_Read(?:\?[^\s"'<>(){};,]*)?""")
_JS_UNICODE_ESCAPE = re.compile(r"\\u([0-9a-fA-F]{4})")
_SPACES = re.compile(r"\s+")


class AksisError(Exception):
    """Signing in through Aksis failed. Messages carry no credentials or personal data."""


class InvalidCredentials(AksisError):
    """The portal rejected the user name or password."""


class PortalUnavailable(AksisError):
    """The portal could not be reached, timed out or answered with a server error."""


class PortalChanged(AksisError):
    """A page or answer did not look as docs/portal.md describes (the portal changed)."""


class MalformedSchedule(PortalChanged):
    """The schedule answer has entries, but all or most of them do not read as lessons.

    Taken as a format change, not as an empty schedule: the sign-on fails and the schedule
    cached before stays, instead of being replaced by the few entries that still parse."""


@dataclass(frozen=True, slots=True)
class PortalIdentity:
    role: Role
    full_name: str  # without academic titles, as the portal writes it
    school_number: str  # students: from the OBS profile; staff: `staff_identifier()`


@dataclass(frozen=True, slots=True)
class LoginResult:
    identity: PortalIdentity
    lessons: list[Lesson]
    skipped_entries: int  # malformed schedule entries left out
    term: str | None = None  # "YYYY-D": the schedule's year and term (`term_of`); None: unknown


class AksisClient(Protocol):
    async def login(self, username: str, password: str) -> LoginResult:
        """Sign in, identify the user and read their schedule. Raises AksisError subclasses."""
        ...


def staff_identifier(username: str, key: str) -> str:
    """A stable identifier for staff (the portal shows no staff number): "T" + 15 hex digits
    of HMAC-SHA256(key, the normalized user name). The user name itself is never stored."""
    digest = hmac.new(
        key.encode("utf-8"), username.strip().casefold().encode("utf-8"), hashlib.sha256
    ).hexdigest()
    return "T" + digest[:15]


def _clean(text: str | None) -> str:
    return _SPACES.sub(" ", text or "").strip()


def _node_text(node: LexborNode) -> str:
    return _clean(node.text(deep=True, separator=" "))


# --- page readers (pure functions over HTML text) ---------------------------------------


def read_verification_token(html: str) -> str:
    tree = LexborHTMLParser(html)
    for node in tree.css(f'input[name="{TOKEN_FIELD}"]'):
        value = (node.attributes.get("value") or "").strip()
        if value:
            return value
    raise PortalChanged("the login page has no anti-forgery token")


def _is_login_page(tree: LexborHTMLParser) -> bool:
    return tree.css_first('input[name="Password"]') is not None


def read_landing_page(html: str) -> tuple[Role, str | None]:
    """(role, staff name) after sign-on; raises InvalidCredentials on the error summary."""
    tree = LexborHTMLParser(html)
    if tree.css_first("div.validation-summary-errors") is not None:
        raise InvalidCredentials("the portal rejected the user name or password")
    if _is_login_page(tree):
        raise PortalChanged("sign-on did not complete (the login form came back)")
    marker = turkish_casefold(STAFF_MARKER)
    if not any(turkish_casefold(_node_text(h4)) == marker for h4 in tree.css("h4")):
        return Role.STUDENT, None
    for h5 in tree.css("h5.m-t-0.m-b-0"):
        name = _staff_name(_node_text(h5))
        if name:
            return Role.TEACHER, name
    raise PortalChanged("the staff landing page shows no name")


def _staff_name(text: str) -> str:
    # docs/portal.md §1: title and name are separated by dots and the name follows the last dot. A
    # title word without a dot ("Dr. Öğr. Üyesi İSMAİL IŞIK") would survive that rule, so known
    # titles go first; an unknown dotted one still falls to the last-dot rule.
    name = strip_titles(text)
    if "." in name:
        name = strip_titles(name.rsplit(".", 1)[1])
    return name


def _cell_after(th: LexborNode) -> str | None:
    """Text of the `td` that follows a `th`: its sibling, or the same column one row down."""
    sibling = th.next
    while sibling is not None:
        if sibling.tag == "td":
            return _node_text(sibling)
        if sibling.tag == "th":
            break
        sibling = sibling.next
    row = th.parent
    if row is None or row.tag != "tr":
        return None
    column = [x for x in row.iter() if x.tag in {"th", "td"}].index(th)
    following = row.next
    while following is not None and following.tag != "tr":
        following = following.next
    if following is None:
        return None
    cells = [x for x in following.iter() if x.tag in {"th", "td"}]
    return _node_text(cells[column]) if column < len(cells) and cells[column].tag == "td" else None


def read_student_profile(html: str) -> tuple[str, str]:
    """(full name, school number) from the OBS profile table."""
    tree = LexborHTMLParser(html)
    found: dict[str, str] = {}
    for th in tree.css("th"):
        label = turkish_casefold(_node_text(th)).rstrip(" :")
        if label in {"ad soyad", "numara"} and label not in found:
            value = _cell_after(th)
            if value:
                found[label] = value
    name, number = found.get("ad soyad"), found.get("numara")
    if not name or not number:
        raise PortalChanged("the student profile page has no name or number")
    return name, number


def find_plans_read_url(html: str, page_url: str) -> str:
    """The schedule data URL from the schedule page's inline scripts, made absolute."""
    tree = LexborHTMLParser(html)
    candidates: list[str] = []
    for script in tree.css("script"):
        if script.attributes.get("src"):
            continue
        text = script.text(deep=True) or ""
        if "Plans_Read" not in text:
            continue
        for match in _PLANS_READ.finditer(text):
            candidates.append(_unescape_js(match.group(0)))
    if not candidates:
        raise PortalChanged("the schedule page does not name its data URL")
    # Prefer a URL carrying its parameters (the student, unit, year and term).
    best = next((x for x in candidates if "?" in x), candidates[0])
    url = urljoin(page_url, best)
    page, target = urlsplit(page_url), urlsplit(url)
    if target.scheme not in {"http", "https"} or target.hostname != page.hostname:
        # Cookies and form data go only to the host that served the schedule page.
        raise PortalChanged("the schedule data URL points to another host")
    return url


def term_of(year: str | None, semester: str | None) -> str | None:
    """The term "YYYY-D" from the data URL's `Yil` and `Donem`; None unless both are numbers
    of the expected size (the text order of terms is then their time order)."""
    if not year or not semester:
        return None
    if not (year.isdigit() and len(year) == 4 and semester.isdigit() and len(semester) == 1):
        return None
    return f"{year}-{semester}"


def _unescape_js(text: str) -> str:
    text = _JS_UNICODE_ESCAPE.sub(lambda m: chr(int(m.group(1), 16)), text)
    return text.replace("\\/", "/").replace("&amp;", "&")


# --- the live client ----------------------------------------------------------------------


class LiveAksisClient:
    """Talks to the real portal (or tests/fakes/aksis_server.FakeAksis) over HTTP."""

    def __init__(
        self,
        *,
        login_url: str,
        obs_url: str,
        schedule_url: str,
        timeout_seconds: float,
        staff_id_key: str,
        tz: ZoneInfo,
        connect_timeout_seconds: float | None = None,
    ) -> None:
        if timeout_seconds <= 0:
            raise ValueError("timeout_seconds must be positive")
        self._login_url = login_url
        self._obs_url = obs_url
        self._schedule_url = schedule_url
        self._timeout = aiohttp.ClientTimeout(
            total=timeout_seconds,
            connect=connect_timeout_seconds or min(timeout_seconds, 10.0),
        )
        self._staff_id_key = staff_id_key
        self._tz = tz

    def __repr__(self) -> str:
        return f"LiveAksisClient(login_host={urlsplit(self._login_url).hostname!r})"

    async def login(self, username: str, password: str) -> LoginResult:
        if not username.strip() or not password:
            raise InvalidCredentials("the user name and password are required")
        # One cookie jar per sign-on: the anti-forgery token is bound to a cookie, and no
        # cookie may leak from one user's sign-on into another's. `unsafe` admits IP hosts.
        async with aiohttp.ClientSession(
            cookie_jar=aiohttp.CookieJar(unsafe=True),
            timeout=self._timeout,
            headers={"User-Agent": _USER_AGENT, "Accept-Language": "tr-TR,tr;q=0.9,en;q=0.5"},
            raise_for_status=False,
        ) as session:
            login_page, _ = await self._fetch(session, "GET", self._login_url, step="login page")
            form = {
                "UserName": username.strip(),
                "Password": password,
                TOKEN_FIELD: read_verification_token(login_page),
            }
            landing, _ = await self._fetch(session, "POST", self._login_url, form, "sign-on")
            role, staff_name = read_landing_page(landing)
            if role is Role.TEACHER and staff_name is not None:
                identity = PortalIdentity(
                    role=Role.TEACHER,
                    full_name=staff_name,
                    school_number=staff_identifier(username, self._staff_id_key),
                )
                try:
                    lessons, skipped, term = await self._read_schedule(session)
                except MalformedSchedule:
                    raise  # the data is there and unreadable: not "no schedule page"
                except AksisError as exc:
                    # Staff often have no schedule page on OBS; they pick or name the lesson.
                    log.info("staff schedule not available (%s)", type(exc).__name__)
                    lessons, skipped, term = [], 0, None
            else:
                profile, _ = await self._fetch(session, "GET", self._obs_url, step="profile")
                full_name, school_number = read_student_profile(profile)
                identity = PortalIdentity(
                    role=Role.STUDENT, full_name=full_name, school_number=school_number
                )
                lessons, skipped, term = await self._read_schedule(session)
        if skipped:
            log.warning("schedule: skipped %d malformed entries", skipped)
        log.debug("signed in: role=%s lessons=%d", identity.role.value, len(lessons))
        return LoginResult(identity=identity, lessons=lessons, skipped_entries=skipped, term=term)

    async def _read_schedule(
        self, session: aiohttp.ClientSession
    ) -> tuple[list[Lesson], int, str | None]:
        page, page_url = await self._fetch(session, "GET", self._schedule_url, step="schedule")
        data_url = find_plans_read_url(page, page_url)
        query = parse_qs(urlsplit(data_url).query)
        fields = {name: query[name][0] for name in PLANS_READ_FIELDS if query.get(name)}
        body, _ = await self._fetch(session, "POST", data_url, fields, "schedule data")
        try:
            parsed = parse_schedule(json.loads(body), self._tz)
        except ValueError as exc:  # json.JSONDecodeError is a ValueError too
            raise PortalChanged(f"the schedule data is not as expected ({exc})") from None
        if parsed.mostly_malformed:
            raise MalformedSchedule(
                f"{parsed.skipped} of {parsed.entries} schedule entries are not as expected"
            )
        term = term_of(fields.get("Yil"), fields.get("Donem"))
        return parsed.lessons, parsed.skipped, term

    async def _fetch(
        self,
        session: aiohttp.ClientSession,
        method: str,
        url: str,
        form: dict[str, str] | None = None,
        step: str = "request",
    ) -> tuple[str, str]:
        """(body text, final URL after redirects). Maps transport failures to AksisError."""
        try:
            async with session.request(method, url, data=form, allow_redirects=True) as resp:
                status = resp.status
                if status >= 500 or status in {408, 429}:
                    raise PortalUnavailable(f"the portal answered HTTP {status} ({step})")
                if status >= 400:
                    raise PortalChanged(f"the portal answered HTTP {status} ({step})")
                body = await _read_limited(resp)
                final_url = str(resp.url)
        except TimeoutError:  # asyncio.TimeoutError on Python 3.11+
            raise PortalUnavailable(f"the portal did not answer in time ({step})") from None
        except aiohttp.ClientError as exc:
            # The exception text may carry a URL; only its class name goes further.
            raise PortalUnavailable(
                f"the portal could not be reached ({step}: {type(exc).__name__})"
            ) from None
        log.debug("aksis %s: HTTP %d", step, status)
        return body, final_url


async def _read_limited(resp: aiohttp.ClientResponse) -> str:
    if resp.content_length is not None and resp.content_length > MAX_BODY_BYTES:
        raise PortalChanged("the portal sent an unexpectedly large page")
    chunks: list[bytes] = []
    size = 0
    async for chunk in resp.content.iter_chunked(64 * 1024):
        size += len(chunk)
        if size > MAX_BODY_BYTES:
            raise PortalChanged("the portal sent an unexpectedly large page")
        chunks.append(chunk)
    charset = resp.charset or "utf-8"
    try:
        return b"".join(chunks).decode(charset, errors="replace")
    except LookupError:
        return b"".join(chunks).decode("utf-8", errors="replace")
