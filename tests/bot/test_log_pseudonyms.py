"""Log lines name a person only by the keyed pseudonym of their Telegram id: never the id, the
school number or the name, and no line ties the pseudonym to the school number."""

from __future__ import annotations

import contextlib
import io
import json
import logging
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime, timedelta

import pytest

from bot.config import Settings, load_settings
from bot.logs import build_handler
from services.pseudonyms import keyed_pseudonym, pseudonym, use_key
from tests.fakes.aksis_server import FakeAksis, portal_lesson
from tests.harness import PASSWORD, reply, running_bot
from tests.support import poll_until

TEACHER = ("hoca.demir", "Dr. Öğr. Üyesi KEMAL DEMİR")
STUDENT = ("zeynep.kaya", "ZEYNEP KAYA", "2025104417")
BLOCKED = ("mert.arslan", "MERT ARSLAN", "2025104418")
# Ids long enough that finding one in a line is no coincidence.
TEACHER_ID = 7_402_000_001
STUDENT_ID = 7_402_000_101
BLOCKED_ID = 7_402_000_102


@pytest.fixture
async def portal() -> AsyncIterator[FakeAksis]:
    async with FakeAksis() as fake:
        now = datetime.now(UTC)
        lesson = portal_lesson(now - timedelta(minutes=5), minutes=60, hocalar=TEACHER[1])
        fake.add_teacher(TEACHER[0], PASSWORD, TEACHER[1], lessons=[lesson])
        for username, name, number in (STUDENT, BLOCKED):
            fake.add_student(username, PASSWORD, name, number, lessons=[lesson])
        yield fake


@contextlib.contextmanager
def json_logs_at_debug(settings: Settings, buffer: io.StringIO) -> Iterator[None]:
    handler = build_handler(settings, buffer)
    root = logging.getLogger()
    level = root.level
    root.addHandler(handler)
    root.setLevel(logging.DEBUG)
    try:
        yield
    finally:
        root.removeHandler(handler)
        root.setLevel(level)


async def test_a_login_and_check_in_log_people_only_by_pseudonym(
    pg_dsn: str, redis_url: str, portal: FakeAksis
) -> None:
    buffer = io.StringIO()
    async with running_bot(
        pg_dsn=pg_dsn, redis_url=redis_url, aksis=portal, log_format="json"
    ) as bot:
        settings = bot.settings
        with json_logs_at_debug(settings, buffer):
            teacher = bot.user(TEACHER_ID, "Kemal", "tr")
            student = bot.user(STUDENT_ID, "Zeynep")
            blocked = bot.user(BLOCKED_ID, "Mert")
            assert "KEMAL DEMİR" in str((await bot.login(teacher, TEACHER[0])).get("text"))
            assert STUDENT[1] in str((await bot.login(student, STUDENT[0])).get("text"))
            assert BLOCKED[1] in str((await bot.login(blocked, BLOCKED[0])).get("text"))
            # This student then blocks the bot: the "attendance is open" notice to them is
            # refused for good, and the lines about that chat must name it by pseudonym too.
            bot.telegram.forbid_chat(BLOCKED_ID)
            code = await bot.start_session(teacher)
            await student.send(code)
            assert "checked in" in str((await reply(student)).get("text")).lower()
            await poll_until(
                lambda: "undeliverable" in buffer.getvalue(), 10, "the refused notice's line"
            )

    lines = buffer.getvalue().splitlines()
    records = [json.loads(line) for line in lines]
    assert len(records) > 10
    personal = {
        **{f"telegram id {i}": str(i) for i in (TEACHER_ID, STUDENT_ID, BLOCKED_ID)},
        **{f"school number {n}": n for _, _, n in (STUDENT, BLOCKED)},
        **{f"name {name}": name for _, name, _ in (STUDENT, BLOCKED)},
        "teacher name": "KEMAL DEMİR",
        **{f"portal user name {u}": u for u in (TEACHER[0], STUDENT[0], BLOCKED[0])},
    }
    leaked = {
        what: [line for line in lines if value in line][:3] for what, value in personal.items()
    }
    assert {what: found for what, found in leaked.items() if found} == {}

    key = settings.key("secret_key").encode()
    names = {uid: keyed_pseudonym(uid, key) for uid in (TEACHER_ID, STUDENT_ID, BLOCKED_ID)}
    # The sender of each update is its pseudonym; the login line names the account the same way.
    assert {names[TEACHER_ID], names[STUDENT_ID]} <= {r.get("user.id") for r in records}
    assert any(
        r["message"].startswith("linked telegram account") and names[STUDENT_ID] in r["message"]
        for r in records
    )
    # The refused notice is logged under the blocked student's pseudonym (no update of theirs).
    about_blocked = [r["message"] for r in records if names[BLOCKED_ID] in r["message"]]
    assert any("undeliverable" in m or "refused" in m for m in about_blocked), about_blocked


def test_the_chat_id_in_an_aiogram_error_text_becomes_its_pseudonym() -> None:
    settings = load_settings(aksis_mode="demo", log_format="text")
    use_key(settings.key("secret_key").encode())
    buffer = io.StringIO()
    logger = logging.getLogger("attn.pseudonyms")
    logger.addHandler(build_handler(settings, buffer))
    logger.propagate = False
    try:
        logger.warning(
            "an answer goes to the outbox after %s",
            "Flood control exceeded on method 'SendMessage' in chat 7402000777. Retry in 3 s.",
        )
        logger.warning(
            "moved: %s",
            "The group has been migrated to a supergroup with id -1007402000888 from -7402000999",
        )
    finally:
        logger.handlers.clear()
        logger.propagate = True
    text = buffer.getvalue()
    for raw in ("7402000777", "7402000888", "7402000999"):
        assert raw not in text
    assert f"in chat {pseudonym(7402000777)}." in text
    assert f"with id {pseudonym(-1007402000888)} from {pseudonym(-7402000999)}" in text
