"""Term figures end to end: the real bot against the local Bot API and Aksis servers, with real
PostgreSQL and Redis. A session is taken and finalized; the teacher excuses an absence from
/history with a reason, /export delivers the XLSX and the CSV (sendDocument) with a preview of
the students below the threshold; a student is refused /export (typed, or a forged button)
and sees the per-course percentage in /my_attendance."""

from __future__ import annotations

import asyncio
import csv
import io
from typing import Any

import openpyxl
import pytest

from services.reports import course_token
from tests.classroom import teacher_id as _teacher_id
from tests.classroom import text as _text
from tests.fakes.aksis_server import FakeAksis
from tests.harness import Running, reply, running_bot
from ui.i18n import t

pytestmark = [pytest.mark.slow, pytest.mark.stores]


async def _finalized(bot: Running) -> None:
    for _ in range(150):  # finalization waits a few seconds after the end, then runs
        if await bot.app.pg.reports.get_attendances(teacher_school_number=_teacher_id(bot)):
            return
        await asyncio.sleep(0.1)
    raise AssertionError("the session was not finalized")


async def _wait_text(user: Any, needle: str) -> dict[str, Any]:
    await user.wait_until(
        lambda: any(needle in _text(m) for m in user.messages), timeout=10, what=needle
    )
    return next(m for m in reversed(user.messages) if needle in _text(m))


async def test_export_excuse_and_my_attendance_through_the_bot(
    pg_dsn: str,
    redis_url: str,
    portal: FakeAksis,
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
        await _finalized(bot)
        # The result notice comes through the outbox after the save: let it arrive first, so
        # that the sheets below stay the last message.
        # (The student present on time is not told again: the check-in answer said it.)
        for user in (teacher, absent):
            await _wait_text(user, "📊")

        # The teacher excuses the absent student from /history, with a reason.
        teacher.mark_read()
        await teacher.send("/history")
        listing = await _wait_text(teacher, "Your recent sessions")
        await teacher.click(listing, teacher.inline_buttons(listing)[0]["callback_data"])
        await teacher.wait_until(lambda: "2024002" in str(teacher.messages[-1]), what="sheet")
        await teacher.click_button(t("button.excuse", locale="en"), teacher.messages[-1])
        choose = await _wait_text(teacher, t("excuse.choose", locale="en"))
        (button,) = teacher.inline_buttons(choose)
        assert "2024002" in button["text"]
        await teacher.click(choose, button["callback_data"])
        await _wait_text(teacher, "Why is 2024002 excused")
        await teacher.send("Sağlık raporu")
        await _wait_text(teacher, "2024002 is excused: Sağlık raporu")

        # /export: course, format, then the preview and both documents.
        teacher.mark_read()
        await teacher.send("/export")
        courses = await _wait_text(teacher, t("export.choose_course", locale="en"))
        (course_button,) = teacher.inline_buttons(courses)
        await teacher.click(courses, course_button["callback_data"])
        formats = await _wait_text(teacher, "which format?")
        await teacher.click_button("XLSX + CSV", formats)
        await teacher.wait_until(
            lambda: sum("document" in m for m in teacher.messages) >= 2, what="two documents"
        )
        preview = await _wait_text(teacher, "Below 70%")
        assert "1 session, 2 students" in _text(preview) and "nobody" in _text(preview)
        documents = [bot.telegram.document_of(m) for m in teacher.messages if "document" in m]
        names = [d.filename for d in documents]
        assert names[0].endswith(".xlsx") and names[1].endswith(".csv")
        assert names[0].startswith("YBSB1008_")
        sheet = openpyxl.load_workbook(io.BytesIO(documents[0].content)).worksheets[0]
        rows = {row[0]: row for row in sheet.iter_rows(values_only=True)}
        assert rows["2024001"][1:3] == ("AYŞE YILDIZ", "P")
        assert rows["2024002"][1:3] == ("İSMAİL IŞIK", "E")
        assert rows["2024002"][-4:] == (0, 1, 1, 1.0)  # excused: not held against them
        table = list(
            csv.DictReader(io.StringIO(documents[1].content.decode("utf-8-sig")), delimiter=";")
        )
        assert {(r["student_number"], r["status"]) for r in table} == {
            ("2024001", "present"),
            ("2024002", "excused"),
        }

        # The Moodle button: the mod_attendance import and the gradebook file, nothing left
        # out (no record is pending).
        teacher.mark_read()
        await teacher.click_button(t("export.moodle", locale="en"), formats)
        await teacher.wait_until(
            lambda: sum("document" in m for m in teacher.unread) >= 2, what="the Moodle files"
        )
        moodle = [bot.telegram.document_of(m) for m in teacher.unread if "document" in m]
        assert [d.filename.split("_2")[0] for d in moodle] == [
            "YBSB1008_moodle_attendance",
            "YBSB1008_moodle_grades",
        ]
        marks = list(csv.DictReader(io.StringIO(moodle[0].content.decode("utf-8"))))
        assert {(r["idnumber"], r["status"]) for r in marks} == {("2024001", "P"), ("2024002", "E")}
        grades = list(csv.reader(io.StringIO(moodle[1].content.decode("utf-8"))))
        assert grades == [
            ["ID number", "Attendance % (YBSB1008)"],
            ["2024001", "100.0"],
            ["2024002", "100.0"],
        ]
        assert not any("pending review" in _text(m) for m in teacher.unread)

        # A student is refused /export, typed or through a forged button, and gets nothing.
        files_before = len(bot.telegram.files)
        present.mark_read()
        await present.send("/export")
        assert _text(await reply(present)) == t("auth.teachers_only", locale="en")
        await present.send("/my_attendance")
        mine = await _wait_text(present, "attended / held")
        query = await present.click(mine, f"ef:{course_token('YBSB1008')}:both")
        answer = await present.callback_answer(query)
        assert answer.get("text") == t("auth.teachers_only", locale="en")
        await asyncio.sleep(0.3)
        assert len(bot.telegram.files) == files_before
        (saved,) = await bot.app.pg.reports.get_attendances(teacher_school_number=_teacher_id(bot))
        aid = saved.attendance_id.hex
        records = await bot.app.pg.attendance.get_attendance_records(
            attendance_id=saved.attendance_id
        )
        for forged in (f"ht:{aid}:2024001:0", f"he:{aid}:2024001", f"hd:{aid}"):
            query = await present.click(mine, forged)
            answer = await present.callback_answer(query)
            assert answer.get("text") == t("auth.teachers_only", locale="en")
        assert (
            await bot.app.pg.attendance.get_attendance_records(attendance_id=saved.attendance_id)
            == records
        )

        # /my_attendance: one line per course with the percentage, and the dated list.
        assert "YBSB1008" in _text(mine) and "1/1 · 100%" in _text(mine)
        await present.click(mine, present.inline_buttons(mine)[0]["callback_data"])
        # Not necessarily the last message: the session's result notice comes through the
        # outbox and may arrive after it.
        await present.wait_until(
            lambda: any("🗂" in _text(m) and "✅" in _text(m) for m in present.messages),
            what="dated list",
        )

        # A student added to the saved session afterwards: a correction like the others.
        teacher.mark_read()
        await teacher.send("/history")
        listing = await _wait_text(teacher, "Your recent sessions")
        await teacher.click(listing, teacher.inline_buttons(listing)[0]["callback_data"])
        await teacher.wait_until(lambda: "2024002" in str(teacher.messages[-1]), what="sheet")
        await teacher.click_button(t("button.add_saved", locale="en"), teacher.messages[-1])
        await _wait_text(teacher, t("add.ask_number", locale="en"))
        await teacher.send("2024003")
        await _wait_text(teacher, "2024003 is added")
        trail = await bot.app.pg.corrections.get_corrections(attendance_id=saved.attendance_id)
        assert [(c.action, c.student_number) for c in trail] == [
            ("excused", "2024002"),
            ("added", "2024003"),
        ]
