"""The class most end-to-end tests play: ELİF KARTAL teaching a lesson that is on now, three
students enrolled in it and a fourth enrolled in another lesson only. tests/fixtures.py serves
it as the `portal` fixture; a module that needs another class defines its own `portal`."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import TYPE_CHECKING

from tests.fakes.aksis_server import FakeAksis, portal_lesson
from tests.harness import PASSWORD

if TYPE_CHECKING:
    from tests.harness import Running

TEACHER_NAME = "Doç. Dr. ELİF KARTAL"
STUDENTS = [
    ("student1", "AYŞE YILDIZ", "2024001"),
    ("student2", "İSMAİL IŞIK", "2024002"),
    ("student3", "ÇAĞRI ÖZGÜR", "2024003"),
]


def lesson(now: datetime) -> object:
    return portal_lesson(now - timedelta(minutes=5), minutes=60, hocalar=TEACHER_NAME)


def seat_class(fake: FakeAksis, now: datetime) -> None:
    """The teacher (teacher1) and the students on `fake`."""
    fake.add_teacher("teacher1", PASSWORD, TEACHER_NAME, lessons=[lesson(now)])
    for username, name, number in STUDENTS:
        fake.add_student(username, PASSWORD, name, number, lessons=[lesson(now)])
    # Enrolled in another lesson only: a check-in to ELİF KARTAL's lesson needs review.
    fake.add_student(
        "student4",
        PASSWORD,
        "DENİZ AK",
        "2024004",
        lessons=[portal_lesson(now, code="MATH101", name="CALCULUS", hocalar="Dr. X Y")],
    )


def text(message: dict[str, object]) -> str:
    return str(message.get("text") or "")


def teacher_id(bot: Running) -> str:
    """The teacher's staff identifier as the bot stores it (keyed, never the user name)."""
    from services.aksis import staff_identifier

    return staff_identifier("teacher1", bot.settings.key("staff_id_key"))
