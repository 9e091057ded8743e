"""`AccountStore` (dal/pg/accounts.py) against the real PostgreSQL server: users (Turkish names,
upserts, reads) and Telegram links (moving a link, reminders, contacts)."""

from __future__ import annotations

import asyncio

import pytest

from dal.errors import NotFound
from dal.models import Role, User
from dal.pg import Postgres
from tests.dal.pg.support import student

TURKISH_NAME = "İpek Şahin Ağaoğlu Işık"


# --- users --------------------------------------------------------------------------------


async def test_turkish_names_round_trip(pg: Postgres) -> None:
    await pg.accounts.add_users(users=[student("2024001", TURKISH_NAME)])

    (user,) = await pg.accounts.get_users(school_numbers=["2024001"])

    assert user.user_full_name == TURKISH_NAME
    assert user.role is Role.STUDENT


async def test_add_users_updates_name_and_role_but_keeps_the_telegram_link(
    pg: Postgres,
) -> None:
    await pg.accounts.link_telegram(user=student("1"), telegram_id=500, language="tr")

    await pg.accounts.add_users(
        users=[User(user_school_number="1", user_full_name="Yeni Ad", role=Role.TEACHER)]
    )

    assert await pg.accounts.get_users(school_numbers=["1"]) == [
        User(user_school_number="1", user_full_name="Yeni Ad", role=Role.TEACHER)
    ]
    linked = await pg.accounts.get_linked_user(telegram_id=500)
    assert linked is not None
    assert linked.language == "tr"
    assert linked.full_name == "Yeni Ad"


async def test_repeated_school_number_in_one_batch_keeps_the_last(pg: Postgres) -> None:
    await pg.accounts.add_users(users=[student("1", "Eski"), student("1", "Son")])
    (user,) = await pg.accounts.get_users(school_numbers=["1"])
    assert user.user_full_name == "Son"


async def test_get_users_all_or_selected(pg: Postgres) -> None:
    await pg.accounts.add_users(users=[student("3"), student("1"), student("2")])

    assert [u.user_school_number for u in await pg.accounts.get_users()] == ["1", "2", "3"]
    chosen = await pg.accounts.get_users(school_numbers=["3", "1", "9"])
    assert [u.user_school_number for u in chosen] == ["1", "3"]
    assert await pg.accounts.get_users(school_numbers=[]) == []


# --- Telegram link ------------------------------------------------------------------------


async def test_login_from_second_account_moves_link_and_names_the_first(
    pg: Postgres,
) -> None:
    assert (
        await pg.accounts.link_telegram(user=student("1"), telegram_id=100, language="en") is None
    )

    previous = await pg.accounts.link_telegram(user=student("1"), telegram_id=200, language="tr")

    assert previous == 100
    assert await pg.accounts.get_linked_user(telegram_id=100) is None
    linked = await pg.accounts.get_linked_user(telegram_id=200)
    assert linked is not None
    assert (linked.school_number, linked.role, linked.language) == ("1", Role.STUDENT, "tr")
    assert linked.linked_at.utcoffset() is not None


async def test_relogin_from_same_account_reports_no_previous(pg: Postgres) -> None:
    await pg.accounts.link_telegram(user=student("1"), telegram_id=100, language="en")
    assert (
        await pg.accounts.link_telegram(user=student("1"), telegram_id=100, language="en") is None
    )


async def test_account_logging_in_as_another_school_number_leaves_the_first(
    pg: Postgres,
) -> None:
    await pg.accounts.link_telegram(user=student("1"), telegram_id=100, language="en")

    assert (
        await pg.accounts.link_telegram(user=student("2"), telegram_id=100, language="en") is None
    )

    assert await pg.accounts.get_contacts(school_numbers=["1", "2"]) == [
        await pg.accounts.get_linked_user(telegram_id=100)
    ]
    linked = await pg.accounts.get_linked_user(telegram_id=100)
    assert linked is not None
    assert linked.school_number == "2"


async def test_concurrent_links_of_one_account_leave_one_link(pg: Postgres) -> None:
    await asyncio.gather(
        *(
            pg.accounts.link_telegram(user=student(str(n)), telegram_id=777, language="en")
            for n in range(6)
        )
    )
    linked = await pg.db.pool.fetchval("SELECT count(*) FROM users WHERE telegram_id = 777")
    assert linked == 1


async def test_reminders_setting(pg: Postgres) -> None:
    await pg.accounts.link_telegram(user=student("1"), telegram_id=100, language="en")

    await pg.accounts.set_reminders(school_number="1", enabled=False)

    linked = await pg.accounts.get_linked_user(telegram_id=100)
    assert linked is not None
    assert linked.reminders_enabled is False
    with pytest.raises(NotFound):
        await pg.accounts.set_reminders(school_number="nope", enabled=True)


async def test_contacts_only_include_linked_users(pg: Postgres) -> None:
    await pg.accounts.add_users(users=[student("1"), student("2")])
    await pg.accounts.link_telegram(user=student("3"), telegram_id=300, language="en")

    contacts = await pg.accounts.get_contacts(school_numbers=["1", "2", "3"])

    assert [(c.school_number, c.telegram_id) for c in contacts] == [("3", 300)]
    assert await pg.accounts.get_contacts(school_numbers=[]) == []
