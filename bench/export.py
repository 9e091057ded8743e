"""The /export of a 400-student × 14-session course (target: ≤ 3 s, one document each).

Seeds one teacher's course in PostgreSQL (statuses in a fixed mix: present, late, absent,
excused, pending, rejected) and times what /export does, `ReportService.course_data` then
`render_documents` for XLSX and CSV together: the reads, the matrix and both documents.
`make bench` prints the median of three runs; `python -m bench.export` runs it alone.
"""

from __future__ import annotations

import asyncio
import statistics
import time
import uuid
from datetime import UTC, datetime, timedelta

from dal.models import Attendance, AttendanceRecord, CachedAccount, FailReason, Role, User
from dal.pg import Postgres

COURSE = "BENCH400"
TEACHER = "T0001"
_REASONS = {
    3: FailReason.ABSENT,
    5: FailReason.EXCUSED,
    7: FailReason.NOT_IN_SCHEDULE,
    11: FailReason.REJECTED,
}


async def seed_course(pg: Postgres, *, students: int, sessions: int) -> None:
    """A course of `sessions` sessions with a record per student in each, stored the way
    finalization stores them (`persist_sessions`)."""
    users = [User(user_school_number=TEACHER, user_full_name="Öğretmen Bench", role=Role.TEACHER)]
    users += [
        User(
            user_school_number=f"B{n:06d}",
            user_full_name=f"Öğrenci Şükrü Çağlar {n}",
            role=Role.STUDENT,
        )
        for n in range(students)
    ]
    start = datetime(2026, 2, 16, 6, 0, tzinfo=UTC)
    ids = [uuid.uuid4() for _ in range(sessions)]
    attendances = [
        Attendance(
            attendance_id=aid,
            teacher_school_number=TEACHER,
            lesson_name="Büyük Ölçekli Ders",
            lesson_code=COURSE,
            start_time=start + timedelta(weeks=week),
            end_time=start + timedelta(weeks=week, minutes=50),
        )
        for week, aid in enumerate(ids)
    ]
    records = []
    for week, aid in enumerate(ids):
        for n in range(students):
            pick = (n * 7 + week) % 13
            reason = _REASONS.get(pick)
            attended = reason is None
            records.append(
                AttendanceRecord(
                    attendance_id=aid,
                    student_number=f"B{n:06d}",
                    is_attended=attended,
                    is_late=attended and pick == 2,
                    attendance_time=start + timedelta(weeks=week, minutes=3) if attended else None,
                    fail_reason=None if reason is None else reason.value,
                )
            )
    await pg.attendance.persist_sessions(users=users, attendances=attendances, records=records)


async def measure(
    dsn: str, *, students: int = 400, sessions: int = 14, runs: int = 3
) -> dict[str, float]:
    from zoneinfo import ZoneInfo

    from services.reports import ReportService

    pg = await Postgres.connect(dsn, max_size=4)
    try:
        await pg.db.pool.execute("TRUNCATE users, attendances, attendance_records CASCADE")
        await seed_course(pg, students=students, sessions=sessions)
        reports = ReportService(
            accounts=pg.accounts,
            attendance=pg.attendance,
            corrections=pg.corrections,
            reports=pg.reports,
            tz=ZoneInfo("Europe/Istanbul"),
        )
        teacher = CachedAccount(
            telegram_id=1,
            school_number=TEACHER,
            full_name="Öğretmen Bench",
            role=Role.TEACHER,
            logged_in_at=datetime.now(UTC),
        )
        times = []
        sizes: dict[str, int] = {}
        for _ in range(runs):
            began = time.perf_counter()
            # What /export does: the course's data, then its documents.
            course = await reports.course_data(teacher=teacher, course_key=COURSE)
            documents = reports.render_documents(
                course, formats=("xlsx", "csv"), now=datetime.now(UTC)
            )
            times.append(time.perf_counter() - began)
            sizes = {name.rsplit(".", 1)[1]: len(data) for name, data in documents}
    finally:
        await pg.db.close()
    return {
        "seconds": statistics.median(times),
        "runs_seconds": sorted(round(t, 3) for t in times),  # type: ignore[dict-item]
        "xlsx_bytes": sizes.get("xlsx", 0),
        "csv_bytes": sizes.get("csv", 0),
    }


def main() -> None:
    from bench.common import database_url, throwaway_database

    async def run() -> dict[str, float]:
        async with throwaway_database(database_url()) as dsn:
            return await measure(dsn)

    print(asyncio.run(run()))


if __name__ == "__main__":
    main()
