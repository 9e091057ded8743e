"""Lessons from the portal's schedule data, and which one is on at a given moment.

Schedule entries are dated occurrences (docs/portal.md §3): `Start`/`End` as Microsoft JSON
dates, `Title` as "CODE - NAME", `Hocalar` as the teachers with their titles. Every datetime
here is timezone-aware; lessons are kept in the university's local zone.

Decisions pinned by tests/services/test_lesson_finder.py:
- A lesson belongs to the local day on which it starts. A lesson running past midnight is not
  listed for the next day by `lessons_on_day()`; `current_lesson()` still finds it while it runs.
- A lesson is on from `start` (inclusive) to `end` (exclusive).
- `current_lesson()` prefers a running lesson over one about to start; among running lessons,
  the one that started most recently (the newer class in the room); among lessons about to
  start, the earliest.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from services.text import person_key
from services.text import teacher_keys as _teacher_keys

__all__ = [
    "Lesson",
    "ParsedSchedule",
    "current_lesson",
    "lesson_slot",
    "lessons_for_teacher",
    "lessons_on_day",
    "next_lesson",
    "parse_ms_date",
    "parse_schedule",
    "split_title",
]

_MS_DATE = re.compile(r"^\s*\\?/Date\((-?\d{1,16})([+-]\d{4})?\)\\?/\s*$")
_TITLE_SEPARATOR = re.compile(r"\s+[-–]\s+")
_SPACES = re.compile(r"\s+")
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


@dataclass(frozen=True, slots=True)
class Lesson:
    """One dated lesson occurrence."""

    start: datetime
    end: datetime
    course_code: str
    course_name: str
    teachers: str  # the portal's `Hocalar`, as shown
    teacher_keys: tuple[str, ...]  # services.text.person_key of each teacher
    # The term of the schedule it came from ("YYYY-D"); None: unknown, or not read yet (the
    # portal names the term of a whole answer, not of each entry).
    term: str | None = None

    @property
    def title(self) -> str:
        """ "CODE - NAME", or just the name when the portal gave no code."""
        if self.course_code:
            return f"{self.course_code} - {self.course_name}"
        return self.course_name

    def is_running(self, now: datetime) -> bool:
        return self.start <= now < self.end


@dataclass(frozen=True, slots=True)
class ParsedSchedule:
    lessons: list[Lesson]
    skipped: int  # malformed entries left out
    entries: int = 0  # entries in the answer, malformed ones included

    @property
    def mostly_malformed(self) -> bool:
        """More than half of the answer's entries could not be read: the portal changed its
        format, rather than sending a stray bad row."""
        return self.skipped * 2 > self.entries


def parse_ms_date(value: str, tz: ZoneInfo) -> datetime:
    """A Microsoft JSON date (`/Date(1739878800000)/`) as an aware datetime in `tz`.

    The number is milliseconds since the Unix epoch in UTC, possibly negative; an offset
    suffix (`/Date(1739878800000+0300)/`) only says which zone the writer was in and does not
    change the instant. The JSON-escaped form `\\/Date(...)\\/` is accepted too.
    """
    match = _MS_DATE.match(value)
    if match is None:
        raise ValueError("not a Microsoft JSON date")
    try:
        instant = _EPOCH + timedelta(milliseconds=int(match.group(1)))
    except OverflowError as exc:
        raise ValueError("Microsoft JSON date out of range") from exc
    return instant.astimezone(tz)


def split_title(title: str) -> tuple[str, str]:
    """Split "YBSB1008 - DATA STRUCTURES" into ("YBSB1008", "DATA STRUCTURES").

    Splits at the first spaced dash, so names that contain dashes stay whole, and only when
    the part before it looks like a code (one word, or two with a digit). A title without
    one gives an empty code and the whole title as the name: a code is an identifier (it keys
    stored schedule entries and session records), and guessing one from a name would merge
    unrelated courses. A title with a code but no name uses the code as the name.
    """
    title = _SPACES.sub(" ", title).strip()
    parts = _TITLE_SEPARATOR.split(title, maxsplit=1)
    if len(parts) == 2 and _looks_like_code(parts[0]):
        code, name = parts[0].strip(), parts[1].strip()
        return code, name or code
    return "", title


def _looks_like_code(text: str) -> bool:
    # "YBSB1008", "MAT 101"; not "DATA STRUCTURES" (a name with a dash further on).
    words = text.split()
    return len(words) == 1 or (len(words) == 2 and any(c.isdigit() for c in text))


def _lesson_from_entry(entry: Any, tz: ZoneInfo) -> Lesson:
    if not isinstance(entry, dict):
        raise ValueError("schedule entry is not an object")
    raw_start, raw_end = entry.get("Start"), entry.get("End")
    if not isinstance(raw_start, str) or not isinstance(raw_end, str):
        raise ValueError("schedule entry without Start/End text")
    start, end = parse_ms_date(raw_start, tz), parse_ms_date(raw_end, tz)
    if end <= start:
        raise ValueError("schedule entry ends before it starts")
    title = entry.get("Title")
    if not isinstance(title, str) or not title.strip():
        raise ValueError("schedule entry without a title")
    hocalar = entry.get("Hocalar")
    if hocalar is None:
        hocalar = ""
    if not isinstance(hocalar, str):
        raise ValueError("schedule entry with a non-text teacher field")
    code, name = split_title(title)
    teachers = _SPACES.sub(" ", hocalar).strip()
    return Lesson(
        start=start,
        end=end,
        course_code=code,
        course_name=name,
        teachers=teachers,
        teacher_keys=tuple(_teacher_keys(hocalar)),
    )


def _order(lesson: Lesson) -> tuple[datetime, datetime, str, str]:
    return (lesson.start, lesson.end, lesson.course_code, lesson.course_name)


def parse_schedule(data: Any, tz: ZoneInfo) -> ParsedSchedule:
    """Lessons from a decoded `Plans_Read` answer (`{"Data": [...]}`), sorted by start.

    Malformed entries are skipped and counted; exact duplicates are merged. An answer that is
    not an object with a `Data` list raises ValueError (the portal changed).
    """
    if not isinstance(data, dict):
        raise ValueError("schedule answer is not a JSON object")
    entries = data.get("Data")
    if not isinstance(entries, list):
        raise ValueError("schedule answer has no Data list")
    lessons: set[Lesson] = set()
    skipped = 0
    for entry in entries:
        try:
            lessons.add(_lesson_from_entry(entry, tz))
        except ValueError:
            skipped += 1
    return ParsedSchedule(
        lessons=sorted(lessons, key=_order), skipped=skipped, entries=len(entries)
    )


def lessons_on_day(lessons: Iterable[Lesson], day: date, tz: ZoneInfo) -> list[Lesson]:
    """The lessons that start on `day` in local time `tz`, sorted by start."""
    return sorted((x for x in lessons if x.start.astimezone(tz).date() == day), key=_order)


def current_lesson(
    lessons: Iterable[Lesson], now: datetime, *, early_margin: timedelta
) -> Lesson | None:
    """The lesson on at `now`, or failing that one starting within `early_margin`.

    With overlapping lessons, a running one wins over one about to start, and among running
    ones the most recently started (ties: the one ending first, then by code). Among lessons
    about to start, the earliest wins.
    """
    if now.tzinfo is None:
        raise ValueError("now must be timezone-aware")
    running: list[Lesson] = []
    upcoming: list[Lesson] = []
    for lesson in lessons:
        if lesson.is_running(now):
            running.append(lesson)
        elif now < lesson.start <= now + early_margin:
            upcoming.append(lesson)
    if running:
        latest_start = max(x.start for x in running)
        return min((x for x in running if x.start == latest_start), key=_order)
    if upcoming:
        return min(upcoming, key=_order)
    return None


def next_lesson(lessons: Iterable[Lesson], now: datetime) -> Lesson | None:
    """The first lesson that starts after `now` (a lesson starting exactly now is current)."""
    if now.tzinfo is None:
        raise ValueError("now must be timezone-aware")
    later = [x for x in lessons if x.start > now]
    return min(later, key=_order) if later else None


def lesson_slot(
    course_code: str, start: datetime, teacher_keys: Iterable[str], tz: ZoneInfo
) -> str:
    """The weekly slot a dated lesson belongs to: "CODE|isodow|HH:MM|teacher,keys" in local
    time `tz`. One course code taught in several sections has one slot per section (another
    day or hour, other teachers); "the same lesson" is the same slot (docs/portal.md §3)."""
    local = start.astimezone(tz)
    keys = ",".join(sorted({k for k in teacher_keys if k}))
    return f"{course_code}|{local.isoweekday()}|{local:%H:%M}|{keys}"


def lessons_for_teacher(lessons: Iterable[Lesson], teacher_key: str) -> list[Lesson]:
    """The lessons taught by the teacher with `teacher_key` (a name or its `person_key`)."""
    key = person_key(teacher_key)
    if not key:
        return []
    return [x for x in lessons if key in x.teacher_keys]
