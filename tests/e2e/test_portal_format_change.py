"""A portal format change through the real bot: the login says the portal
changed, the schedule cached before stays, and the metric behind the README's "portal
changed" alert counts it."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from tests.fakes.aksis_server import FakeAksis, portal_lesson
from tests.harness import running_bot

TEACHER = "Doç. Dr. ELİF KARTAL"


async def test_a_schedule_answer_the_bot_cannot_read_keeps_the_cached_schedule(
    pg_dsn: str, redis_url: str
) -> None:
    now = datetime.now(UTC)
    lessons = [
        portal_lesson(now + timedelta(days=d), code=f"YBSB10{d:02d}", hocalar=TEACHER)
        for d in range(1, 4)
    ]
    async with FakeAksis() as portal:
        portal.add_student("student1", "pw", "AYŞE YILDIZ", "2024001", lessons=lessons)
        async with running_bot(pg_dsn=pg_dsn, redis_url=redis_url, aksis=portal) as bot:
            user = bot.user(200, "Ayşe")
            first = await bot.login(user, "student1", "pw")
            assert "3 lessons" in str(first.get("text")), first

            # The portal renames the fields of every entry.
            portal.set_lessons(
                "student1",
                [
                    {"Baslangic": x["Start"], "Bitis": x["End"], "Title": x["Title"]}
                    for x in (lesson.to_json() for lesson in lessons)
                ],
            )
            second = await bot.login(user, "student1", "pw")

            assert "Aksis answered in a way I do not recognise" in str(second.get("text"))
            cached = await bot.app.pg.schedules.get_schedule(
                school_number="2024001", start=now, end=now + timedelta(days=7)
            )
            assert [e.course_code for e in cached] == ["YBSB1001", "YBSB1002", "YBSB1003"]
            changed = bot.app.metrics.registry.get_sample_value(
                "attn_portal_logins_total", {"outcome": "changed"}
            )
            assert changed == 1
