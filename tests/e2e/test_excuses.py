"""Excuse requests end to end: the real bot against the local Bot API and Aksis servers, real
PostgreSQL and Redis. A student asks from /excuse with a photo; the teacher gets it through the
outbox (sendPhoto with the photo's file_id and Approve / Reject), approves, and the record is
excused in PostgreSQL with a correction row; the student is told. A second approval is answered
"already decided"; a request sent without a document is rejected with a reason; a late
request, another student's session and the wrong kind of file are refused; a check-in code
sent mid-request is a check-in and the request goes on; an apology in advance is approved."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
import pytest

from tests.classroom import STUDENTS, TEACHER_NAME
from tests.classroom import teacher_id as _teacher_id
from tests.classroom import text as _text
from tests.e2e.test_term import _finalized
from tests.fakes.aksis_server import FakeAksis, portal_lesson
from tests.harness import PASSWORD, reply, running_bot
from ui.i18n import t

pytestmark = [pytest.mark.slow, pytest.mark.stores]


def _en(key: str, **values: object) -> str:
    return t(key, locale="en", **values)


@pytest.fixture
async def portal() -> AsyncIterator[FakeAksis]:
    """Today's lesson (running now) and the same lesson next week, for everyone."""
    async with FakeAksis() as fake:
        now = datetime.now(UTC)
        lessons = [
            portal_lesson(now - timedelta(minutes=5), minutes=60, hocalar=TEACHER_NAME),
            portal_lesson(now + timedelta(days=7), minutes=60, hocalar=TEACHER_NAME),
        ]
        fake.add_teacher("teacher1", PASSWORD, TEACHER_NAME, lessons=lessons)
        for username, name, number in STUDENTS:
            fake.add_student(username, PASSWORD, name, number, lessons=lessons)
        fake.add_student(
            "student4",
            PASSWORD,
            "DENİZ AK",
            "2024004",
            lessons=[portal_lesson(now, code="MATH101", name="CALCULUS", hocalar="Dr. X Y")],
        )
        yield fake


def _button(message: dict[str, Any], starts: str) -> dict[str, Any]:
    for row in (message.get("reply_markup") or {}).get("inline_keyboard", []):
        for button in row:
            if str(button.get("text", "")).startswith(starts):
                return dict(button)
    raise AssertionError(f"no button starting {starts!r} in {message.get('reply_markup')}")


def _body(message: dict[str, Any]) -> str:
    return str(message.get("text") or message.get("caption") or "")


async def _wait_body(user: Any, needle: str) -> dict[str, Any]:
    """The latest unread message whose text or caption holds `needle` (waiting for it); the
    chat is marked read after it."""
    await user.wait_until(
        lambda: any(needle in _body(m) for m in user.unread), timeout=10, what=needle
    )
    found = next(m for m in reversed(user.unread) if needle in _body(m))
    user.mark_read()
    return found


async def _alert(user: Any, message: dict[str, Any], data: str) -> str:
    answer = await user.callback_answer(await user.click(message, data))
    return str(answer.get("text") or "")


async def test_excuse_requests_through_the_bot(
    pg_dsn: str, redis_url: str, portal: FakeAksis
) -> None:
    async with running_bot(
        pg_dsn=pg_dsn,
        redis_url=redis_url,
        aksis=portal,
        finalize_interval_seconds=1,
        excuse_deadline_days=3,
    ) as bot:
        teacher = bot.user(100, "Elif")
        present, sick, lazy, outsider = (
            bot.user(201, "Ayşe"),
            bot.user(202, "İsmail"),
            bot.user(203, "Çağrı"),
            bot.user(204, "Deniz"),
        )
        await bot.login(teacher, "teacher1")
        for user, name in ((present, "student1"), (sick, "student2"), (lazy, "student3")):
            await bot.login(user, name)
        await bot.login(outsider, "student4")
        code = await bot.start_session(teacher)
        await present.send(code)
        await reply(present)
        await teacher.send("/end_session")
        await teacher.next_message()
        await _finalized(bot)
        # The student present on time gets no result (the check-in answer said it already).
        for user in (teacher, sick, lazy):
            await user.wait_until(lambda u=user: any("📊" in _body(m) for m in u.messages))
            user.mark_read()
        (saved,) = await bot.app.pg.reports.get_attendances(teacher_school_number=_teacher_id(bot))
        aid = saved.attendance_id
        conn = await asyncpg.connect(pg_dsn)
        try:
            # --- /excuse with a photo --------------------------------------------------
            sick.mark_read()
            await sick.send("/excuse")
            choose = await _wait_body(sick, "Which session is your excuse for?")
            assert _button(choose, "🗓")  # next week's lesson: an apology in advance
            await sick.click(choose, _button(choose, "❌")["callback_data"])
            await _wait_body(sick, "Write the reason")
            await sick.send("Hastaydım, rapor ekte")
            ask_file = await _wait_body(sick, "send it now as a photo or as a PDF")
            assert _button(ask_file, _en("button.excuse_no_file"))
            # A check-in code mid-request is taken as a check-in (this session is over).
            sick.mark_read()
            await sick.send(code)
            answer = await reply(sick)
            assert "does not match" in _text(answer) or "already closed" in _text(answer)
            # The wrong kind of file, and a PDF over the limit: refused, the step stays.
            await sick.send_document("report.docx", "application/msword", 5000)
            await _wait_body(sick, "Only a photo or a PDF file can be attached")
            await sick.send_document("big.pdf", "application/pdf", 30 * 1024 * 1024)
            await _wait_body(sick, "This file is too large")
            await sick.send_photo(file_id="AgACAgRAPOR", file_size=150_000)
            await _wait_body(sick, "went to your teacher")

            photos = await bot.telegram.wait_for_calls("sendphoto", 1, timeout=10)
            params = photos[0].params
            assert int(params["chat_id"]) == teacher.id
            assert params["photo"] == "AgACAgRAPOR"
            assert "Hastaydım, rapor ekte" in params["caption"]
            assert "İSMAİL IŞIK (2024002)" in params["caption"]
            notice = await _wait_body(teacher, "Excuse request #")
            assert "photo" in notice
            approve = _button(notice, _en("button.excuse_approve"))
            reject = _button(notice, _en("button.excuse_reject"))
            assert approve["callback_data"].startswith("xd:a:")
            assert reject["callback_data"].startswith("xd:r:")
            rid = int(approve["callback_data"].rsplit(":", 1)[1])

            # A student cannot decide it, nor ask about a session that is not theirs.
            assert await _alert(sick, choose, approve["callback_data"]) == _en("auth.teachers_only")
            assert await _alert(outsider, choose, f"xs:{aid.hex}") == _en("excreq.not_yours")
            assert await _alert(present, choose, f"xs:{aid.hex}") == _en("excreq.not_absent")

            # --- approval: the record becomes excused through the correction path ---
            teacher.mark_read()
            text = await _alert(teacher, notice, approve["callback_data"])
            assert text.startswith("Approved: 2024002 is excused")
            status = await conn.fetchval(
                "SELECT status FROM attendance_records WHERE attendance_id = $1"
                " AND student_number = '2024002'",
                aid,
            )
            assert status == "excused"
            trail = await conn.fetch(
                "SELECT action, old_status, new_status, reason, changed_by FROM"
                " record_corrections WHERE attendance_id = $1 AND student_number = '2024002'",
                aid,
            )
            assert [tuple(r) for r in trail] == [
                ("excused", "absent", "excused", f"#{rid} Hastaydım, rapor ekte", _teacher_id(bot))
            ]
            row = await conn.fetchrow(
                "SELECT status, decided_by, file_id, file_kind FROM excuse_requests"
                " WHERE request_id = $1",
                rid,
            )
            assert tuple(row) == ("approved", _teacher_id(bot), "AgACAgRAPOR", "photo")
            told = await _wait_body(sick, "is approved")
            assert "DATA STRUCTURES" in _text(told)
            # A second press: answered, nothing changes.
            assert await _alert(teacher, notice, approve["callback_data"]) == _en(
                "excreq.already_decided"
            )
            assert await _alert(teacher, notice, reject["callback_data"]) == _en(
                "excreq.already_decided"
            )
            assert len(await conn.fetch("SELECT 1 FROM record_corrections")) == 1

            # --- from /my_attendance, without a document: rejected with a reason -------
            lazy.mark_read()
            await lazy.send("/my_attendance")
            mine = await _wait_body(lazy, "attended / held")
            await lazy.click(mine, lazy.inline_buttons(mine)[0]["callback_data"])
            await lazy.wait_until(
                lambda: any("🩺" in str(m.get("reply_markup")) for m in lazy.messages),
                what="the excuse button",
            )
            detail = next(m for m in lazy.messages if "🩺" in str(m.get("reply_markup")))
            excuse_button = _button(detail, "🩺")
            assert excuse_button["callback_data"] == f"xs:{aid.hex}"
            await lazy.click(detail, excuse_button["callback_data"])
            await _wait_body(lazy, "Write the reason")
            await lazy.send("Otobüs gelmedi")
            ask_file = await _wait_body(lazy, "send it now as a photo or as a PDF")
            await lazy.click(
                ask_file, _button(ask_file, _en("button.excuse_no_file"))["callback_data"]
            )
            await _wait_body(lazy, "went to your teacher")
            second = await _wait_body(teacher, "Otobüs gelmedi")
            assert "photo" not in second
            # Decided from /history this time: the sheet offers the waiting request.
            await teacher.send("/history")
            listing = await _wait_body(teacher, "Your recent sessions")
            await teacher.click(listing, teacher.inline_buttons(listing)[0]["callback_data"])
            await teacher.wait_until(
                lambda: "Excuse requests (1)" in str(teacher.messages[-1].get("reply_markup")),
                what="the sheet with its waiting request",
            )
            teacher.mark_read()
            await teacher.click_button("📨 Excuse requests (1)", teacher.messages[-1])
            listed = await _wait_body(teacher, "Otobüs gelmedi")
            assert "ÇAĞRI ÖZGÜR (2024003)" in _body(listed)
            await teacher.click(
                listed, _button(listed, _en("button.excuse_reject"))["callback_data"]
            )
            await _wait_body(teacher, "rejected? Send the reason")
            await teacher.send("Mazeret geçerli değil")
            await _wait_body(teacher, "is rejected; ÇAĞRI ÖZGÜR is told")
            told = await _wait_body(lazy, "is rejected")
            assert "Mazeret geçerli değil" in _text(told)
            status = await conn.fetchval(
                "SELECT status FROM attendance_records WHERE attendance_id = $1"
                " AND student_number = '2024003'",
                aid,
            )
            assert status == "absent"

            # --- after the deadline: refused with the reason --------------------------
            await conn.execute(
                "UPDATE attendances SET start_time = start_time - interval '4 days'"
                " WHERE attendance_id = $1",
                aid,
            )
            refusal = await _alert(lazy, detail, excuse_button["callback_data"])
            assert refusal.startswith("Too late for an excuse: requests are taken until 3 days")
            lazy.mark_read()
            await lazy.send("/excuse")
            choose = await _wait_body(lazy, "Which session is your excuse for?")
            assert "❌" not in str(choose.get("reply_markup"))  # only next week's lesson

            # --- an apology in advance, approved before the lesson --------------------
            await lazy.click(choose, _button(choose, "🗓")["callback_data"])
            await _wait_body(lazy, "Write the reason")
            await lazy.send("Hastane randevusu")
            ask_file = await _wait_body(lazy, "send it now as a photo or as a PDF")
            await lazy.send_document("randevu.pdf", "application/pdf", 80_000, file_id="BQPDF1")
            await _wait_body(lazy, "Your apology for")
            advance = await _wait_body(teacher, "Apology in advance #")
            assert advance["document"]["file_id"] == "BQPDF1"
            text = await _alert(
                teacher, advance, _button(advance, _en("button.excuse_approve"))["callback_data"]
            )
            assert "will count as excused" in text
            await _wait_body(lazy, "your absence will count as excused")
            row = await conn.fetchrow(
                "SELECT status, attendance_id, lesson_code, file_kind FROM excuse_requests"
                " WHERE student_number = '2024003' ORDER BY request_id DESC LIMIT 1"
            )
            assert tuple(row) == ("approved", None, "YBSB1008", "pdf")

            # --- /cancel and the Cancel button leave nothing behind --------------------
            sick.mark_read()
            await sick.send("/excuse")
            choose = await _wait_body(sick, "Which session is your excuse for?")
            await sick.click(choose, _button(choose, "🗓")["callback_data"])
            asked = await _wait_body(sick, "Write the reason")
            await sick.click(asked, _button(asked, _en("button.cancel"))["callback_data"])
            await _wait_body(sick, _en("excreq.cancelled"))
            await sick.send("Bu bir mazeret değil")
            assert _text(await reply(sick)) == _en("text.unknown")
            count = await conn.fetchval(
                "SELECT count(*) FROM excuse_requests WHERE student_number = '2024002'"
            )
            assert count == 1
        finally:
            await conn.close()
