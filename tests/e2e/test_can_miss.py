""" "You can miss k more" end to end: the real bot against the local Bot API and Aksis servers,
real PostgreSQL and Redis. A student misses the sessions of a course with one weekly slot over
a ten-week term (TERM_WEEKS=10, 70 %): /my_attendance says 2 more after the first miss and 1
more after the second, when the one warning of that level arrives; neither another
finalization nor a restart repeats it; the crossing below 70 % warns once."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from tests.classroom import teacher_id as _teacher_id
from tests.classroom import text as _text
from tests.fakes.aksis_server import FakeAksis
from tests.harness import Running, reply, running_bot
from ui.i18n import t

pytestmark = [pytest.mark.slow, pytest.mark.stores]

SETTINGS: dict[str, Any] = {
    "finalize_interval_seconds": 1,
    "term_weeks": 10,
    "attendance_warning_percent": 70,
    "attendance_warning_min_sessions": 4,
}
ONE_MORE = "you can miss only 1 more session"
BELOW = "below 70%"


async def _session(bot: Running, *, attend: bool, held: int) -> None:
    """One session of the lesson on now: opened, the present student checks in (and the
    other one too when `attend`), ended, finalized."""
    teacher, present, student = bot.user(100, "Elif"), bot.user(201, "Ayşe"), bot.user(202)
    code = await bot.start_session(teacher)
    for user in (present, student) if attend else (present,):
        user.mark_read()
        await user.send(code)
        assert "checked in" in _text(await reply(user))
    await teacher.send("/end_session")
    await teacher.next_message()
    for _ in range(200):
        saved = await bot.app.pg.reports.get_attendances(teacher_school_number=_teacher_id(bot))
        if len(saved) == held:
            return
        await asyncio.sleep(0.1)
    raise AssertionError(f"session {held} was not finalized")


async def _summary(bot: Running) -> str:
    student = bot.user(202)
    student.mark_read()
    await student.send("/my_attendance")
    await student.wait_until(
        lambda: any("attended / held" in _text(m) for m in student.unread), what="/my_attendance"
    )
    return next(_text(m) for m in student.unread if "attended / held" in _text(m))


def _count(bot: Running, needle: str) -> int:
    return sum(needle in _text(m) for m in bot.user(202).messages)


async def test_you_can_miss_k_more_and_the_warnings_fire_once(
    pg_dsn: str,
    redis_url: str,
    portal: FakeAksis,
) -> None:
    async with running_bot(pg_dsn=pg_dsn, redis_url=redis_url, aksis=portal, **SETTINGS) as bot:
        await bot.login(bot.user(100, "Elif"), "teacher1")
        await bot.login(bot.user(201, "Ayşe"), "student1")
        await bot.login(bot.user(202, "İsmail"), "student2")
        await _session(bot, attend=False, held=1)
        line = await _summary(bot)
        assert "you can miss 2 more" in line and "you can miss 1 more" not in line
        assert _count(bot, ONE_MORE) == 0

        await _session(bot, attend=False, held=2)
        assert "you can miss 1 more" in await _summary(bot)
        student = bot.user(202)
        await student.wait_until(lambda: _count(bot, ONE_MORE) == 1, what="the k = 1 warning")

    # A restart, then a session the student attends: still 1 more, and no second warning.
    async with running_bot(
        pg_dsn=pg_dsn, redis_url=redis_url, aksis=portal, keep_data=True, **SETTINGS
    ) as bot:
        await _session(bot, attend=True, held=3)
        assert "you can miss 1 more" in await _summary(bot)
        await asyncio.sleep(1.5)  # time for a repeated notice to come through the outbox
        assert _count(bot, ONE_MORE) == 0  # a new Bot API server: only this run's messages

        # Missed again: 1/4 is below 70 %, warned once; once more below, no repeat.
        await _session(bot, attend=False, held=4)
        student = bot.user(202)
        await student.wait_until(lambda: _count(bot, BELOW) == 1, what="the crossing warning")
        line = await _summary(bot)
        assert t("my.below", locale="en", threshold="70").strip() in line
        await _session(bot, attend=False, held=5)
        await _summary(bot)
        await asyncio.sleep(1.5)
        assert _count(bot, BELOW) == 1 + sum(
            BELOW in _text(m) and "attended / held" in _text(m) for m in student.messages
        )
        assert _count(bot, ONE_MORE) == 0
