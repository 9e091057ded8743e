"""Translations: gettext catalogs with English fallback, a third language added as a catalog, plural
forms, Babel dates and numbers, the HTML-escaping guarantee, `scripts/i18n.py check`, and the
user's Telegram language end to end."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from aiogram.types import User
from babel.messages.catalog import Catalog
from babel.messages.mofile import write_mo
from babel.messages.pofile import read_po, write_po

from tests.fakes.aksis_server import FakeAksis
from tests.harness import reply, running_bot
from ui.i18n import (
    Catalogs,
    LocaleMiddleware,
    Raw,
    date_time_text,
    default_catalogs,
    locales_dir,
    percent_number,
    pick_locale,
    t,
    time_text,
    tn,
    use_locale,
)

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "scripts" / "i18n.py"


def _write_catalog(path: Path, locale: str, entries: dict[str, str]) -> Path:
    catalog = Catalog(locale=locale, domain="attn")
    for key, text in entries.items():
        catalog.add(key, text)
    path.mkdir(parents=True, exist_ok=True)
    po = path / "attn.po"
    with po.open("wb") as target:
        write_po(target, catalog)
    return po


def _compile(po: Path) -> None:
    with po.open("rb") as source:
        catalog = read_po(source)
    with po.with_suffix(".mo").open("wb") as target:
        write_mo(target, catalog)


@pytest.fixture
def with_german(tmp_path: Path) -> Catalogs:
    """The project's catalogs plus a partial German one, compiled with Babel."""
    shutil.copytree(locales_dir(), tmp_path, dirs_exist_ok=True)
    po = _write_catalog(
        tmp_path / "de" / "LC_MESSAGES",
        "de",
        {
            "start.linked": "Hallo {name} ({role}). Mit /help sehen Sie, was Sie tun können.",
            "cancel.nothing": "Es gibt nichts abzubrechen.",
            "cancel.done": "",  # empty: English is shown
        },
    )
    _compile(po)
    return Catalogs(tmp_path)


def test_a_third_partial_catalog_is_used_and_falls_back_to_english(with_german: Catalogs) -> None:
    assert set(with_german.available_locales) == {"en", "tr", "de"}
    with with_german.context(), with_german.use_locale("de"):
        assert t("start.linked", name="Ada", role="Rolle") == (
            "Hallo Ada (Rolle). Mit /help sehen Sie, was Sie tun können."
        )
        assert t("cancel.nothing") == "Es gibt nichts abzubrechen."
        assert t("cancel.done") == "Cancelled."  # empty entry
        assert t("logout.ok") == "This Telegram account is no longer linked. /login to link again."
        assert t("role.teacher", locale="tr") == "Öğretim elemanı"
        # A plural message it lacks: English forms, by the English rule.
        assert tn("count.students", 1, count=1) == "1 student"
        assert tn("count.students", 3, count=3) == "3 students"
    # A German Telegram client gets German once the catalog exists, English before.
    assert pick_locale("de-DE", with_german.available_locales) == "de"
    assert pick_locale("de", default_catalogs().available_locales) == "en"


async def test_the_locale_middleware_keeps_the_telegram_language_rule(
    with_german: Catalogs,
) -> None:
    middleware = LocaleMiddleware(with_german)
    seen: list[str] = []

    async def handler(event: object, data: dict[str, object]) -> None:
        seen.append(t("cancel.nothing"))

    for code in ("tr", "TR-tr", "de-AT", "en-GB", "fr", None):
        sender = User(id=1, is_bot=False, first_name="U", language_code=code)
        await middleware(handler, sender, {"event_from_user": sender})
    await middleware(handler, User(id=2, is_bot=False, first_name="U"), {})
    assert seen == [
        "İptal edilecek bir işlem yok.",
        "İptal edilecek bir işlem yok.",
        "Es gibt nichts abzubrechen.",
        "There is nothing to cancel.",
        "There is nothing to cancel.",
        "There is nothing to cancel.",
        "There is nothing to cancel.",
    ]


def test_a_locale_without_a_catalog_reads_english() -> None:
    assert t("cancel.done", locale="xx") == "Cancelled."
    with use_locale("xx"):
        assert t("cancel.done") == "Cancelled."


def test_values_are_escaped_unless_raw() -> None:
    with use_locale("tr"):
        text = t("start.linked", name="<b>Ali & Veli</b>", role=Raw("<i>Öğrenci</i>"))
    assert text == (
        "Merhaba &lt;b&gt;Ali &amp; Veli&lt;/b&gt; (<i>Öğrenci</i>). "
        "Neler yapabileceğinizi görmek için /help yazın."
    )
    assert t("checkin.ended", lesson="C++ <Lab>") == (
        "Attendance for <b>C++ &lt;Lab&gt;</b> has already closed."
    )


@pytest.mark.parametrize(
    ("locale", "expected"),
    [
        ("en", ["0 records", "1 record", "2 records", "5 records"]),
        ("tr", ["0 kayıt", "1 kayıt", "2 kayıt", "5 kayıt"]),
    ],
)
def test_the_attendee_list_header_has_plural_forms(locale: str, expected: list[str]) -> None:
    with use_locale(locale):
        headers = [
            tn("attendees.header", n, lesson="FİZ101", total=n, page=1, pages=1)
            for n in (0, 1, 2, 5)
        ]
    assert [h.split(" — ")[1].split(" (")[0] for h in headers] == expected


def test_the_login_answer_counts_lessons_in_both_languages() -> None:
    def found(n: int, locale: str) -> str:
        text = tn("login.ok", n, locale=locale, name="A", role="B", number="1", lessons=n)
        return text.split("\n")[1].split(".")[0]

    assert [found(n, "en") for n in (0, 1, 2, 5)] == [
        "0 lessons found in your schedule",
        "1 lesson found in your schedule",
        "2 lessons found in your schedule",
        "5 lessons found in your schedule",
    ]
    assert [found(n, "tr") for n in (0, 1, 2, 5)] == [
        f"Programınızda {n} ders bulundu" for n in (0, 1, 2, 5)
    ]
    # The Turkish rule is CLDR's, as Babel writes it into the catalog header.
    plural_forms = default_catalogs().locales["tr"].info()["plural-forms"]
    assert plural_forms == "nplurals=2; plural=(n != 1);"


def test_times_dates_and_percentages_follow_the_locale() -> None:
    moment = datetime(2026, 3, 9, 6, 5, tzinfo=UTC)  # 09:05 in Istanbul
    istanbul = ZoneInfo("Europe/Istanbul")
    with use_locale("en"):
        assert time_text(moment, istanbul) == "09:05"
        assert date_time_text(moment, istanbul) == "Mar 9, 2026, 09:05"
        assert date_time_text(moment, istanbul, year=False) == "Mar 9, 09:05"
        assert [percent_number(v) for v in (100.0, 200 / 3, 0.04, 1234.5)] == [
            "100",
            "66.7",
            "0",
            "1,234.5",
        ]
        assert t("my.percent", percent=percent_number(200 / 3)) == "66.7%"
    with use_locale("tr"):
        assert time_text(moment, istanbul) == "09:05"
        assert date_time_text(moment, istanbul) == "9 Mar 2026 09:05"
        assert date_time_text(moment, istanbul, year=False) == "9 Mar 09:05"
        assert [percent_number(v) for v in (100.0, 200 / 3, 0.04, 1234.5)] == [
            "100",
            "66,7",
            "0",
            "1.234,5",
        ]
        assert t("my.percent", percent=percent_number(200 / 3)) == "%66,7"


def test_an_edited_po_wins_over_an_older_mo(tmp_path: Path) -> None:
    shutil.copytree(locales_dir() / "en", tmp_path / "en")
    directory = tmp_path / "tr" / "LC_MESSAGES"
    po = _write_catalog(directory, "tr", {"cancel.done": "Eski."})
    _compile(po)
    assert Catalogs(tmp_path).gettext("cancel.done", locale="tr") == "Eski."
    _write_catalog(directory, "tr", {"cancel.done": "Yeni."})
    old = po.stat().st_mtime - 60
    os.utime(po.with_suffix(".mo"), (old, old))
    assert Catalogs(tmp_path).gettext("cancel.done", locale="tr") == "Yeni."
    (directory / "attn.mo").unlink()  # a .po alone is compiled in memory
    assert Catalogs(tmp_path).gettext("cancel.done", locale="tr") == "Yeni."


def _check(locales: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(SCRIPT), "check", "--locales", str(locales)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_the_catalogs_agree_with_the_code() -> None:
    result = _check(ROOT / "locales")
    assert result.returncode == 0, result.stderr


def test_check_fails_on_a_translation_that_drops_a_placeholder(tmp_path: Path) -> None:
    shutil.copytree(ROOT / "locales", tmp_path, dirs_exist_ok=True)
    po = tmp_path / "tr" / "LC_MESSAGES" / "attn.po"
    with po.open("rb") as source:
        catalog = read_po(source)
    catalog["start.linked"].string = "Merhaba {name}."  # {role} is gone
    with po.open("wb") as target:
        write_po(target, catalog)
    result = _check(tmp_path)
    assert result.returncode == 1
    assert "start.linked (tr): placeholders ['name'], English has ['name', 'role']" in result.stderr


def test_check_fails_on_a_key_the_english_catalog_lacks(tmp_path: Path) -> None:
    shutil.copytree(ROOT / "locales", tmp_path, dirs_exist_ok=True)
    po = tmp_path / "en" / "LC_MESSAGES" / "attn.po"
    with po.open("rb") as source:
        catalog = read_po(source)
    catalog.delete("cancel.done")
    catalog.add("nobody.uses_this", "Unused.")
    with po.open("wb") as target:
        write_po(target, catalog)
    result = _check(tmp_path)
    assert result.returncode == 1
    lines = result.stderr.splitlines()
    assert any(x.startswith("cancel.done: used in ") and x.endswith(" not in en") for x in lines)
    assert "nobody.uses_this: in en but used nowhere in the code" in result.stderr


# --- end to end --------------------------------------------------------------------------


@pytest.fixture
async def portal() -> AsyncIterator[FakeAksis]:
    async with FakeAksis() as fake:
        yield fake


async def test_each_user_is_answered_in_their_telegram_language(
    pg_dsn: str, redis_url: str, portal: FakeAksis
) -> None:
    async with running_bot(pg_dsn=pg_dsn, redis_url=redis_url, aksis=portal) as bot:
        turkish, english, german = (
            bot.user(301, "Ayşe", "tr"),
            bot.user(302, "Ann"),
            bot.user(303, "Jan", "de"),
        )
        for user in (turkish, english, german):
            await user.send("/start")
        assert str((await reply(turkish))["text"]).startswith("ATTN yoklama botuna hoş geldiniz.")
        assert str((await reply(english))["text"]).startswith("Welcome to ATTN")
        assert str((await reply(german))["text"]).startswith("Welcome to ATTN")
        # A refusal comes from the error router, outside the handler: still in Turkish.
        await turkish.send("/me")
        assert (await reply(turkish))["text"] == "Önce Aksis hesabınızı bağlayın: /login"
        await english.send("/me")
        assert (await reply(english))["text"] == "Link your Aksis account first: /login"
