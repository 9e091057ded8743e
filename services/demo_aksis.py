"""A built-in portal for `AKSIS_MODE=demo`: fixed accounts, no network.

Accounts (password `password` for all):
- `demo_teacher_1` .. `demo_teacher_10`: teacher i teaches `DEMO1{i:02d}`.
- `demo_student_1` .. `demo_student_60`: school number `2400` + four digits (24000001).
  Students 1..50 are enrolled in teacher 1's course; every student j is also enrolled in
  teacher ((j - 1) % 10) + 1's course, except that teacher 1's class is exactly students
  1..50: student 51, whom that rule would put there, takes teacher 2's course instead.
  Students 51..60 are thus not in teacher 1's course, which the demo uses to show a check-in
  pending review.

Every course meets every hour, back to back, from local midnight yesterday to local midnight
the day after tomorrow (computed at each sign-in from the clock), so at any moment each demo
teacher has a current lesson. Staff identifiers are `staff_identifier()` of the user name,
exactly as in live mode.
"""

from __future__ import annotations

import hmac
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, time, timedelta
from zoneinfo import ZoneInfo

from dal.models import Role
from services.aksis import InvalidCredentials, LoginResult, PortalIdentity, staff_identifier
from services.lesson_finder import Lesson
from services.text import strip_titles, teacher_keys

__all__ = [
    "DEMO_PASSWORD",
    "DEMO_STUDENTS",
    "DEMO_TEACHERS",
    "DemoAksisClient",
    "DemoCourse",
    "demo_course",
    "demo_school_number",
    "demo_student_courses",
    "demo_student_name",
]

DEMO_PASSWORD = "password"  # noqa: S105 - the documented demo password
DEMO_TEACHERS = 10
DEMO_STUDENTS = 60
TEACHER_ONE_CLASS_SIZE = 50

# As the portal writes them: titles, then the name in Turkish upper case.
_TEACHER_NAMES = (
    "Doç. Dr. ELİF KARTAL",
    "Dr. Öğr. Üyesi İSMAİL IŞIK",
    "Prof. Dr. AYŞEGÜL ÇELİK",
    "Öğr. Gör. MURAT ÖZDEMİR",
    "Arş. Gör. Dr. SEDA GÜNEŞ",
    "Prof. Dr. HÜSEYİN ŞAHİN",
    "Doç. Dr. GÖKHAN ERDOĞAN",
    "Dr. Öğr. Üyesi DİLEK YÜCEL",
    "Öğr. Gör. ÇİĞDEM AKGÜL",
    "Prof. Dr. İLKER TUNÇ",
)
_COURSE_NAMES = (
    "VERİ YAPILARI",
    "ALGORİTMA ANALİZİ",
    "VERİTABANI YÖNETİMİ",
    "İŞLETİM SİSTEMLERİ",
    "BİLGİSAYAR AĞLARI",
    "YAZILIM MÜHENDİSLİĞİ",
    "OLASILIK VE İSTATİSTİK",
    "DOĞRUSAL CEBİR",
    "AYRIK MATEMATİK",
    "ÇOK DEĞİŞKENLİ ANALİZ",
)
_FIRST_NAMES = (
    "Ayşe",
    "Mehmet",
    "Zeynep",
    "Ömer",
    "İrem",
    "Ümit",
    "Şule",
    "Emre",
    "Gülşah",
    "Çağrı",
    "Ilgın",
    "Uğur",
)
_SURNAMES = ("Yılmaz", "Öztürk", "Kılıç", "Şahin", "Doğan")


@dataclass(frozen=True, slots=True)
class DemoCourse:
    code: str
    name: str
    teacher: str  # with titles, like the portal's `Hocalar`


def demo_course(teacher: int) -> DemoCourse:
    """Teacher `teacher`'s (1..10) course."""
    if not 1 <= teacher <= DEMO_TEACHERS:
        raise ValueError("no such demo teacher")
    return DemoCourse(
        code=f"DEMO1{teacher:02d}",
        name=_COURSE_NAMES[teacher - 1],
        teacher=_TEACHER_NAMES[teacher - 1],
    )


def demo_student_courses(student: int) -> list[int]:
    """The teachers (1..10) whose courses student `student` (1..60) is enrolled in."""
    if not 1 <= student <= DEMO_STUDENTS:
        raise ValueError("no such demo student")
    rotating = (student - 1) % DEMO_TEACHERS + 1
    if student <= TEACHER_ONE_CLASS_SIZE:
        return sorted({1, rotating})
    # Teacher 1's class stays at students 1..50 (see the module docstring).
    return [2 if rotating == 1 else rotating]


def demo_school_number(student: int) -> str:
    return f"2400{student:04d}"


def demo_student_name(student: int) -> str:
    index = student - 1  # 12 first names x 5 surnames: 60 distinct names
    return f"{_FIRST_NAMES[index % len(_FIRST_NAMES)]} {_SURNAMES[index // len(_FIRST_NAMES)]}"


def _account(username: str) -> tuple[Role, int] | None:
    name = username.strip().casefold()
    for prefix, role, count in (
        ("demo_teacher_", Role.TEACHER, DEMO_TEACHERS),
        ("demo_student_", Role.STUDENT, DEMO_STUDENTS),
    ):
        number = name.removeprefix(prefix)
        valid = number != name and number.isdigit() and not number.startswith("0")
        if valid and 1 <= int(number) <= count:
            return role, int(number)
    return None


def _now() -> datetime:
    return datetime.now(UTC)


def demo_term(now: datetime, tz: ZoneInfo) -> str:
    """The demo portal's current term, "YYYY-D" like the live portal's `Yil` and `Donem`:
    the academic year's first calendar year; term 1 from September to January, else 2."""
    local = now.astimezone(tz)
    if local.month >= 9:
        return f"{local.year}-1"
    if local.month == 1:
        return f"{local.year - 1}-1"
    return f"{local.year - 1}-2"


class DemoAksisClient:
    """The `AksisClient` of demo mode: same results as the live client, no network."""

    def __init__(
        self,
        tz: ZoneInfo,
        clock: Callable[[], datetime] = _now,
        *,
        staff_id_key: str,
    ) -> None:
        self._tz = tz
        self._clock = clock
        self._staff_id_key = staff_id_key

    def __repr__(self) -> str:
        return "DemoAksisClient()"

    async def login(self, username: str, password: str) -> LoginResult:
        account = _account(username)
        password_ok = hmac.compare_digest(password.encode("utf-8"), DEMO_PASSWORD.encode())
        if account is None or not password_ok:
            raise InvalidCredentials("the portal rejected the user name or password")
        role, number = account
        if role is Role.TEACHER:
            course = demo_course(number)
            identity = PortalIdentity(
                role=Role.TEACHER,
                full_name=strip_titles(course.teacher),
                school_number=staff_identifier(username, self._staff_id_key),
            )
            courses = [course]
        else:
            identity = PortalIdentity(
                role=Role.STUDENT,
                full_name=demo_student_name(number),
                school_number=demo_school_number(number),
            )
            courses = [demo_course(t) for t in demo_student_courses(number)]
        lessons = sorted(
            (lesson for course in courses for lesson in self._occurrences(course)),
            key=lambda x: (x.start, x.course_code),
        )
        return LoginResult(
            identity=identity,
            lessons=lessons,
            skipped_entries=0,
            term=demo_term(self._clock(), self._tz),
        )

    def _occurrences(self, course: DemoCourse) -> list[Lesson]:
        now = self._clock()
        if now.tzinfo is None:
            raise ValueError("the demo clock must return aware datetimes")
        today = now.astimezone(self._tz).date()
        # Hour steps in UTC from local midnight yesterday to local midnight after tomorrow:
        # back to back even on days when the local clock skips or repeats an hour.
        first = datetime.combine(today - timedelta(days=1), time(0), self._tz).astimezone(UTC)
        stop = datetime.combine(today + timedelta(days=2), time(0), self._tz).astimezone(UTC)
        keys = tuple(teacher_keys(course.teacher))
        lessons: list[Lesson] = []
        start = first
        while start < stop:
            end = min(start + timedelta(hours=1), stop)
            lessons.append(
                Lesson(
                    start=start.astimezone(self._tz),
                    end=end.astimezone(self._tz),
                    course_code=course.code,
                    course_name=course.name,
                    teachers=course.teacher,
                    teacher_keys=keys,
                )
            )
            start = end
        return lessons
