"""The live Aksis client against a local portal that speaks the real protocol (docs/portal.md)."""

from __future__ import annotations

import asyncio
import logging
import time
from collections import Counter
from collections.abc import AsyncIterator
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

import aiohttp
import pytest
from selectolax.lexbor import LexborHTMLParser

from bot.app import build_aksis_client
from bot.config import Settings
from dal.models import Role
from services.aksis import (
    InvalidCredentials,
    LiveAksisClient,
    PortalChanged,
    PortalUnavailable,
    find_plans_read_url,
    read_student_profile,
    staff_identifier,
)
from services.demo_aksis import DemoAksisClient
from services.text import person_key
from tests.fakes import FakeAksis, portal_lesson
from tests.fakes.aksis_server import (
    AUTH_COOKIE,
    LOGIN_PATH,
    PLANS_READ_PATH,
    TEST_STAFF_ID_KEY,
    TOKEN_COOKIE,
)

IST = ZoneInfo("Europe/Istanbul")
KEY = TEST_STAFF_ID_KEY

# National-ID-like user names: as sensitive as the passwords.
TEACHER_USER, TEACHER_PASSWORD = "10987654321", "Öğretmen-Şifre-7"
STUDENT_USER, STUDENT_PASSWORD = "12345678950", "Öğrenci-Parola-9"
STUDENT_NUMBER = "2024123456"
LESSON_START = datetime(2025, 2, 18, 14, 40, tzinfo=IST)


@pytest.fixture
async def portal() -> AsyncIterator[FakeAksis]:
    async with FakeAksis() as fake:
        fake.add_teacher(TEACHER_USER, TEACHER_PASSWORD, "Doç. Dr. ELİF KARTAL")
        fake.add_student(
            STUDENT_USER,
            STUDENT_PASSWORD,
            "IŞIL İNCİ ILGAZ",
            STUDENT_NUMBER,
            [
                portal_lesson(LESSON_START, minutes=140, hocalar="Doç. Dr. ELİF KARTAL"),
                portal_lesson(
                    LESSON_START + timedelta(days=1),
                    code="YBSB1010",
                    name="VERİ MADENCİLİĞİ",
                    hocalar="DR. ÖĞR. ÜYESİ İSMAİL IŞIK, Arş. Gör. AYŞE YILMAZ",
                ),
            ],
        )
        yield fake


@pytest.fixture
def client(portal: FakeAksis) -> LiveAksisClient:
    return portal.live_client(timeout_seconds=5.0, staff_id_key=KEY)


# --- successful sign-on ---------------------------------------------------------------


async def test_teacher_sign_in_takes_role_and_name_from_the_staff_page(
    client: LiveAksisClient,
) -> None:
    result = await client.login(TEACHER_USER, TEACHER_PASSWORD)

    assert result.identity.role is Role.TEACHER
    assert result.identity.full_name == "ELİF KARTAL"
    assert result.identity.school_number == staff_identifier(TEACHER_USER, KEY)
    assert result.lessons == []  # this staff member has no schedule data: not an error


async def test_staff_identifier_is_keyed_stable_and_not_the_user_name() -> None:
    ident = staff_identifier(" 10987654321 ", KEY)

    assert ident == staff_identifier("10987654321", KEY)
    assert ident.startswith("T")
    assert len(ident) == 16
    assert TEACHER_USER not in ident
    assert ident != staff_identifier("10987654321", "another-key")


async def test_teacher_title_without_a_dot_is_not_part_of_the_name(
    portal: FakeAksis, client: LiveAksisClient
) -> None:
    portal.add_teacher("55555555555", "pw", "Dr. Öğr. Üyesi İSMAİL IŞIK")

    result = await client.login("55555555555", "pw")

    assert result.identity.full_name == "İSMAİL IŞIK"
    assert person_key(result.identity.full_name) == person_key("İsmail Işık")


async def test_teacher_with_a_schedule_gets_their_lessons(
    portal: FakeAksis, client: LiveAksisClient
) -> None:
    portal.set_lessons(TEACHER_USER, [portal_lesson(LESSON_START, hocalar="Doç. Dr. ELİF KARTAL")])

    result = await client.login(TEACHER_USER, TEACHER_PASSWORD)

    assert [x.start for x in result.lessons] == [LESSON_START]
    assert result.lessons[0].teacher_keys == (person_key(result.identity.full_name),)


async def test_teacher_sign_in_survives_a_failing_schedule(
    portal: FakeAksis, client: LiveAksisClient
) -> None:
    portal.set_lessons(TEACHER_USER, [portal_lesson(LESSON_START)])
    portal.fail_schedule_with_500 = True

    result = await client.login(TEACHER_USER, TEACHER_PASSWORD)

    assert result.identity.role is Role.TEACHER
    assert result.lessons == []


async def test_student_sign_in_reads_profile_and_schedule(
    portal: FakeAksis, client: LiveAksisClient
) -> None:
    result = await client.login(STUDENT_USER, STUDENT_PASSWORD)

    assert result.identity.role is Role.STUDENT
    assert result.identity.full_name == "IŞIL İNCİ ILGAZ"
    assert result.identity.school_number == STUDENT_NUMBER
    assert result.skipped_entries == 0
    first, second = result.lessons
    assert (first.start.hour, first.start.minute) == (14, 40)
    assert first.start.utcoffset() == timedelta(hours=3)
    assert first.end - first.start == timedelta(minutes=140)
    assert (first.course_code, first.course_name) == ("YBSB1008", "DATA STRUCTURES AND MANAGEMENT")
    assert first.teacher_keys == ("elif kartal",)
    assert second.course_name == "VERİ MADENCİLİĞİ"
    assert second.teacher_keys == ("ismail ışık", "ayşe yılmaz")
    # The data URL's parameters, unescaped from \u0026, also went as form fields.
    (plans_read,) = portal.requests_to(PLANS_READ_PATH, "POST")
    assert set(plans_read.form) == {"OgrenciId", "BirimId", "Yil", "Donem"}
    assert plans_read.form == plans_read.query


@pytest.mark.parametrize("style", ["path", "fragment", "absolute"])
async def test_schedule_url_is_found_however_the_script_writes_it(
    portal: FakeAksis, client: LiveAksisClient, style: str
) -> None:
    portal.plans_read_style = style  # type: ignore[assignment]

    result = await client.login(STUDENT_USER, STUDENT_PASSWORD)

    assert len(result.lessons) == 2


async def test_malformed_schedule_entries_are_skipped_and_counted(
    portal: FakeAksis, client: LiveAksisClient
) -> None:
    """A few stray rows are left out; the rest of the schedule stands."""
    portal.set_lessons(
        STUDENT_USER,
        [
            portal_lesson(LESSON_START),
            portal_lesson(LESSON_START + timedelta(days=1), code="YBSB1010"),
            portal_lesson(LESSON_START + timedelta(days=2), code="YBSB1012"),
            {"Start": "yesterday", "End": "/Date(1739887200000)/", "Title": "X - Y"},
            {"Start": "/Date(1739878800000)/", "End": "/Date(1739887200000)/"},
        ],
    )

    result = await client.login(STUDENT_USER, STUDENT_PASSWORD)

    assert len(result.lessons) == 3
    assert result.skipped_entries == 2


@pytest.mark.parametrize("user", ["student", "teacher"])
async def test_a_schedule_answer_of_mostly_malformed_entries_is_a_portal_change(
    portal: FakeAksis, client: LiveAksisClient, user: str
) -> None:
    """A renamed field makes every entry unreadable; that is not an empty
    schedule (which would replace the cached one with nothing) but a changed portal."""
    username, password = (
        (STUDENT_USER, STUDENT_PASSWORD) if user == "student" else (TEACHER_USER, TEACHER_PASSWORD)
    )
    renamed = {"Baslangic": "/Date(1739878800000)/", "Bitis": "/Date(1739887200000)/"}
    portal.set_lessons(username, [portal_lesson(LESSON_START), {**renamed, "Title": "A - B"}, {}])

    with pytest.raises(PortalChanged, match="2 of 3 schedule entries"):
        await client.login(username, password)


async def test_settings_build_a_client_for_the_configured_portal(portal: FakeAksis) -> None:
    settings = Settings(_env_file=None, **portal.settings_overrides())

    aksis = build_aksis_client(settings)

    assert isinstance(aksis, LiveAksisClient)
    result = await aksis.login(STUDENT_USER, STUDENT_PASSWORD)
    assert result.identity.school_number == STUDENT_NUMBER
    demo = build_aksis_client(Settings(_env_file=None, aksis_mode="demo"))
    assert isinstance(demo, DemoAksisClient)


# --- rejected or broken sign-on ------------------------------------------------------------


@pytest.mark.parametrize(
    ("username", "password"),
    [(STUDENT_USER, "wrong-password"), ("99999999999", STUDENT_PASSWORD), (STUDENT_USER, "")],
)
async def test_wrong_credentials_are_reported_as_such(
    client: LiveAksisClient, username: str, password: str
) -> None:
    with pytest.raises(InvalidCredentials) as caught:
        await client.login(username, password)

    assert username not in str(caught.value)
    assert STUDENT_PASSWORD not in str(caught.value)


async def test_login_page_without_token_is_a_portal_change_and_sends_no_password(
    portal: FakeAksis, client: LiveAksisClient
) -> None:
    portal.changed_login_page = True

    with pytest.raises(PortalChanged):
        await client.login(STUDENT_USER, STUDENT_PASSWORD)

    assert portal.requests_to(LOGIN_PATH, "POST") == []


async def test_client_posts_the_token_with_the_cookie_from_the_same_page(
    portal: FakeAksis, client: LiveAksisClient
) -> None:
    await client.login(STUDENT_USER, STUDENT_PASSWORD)

    get, post = portal.requests_to(LOGIN_PATH)
    assert get.method == "GET"
    assert get.cookies == {}  # a fresh jar for every sign-on
    assert post.method == "POST"
    assert post.cookies[TOKEN_COOKIE]
    assert post.form[TOKEN_COOKIE]
    assert post.form["UserName"] == STUDENT_USER


async def test_server_rejects_a_token_that_does_not_match_its_cookie(portal: FakeAksis) -> None:
    async def fresh_token(session: aiohttp.ClientSession) -> str:
        async with session.get(portal.login_url) as resp:
            tree = LexborHTMLParser(await resp.text())
        node = tree.css_first(f'input[name="{TOKEN_COOKIE}"]')
        assert node is not None
        return node.attributes["value"] or ""

    jar_a, jar_b = aiohttp.CookieJar(unsafe=True), aiohttp.CookieJar(unsafe=True)
    async with (
        aiohttp.ClientSession(cookie_jar=jar_a) as session_a,
        aiohttp.ClientSession(cookie_jar=jar_b) as session_b,
    ):
        await fresh_token(session_a)
        token_b = await fresh_token(session_b)
        form = {"UserName": STUDENT_USER, "Password": STUDENT_PASSWORD, TOKEN_COOKIE: token_b}
        async with session_a.post(portal.login_url, data=form) as resp:
            assert resp.status == 400
        async with session_b.post(portal.login_url, data=form) as resp:
            assert resp.status == 200  # the same token with its own cookie signs on
            assert resp.url.path == "/"


async def test_server_error_means_portal_unavailable(
    portal: FakeAksis, client: LiveAksisClient
) -> None:
    portal.fail_with_500 = True

    with pytest.raises(PortalUnavailable, match="500"):
        await client.login(STUDENT_USER, STUDENT_PASSWORD)


async def test_slow_portal_times_out_quickly(portal: FakeAksis) -> None:
    portal.delay_seconds = 3.0
    impatient = portal.live_client(timeout_seconds=0.3)

    started = time.perf_counter()
    with pytest.raises(PortalUnavailable, match="in time"):
        await impatient.login(STUDENT_USER, STUDENT_PASSWORD)

    assert time.perf_counter() - started < 1.5


async def test_unreachable_portal_is_unavailable() -> None:
    async with FakeAksis() as gone:
        dead = gone.live_client(timeout_seconds=2.0)
    with pytest.raises(PortalUnavailable):
        await dead.login(STUDENT_USER, STUDENT_PASSWORD)


async def test_staff_page_without_its_marker_never_yields_a_student(
    portal: FakeAksis, client: LiveAksisClient
) -> None:
    portal.changed_landing_page = True

    with pytest.raises(PortalChanged):
        await client.login(TEACHER_USER, TEACHER_PASSWORD)


async def test_student_schedule_without_data_url_is_a_portal_change(
    portal: FakeAksis, client: LiveAksisClient
) -> None:
    portal.schedule_without_plans_read = True

    with pytest.raises(PortalChanged):
        await client.login(STUDENT_USER, STUDENT_PASSWORD)
    # Staff without schedule data still sign in.
    assert (await client.login(TEACHER_USER, TEACHER_PASSWORD)).identity.role is Role.TEACHER


async def test_malformed_schedule_json_is_a_portal_change(
    portal: FakeAksis, client: LiveAksisClient
) -> None:
    portal.malformed_schedule_json = True

    with pytest.raises(PortalChanged):
        await client.login(STUDENT_USER, STUDENT_PASSWORD)


# --- isolation and secrecy ----------------------------------------------------------------


async def test_concurrent_logins_keep_separate_cookie_jars(
    portal: FakeAksis, client: LiveAksisClient
) -> None:
    # Two sign-ons in flight at once. With a shared jar the later sign-on's auth cookie
    # replaces the earlier one's, and the teacher would be served the student's schedule.
    teacher_lesson = portal_lesson(LESSON_START, code="TCH101", hocalar="Doç. Dr. ELİF KARTAL")
    portal.set_lessons(TEACHER_USER, [teacher_lesson])
    portal.delay_seconds = 0.05

    teacher, student = await asyncio.gather(
        client.login(TEACHER_USER, TEACHER_PASSWORD),
        client.login(STUDENT_USER, STUDENT_PASSWORD),
    )

    assert teacher.identity.role is Role.TEACHER
    assert [x.course_code for x in teacher.lessons] == ["TCH101"]
    assert student.identity.school_number == STUDENT_NUMBER
    assert [x.course_code for x in student.lessons] == ["YBSB1008", "YBSB1010"]
    posts = portal.requests_to(LOGIN_PATH, "POST")
    assert len({p.cookies[TOKEN_COOKIE] for p in posts}) == 2
    # Landing, schedule page, data: 3 requests with the teacher's cookie; 4 with the student's.
    per_cookie = Counter(r.cookies.get(AUTH_COOKIE) for r in portal.requests)
    del per_cookie[None]
    assert sorted(per_cookie.values()) == [3, 4]


async def test_password_and_user_name_never_reach_logs_or_the_client(
    portal: FakeAksis, client: LiveAksisClient, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)  # root: every logger, aiohttp's and asyncio's included
    portal.set_lessons(TEACHER_USER, [portal_lesson(LESSON_START), {"Start": "broken"}])
    secrets = (STUDENT_USER, STUDENT_PASSWORD, TEACHER_USER, TEACHER_PASSWORD)

    await client.login(STUDENT_USER, STUDENT_PASSWORD)
    await client.login(TEACHER_USER, TEACHER_PASSWORD)
    errors: list[Exception] = []
    for switch in ("", "malformed_schedule_json", "fail_with_500"):
        if switch:
            setattr(portal, switch, True)
        try:
            await client.login(STUDENT_USER, "wrong-" + STUDENT_PASSWORD)
        except Exception as exc:  # collected for the message check below
            errors.append(exc)
    portal.reset()
    portal.malformed_schedule_json = True
    with pytest.raises(PortalChanged) as changed:
        await client.login(STUDENT_USER, STUDENT_PASSWORD)
    errors.append(changed.value)

    assert caplog.records, "the capture must see the client's debug records"
    logged = caplog.text + "\n".join(
        f"{r.getMessage()} {r.args!r} {r.exc_text or ''}" for r in caplog.records
    )
    for secret in secrets:
        assert secret not in logged
        assert all(secret not in str(e) for e in errors)
        assert secret not in repr(vars(client))


# --- page readers -------------------------------------------------------------------------


def test_profile_table_with_labels_in_a_header_row() -> None:
    page = """<table><tr><th>Numara</th><th>Ad Soyad</th></tr>
    <tr><td> 2024001 </td><td>ÇAĞLA   ÖZ</td></tr></table>"""

    assert read_student_profile(page) == ("ÇAĞLA ÖZ", "2024001")


def test_profile_without_the_number_is_a_portal_change() -> None:
    with pytest.raises(PortalChanged):
        read_student_profile("<table><tr><th>Ad Soyad</th><td>ÇAĞLA ÖZ</td></tr></table>")


def test_data_url_with_json_escapes_resolves_against_the_page() -> None:
    page = (
        '<script>var read = {"url":"\\/OgrenimBilgileri\\/DersProgramiYeni\\/Plans_Read'
        '?OgrenciId=7\\u0026Yil=2024"};</script>'
    )

    url = find_plans_read_url(page, "https://obs.example.edu.tr/OgrenimBilgileri/X/Index")

    assert url == (
        "https://obs.example.edu.tr/OgrenimBilgileri/DersProgramiYeni/Plans_Read?OgrenciId=7&Yil=2024"
    )


def test_data_url_on_another_host_is_refused() -> None:
    page = '<script>u = "https://evil.example/Plans_Read?OgrenciId=1";</script>'

    with pytest.raises(PortalChanged, match="another host"):
        find_plans_read_url(page, "https://obs.example.edu.tr/OgrenimBilgileri/X/Index")
