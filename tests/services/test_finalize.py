"""Finalization against the real PostgreSQL and Redis: every record once, none lost."""

from __future__ import annotations

import asyncio
import logging
import time
from datetime import datetime, timedelta
from uuid import UUID

import pytest
import redis.asyncio as aioredis

from bot.delivery import render
from dal.errors import DatabaseUnavailable, NotFound
from dal.models import FailReason, LiveRecord, LiveSession, RecordSource, User
from dal.pg import Postgres
from dal.redis.keys import records as records_key
from dal.redis.stores import RedisStores
from services.attendance import EVERYONE
from services.finalize import Finalizer, build_sheet, final_dedupe_key
from services.notice_codec import decode, encode
from services.notify import Moment
from tests.support import (
    IST,
    Clock,
    RecordingNotifier,
    build_test_services,
    link,
    open_session,
    pg_behind_proxy,
    put_records,
    record,
    session_keys,
    student_user,
    teacher_user,
)

START = datetime(2025, 3, 10, 9, 0, tzinfo=IST)
PLANNED_END = START + timedelta(minutes=50)
LATE_AFTER = timedelta(minutes=15)
TEACHER = teacher_user()


def finalizer(
    pg: Postgres,
    redis: RedisStores,
    clock: Clock,
    notifier: RecordingNotifier | None = None,
    *,
    owner: str = "replica-a",
    concurrency: int = 4,
    batch_sessions: int = 10,
) -> Finalizer:
    notifier = notifier or RecordingNotifier()
    notifier.redis = redis.redis  # dedupe markers in Redis, as the outbox keeps them
    services = build_test_services(
        pg,
        redis,
        notifier,
        clock=clock,
        owner=owner,
        finalizer={
            "claim_ttl_seconds": 60,
            "concurrency": concurrency,
            "batch_sessions": batch_sessions,
        },
    )
    return services.finalizer


async def pg_records(pg: Postgres, attendance_id: UUID) -> dict[str, dict[str, object]]:
    rows = await pg.db.pool.fetch(
        "SELECT student_number, is_attended, attendance_time, fail_reason, is_late, source"
        " FROM attendance_records WHERE attendance_id = $1",
        attendance_id,
    )
    return {row["student_number"]: dict(row) for row in rows}


async def count_rows(pg: Postgres) -> tuple[int, int]:
    attendances = await pg.db.pool.fetchval("SELECT count(*) FROM attendances")
    records = await pg.db.pool.fetchval("SELECT count(*) FROM attendance_records")
    return int(attendances), int(records)


async def mixed_session(
    pg: Postgres, redis: RedisStores, *, teacher: User = TEACHER
) -> LiveSession:
    """S1 on time, S2 late, S3 added by the teacher late in the lesson, S4 pending review,
    S5 rejected, S6 and S7 enrolled and absent. S4 is not enrolled."""
    enrolled = ["S1", "S2", "S3", "S5", "S6", "S7"]
    await pg.accounts.add_users(users=[teacher, *(student_user(n) for n in [*enrolled, "S4"])])
    attendance = await open_session(
        redis, teacher=teacher, start=START, end=PLANNED_END, enrolled=enrolled
    )
    await put_records(
        redis,
        [
            record(attendance, "S1", minutes=3),
            record(attendance, "S2", minutes=20),
            record(attendance, "S3", minutes=40, source=RecordSource.TEACHER),
            record(
                attendance,
                "S4",
                minutes=5,
                is_attended=False,
                fail_reason=FailReason.NOT_IN_SCHEDULE.value,
            ),
            record(attendance, "S5", minutes=6, is_attended=False, fail_reason="REJECTED: phone"),
        ],
    )
    return attendance


async def test_ended_session_is_written_with_the_right_values_and_removed_from_redis(
    pg_client: Postgres, redis_client: RedisStores, redis_raw: aioredis.Redis
) -> None:
    attendance = await mixed_session(pg_client, redis_client)
    ended_at = START + timedelta(minutes=45)
    await redis_client.sessions.finish_attendance(
        attendance_id=attendance.attendance_id, end_time=ended_at
    )
    clock = Clock(ended_at + timedelta(seconds=10))

    report = await finalizer(pg_client, redis_client, clock).run_once()

    assert (report.finalized, report.records, report.absent) == (1, 7, 2)
    stored = await pg_client.attendance.get_attendance_by_id(attendance_id=attendance.attendance_id)
    assert stored.end_time == ended_at
    assert stored.lesson_code == "FIZ101"
    assert stored.lesson_name == "FIZ101 - Fizik I"
    assert stored.teacher_school_number == TEACHER.user_school_number
    rows = await pg_records(pg_client, attendance.attendance_id)
    at = {n: START + timedelta(minutes=m) for n, m in [("S1", 3), ("S2", 20), ("S3", 40)]}
    expected = {
        "S1": (True, at["S1"], None, False, "code"),
        "S2": (True, at["S2"], None, True, "code"),
        "S3": (True, at["S3"], None, False, "teacher"),  # teacher-added: never late
        "S4": (False, START + timedelta(minutes=5), "NOT_IN_SCHEDULE", False, "code"),
        "S5": (False, START + timedelta(minutes=6), "REJECTED", False, "code"),
        "S6": (False, None, "ABSENT", False, "code"),
        "S7": (False, None, "ABSENT", False, "code"),
    }
    assert {
        n: (r["is_attended"], r["attendance_time"], r["fail_reason"], r["is_late"], r["source"])
        for n, r in rows.items()
    } == expected
    assert await session_keys(redis_raw, attendance) == []


async def test_a_session_left_open_past_its_planned_end_is_finalized_with_that_end(
    pg_client: Postgres, redis_client: RedisStores, redis_raw: aioredis.Redis
) -> None:
    attendance = await mixed_session(pg_client, redis_client)
    clock = Clock(PLANNED_END - timedelta(seconds=1))
    job = finalizer(pg_client, redis_client, clock)

    assert (await job.run_once()).finalized == 0  # still open
    clock.at(PLANNED_END + timedelta(seconds=1))
    assert (await job.run_once()).finalized == 0  # closed, settling (clock skew between hosts)
    assert await count_rows(pg_client) == (0, 0)
    clock.at(PLANNED_END + timedelta(seconds=6))
    assert (await job.run_once()).finalized == 1

    stored = await pg_client.attendance.get_attendance_by_id(attendance_id=attendance.attendance_id)
    assert stored.end_time == PLANNED_END
    assert await session_keys(redis_raw, attendance) == []


async def test_absent_records_are_written_for_enrolled_students_only(
    pg_client: Postgres, redis_client: RedisStores
) -> None:
    await pg_client.accounts.add_users(
        users=[TEACHER, *(student_user(f"S{i}") for i in range(1, 6))]
    )
    scheduled = await open_session(
        redis_client, teacher=TEACHER, start=START, end=PLANNED_END, enrolled=["S1", "S2", "S3"]
    )
    await put_records(redis_client, [record(scheduled, "S1"), record(scheduled, "S4")])
    other = teacher_user("T0002", "Mehmet Hoca")
    await pg_client.accounts.add_users(users=[other])
    # Opened by name: no known enrolment, EVERYONE in the set, nobody can be absent.
    by_name = await open_session(
        redis_client,
        teacher=other,
        start=START,
        end=PLANNED_END,
        enrolled=[EVERYONE],
        lesson_name="Seminer",
        lesson_code=None,
    )
    await put_records(redis_client, [record(by_name, "S5")])

    await finalizer(pg_client, redis_client, Clock(PLANNED_END + timedelta(minutes=1))).run_once()

    scheduled_rows = await pg_records(pg_client, scheduled.attendance_id)
    assert {n: r["fail_reason"] for n, r in scheduled_rows.items()} == {
        "S1": None,
        "S4": None,
        "S2": "ABSENT",
        "S3": "ABSENT",
    }
    by_name_rows = await pg_records(pg_client, by_name.attendance_id)
    assert list(by_name_rows) == ["S5"]
    assert EVERYONE not in {u.user_school_number for u in await pg_client.accounts.get_users()}
    stored = await pg_client.attendance.get_attendance_by_id(attendance_id=by_name.attendance_id)
    assert stored.lesson_code is None


async def test_users_are_upserted_without_renaming_or_demoting_anyone(
    pg_client: Postgres, redis_client: RedisStores
) -> None:
    colleague = teacher_user("T0009", "Zeynep Hoca")
    await pg_client.accounts.add_users(users=[colleague, student_user("S1", "Old Name")])
    # The teacher is not in PostgreSQL yet (first session ever); S1 logged in again with a
    # new portal name; S2 is new; the teacher typed a colleague's number and an unknown one.
    attendance = await open_session(
        redis_client, teacher=TEACHER, start=START, end=PLANNED_END, enrolled=["S1"]
    )
    await put_records(
        redis_client,
        [
            record(attendance, "S1", name="New Name"),
            record(attendance, "S2", name="Brand New"),
            record(attendance, "T0009", name="T0009", source=RecordSource.TEACHER),
            record(attendance, "S3", name="S3", source=RecordSource.TEACHER),
        ],
    )
    await finalizer(pg_client, redis_client, Clock(PLANNED_END + timedelta(minutes=1))).run_once()

    users = {
        u.user_school_number: (u.user_full_name, u.role.value)
        for u in await pg_client.accounts.get_users()
    }
    assert users == {
        "T0001": ("Ayşe Öğretmen", "teacher"),
        "T0009": ("Zeynep Hoca", "teacher"),
        "S1": ("New Name", "student"),
        "S2": ("Brand New", "student"),
        "S3": ("S3", "student"),
    }


async def test_100_sessions_of_300_records_move_all_30000_records(
    pg_client: Postgres, redis_client: RedisStores, redis_raw: aioredis.Redis
) -> None:
    students = [student_user(f"S{i:04d}") for i in range(300)]
    teachers = [teacher_user(f"T{t:03d}", f"Hoca {t}") for t in range(100)]
    await pg_client.accounts.add_users(users=[*teachers, *students])
    numbers = [s.user_school_number for s in students]
    sessions: list[LiveSession] = []
    for t, teacher in enumerate(teachers):
        start = START + timedelta(minutes=t)
        attendance = await open_session(
            redis_client,
            teacher=teacher,
            start=start,
            end=start + timedelta(minutes=50),
            enrolled=numbers[:280],
        )
        sessions.append(attendance)
        batch: list[LiveRecord] = []
        for i, number in enumerate(numbers):
            if i >= 280:  # not enrolled: pending review
                batch.append(
                    record(
                        attendance,
                        number,
                        minutes=4,
                        is_attended=False,
                        fail_reason=FailReason.NOT_IN_SCHEDULE.value,
                    )
                )
            elif i % 30 != 29:  # every 30th enrolled student never checks in: absent
                # every 4th one late, the rest on time
                batch.append(record(attendance, number, minutes=20 if i % 4 == 0 else 2))
        await put_records(redis_client, batch)
    absent = [i for i in range(280) if i % 30 == 29]
    attended = [i for i in range(280) if i % 30 != 29]
    late = [i for i in attended if i % 4 == 0]
    pending = list(range(280, 300))
    per_session = len(attended) + len(absent) + len(pending)
    notifier = RecordingNotifier()
    clock = Clock(START + timedelta(hours=3))

    began = time.perf_counter()
    report = await finalizer(pg_client, redis_client, clock, notifier).run_once()
    elapsed = time.perf_counter() - began

    assert per_session == 300
    assert report.finalized == 100
    assert report.records == 100 * per_session
    counts = await pg_client.db.pool.fetchrow(
        "SELECT count(*) AS total,"
        " count(*) FILTER (WHERE is_attended AND NOT is_late) AS present,"
        " count(*) FILTER (WHERE is_attended AND is_late) AS late,"
        " count(*) FILTER (WHERE fail_reason = 'ABSENT' AND attendance_time IS NULL) AS absent,"
        " count(*) FILTER (WHERE fail_reason = 'NOT_IN_SCHEDULE' AND NOT is_attended) AS pending,"
        " count(DISTINCT (attendance_id, student_number)) AS distinct_rows"
        " FROM attendance_records"
    )
    assert dict(counts) == {
        "total": 100 * per_session,
        "present": 100 * (len(attended) - len(late)),
        "late": 100 * len(late),
        "absent": 100 * len(absent),
        "pending": 100 * len(pending),
        "distinct_rows": 100 * per_session,
    }
    sample = sessions[57]
    rows = await pg_records(pg_client, sample.attendance_id)
    assert rows["S0004"]["is_late"] is True
    assert rows["S0004"]["attendance_time"] == sample.start_time + timedelta(minutes=20)
    assert rows["S0005"]["is_late"] is False
    assert rows["S0029"]["fail_reason"] == "ABSENT"
    assert rows["S0281"]["fail_reason"] == "NOT_IN_SCHEDULE"
    assert await redis_raw.dbsize() == 100  # only the dedupe markers of the summaries
    assert all(k.startswith("once:final:") for k in await redis_raw.keys("*"))
    assert elapsed < 30, f"finalizing 30,000 records took {elapsed:.1f} s"


async def test_running_twice_changes_nothing_and_notifies_once(
    pg_client: Postgres, redis_client: RedisStores
) -> None:
    attendance = await mixed_session(pg_client, redis_client)
    await link(pg_client, TEACHER, 100)
    await link(pg_client, student_user("S1"), 101)
    await redis_client.users.set_receipts(school_number="S1", enabled=True)  # on time
    notifier = RecordingNotifier()
    clock = Clock(PLANNED_END + timedelta(minutes=1))
    job = finalizer(pg_client, redis_client, clock, notifier)

    first = await job.run_once()
    before = await pg_records(pg_client, attendance.attendance_id)
    second = await job.run_once()

    assert (first.finalized, second.finalized, second.records) == (1, 0, 0)
    assert await pg_records(pg_client, attendance.attendance_id) == before
    assert await count_rows(pg_client) == (1, 7)
    assert len(notifier.sent) == 2


async def test_crash_between_commit_and_cleanup_then_rerun_leaves_exactly_one_copy(
    pg_client: Postgres,
    redis_client: RedisStores,
    redis_raw: aioredis.Redis,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    attendance = await mixed_session(pg_client, redis_client)
    await link(pg_client, TEACHER, 100)
    notifier = RecordingNotifier()
    clock = Clock(PLANNED_END + timedelta(minutes=1))

    async def crash(*, attendance_id: UUID) -> None:
        raise RuntimeError("injected fault between the commit and the Redis cleanup")

    monkeypatch.setattr(redis_client.finalization, "delete_attendance_keys", crash)
    with pytest.raises(RuntimeError, match="injected fault"):
        await finalizer(pg_client, redis_client, clock, notifier).run_once()
    assert await count_rows(pg_client) == (1, 7)  # committed
    assert f"attendance_records:{{{attendance.attendance_id}}}" in await session_keys(
        redis_raw, attendance
    )
    monkeypatch.undo()

    # A new process (another owner) runs the job again.
    report = await finalizer(pg_client, redis_client, clock, notifier, owner="b").run_once()

    assert report.finalized == 1
    assert await count_rows(pg_client) == (1, 7)
    assert await session_keys(redis_raw, attendance) == []
    assert len(notifier.keys("final.teacher")) == 1  # the rerun sent nothing again


async def test_claim_of_a_crashed_worker_delays_the_session_until_it_expires(
    pg_client: Postgres, redis_client: RedisStores
) -> None:
    attendance = await mixed_session(pg_client, redis_client)
    # A worker claimed the session and was killed before releasing its claim.
    assert await redis_client.finalization.claim_attendance(
        attendance_id=attendance.attendance_id, owner="dead", ttl_seconds=1
    )
    job = finalizer(pg_client, redis_client, Clock(PLANNED_END + timedelta(minutes=1)))

    assert (await job.run_once()).skipped == 1
    assert await count_rows(pg_client) == (0, 0)
    await asyncio.sleep(1.1)
    assert (await job.run_once()).finalized == 1
    assert await count_rows(pg_client) == (1, 7)


async def test_postgres_unreachable_leaves_redis_intact_logs_once_and_a_later_tick_succeeds(
    pg_client: Postgres,
    pg_dsn: str,
    redis_client: RedisStores,
    redis_raw: aioredis.Redis,
    caplog: pytest.LogCaptureFixture,
) -> None:
    sessions = [await mixed_session(pg_client, redis_client)]
    for n in range(2, 4):
        teacher = teacher_user(f"T000{n}", f"Hoca {n}")
        await pg_client.accounts.add_users(users=[teacher])
        sessions.append(await mixed_session(pg_client, redis_client, teacher=teacher))
    keys_before = sorted(await redis_raw.keys("*"))
    clock = Clock(PLANNED_END + timedelta(minutes=1))
    caplog.set_level(logging.DEBUG, logger="services.finalize")

    async with pg_behind_proxy(pg_dsn) as (pg, proxy):
        job = finalizer(pg, redis_client, clock)
        await proxy.cut()
        for _ in range(3):
            report = await job.run_once()
            assert (report.finalized, report.postponed) == (0, 3)
        assert sorted(await redis_raw.keys("*")) == keys_before
        warnings = [
            r
            for r in caplog.records
            if r.levelno >= logging.WARNING and r.name == "services.finalize"
        ]
        assert len(warnings) == 1
        assert "unavailable" in warnings[0].getMessage()

        await proxy.restore()
        report = await job.run_once()

    assert report.finalized == 3
    assert await count_rows(pg_client) == (3, 21)
    for attendance in sessions:
        assert await session_keys(redis_raw, attendance) == []
    messages = [
        r.getMessage()
        for r in caplog.records
        if r.levelno >= logging.WARNING and r.name == "services.finalize"
    ]
    assert len(messages) == 2
    assert "available again" in messages[1]


async def test_postgres_lost_in_the_middle_of_a_tick_removes_nothing(
    pg_client: Postgres,
    pg_dsn: str,
    redis_client: RedisStores,
    redis_raw: aioredis.Redis,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    attendance = await mixed_session(pg_client, redis_client)
    clock = Clock(PLANNED_END + timedelta(minutes=1))
    async with pg_behind_proxy(pg_dsn) as (pg, proxy):
        real_get_users = pg.accounts.get_users

        async def server_dies_now(*, school_numbers: list[str]) -> list[User]:
            await proxy.cut()  # after the tick's ping, before the write
            return await real_get_users(school_numbers=school_numbers)

        monkeypatch.setattr(pg.accounts, "get_users", server_dies_now)
        report = await finalizer(pg, redis_client, clock).run_once()
        assert (report.finalized, report.postponed, report.failed) == (0, 1, 0)
        assert len(await session_keys(redis_raw, attendance)) == 6  # all keys and indexes
        assert await redis_raw.exists(f"attendances:{{{attendance.attendance_id}}}:claim") == 0

    assert await count_rows(pg_client) == (0, 0)
    assert (await finalizer(pg_client, redis_client, clock).run_once()).finalized == 1


async def test_two_finalizers_at_once_finalize_each_session_once(
    pg_client: Postgres, redis_client: RedisStores
) -> None:
    teachers = [teacher_user(f"T{n:03d}", f"Hoca {n}") for n in range(20)]
    await pg_client.accounts.add_users(users=teachers)
    for n, teacher in enumerate(teachers):
        await link(pg_client, teacher, 1000 + n)
        await mixed_session(pg_client, redis_client, teacher=teacher)
    notifier = RecordingNotifier()
    clock = Clock(PLANNED_END + timedelta(minutes=1))
    first = finalizer(pg_client, redis_client, clock, notifier, owner="a", concurrency=3)
    second = finalizer(pg_client, redis_client, clock, notifier, owner="b", concurrency=3)

    reports = await asyncio.gather(first.run_once(), second.run_once())

    assert sum(r.finalized for r in reports) == 20
    assert await count_rows(pg_client) == (20, 140)
    summaries = notifier.keys("final.teacher")
    assert sorted(n.telegram_id for n in summaries) == list(range(1000, 1020))


async def test_teacher_and_students_are_told_the_result(
    pg_client: Postgres, redis_client: RedisStores
) -> None:
    attendance = await mixed_session(pg_client, redis_client)
    await link(pg_client, TEACHER, 100, language="tr")
    for tid, number in [
        (101, "S1"),
        (102, "S2"),
        (103, "S3"),
        (104, "S4"),
        (105, "S5"),
        (106, "S6"),
    ]:
        await link(pg_client, student_user(number), tid)
    await link(pg_client, student_user("S7"), 107, reminders=False)  # opted out
    # S1's "present" only repeats the check-in answer: not sent. S3 asked for receipts.
    await redis_client.users.set_receipts(school_number="S3", enabled=True)
    notifier = RecordingNotifier()

    await finalizer(
        pg_client, redis_client, Clock(PLANNED_END + timedelta(minutes=1)), notifier
    ).run_once()

    by_id = {n.telegram_id: n for n in notifier.sent}
    assert sorted(by_id) == [100, 102, 103, 104, 105, 106]
    summary = by_id[100]
    assert (summary.key, summary.language) == ("final.teacher", "tr")
    assert summary.values == {
        "lesson": "FIZ101 - Fizik I",
        "date": Moment(START, "Europe/Istanbul"),
        "present": 2,
        "late": 1,
        "absent": 2,
        "pending": 1,
        "rejected": 1,  # a live record in the old "REJECTED: note" form is read as rejected
    }
    assert {tid: by_id[tid].key for tid in range(102, 107)} == {
        102: "final.late",
        103: "final.present",
        104: "final.not_accepted",
        105: "final.not_accepted",
        106: "final.absent",
    }
    assert by_id[106].values == {
        "lesson": "FIZ101 - Fizik I",
        "date": Moment(START, "Europe/Istanbul"),
    }
    # Written for each recipient when the outbox delivers it: Turkish, English.
    assert "(10 Mar 2025 09:00)" in render(decode(encode(summary))[0])[0]
    assert "(Mar 10, 2025, 09:00)" in render(decode(encode(by_id[106]))[0])[0]
    assert (
        await redis_client.guards.mark_once(
            key=final_dedupe_key(attendance.attendance_id), ttl_seconds=5
        )
        is False
    )


async def test_summary_without_pending_uses_the_plain_key(
    pg_client: Postgres, redis_client: RedisStores
) -> None:
    await pg_client.accounts.add_users(users=[TEACHER, student_user("S1")])
    await link(pg_client, TEACHER, 100)
    attendance = await open_session(
        redis_client, teacher=TEACHER, start=START, end=PLANNED_END, enrolled=["S1"]
    )
    await put_records(redis_client, [record(attendance, "S1")])
    notifier = RecordingNotifier()
    await finalizer(
        pg_client, redis_client, Clock(PLANNED_END + timedelta(minutes=1)), notifier
    ).run_once()
    (summary,) = notifier.sent
    assert summary.key == "final.teacher"
    assert (summary.values["pending"], summary.values["rejected"]) == (0, 0)
    assert (summary.values["present"], summary.values["absent"]) == (1, 0)


async def test_a_corrupt_session_stays_in_redis_is_logged_once_and_others_go_through(
    pg_client: Postgres,
    redis_client: RedisStores,
    redis_raw: aioredis.Redis,
    caplog: pytest.LogCaptureFixture,
) -> None:
    broken = await mixed_session(pg_client, redis_client)
    await redis_raw.hset(records_key(broken.attendance_id), "S9", "{not json")
    other = teacher_user("T0002", "Mehmet Hoca")
    await pg_client.accounts.add_users(users=[other])
    fine = await mixed_session(pg_client, redis_client, teacher=other)
    job = finalizer(pg_client, redis_client, Clock(PLANNED_END + timedelta(minutes=1)))
    caplog.set_level(logging.ERROR, logger="services.finalize")

    first = await job.run_once()
    second = await job.run_once()

    assert (first.finalized, first.failed, second.failed) == (1, 1, 1)
    assert first.failures == [broken.attendance_id]
    assert await session_keys(redis_raw, fine) == []
    assert len(await session_keys(redis_raw, broken)) == 6
    assert len([r for r in caplog.records if r.levelno == logging.ERROR]) == 1


async def test_sessions_are_stored_in_batches_of_whole_sessions(
    pg_client: Postgres, redis_client: RedisStores, redis_raw: aioredis.Redis
) -> None:
    teachers = [teacher_user(f"T{n:03d}", f"Hoca {n}") for n in range(25)]
    await pg_client.accounts.add_users(users=teachers)
    sessions = [await mixed_session(pg_client, redis_client, teacher=t) for t in teachers]
    clock = Clock(PLANNED_END + timedelta(minutes=1))
    job = finalizer(pg_client, redis_client, clock, concurrency=2, batch_sessions=10)

    report = await job.run_once()

    assert (report.finalized, report.records, report.absent, report.batches) == (25, 175, 50, 3)
    assert await count_rows(pg_client) == (25, 175)
    for attendance in sessions:
        assert await session_keys(redis_raw, attendance) == []
    assert (await job.run_once()).finalized == 0


async def test_a_session_postgres_refuses_is_isolated_from_the_rest_of_its_batch(
    pg_client: Postgres,
    redis_client: RedisStores,
    redis_raw: aioredis.Redis,
    caplog: pytest.LogCaptureFixture,
) -> None:
    # A real refusal by the server, for one session only (as a foreign key would).
    await pg_client.db.pool.execute(
        """
        CREATE FUNCTION attn_test_refuse() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN
            RAISE EXCEPTION 'refused for the test' USING ERRCODE = 'foreign_key_violation';
        END $$;
        CREATE TRIGGER attn_test_refuse BEFORE INSERT ON attendances
        FOR EACH ROW WHEN (NEW.lesson_name = 'Bozuk') EXECUTE FUNCTION attn_test_refuse();
        """
    )
    try:
        teachers = [teacher_user(f"T{n:03d}", f"Hoca {n}") for n in range(3)]
        await pg_client.accounts.add_users(
            users=[*teachers, student_user("S1"), student_user("S2")]
        )
        sessions = []
        for n, teacher in enumerate(teachers):
            attendance = await open_session(
                redis_client,
                teacher=teacher,
                start=START,
                end=PLANNED_END,
                enrolled=["S1", "S2"],
                lesson_name="Bozuk" if n == 1 else "Fizik",
            )
            await put_records(redis_client, [record(attendance, "S1")])
            sessions.append(attendance)
        good, bad = [sessions[0], sessions[2]], sessions[1]
        job = finalizer(pg_client, redis_client, Clock(PLANNED_END + timedelta(minutes=1)))
        caplog.set_level(logging.ERROR, logger="services.finalize")

        first = await job.run_once()
        second = await job.run_once()

        assert (first.finalized, first.failed, first.failures) == (2, 1, [bad.attendance_id])
        assert first.batches == 2  # the refused batch, retried one session per transaction
        assert (second.finalized, second.failed) == (0, 1)
        assert await count_rows(pg_client) == (2, 4)
        for attendance in good:
            assert await session_keys(redis_raw, attendance) == []
            assert set(await pg_records(pg_client, attendance.attendance_id)) == {"S1", "S2"}
        assert len(await session_keys(redis_raw, bad)) == 6
        errors = [r for r in caplog.records if r.levelno == logging.ERROR]
        assert len(errors) == 1 and str(bad.attendance_id) in errors[0].getMessage()
    finally:
        await pg_client.db.pool.execute(
            "DROP TRIGGER attn_test_refuse ON attendances; DROP FUNCTION attn_test_refuse()"
        )


async def test_a_teacher_named_in_another_session_of_the_batch_stays_a_teacher(
    pg_client: Postgres, redis_client: RedisStores
) -> None:
    # Neither teacher is in PostgreSQL yet (their first sessions); the second one added the
    # first by number to their sheet. Stored one after the other, the first teacher's row
    # would exist before the second sheet is built; stored in one batch, it must win too.
    newcomer = teacher_user("T0100", "Yeni Hoca")
    other = teacher_user("T0200", "Diğer Hoca")
    first = await open_session(
        redis_client, teacher=newcomer, start=START, end=PLANNED_END, enrolled=[]
    )
    second = await open_session(
        redis_client, teacher=other, start=START, end=PLANNED_END, enrolled=[]
    )
    await put_records(
        redis_client, [record(second, "T0100", name="T0100", source=RecordSource.TEACHER)]
    )

    report = await finalizer(
        pg_client, redis_client, Clock(PLANNED_END + timedelta(minutes=1))
    ).run_once()

    assert (report.finalized, report.batches) == (2, 1)
    users = {
        u.user_school_number: (u.user_full_name, u.role.value)
        for u in await pg_client.accounts.get_users()
    }
    assert users == {"T0100": ("Yeni Hoca", "teacher"), "T0200": ("Diğer Hoca", "teacher")}
    assert set(await pg_records(pg_client, second.attendance_id)) == {"T0100"}
    assert first.attendance_id != second.attendance_id


def test_build_sheet_counts_and_never_lists_the_everyone_marker() -> None:
    attendance = LiveSession(
        attendance_id=UUID(int=1),
        teacher_school_number="T1",
        teacher_full_name="Hoca",
        lesson_name="L",
        code="123456",
        start_time=START,
        planned_end_time=PLANNED_END,
    )
    records = [
        LiveRecord(
            attendance_id=attendance.attendance_id,
            student_number="S1",
            student_full_name="  Ali   Veli ",
            is_attended=True,
            attendance_time=START + LATE_AFTER,  # exactly at the limit: on time
        )
    ]
    sheet = build_sheet(
        attendance=attendance,
        records=records,
        enrolled={"S1", "S2", EVERYONE},
        known_users={"S2": student_user("S2")},
        late_after=LATE_AFTER,
    )
    assert [(r.student_number, r.is_late, r.fail_reason) for r in sheet.records] == [
        ("S1", False, None),
        ("S2", False, "ABSENT"),
    ]
    assert [(u.user_school_number, u.user_full_name) for u in sheet.users] == [
        ("S1", "Ali Veli"),
        ("T1", "Hoca"),
    ]
    assert (sheet.counts.present, sheet.counts.absent, sheet.counts.total) == (1, 1, 2)
    assert sheet.attendance.end_time == PLANNED_END


async def test_outage_as_unavailable_tells_a_lost_server_from_other_errors(
    pg_client: Postgres, pg_dsn: str
) -> None:
    # dal/pg/pool.py: what the finalizer relies on to spot an outage.
    async with pg_behind_proxy(pg_dsn) as (pg, proxy):
        with pytest.raises(NotFound), pg.db.outage_as_unavailable():
            # not an outage: passes unchanged
            await pg.accounts.set_reminders(school_number="nobody", enabled=True)
        await proxy.cut()
        with (
            pytest.raises(DatabaseUnavailable, match="PostgreSQL unreachable at"),
            pg.db.outage_as_unavailable(),
        ):
            await pg.accounts.get_users(school_numbers=["S1"])
        await proxy.restore()
        with pg.db.outage_as_unavailable():
            assert await pg.accounts.get_users(school_numbers=["S1"]) == []
