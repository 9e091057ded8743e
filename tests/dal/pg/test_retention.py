"""`RetentionStore` (dal/pg/retention.py) against the real PostgreSQL server: /logout unlinks an
account and forgets its cached schedule and preferences but keeps the user row and its records;
the inactivity purge forgets accounts with no login and no attendance since the cutoff (a
check-in or a session taught since then keeps one) and names the Telegram ids it unlinked; the
lookup of which Telegram ids are linked."""

from __future__ import annotations

from datetime import datetime, timedelta

import pytest

from dal.models import AttendanceRecord, FailReason
from dal.pg import Postgres
from tests.dal.pg.support import T0, attendance, count, entry, present
from tests.support import link, student_user, teacher_user

pytestmark = pytest.mark.stores

CUTOFF = T0
LONG_AGO = T0 - timedelta(days=30)


async def _linked_at(pg: Postgres, number: str, when: datetime) -> None:
    await pg.db.pool.execute(
        "UPDATE users SET linked_at = $2 WHERE user_school_number = $1", number, when
    )


async def _cached(pg: Postgres, number: str) -> int:
    value: int = await pg.db.pool.fetchval(
        "SELECT count(*) FROM schedule_entries WHERE school_number = $1", number
    )
    return value


async def _preferences(pg: Postgres, number: str) -> tuple[object, ...]:
    row = await pg.db.pool.fetchrow(
        "SELECT telegram_id, linked_at, language, reminders_enabled, undeliverable_at,"
        " undeliverable_reason FROM users WHERE user_school_number = $1",
        number,
    )
    assert row is not None
    return tuple(row)


# --- /logout ------------------------------------------------------------------------------


async def test_logout_forgets_the_link_schedule_and_preferences_but_keeps_user_and_records(
    pg: Postgres,
) -> None:
    await link(pg, teacher_user(), 900)
    await link(pg, student_user("1", "İpek Şahin"), 100, reminders=False, language="tr")
    await link(pg, student_user("2"), 200, language="tr")
    await pg.accounts.mark_undeliverable(telegram_id=100, reason="blocked")
    for number in ("1", "2"):
        await pg.schedules.replace_schedule(school_number=number, entries=[entry(number)])
    att = attendance()
    await pg.attendance.add_attendances(attendances=[att])
    await pg.attendance.add_attendance_records(records=[present(att, "1")])

    assert await pg.retention.forget_telegram_user(telegram_id=100) == "1"

    assert await pg.accounts.get_linked_user(telegram_id=100) is None
    assert await _preferences(pg, "1") == (None, None, "en", True, None, None)
    assert await _cached(pg, "1") == 0
    assert await pg.accounts.get_users(school_numbers=["1"]) == [student_user("1", "İpek Şahin")]
    assert [h.lesson_name for h in await pg.reports.get_student_records(student_number="1")] == [
        "Fizik I"
    ]
    # The other student keeps everything.
    other = await pg.accounts.get_linked_user(telegram_id=200)
    assert other is not None
    assert (other.school_number, other.language) == ("2", "tr")
    assert await _cached(pg, "2") == 1
    # Nothing is linked to 100 any more; an unknown account was never linked.
    assert await pg.retention.forget_telegram_user(telegram_id=100) is None
    assert await pg.retention.forget_telegram_user(telegram_id=555) is None


# --- the inactivity purge -----------------------------------------------------------------


async def test_inactive_accounts_are_forgotten_and_active_ones_kept(pg: Postgres) -> None:
    await link(pg, teacher_user(), 900)  # taught after the cutoff: kept
    await link(pg, student_user("stale"), 101, language="tr")
    await link(pg, student_user("checked-in"), 102)  # checked in after the cutoff: kept
    await link(pg, student_user("absent"), 103)  # only marked absent after the cutoff
    await link(pg, student_user("fresh"), 104)  # logged in now: kept
    await pg.accounts.add_users(users=[student_user("unlinked"), student_user("nothing")])
    for number in ("T0001", "stale", "checked-in", "absent"):
        await _linked_at(pg, number, LONG_AGO)
    for number in ("stale", "checked-in", "fresh", "unlinked"):
        await pg.schedules.replace_schedule(school_number=number, entries=[entry(number)])
    before = attendance(start=CUTOFF - timedelta(days=7))
    after = attendance(start=CUTOFF + timedelta(days=1))
    await pg.attendance.add_attendances(attendances=[before, after])
    await pg.attendance.add_attendance_records(
        records=[
            present(before, "stale"),
            present(after, "checked-in"),
            AttendanceRecord(
                attendance_id=after.attendance_id,
                student_number="absent",
                is_attended=False,
                fail_reason=FailReason.ABSENT,
            ),
        ]
    )

    forgotten = await pg.retention.forget_inactive_users(inactive_since=CUTOFF)

    assert sorted(forgotten) == [101, 103]
    assert await _preferences(pg, "stale") == (None, None, "en", True, None, None)
    assert await _cached(pg, "stale") == 0
    assert await _cached(pg, "unlinked") == 0  # no link, but a cached schedule: dropped too
    for telegram_id, number in ((900, "T0001"), (102, "checked-in"), (104, "fresh")):
        linked = await pg.accounts.get_linked_user(telegram_id=telegram_id)
        assert linked is not None
        assert linked.school_number == number
    assert await _cached(pg, "checked-in") == 1
    assert await _cached(pg, "fresh") == 1
    # Users and the attendance register stay.
    assert await count(pg, "users") == 7
    assert await count(pg, "attendance_records") == 3
    # Nothing is left to forget.
    assert await pg.retention.forget_inactive_users(inactive_since=CUTOFF) == []


async def test_a_login_or_check_in_at_the_cutoff_itself_counts_as_recent(pg: Postgres) -> None:
    await link(pg, teacher_user(), 900)
    await link(pg, student_user("login"), 101)
    await link(pg, student_user("check-in"), 102)
    await _linked_at(pg, "T0001", LONG_AGO)
    await _linked_at(pg, "login", CUTOFF)
    await _linked_at(pg, "check-in", LONG_AGO)
    att = attendance(start=CUTOFF - timedelta(minutes=2))  # the teacher's: before the cutoff
    await pg.attendance.add_attendances(attendances=[att])
    await pg.attendance.add_attendance_records(records=[present(att, "check-in", minutes=2)])

    assert await pg.retention.forget_inactive_users(inactive_since=CUTOFF) == [900]

    assert await pg.accounts.get_linked_user(telegram_id=101) is not None
    assert await pg.accounts.get_linked_user(telegram_id=102) is not None


# --- the purge's lookup -------------------------------------------------------------------


async def test_linked_telegram_ids_are_those_linked_now(pg: Postgres) -> None:
    await link(pg, student_user("1"), 100)
    await link(pg, student_user("2"), 200)
    await pg.retention.forget_telegram_user(telegram_id=200)

    assert await pg.retention.get_linked_telegram_ids(telegram_ids=[100, 200, 300, 100]) == {100}
    assert await pg.retention.get_linked_telegram_ids(telegram_ids=[]) == set()
