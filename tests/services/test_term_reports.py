"""Term reports at the service level, on real PostgreSQL: the term XLSX and CSV of a course read
back with openpyxl and the csv module and checked against hand-computed figures (late,
excused, pending, rejected and soft-deleted rows included), the same counts in
/my_attendance and /history, excused absences and the audit trail, ownership, and the
low-attendance warning that fires once per crossing."""

from __future__ import annotations

import csv
import io
import time
import uuid
from datetime import UTC, datetime, timedelta

import openpyxl
import pytest

from bot.delivery import render
from dal.models import (
    Attendance,
    AttendanceRecord,
    CachedAccount,
    FailReason,
    RecordSource,
    RecordStatus,
    Role,
    ScheduleEntry,
    User,
)
from dal.pg import LinkedUser, Postgres
from dal.pg.counts import REBUILD_SQL
from dal.redis.stores import RedisStores
from services.errors import (
    AlreadyOnList,
    InvalidInput,
    NotOwner,
    NotTeacher,
    RecordNotFound,
    SessionGone,
)
from services.exports import CSV_HEADER, MATRIX_LEFT, MATRIX_RIGHT, ROW_ATTENDED, ROW_RECORDS
from services.notice_codec import decode, encode
from services.notify import Percent
from services.reports import ReportService, course_token
from services.warnings import AttendanceWarnings, WarningRule
from tests.support import (
    IST,
    Clock,
    RecordingNotifier,
    build_test_services,
    open_session,
    put_records,
    record,
    signed_in,
    student_user,
    teacher_user,
)

pytestmark = pytest.mark.stores

START = datetime(2026, 2, 16, 9, 0, tzinfo=IST)  # a Monday, 09:00 local
COURSE = "YBS101"
LESSON = "Veri Yapıları"
FORMULA_NAME = "=HYPERLINK(1)"

# Hand-written sheet: P present, L late, A absent, ? pending, R rejected, - no record.
# 2024001's A in session 4 is excused by the teacher below; 2024003's session-5 record is
# soft-deleted; a sixth session is soft-deleted whole.
PLAN = {
    "2024001": ("Çağrı Şahin", "PLAAP"),
    "2024002": ("Ömer Güneş", "AA?RP"),
    "2024003": ("İpek Işık", "PPPPP"),
    "2024004": (FORMULA_NAME, "P----"),
}


def _record(aid: uuid.UUID, number: str, letter: str, when: datetime) -> AttendanceRecord:
    if letter in "PL":
        return AttendanceRecord(
            attendance_id=aid,
            student_number=number,
            is_attended=True,
            is_late=letter == "L",
            attendance_time=when + timedelta(minutes=20 if letter == "L" else 2),
        )
    reason = {"A": FailReason.ABSENT, "?": FailReason.NOT_IN_SCHEDULE, "R": FailReason.REJECTED}
    return AttendanceRecord(
        attendance_id=aid,
        student_number=number,
        is_attended=False,
        attendance_time=None if letter == "A" else when + timedelta(minutes=3),
        fail_reason=reason[letter].value,
        teacher_note="başka şube" if letter == "R" else None,
    )


async def _documents(
    reports: ReportService,
    teacher: CachedAccount,
    *,
    course_key: str,
    formats: tuple[str, ...],
    now: datetime,
) -> list[tuple[str, bytes]]:
    """The export as /export sends it: the course's data, then its documents."""
    data = await reports.course_data(teacher=teacher, course_key=course_key)
    return reports.render_documents(data, formats=formats, now=now)


async def _course(pg: Postgres) -> tuple[list[uuid.UUID], ReportService]:
    teacher = teacher_user("T0001", "Ayşe Öğretmen")
    other = teacher_user("T0002", "Başka Hoca")
    await pg.accounts.add_users(
        users=[teacher, other, *(student_user(n, name) for n, (name, _) in PLAN.items())]
    )
    ids = [uuid.uuid4() for _ in range(6)]
    await pg.attendance.add_attendances(
        attendances=[
            Attendance(
                attendance_id=aid,
                teacher_school_number="T0001",
                lesson_name=LESSON,
                lesson_code=COURSE,
                start_time=START + timedelta(weeks=week),
                end_time=START + timedelta(weeks=week, minutes=50),
            )
            for week, aid in enumerate(ids)
        ]
    )
    records = [
        _record(aid, number, letter, START + timedelta(weeks=week))
        for number, (_, letters) in PLAN.items()
        for week, (aid, letter) in enumerate(zip(ids, letters, strict=False))
        if letter != "-"
    ]
    records += [_record(ids[5], number, "P", START + timedelta(weeks=5)) for number in PLAN]
    # 2024004 was added by the teacher during the first lesson (not a correction).
    records = [
        r.model_copy(update={"source": RecordSource.TEACHER})
        if (r.student_number, r.attendance_id) == ("2024004", ids[0])
        else r
        for r in records
    ]
    await pg.attendance.add_attendance_records(records=records)
    reports = ReportService(
        accounts=pg.accounts,
        attendance=pg.attendance,
        corrections=pg.corrections,
        reports=pg.reports,
        tz=IST,
        rule=WarningRule(percent=70, min_sessions=3),
    )
    teacher_session = signed_in("T0001", Role.TEACHER)
    await reports.excuse(
        teacher=teacher_session,
        attendance_id=ids[3],
        student_number="2024001",
        reason="Sağlık raporu",
    )
    # Two corrections that cancel out: 2024003 stays present in session 1, the trail keeps both.
    for _ in range(2):
        await reports.toggle(
            teacher=teacher_session, attendance_id=ids[0], student_number="2024003"
        )
    await pg.corrections.delete_attendance_record(
        attendance_id=ids[4], student_number="2024003", reason="çift kayıt", changed_by="T0001"
    )
    await pg.corrections.delete_attendance(
        attendance_id=ids[5], reason="yanlış ders", changed_by="T0001"
    )
    return ids, reports


async def test_the_xlsx_matrix_totals_and_percentages_match_the_hand_count(
    pg_client: Postgres,
) -> None:
    _, reports = await _course(pg_client)
    teacher = signed_in("T0001", Role.TEACHER)
    (course,) = await reports.export_courses(teacher=teacher)
    assert (course.course_key, course.sessions) == (COURSE, 5)  # the deleted one is not held
    documents = await _documents(
        reports, teacher=teacher, course_key=COURSE, formats=("xlsx", "csv"), now=START
    )
    assert [name for name, _ in documents] == ["YBS101_2026-02-16.xlsx", "YBS101_2026-02-16.csv"]
    book = openpyxl.load_workbook(io.BytesIO(documents[0][1]))
    sheet = book.worksheets[0]
    rows = [[cell.value for cell in row] for row in sheet.iter_rows()]
    dates = [(START + timedelta(weeks=w)).strftime("%d.%m.%Y %H:%M") for w in range(5)]
    assert rows[0] == [*MATRIX_LEFT, *dates, *MATRIX_RIGHT]
    assert sheet.freeze_panes == "C2"
    # By name: "=HYPERLINK(1)" < "Çağrı" < "Ömer" < "İpek" (code points).
    body = {row[0]: row for row in rows[1:5]}
    assert [row[0] for row in rows[1:5]] == ["2024004", "2024001", "2024002", "2024003"]
    assert body["2024001"][1:] == ["Çağrı Şahin", "P", "L", "A", "E", "P", 3, 5, 1, 0.75]
    assert body["2024002"][1:] == ["Ömer Güneş", "A", "A", "?", "R", "P", 1, 5, 0, 0.2]
    assert body["2024003"][1:] == ["İpek Işık", "P", "P", "P", "P", None, 4, 4, 0, 1.0]
    assert body["2024004"][1:] == [FORMULA_NAME, "P", None, None, None, None, 1, 1, 0, 1.0]
    formula_cell = sheet.cell(row=2, column=2)
    assert formula_cell.data_type == "s"  # stored as text, never a formula
    assert rows[5][1:7] == [ROW_ATTENDED, 3, 2, 1, 1, 2]
    assert rows[6][1:7] == [ROW_RECORDS, 4, 3, 3, 3, 2]

    notes = [[cell.value for cell in row] for row in book.worksheets[1].iter_rows()]
    kinds = [row[0] for row in notes[1:]]
    assert kinds.count("reason") == 3  # pending, rejected, excused
    assert {"excused", "status", "record_deleted", "session_deleted"} <= set(kinds)
    assert kinds.count("status") == 2
    assert [row[2] for row in notes if row[0] == "added_in_class"] == ["2024004"]
    excused = next(row for row in notes if row[0] == "excused")
    assert excused[2:7] == ["2024001", "Çağrı Şahin", "excused", "absent", "Sağlık raporu"]
    assert excused[8] == "T0001"
    rejected = next(row for row in notes if row[0] == "reason" and row[4] == "rejected")
    assert (rejected[2], rejected[6], rejected[7]) == ("2024002", "REJECTED", "başka şube")


async def test_the_csv_has_one_row_per_student_per_session_with_a_bom_and_semicolons(
    pg_client: Postgres,
) -> None:
    _, reports = await _course(pg_client)
    ((name, data),) = await _documents(
        reports, signed_in("T0001", Role.TEACHER), course_key=COURSE, formats=("csv",), now=START
    )
    assert name == "YBS101_2026-02-16.csv"
    assert data.startswith(b"\xef\xbb\xbf")
    text = data.decode("utf-8-sig")
    assert text.splitlines()[0] == ";".join(CSV_HEADER)
    rows = list(csv.DictReader(io.StringIO(text), delimiter=";"))
    assert len(rows) == 15  # 4 + 3 + 3 + 3 + 2: soft-deleted record and session left out
    by_key = {(r["student_number"], r["session_date"]): r for r in rows}
    excused = by_key[("2024001", "2026-03-09")]
    assert (excused["status"], excused["reason"], excused["note"]) == (
        "excused",
        "EXCUSED",
        "Sağlık raporu",
    )
    assert by_key[("2024001", "2026-02-23")]["status"] == "late"
    assert by_key[("2024002", "2026-03-02")]["status"] == "pending"
    assert by_key[("2024002", "2026-02-16")]["full_name"] == "Ömer Güneş"
    assert by_key[("2024004", "2026-02-16")]["full_name"] == "'" + FORMULA_NAME
    assert {r["course"] for r in rows} == {COURSE}


async def test_my_attendance_history_and_export_agree(pg_client: Postgres) -> None:
    ids, reports = await _course(pg_client)
    teacher = signed_in("T0001", Role.TEACHER)
    data = await reports.course_data(teacher=teacher, course_key=COURSE)
    lines = {line.student_number: line for line in data.students()}
    for number in PLAN:
        (standing,) = await reports.my_courses(student=signed_in(number, Role.STUDENT))
        assert standing.rate == lines[number].rate
    ömer = await reports.my_courses(student=signed_in("2024002", Role.STUDENT))
    assert (
        ömer[0].below
        and not (await reports.my_courses(student=signed_in("2024001", Role.STUDENT)))[0].below
    )
    assert [line.student_number for line in reports.below_threshold(data)] == ["2024002"]
    totals = data.session_counts()
    for aid in ids[:5]:
        sheet = await reports.sheet(teacher=teacher, attendance_id=aid)
        assert sheet.counts == totals[aid]
    # The dated list puts missed sessions first.
    (course,) = await reports.my_courses(student=signed_in("2024002", Role.STUDENT), with_rows=True)
    statuses = [row.status for row in course.missed_first()]
    assert statuses[-1] is RecordStatus.PRESENT and RecordStatus.PRESENT not in statuses[:-1]
    assert (
        await reports.my_course(student=signed_in("2024002", Role.STUDENT), token=course.token)
    ) == course
    with pytest.raises(RecordNotFound):  # another student's course token finds nothing
        await reports.my_course(student=signed_in("2024009", Role.STUDENT), token=course.token)


async def test_only_the_owning_teacher_changes_or_exports_a_course(
    pg_client: Postgres,
) -> None:
    ids, reports = await _course(pg_client)
    before = await pg_client.attendance.get_attendance_records(attendance_id=ids[1])
    trail = await pg_client.corrections.get_corrections(attendance_id=ids[1])
    other = signed_in("T0002", Role.TEACHER)
    with pytest.raises(NotOwner):
        await reports.excuse(
            teacher=other, attendance_id=ids[1], student_number="2024002", reason="forged"
        )
    with pytest.raises(NotOwner):
        await reports.toggle(teacher=other, attendance_id=ids[1], student_number="2024002")
    with pytest.raises(NotTeacher):
        await reports.excuse(
            teacher=signed_in("2024002", Role.STUDENT),
            attendance_id=ids[1],
            student_number="2024002",
            reason="kendim",
        )
    with pytest.raises(SessionGone):
        await reports.course_by_token(teacher=other, token=course_token(COURSE))
    with pytest.raises(NotTeacher):
        await reports.export_courses(teacher=signed_in("2024002", Role.STUDENT))
    # Only an absent record can be excused, and a reason is required.
    owner = signed_in("T0001", Role.TEACHER)
    with pytest.raises(RecordNotFound):
        await reports.excuse(
            teacher=owner, attendance_id=ids[1], student_number="2024001", reason="geç"
        )
    with pytest.raises(InvalidInput):
        await reports.excuse(
            teacher=owner, attendance_id=ids[1], student_number="2024002", reason="   "
        )
    assert await pg_client.attendance.get_attendance_records(attendance_id=ids[1]) == before
    assert await pg_client.corrections.get_corrections(attendance_id=ids[1]) == trail


async def test_a_400_by_14_course_exports_in_well_under_three_seconds(
    pg_client: Postgres,
) -> None:
    from bench.export import seed_course

    reports = ReportService(
        accounts=pg_client.accounts,
        attendance=pg_client.attendance,
        corrections=pg_client.corrections,
        reports=pg_client.reports,
        tz=IST,
    )
    await seed_course(pg_client, students=400, sessions=14)
    began = time.perf_counter()
    documents = await _documents(
        reports,
        teacher=signed_in("T0001", Role.TEACHER),
        course_key="BENCH400",
        formats=("xlsx", "csv"),
        now=datetime.now(UTC),
    )
    elapsed = time.perf_counter() - began
    assert elapsed < 3.0
    sheet = openpyxl.load_workbook(io.BytesIO(documents[0][1]), read_only=True).worksheets[0]
    assert sheet.max_row == 1 + 400 + 4 and sheet.max_column == 2 + 14 + 4
    assert documents[1][1].count(b"\n") == 1 + 400 * 14


# --- warnings ---------------------------------------------------------------------------


async def test_a_warning_fires_once_per_crossing_and_again_only_after_recovery(
    pg_client: Postgres,
) -> None:
    await pg_client.accounts.add_users(
        users=[teacher_user(), student_user("2024050", "Deniz Öztürk")]
    )
    notifier = RecordingNotifier()
    warnings = AttendanceWarnings(
        reports=pg_client.reports, notifier=notifier, rule=WarningRule(percent=70, min_sessions=3)
    )
    contact = LinkedUser(
        school_number="2024050",
        full_name="Deniz Öztürk",
        role=Role.STUDENT,
        telegram_id=5050,
        language="tr",
        reminders_enabled=True,
        linked_at=datetime.now(UTC),
    )
    warned_after: list[int] = []
    # A A P A | P P P P P P | A: below from the third session (1/3), recovered at 7/10
    # (70 % is not below), below again at 7/11.
    for week, letter in enumerate("AAPAPPPPPPA"):
        aid = uuid.uuid4()
        attendance = Attendance(
            attendance_id=aid,
            teacher_school_number="T0001",
            lesson_name=LESSON,
            lesson_code=COURSE,
            start_time=START + timedelta(weeks=week),
        )
        await pg_client.attendance.add_attendances(attendances=[attendance])
        await pg_client.attendance.add_attendance_records(
            records=[_record(aid, "2024050", letter, attendance.start_time)]
        )
        before = len(notifier.sent)
        await warnings.check([(attendance, ["2024050"])], {"2024050": contact})
        if len(notifier.sent) > before:
            warned_after.append(week + 1)
        # Looking again (a re-run of finalization) never repeats a warning.
        await warnings.check([(attendance, ["2024050"])], {"2024050": contact})
    assert warned_after == [3, 11]
    first, second = notifier.keys("warning.below")
    assert first.telegram_id == 5050 and first.language == "tr"
    assert first.values == {
        "lesson": LESSON,
        "attended": 1,
        "held": 3,
        "percent": Percent(100 / 3),
        "threshold": Percent(70),
    }
    assert second.values["attended"] == 7 and second.values["held"] == 11
    # The Turkish student reads a Turkish decimal comma when the outbox delivers it.
    assert "(%33,3), %70" in render(decode(encode(first))[0])[0]


async def test_an_excused_absence_is_not_held_against_the_student(
    pg_client: Postgres,
) -> None:
    _, reports = await _course(pg_client)
    (standing,) = await reports.my_courses(student=signed_in("2024001", Role.STUDENT))
    # P L A E P: 3 attended of 4 counted (the excused one is left out), 5 held.
    assert (standing.rate.attended, standing.rate.counted, standing.rate.held) == (3, 4, 5)
    assert standing.rate.percent == 75.0
    users = await pg_client.accounts.get_users(school_numbers=["2024001"])
    assert users == [
        User(user_school_number="2024001", user_full_name="Çağrı Şahin", role=Role.STUDENT)
    ]


async def test_finalization_warns_a_student_who_falls_below_once(
    pg_client: Postgres, redis_client: RedisStores
) -> None:
    """Through the finalizer's hook: the third absence in a row crosses the threshold (after
    the minimum of three sessions) and warns once; the fourth does not warn again; a student
    who attends is never warned."""
    teacher = teacher_user()
    regular, missing = student_user("S1", "Sevgi Çalışkan"), student_user("S2", "Oğuz Yılmaz")
    await pg_client.accounts.add_users(users=[teacher, regular, missing])
    await pg_client.accounts.link_telegram(user=regular, telegram_id=9001, language="en")
    await pg_client.accounts.link_telegram(user=missing, telegram_id=9002, language="tr")
    notifier = RecordingNotifier()
    warned: list[int] = []
    for week in range(4):
        start = datetime.now(UTC).replace(microsecond=0) - timedelta(days=30 - week)
        attendance = await open_session(
            redis_client,
            teacher=teacher,
            start=start,
            end=start + timedelta(minutes=50),
            enrolled=["S1", "S2"],
        )
        await put_records(redis_client, [record(attendance, "S1", minutes=2)])
        # The bot's warnings, under its default rule: below 70 % after 3 sessions.
        job = build_test_services(
            pg_client,
            redis_client,
            notifier,
            clock=Clock(start + timedelta(hours=1)),
            owner="replica-a",
        ).finalizer
        assert (await job.run_once()).finalized == 1
        warned.append(len(notifier.keys("warning.below")))
    assert warned == [0, 0, 1, 1]
    (warning,) = notifier.keys("warning.below")
    assert warning.telegram_id == 9002 and warning.language == "tr"
    assert warning.values["lesson"] == "FIZ101 - Fizik I"
    assert (warning.values["attended"], warning.values["held"]) == (0, 3)
    states = await pg_client.db.pool.fetch(
        "SELECT student_number, below FROM attendance_warnings WHERE course_key = $1", "FIZ101"
    )
    assert {row["student_number"]: row["below"] for row in states} == {"S1": False, "S2": True}


async def test_a_student_added_to_a_saved_session_is_a_correction(
    pg_client: Postgres,
) -> None:
    ids, reports = await _course(pg_client)
    owner, other = signed_in("T0001", Role.TEACHER), signed_in("T0002", Role.TEACHER)
    with pytest.raises(NotOwner):
        await reports.add_to_saved(
            teacher=other, attendance_id=ids[1], student_number="2024777", at=START
        )
    with pytest.raises(InvalidInput):
        await reports.add_to_saved(
            teacher=owner, attendance_id=ids[1], student_number="20 24", at=START
        )
    with pytest.raises(AlreadyOnList):
        await reports.add_to_saved(
            teacher=owner, attendance_id=ids[1], student_number="2024001", at=START
        )
    assert len(await pg_client.attendance.get_attendance_records(attendance_id=ids[1])) == 3
    at = START + timedelta(weeks=1, minutes=30)
    added = await reports.add_to_saved(
        teacher=owner, attendance_id=ids[1], student_number="2024777", at=at
    )
    assert (added.status, added.source, added.attendance_time) == (
        RecordStatus.PRESENT,
        RecordSource.TEACHER,
        at,
    )
    # The soft-deleted record of 2024003 in session 5 comes back as present.
    await reports.add_to_saved(teacher=owner, attendance_id=ids[4], student_number="2024003", at=at)
    (ipek,) = await reports.my_courses(student=signed_in("2024003", Role.STUDENT))
    assert (ipek.rate.attended, ipek.rate.held) == (5, 5)
    trail = await pg_client.corrections.get_corrections(attendance_id=ids[1])
    assert [(c.action, c.student_number, c.new_status, c.changed_by) for c in trail] == [
        ("added", "2024777", "present", "T0001")
    ]
    ((_, xlsx),) = await _documents(
        reports, teacher=owner, course_key=COURSE, formats=("xlsx",), now=START
    )
    notes = list(openpyxl.load_workbook(io.BytesIO(xlsx)).worksheets[1].iter_rows(values_only=True))
    assert {(row[0], row[2]) for row in notes if row[0] == "added"} == {
        ("added", "2024777"),
        ("added", "2024003"),
    }


async def test_my_attendance_counts_only_the_current_terms_sessions(pg_client: Postgres) -> None:
    _, reports = await _course(pg_client)
    await pg_client.db.pool.execute("UPDATE attendances SET term = '2026-2'")
    # Changed by hand, so the per-course counts are rebuilt as the migration builds them.
    await pg_client.db.pool.execute(REBUILD_SQL)
    # A session of last year's term: the student's standing this term ignores it.
    old = uuid.uuid4()
    await pg_client.attendance.add_attendances(
        attendances=[
            Attendance(
                attendance_id=old,
                teacher_school_number="T0001",
                lesson_name=LESSON,
                lesson_code=COURSE,
                start_time=START - timedelta(days=365),
                end_time=START - timedelta(days=365) + timedelta(minutes=50),
                term="2025-2",
            )
        ]
    )
    await pg_client.attendance.add_attendance_records(
        records=[_record(old, "2024003", "A", START - timedelta(days=365))]
    )
    await pg_client.schedules.replace_schedule(
        school_number="2024003",
        entries=[
            ScheduleEntry(
                school_number="2024003",
                start_time=START,
                end_time=START + timedelta(minutes=50),
                course_code=COURSE,
                course_name=LESSON,
                teachers="Ayşe Öğretmen",
                teacher_key="ayse ogretmen",
                term="2026-2",
            )
        ],
    )

    (standing,) = await reports.my_courses(
        student=signed_in("2024003", Role.STUDENT), with_rows=True
    )

    assert old not in {row.attendance_id for row in standing.rows}
    assert RecordStatus.ABSENT not in {row.status for row in standing.rows}


async def test_a_correction_that_takes_a_student_below_the_limit_warns_at_once(
    pg_client: Postgres, redis_client: RedisStores
) -> None:
    """A teacher correcting saved sessions to absent takes a student below 70 %: the student is
    warned when the correction is saved, not at the course's next finalization (which might
    be a week away, or never, at the end of term). Corrected back and down again, they are
    warned again; a correction that keeps them above warns nobody."""
    teacher = teacher_user()
    student = student_user("S7", "Selin Ak")
    await pg_client.accounts.add_users(users=[teacher, student])
    await pg_client.accounts.link_telegram(user=student, telegram_id=9007, language="en")
    notifier = RecordingNotifier()
    ids = []
    for week in range(4):
        start = datetime.now(UTC).replace(microsecond=0) - timedelta(days=30 - week)
        attendance = await open_session(
            redis_client,
            teacher=teacher,
            start=start,
            end=start + timedelta(minutes=50),
            enrolled=["S7"],
        )
        await put_records(redis_client, [record(attendance, "S7", minutes=2)])
        services = build_test_services(
            pg_client, redis_client, notifier, clock=Clock(start + timedelta(hours=1))
        )
        assert (await services.finalizer.run_once()).finalized == 1
        ids.append(attendance.attendance_id)
    reports = services.reports
    me = signed_in(teacher.user_school_number, Role.TEACHER)

    await reports.toggle(teacher=me, attendance_id=ids[0], student_number="S7")  # 3 of 4
    assert notifier.keys("warning.below") == []
    await reports.toggle(teacher=me, attendance_id=ids[1], student_number="S7")  # 2 of 4
    (warning,) = notifier.keys("warning.below")
    assert warning.telegram_id == 9007
    assert (warning.values["attended"], warning.values["held"]) == (2, 4)
    await reports.toggle(teacher=me, attendance_id=ids[1], student_number="S7")  # 3 of 4
    await reports.toggle(teacher=me, attendance_id=ids[1], student_number="S7")  # 2 of 4
    assert len(notifier.keys("warning.below")) == 2
