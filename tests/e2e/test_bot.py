"""The bot end to end: the real Dispatcher and aiogram `Bot` HTTP session against the local Bot
API server, the live Aksis client against the local portal, real PostgreSQL and Redis."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from uuid import UUID

import asyncpg
import pytest

from bot.status_message import StatusBoard
from dal.models import FailReason, RecordSource, Role, User
from dal.redis.connection import client as redis_client
from tests.classroom import STUDENTS
from tests.classroom import teacher_id as _teacher_id
from tests.classroom import text as _text
from tests.fakes.aksis_server import FakeAksis
from tests.harness import PASSWORD, Running, reply, running_bot


@pytest.fixture
async def bot(pg_dsn: str, redis_url: str, portal: FakeAksis) -> AsyncIterator[Running]:
    async with running_bot(pg_dsn=pg_dsn, redis_url=redis_url, aksis=portal) as running:
        yield running


async def test_a_class_from_login_to_end_session(
    bot: Running, pg_dsn: str, redis_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    teacher = bot.user(100, "Elif", "tr")
    students = [bot.user(200 + i, name.split()[0]) for i, (_, name, _) in enumerate(STUDENTS)]

    answer = await bot.login(teacher, "teacher1")
    assert "ELİF KARTAL" in _text(answer) and "Öğretim elemanı" in _text(answer)
    for user, (username, name, number) in zip(students, STUDENTS, strict=True):
        answer = await bot.login(user, username)
        assert name in _text(answer) and number in _text(answer) and "Student" in _text(answer)

    # The password message (the third message each user sent) was deleted.
    for user in [teacher, *students]:
        deleted = bot.telegram.deleted_message_ids(user.id)
        assert len(deleted) == 2, deleted  # the user name and the password messages

    code = await bot.start_session(teacher)
    assert len(code) == 6 and code.isdigit()

    a, b, c = students
    for student in students:  # enrolled, linked students hear that attendance is open
        assert "Attendance is open" in _text(await student.next_message())
    await a.send(code)
    assert "checked in" in _text(await a.next_message())
    await b.send(code)
    assert "checked in" in _text(await b.next_message())
    wrong = "000000" if code != "000000" else "111111"
    await c.send(wrong)
    assert "does not match" in _text(await c.next_message())
    await a.send(code)
    assert "already checked in" in _text(await a.next_message())

    # The teacher's status message is edited in place with the live count.
    status_id = next(m["message_id"] for m in teacher.messages if code in _text(m))

    def counted() -> bool:
        status = next(m for m in teacher.messages if m["message_id"] == status_id)
        return "Katılan: <b>2</b>" in _text(status)

    await teacher.wait_until(counted, timeout=10, what="the live count")

    teacher.mark_read()
    await teacher.send("/attendees")
    listing = await teacher.next_message()
    assert "AYŞE YILDIZ" in _text(listing) and "İSMAİL IŞIK" in _text(listing)
    assert "ÇAĞRI ÖZGÜR" not in _text(listing)

    # Reject B with a reason, add C by school number.
    await teacher.click_button("❌ 2024002", listing)
    assert "neden" in _text(await teacher.next_message())
    await teacher.send("left early")
    assert "reddedildi" in _text(await teacher.next_message())
    await teacher.click_button("➕ Öğrenci ekle", listing)
    await teacher.next_message()
    await teacher.send("2024003")
    assert "2024003" in _text(await teacher.next_message())

    await teacher.send("/end_session")
    ended = await teacher.next_message()
    assert "kapandı" in _text(ended)

    session = await bot.app.attendance.roster(
        teacher=await _session_of(bot, teacher.id), attendance_id=await _only_session_id(bot)
    )
    assert session is not None
    assert session.attendance.end_time is not None
    by_number = {r.student_number: r for r in session.records}
    assert set(by_number) == {"2024001", "2024002", "2024003"}
    assert by_number["2024001"].is_attended and by_number["2024001"].source is RecordSource.CODE
    assert not by_number["2024002"].is_attended
    # the reason code and the teacher's note are stored apart
    assert by_number["2024002"].fail_reason == FailReason.REJECTED
    assert by_number["2024002"].teacher_note == "left early"
    assert by_number["2024003"].is_attended and by_number["2024003"].source is RecordSource.TEACHER

    # The password is nowhere: not in the logs, the Redis keyspace or any PostgreSQL table.
    assert PASSWORD not in caplog.text
    client = redis_client(redis_url, decode_responses=True)
    try:
        async for key in client.scan_iter(count=500):
            dump = await client.dump(key)
            assert dump is None or PASSWORD.encode() not in dump, key
    finally:
        await client.aclose()
    conn = await asyncpg.connect(pg_dsn)
    try:
        for table in ("users", "schedule_entries", "attendances", "attendance_records"):
            rows = await conn.fetch(f"SELECT * FROM {table}")
            assert all(PASSWORD not in str(dict(r)) for r in rows), table
    finally:
        await conn.close()


async def _session_of(bot: Running, telegram_id: int):  # type: ignore[no-untyped-def]
    user = await bot.app.accounts.current_user(telegram_id=telegram_id)
    assert user is not None
    return user


async def _only_session_id(bot: Running) -> UUID:
    ids = await bot.app.redis.sessions.get_due_attendance_ids(
        now=datetime.now(UTC) + timedelta(days=1)
    )
    assert len(ids) == 1
    return ids[0]


async def test_burst_of_300_check_ins_with_429s(bot: Running) -> None:
    teacher = bot.user(100, "Elif")
    await bot.login(teacher, "teacher1")
    code = await bot.start_session(teacher)
    students = [bot.user(10_000 + i, f"S{i}") for i in range(300)]
    pg = bot.app.pg
    now = datetime.now(UTC)
    for i, user in enumerate(students):
        await pg.accounts.link_telegram(
            user=User(
                user_school_number=f"9{i:06d}", user_full_name=f"ÖĞRENCİ {i}", role=Role.STUDENT
            ),
            telegram_id=user.id,
            language="en",
        )
    del now
    bot.telegram.fail_next("sendMessage", 40, retry_after=1)
    await asyncio.gather(*(u.send(code) for u in students))
    for user in students:
        text = _text(await reply(user, timeout=60))
        assert "checked in" in text or "not in your Aksis schedule" in text
    roster = await bot.app.attendance.status(attendance_id=await _only_session_id(bot))
    assert roster is not None
    assert len(roster.records) == 300
    assert len({r.student_number for r in roster.records}) == 300


async def test_odd_updates_get_an_answer_or_are_ignored(bot: Running) -> None:
    user = bot.user(400, "Odd")
    await user.send("x" * 3000)
    assert "too long" in _text(await user.next_message())
    await user.send("hello")
    assert "did not understand" in _text(await user.next_message())
    await bot.telegram.deliver_update(
        {
            "message": {
                "message_id": 77,
                "from": user.as_user(),
                "chat": {"id": user.id, "type": "private", "first_name": "Odd"},
                "date": 0,
                "photo": [{"file_id": "p", "file_unique_id": "p", "width": 1, "height": 1}],
            }
        }
    )
    assert "only read text" in _text(await user.next_message())
    sent = await user.send("123456")
    await user.edit(sent, "654321")
    assert "Link your Aksis account" in _text(await user.next_message())
    await asyncio.sleep(0.3)
    assert len(user.unread) == 0  # the edit was ignored


async def test_a_blocked_chat_is_recorded_and_skipped(bot: Running) -> None:
    teacher = bot.user(100, "Elif")
    blocker = bot.user(201, "Ayşe")
    await bot.login(teacher, "teacher1")
    await bot.login(blocker, "student1")
    bot.telegram.forbid_chat(blocker.id)
    await bot.start_session(teacher)
    pg = bot.app.pg

    async def skipped() -> bool:
        return await pg.accounts.get_contacts(school_numbers=["2024001"]) == []

    for _ in range(50):
        if await skipped():
            break
        await asyncio.sleep(0.1)
    assert await skipped()
    bot.telegram.allow_chat(blocker.id)
    await bot.login(blocker, "student1")  # linking again makes the account reachable
    assert [c.telegram_id for c in await pg.accounts.get_contacts(school_numbers=["2024001"])] == [
        201
    ]


async def test_shutdown_lets_a_running_handler_finish(bot: Running) -> None:
    user = bot.user(201, "Ayşe")
    user.mark_read()
    await user.send("/login")
    await user.next_message()
    await user.send("student1")
    await user.next_message()
    bot.aksis.delay_seconds = 0.3  # each portal page: the login takes over a second
    await user.send(PASSWORD)
    assert "Signing in" in _text(await user.next_message())
    await bot.shut_down()  # as on SIGTERM, mid-login
    assert "Linked" in _text(user.messages[-1])


async def test_another_replica_edits_the_status_in_the_teachers_language(bot: Running) -> None:
    teacher = bot.user(100, "Elif", "tr")
    student = bot.user(201, "Ayşe")
    await bot.login(teacher, "teacher1")
    await bot.login(student, "student1")
    code = await bot.start_session(teacher)
    await student.send(code)
    await reply(student)
    other_replica = StatusBoard(bot=bot.app.bot, attendance=bot.app.attendance)
    await other_replica.refresh(await _only_session_id(bot))
    status = next(m for m in teacher.messages if code in _text(m))
    assert "Katılan: <b>1</b>" in _text(status)


async def test_history_correction_and_csv_after_finalization(
    pg_dsn: str, redis_url: str, portal: FakeAksis
) -> None:
    async with running_bot(
        pg_dsn=pg_dsn, redis_url=redis_url, aksis=portal, finalize_interval_seconds=1
    ) as bot:
        teacher = bot.user(100, "Elif")
        present, absent = bot.user(201, "Ayşe"), bot.user(202, "İsmail")
        await bot.login(teacher, "teacher1")
        await bot.login(present, "student1")
        await bot.login(absent, "student2")
        code = await bot.start_session(teacher)
        await present.send(code)
        await reply(present)
        await teacher.send("/end_session")
        await teacher.next_message()
        for _ in range(150):  # finalization waits a few seconds after the end, then runs
            saved = await bot.app.pg.reports.get_attendances(teacher_school_number=_teacher_id(bot))
            if saved:
                break
            await asyncio.sleep(0.1)
        assert len(saved) == 1
        # The result notice comes through the outbox after the save: let it arrive first, so
        # that the sheet below stays the last message.
        await teacher.wait_until(
            lambda: any("📊" in _text(m) for m in teacher.messages),
            timeout=15,
            what="the result notice",
        )

        teacher.mark_read()
        await teacher.send("/history")
        listing = await teacher.next_message()
        while "🗂" not in _text(listing):  # the finalization summary may arrive in between
            listing = await teacher.next_message()
        assert "1/2" in _text(teacher.inline_buttons(listing)[0])  # 1 of 2 enrolled present
        await teacher.click(listing, teacher.inline_buttons(listing)[0]["callback_data"])
        await teacher.wait_until(lambda: "2024002" in str(teacher.messages[-1]), what="sheet")
        sheet = teacher.messages[-1]
        absent_button = next(b for b in teacher.inline_buttons(sheet) if "2024002" in b["text"])
        assert absent_button["text"].startswith("❌")
        query = await teacher.click(sheet, absent_button["callback_data"])
        assert "2024002" in (await teacher.callback_answer(query)).get("text", "")
        records = await bot.app.pg.attendance.get_attendance_records(
            attendance_id=saved[0].attendance_id
        )
        assert [r.is_attended for r in records] == [True, True]

        await teacher.click_button("⬇️ CSV", teacher.messages[-1])
        await teacher.wait_until(lambda: "document" in teacher.messages[-1], what="the CSV")
        csv_text = bot.telegram.document_of(teacher.messages[-1]).content.decode("utf-8-sig")
        assert "2024001" in csv_text and "2024002" in csv_text and "AYŞE YILDIZ" in csv_text
        assert csv_text.count("present") == 2

        absent.mark_read()
        await absent.send("/my_attendance")
        mine = _text(await reply(absent))
        while "🗂" not in mine:  # skip the finalization result if it comes late
            mine = _text(await reply(absent))
        assert "1/1" in mine and "YBSB1008" in mine  # the correction reached the student's view


async def test_two_bots_built_in_one_process_both_answer(
    bot: Running, pg_dsn: str, redis_url: str, portal: FakeAksis
) -> None:
    """Every build gets routers, gates and middlewares of its own (handlers.build_router): a
    second bot in the same process, as tests and benches build them, takes nothing from the
    first, and the first still answers once the second is gone."""
    student = bot.user(201, "Ayşe")
    await bot.login(student, "student1")
    async with running_bot(
        pg_dsn=pg_dsn, redis_url=redis_url, aksis=portal, keep_data=True
    ) as second:
        # the same stores: the account linked through the first bot is linked for the second
        for running in (bot, second, bot):
            user = running.user(201, "Ayşe")
            await user.send("/start_session")
            assert "Only teachers" in _text(await reply(user))  # the teachers' gate
            await user.send("hello")
            assert "did not understand" in _text(await reply(user))  # the catch-all
    await student.send("/start_session")
    assert "Only teachers" in _text(await reply(student))
