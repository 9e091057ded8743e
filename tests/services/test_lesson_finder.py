"""Schedule parsing, name matching and finding the lesson that is on."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from services.lesson_finder import (
    Lesson,
    current_lesson,
    lessons_for_teacher,
    lessons_on_day,
    next_lesson,
    parse_ms_date,
    parse_schedule,
    split_title,
)
from services.text import person_key, strip_titles, teacher_keys, turkish_casefold

IST = ZoneInfo("Europe/Istanbul")
MARGIN = timedelta(minutes=10)


def lesson(
    start: datetime,
    minutes: int = 50,
    code: str = "YBSB1008",
    teachers: str = "Doç. Dr. ELİF KARTAL",
) -> Lesson:
    return Lesson(
        start=start,
        end=start + timedelta(minutes=minutes),
        course_code=code,
        course_name=f"COURSE {code}",
        teachers=teachers,
        teacher_keys=tuple(teacher_keys(teachers)),
    )


def at(hour: int, minute: int = 0, day: int = 18) -> datetime:
    return datetime(2025, 2, day, hour, minute, tzinfo=IST)


# --- dates and titles -------------------------------------------------------------------


def test_portal_example_is_1440_in_istanbul() -> None:
    start = parse_ms_date("/Date(1739878800000)/", IST)

    assert start == datetime(2025, 2, 18, 11, 40, tzinfo=UTC)
    assert (start.hour, start.minute, start.utcoffset()) == (14, 40, timedelta(hours=3))


@pytest.mark.parametrize(
    "value",
    ["/Date(1739878800000+0300)/", "/Date(1739878800000-0500)/", "\\/Date(1739878800000)\\/"],
)
def test_offset_suffix_and_json_escapes_do_not_change_the_instant(value: str) -> None:
    assert parse_ms_date(value, IST) == datetime(2025, 2, 18, 11, 40, tzinfo=UTC)


def test_dates_before_1970_are_negative_milliseconds() -> None:
    assert parse_ms_date("/Date(-86400000)/", IST) == datetime(1969, 12, 31, tzinfo=UTC)


@pytest.mark.parametrize(
    "value", ["", "2025-02-18T14:40:00", "/Date()/", "/Date(abc)/", "Date(1739878800000)"]
)
def test_other_date_forms_are_rejected(value: str) -> None:
    with pytest.raises(ValueError, match="Microsoft JSON date"):
        parse_ms_date(value, IST)


@pytest.mark.parametrize(
    ("title", "expected"),
    [
        ("YBSB1008 - DATA STRUCTURES", ("YBSB1008", "DATA STRUCTURES")),
        ("MAT 101 - Calculus - I", ("MAT 101", "Calculus - I")),
        ("  YBSB1008   -   VERİ  YAPILARI ", ("YBSB1008", "VERİ YAPILARI")),
        ("DATA STRUCTURES", ("", "DATA STRUCTURES")),
        ("DATA STRUCTURES AND ALGORITHMS - LAB", ("", "DATA STRUCTURES AND ALGORITHMS - LAB")),
        ("ÇEVRE-MÜHENDİSLİĞİ", ("", "ÇEVRE-MÜHENDİSLİĞİ")),
    ],
)
def test_split_title(title: str, expected: tuple[str, str]) -> None:
    assert split_title(title) == expected


def test_lesson_title_shows_code_and_name() -> None:
    assert lesson(at(9)).title == "YBSB1008 - COURSE YBSB1008"
    code, name = split_title("SEMİNER")
    assert Lesson(at(9), at(10), code, name, "", ()).title == "SEMİNER"


# --- schedule answers -------------------------------------------------------------------


def entry(start_ms: int, minutes: int = 50, title: str = "A1 - ALPHA") -> dict[str, object]:
    return {
        "Start": f"/Date({start_ms})/",
        "End": f"/Date({start_ms + minutes * 60_000})/",
        "Title": title,
        "Hocalar": "Prof. Dr. AYŞE YILMAZ",
    }


def test_schedule_is_parsed_sorted_and_deduplicated() -> None:
    later, earlier = entry(1739887200000, title="B2 - BETA"), entry(1739878800000)

    parsed = parse_schedule({"Data": [later, earlier, dict(earlier)], "Total": 3}, IST)

    assert parsed.skipped == 0
    assert [x.course_code for x in parsed.lessons] == ["A1", "B2"]
    assert parsed.lessons[0].teacher_keys == ("ayşe yılmaz",)
    assert parsed.lessons[0].start.tzinfo == IST


def test_malformed_entries_are_skipped_and_counted() -> None:
    good = entry(1739878800000)
    bad = [
        "not an object",
        {**good, "Start": "tomorrow"},
        {**good, "End": None},
        {**good, "Title": ""},
        {**good, "Hocalar": 42},
        entry(1739878800000, minutes=0),  # ends when it starts
        entry(1739878800000, minutes=-50),
    ]

    parsed = parse_schedule({"Data": [good, *bad]}, IST)

    assert len(parsed.lessons) == 1
    assert parsed.skipped == len(bad)


def test_missing_teachers_field_is_an_empty_teacher_list() -> None:
    parsed = parse_schedule({"Data": [{**entry(1739878800000), "Hocalar": None}]}, IST)

    assert parsed.lessons[0].teacher_keys == ()


@pytest.mark.parametrize("data", [[], "Data", None, {"data": []}, {"Data": None}, {"Data": {}}])
def test_wrong_top_level_shape_raises(data: object) -> None:
    with pytest.raises(ValueError, match="schedule answer"):
        parse_schedule(data, IST)


# --- days, now and next -------------------------------------------------------------------


def test_day_is_the_local_day_of_the_start() -> None:
    late_evening = lesson(at(23, 30), minutes=60)  # runs past midnight
    after_midnight_local = lesson(at(1, 0, day=19))  # 22:00 UTC on the 18th
    morning = lesson(at(9))

    on_18th = lessons_on_day([after_midnight_local, late_evening, morning], date(2025, 2, 18), IST)
    on_19th = lessons_on_day([after_midnight_local, late_evening, morning], date(2025, 2, 19), IST)

    assert on_18th == [morning, late_evening]
    assert on_19th == [after_midnight_local]


def test_lesson_past_midnight_is_still_current_on_the_next_day() -> None:
    late_evening = lesson(at(23, 30), minutes=60)

    assert current_lesson([late_evening], at(0, 15, day=19), early_margin=MARGIN) == late_evening


def test_current_lesson_runs_from_start_to_just_before_end() -> None:
    nine = lesson(at(9))

    assert current_lesson([nine], at(9), early_margin=timedelta(0)) == nine
    assert current_lesson([nine], at(9, 49), early_margin=timedelta(0)) == nine
    assert current_lesson([nine], at(9, 50), early_margin=timedelta(0)) is None


def test_early_margin_admits_a_lesson_about_to_start() -> None:
    nine = lesson(at(9))

    assert current_lesson([nine], at(8, 52), early_margin=MARGIN) == nine
    assert current_lesson([nine], at(8, 52), early_margin=timedelta(0)) is None
    assert current_lesson([nine], at(8, 49), early_margin=MARGIN) is None


def test_overlapping_lessons_prefer_the_most_recently_started() -> None:
    long_block = lesson(at(9), minutes=180, code="LONG")
    lab = lesson(at(10), minutes=60, code="LAB")

    assert current_lesson([lab, long_block], at(10, 15), early_margin=MARGIN) == lab
    assert current_lesson([lab, long_block], at(9, 55), early_margin=MARGIN) == long_block


def test_running_lesson_wins_over_one_about_to_start() -> None:
    nine, ten = lesson(at(9), minutes=60, code="NINE"), lesson(at(10), code="TEN")

    assert current_lesson([ten, nine], at(9, 55), early_margin=MARGIN) == nine
    soon, sooner = lesson(at(12, 8), code="SOON"), lesson(at(12, 5), code="SOONER")
    assert current_lesson([soon, sooner], at(12), early_margin=MARGIN) == sooner


def test_current_lesson_needs_an_aware_now() -> None:
    with pytest.raises(ValueError, match="aware"):
        current_lesson([], datetime(2025, 2, 18, 9), early_margin=MARGIN)  # noqa: DTZ001


def test_next_lesson_is_the_first_that_starts_later() -> None:
    nine, eleven, one = lesson(at(9)), lesson(at(11)), lesson(at(13))

    assert next_lesson([one, eleven, nine], at(9, 10)) == eleven
    assert next_lesson([one, eleven, nine], at(11)) == one  # 11:00 is current, not next
    assert next_lesson([one, eleven, nine], at(14)) is None


# --- names ------------------------------------------------------------------------------


def test_turkish_case_folding() -> None:
    assert "İ".lower() != "i"  # why turkish_casefold exists
    assert turkish_casefold("İSMAİL IŞIK") == "ismail ışık"
    assert turkish_casefold("I\u0307PEK") == "ipek"  # decomposed İ


@pytest.mark.parametrize(
    "spelling",
    [
        "Doç. Dr. ELİF KARTAL",
        "ELİF KARTAL",
        "Elif Kartal",
        "  elif   KARTAL ",
        "DOÇ.DR. ELİF KARTAL",
        "doc dr Elif Kartal",
        "Prof. Dr. Elif Kartal",
        "Yrd. Doç. Dr. Elif Kartal",
    ],
)
def test_one_person_one_key(spelling: str) -> None:
    assert person_key(spelling) == "elif kartal"


def test_titles_come_off_only_at_the_front() -> None:
    assert strip_titles("Arş. Gör. Dr. SEDA GÜNEŞ") == "SEDA GÜNEŞ"
    assert strip_titles("Öğr. Gör. DRAGAN PROFİ") == "DRAGAN PROFİ"
    assert person_key("İSMAİL") != person_key("ISMAIL")  # dotted and dotless i differ


def test_several_teachers_in_one_field() -> None:
    keys = teacher_keys("Doç. Dr. ELİF KARTAL, Prof. Dr. AYŞE YILMAZ-KAYA - Öğr. Gör. ÖMER ÇELİK")

    assert keys == ["elif kartal", "ayşe yılmaz-kaya", "ömer çelik"]
    assert teacher_keys("") == []
    assert teacher_keys("ELİF KARTAL; Elif Kartal") == ["elif kartal"]


def test_lessons_for_teacher_match_across_titles_and_turkish_case() -> None:
    his = lesson(at(9), teachers="DR. ÖĞR. ÜYESİ İSMAİL IŞIK")
    shared = lesson(at(11), teachers="Prof. Dr. AYŞE YILMAZ, Dr. Öğr. Üyesi İSMAİL IŞIK")
    other = lesson(at(13), teachers="Doç. Dr. ELİF KARTAL")

    assert lessons_for_teacher([his, shared, other], "İsmail Işık") == [his, shared]
    assert lessons_for_teacher([his, shared, other], person_key("İsmail Işık")) == [his, shared]
    assert lessons_for_teacher([his, shared, other], "İsmail Işıklı") == []
    assert lessons_for_teacher([his, shared, other], "") == []
