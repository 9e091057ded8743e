"""Demo mode: fixed accounts whose lessons are on at any hour of the day."""

from __future__ import annotations

import itertools
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from dal.models import Role
from services.aksis import InvalidCredentials, staff_identifier
from services.demo_aksis import DEMO_PASSWORD, DemoAksisClient
from services.lesson_finder import current_lesson, lessons_for_teacher
from services.text import person_key
from tests.fakes import FakeAksis

IST = ZoneInfo("Europe/Istanbul")
KEY = "demo-test-key"


def frozen(moment: datetime) -> Callable[[], datetime]:
    return lambda: moment


def demo(moment: datetime, tz: ZoneInfo = IST) -> DemoAksisClient:
    return DemoAksisClient(tz, frozen(moment), staff_id_key=KEY)


@pytest.mark.parametrize(
    "moment",
    [
        datetime(2025, 2, 18, 0, 0, tzinfo=IST),
        datetime(2025, 2, 18, 0, 30, tzinfo=IST),
        datetime(2025, 2, 18, 2, 59, 59, tzinfo=IST),  # 23:59:59 UTC the day before
        datetime(2025, 2, 18, 12, 0, tzinfo=IST),
        datetime(2025, 2, 18, 23, 50, tzinfo=IST),
        datetime(2025, 2, 18, 23, 59, 59, 999999, tzinfo=IST),
    ],
)
async def test_every_demo_teacher_has_a_current_lesson(moment: datetime) -> None:
    client = demo(moment)

    for i in range(1, 11):
        result = await client.login(f"demo_teacher_{i}", DEMO_PASSWORD)
        found = current_lesson(result.lessons, moment, early_margin=timedelta(0))
        assert found is not None, f"demo_teacher_{i} at {moment}"
        assert found.course_code == f"DEMO1{i:02d}"
        assert found.start <= moment < found.end
        assert found.end - found.start == timedelta(hours=1)
        assert found.start.minute == 0


async def test_lessons_cover_yesterday_today_and_tomorrow_back_to_back() -> None:
    moment = datetime(2025, 2, 18, 10, 20, tzinfo=IST)

    lessons = (await demo(moment).login("demo_teacher_3", DEMO_PASSWORD)).lessons

    assert len(lessons) == 72
    assert lessons[0].start == datetime(2025, 2, 17, 0, 0, tzinfo=IST)
    assert lessons[-1].end == datetime(2025, 2, 20, 0, 0, tzinfo=IST)
    assert all(a.end == b.start for a, b in itertools.pairwise(lessons))


@pytest.mark.parametrize(
    "day", [datetime(2025, 3, 30, tzinfo=UTC), datetime(2025, 10, 26, tzinfo=UTC)]
)
async def test_no_gap_on_daylight_saving_days(day: datetime) -> None:
    berlin = ZoneInfo("Europe/Berlin")
    client = demo(day, berlin)
    lessons = (await client.login("demo_teacher_1", DEMO_PASSWORD)).lessons

    for minutes in range(0, 24 * 60, 10):
        moment = day + timedelta(minutes=minutes)
        assert current_lesson(lessons, moment, early_margin=timedelta(0)) is not None, moment


async def test_teacher_identity_matches_live_mode() -> None:
    moment = datetime(2025, 2, 18, 9, tzinfo=IST)
    result = await demo(moment).login("demo_teacher_1", DEMO_PASSWORD)

    async with FakeAksis() as portal:
        portal.add_teacher("demo_teacher_1", DEMO_PASSWORD, "Doç. Dr. ELİF KARTAL")
        live = await portal.live_client(staff_id_key=KEY).login("demo_teacher_1", DEMO_PASSWORD)

    assert result.identity.role is Role.TEACHER
    assert result.identity.school_number == staff_identifier("demo_teacher_1", KEY)
    assert result.identity.school_number == live.identity.school_number
    assert result.identity.full_name == live.identity.full_name == "ELİF KARTAL"


async def test_enrollment_in_teacher_one_course() -> None:
    moment = datetime(2025, 2, 18, 9, tzinfo=IST)
    client = demo(moment)
    teacher = (await client.login("demo_teacher_1", DEMO_PASSWORD)).identity
    names: set[str] = set()

    for j in range(1, 61):
        result = await client.login(f"demo_student_{j}", DEMO_PASSWORD)
        codes = {x.course_code for x in result.lessons}
        assert result.identity.role is Role.STUDENT
        assert result.identity.school_number == f"2400{j:04d}"
        rotating = (j - 1) % 10 + 1
        if j <= 50:
            expected = {"DEMO101", f"DEMO1{rotating:02d}"}
        else:  # teacher 1's class is students 1..50; student 51 moves to teacher 2
            expected = {f"DEMO1{rotating if rotating != 1 else 2:02d}"}
        assert codes == expected, j
        assert ("DEMO101" in codes) is (j <= 50), j
        # The lessons name teacher 1 so that a session service can match them.
        assert bool(lessons_for_teacher(result.lessons, person_key(teacher.full_name))) is (
            "DEMO101" in codes
        )
        names.add(result.identity.full_name)

    assert len(names) == 60
    letters = set("".join(names))
    assert {"İ", "Ş", "Ç", "Ö", "Ü", "ı", "ğ", "I"} <= letters


@pytest.mark.parametrize(
    ("username", "password"),
    [
        ("demo_student_1", "Password"),
        ("demo_student_1", ""),
        ("demo_student_61", DEMO_PASSWORD),
        ("demo_student_0", DEMO_PASSWORD),
        ("demo_student_01", DEMO_PASSWORD),
        ("demo_teacher_11", DEMO_PASSWORD),
        ("someone", DEMO_PASSWORD),
    ],
)
async def test_wrong_demo_credentials(username: str, password: str) -> None:
    with pytest.raises(InvalidCredentials):
        await demo(datetime(2025, 2, 18, tzinfo=IST)).login(username, password)


async def test_user_name_case_and_spaces_do_not_matter() -> None:
    client = demo(datetime(2025, 2, 18, tzinfo=IST))

    a = await client.login(" Demo_Teacher_2 ", DEMO_PASSWORD)
    b = await client.login("demo_teacher_2", DEMO_PASSWORD)

    assert a.identity == b.identity
    assert a.identity.full_name == "İSMAİL IŞIK"
