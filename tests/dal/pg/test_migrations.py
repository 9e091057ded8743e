"""Schema migrations against a real, empty PostgreSQL database."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from urllib.parse import urlsplit, urlunsplit

import asyncpg
import pytest

from dal.migrations import MIGRATIONS_LOCK_KEY, Migration, apply_migrations, load_migrations


def _with_database(dsn: str, database: str) -> str:
    return urlunsplit(urlsplit(dsn)._replace(path=f"/{database}"))


@pytest.fixture
async def conn(empty_dsn: str) -> AsyncIterator[asyncpg.Connection]:
    connection = await asyncpg.connect(empty_dsn)
    try:
        yield connection
    finally:
        await connection.close()


async def _columns(conn: asyncpg.Connection, table: str) -> dict[str, tuple[str, bool]]:
    rows = await conn.fetch(
        "SELECT column_name, data_type, is_nullable FROM information_schema.columns"
        " WHERE table_schema = 'public' AND table_name = $1",
        table,
    )
    return {r["column_name"]: (r["data_type"], r["is_nullable"] == "YES") for r in rows}


def test_migration_files_ship_as_numbered_package_data() -> None:
    migrations = load_migrations()
    versions = [m.version for m in migrations]
    # Unique and increasing from 1; a gap is allowed (issues developed in parallel number
    # their migrations ahead, e.g. 0005 before 0004 lands).
    assert versions[0] == 1
    assert versions == sorted(set(versions))
    assert migrations[0].name == "initial"
    assert "CREATE TABLE users" in migrations[0].sql


async def test_fresh_database_gets_the_seed_tables_and_columns(conn: asyncpg.Connection) -> None:
    version = await apply_migrations(conn)

    assert version == load_migrations()[-1].version
    users = await _columns(conn, "users")
    assert users["user_school_number"] == ("text", False)
    assert users["user_full_name"] == ("text", False)
    assert users["role"] == ("text", False)
    assert users["telegram_id"] == ("bigint", True)
    assert users["language"] == ("text", False)
    assert users["reminders_enabled"] == ("boolean", False)
    assert users["linked_at"] == ("timestamp with time zone", True)
    attendances = await _columns(conn, "attendances")
    assert {
        "attendance_id",
        "teacher_school_number",
        "lesson_name",
        "lesson_code",
        "start_time",
        "end_time",
        "security_option",
        "is_deleted",
        "deletion_reason",
        "deletion_time",
        "lesson_slot",
        "scheduled_start",
        "term",
    } == set(attendances)
    assert attendances["attendance_id"] == ("uuid", False)
    assert attendances["start_time"] == ("timestamp with time zone", False)
    records = await _columns(conn, "attendance_records")
    assert {
        "attendance_id",
        "student_number",
        "is_attended",
        "attendance_time",
        "fail_reason",
        "is_late",
        "source",
        "is_deleted",
        "deletion_reason",
        "deletion_time",
        "status",
        "teacher_note",
    } == set(records)
    assert records["is_attended"] == ("boolean", False)
    schedule = await _columns(conn, "schedule_entries")
    assert set(schedule) == {
        "school_number",
        "start_time",
        "end_time",
        "course_code",
        "course_name",
        "teachers",
        "teacher_key",
        "term",
    }
    pk = await conn.fetchval(
        "SELECT pg_get_constraintdef(oid) FROM pg_constraint"
        " WHERE conrelid = 'attendance_records'::regclass AND contype = 'p'"
    )
    assert pk == "PRIMARY KEY (attendance_id, student_number)"
    indexes = {
        r["indexdef"]
        for r in await conn.fetch("SELECT indexdef FROM pg_indexes WHERE schemaname = 'public'")
    }
    assert any(
        "(teacher_school_number, start_time DESC) WHERE (NOT is_deleted)" in i for i in indexes
    )
    assert any("(student_number) WHERE (NOT is_deleted)" in i for i in indexes)
    assert any("schedule_entries USING btree (teacher_key, start_time)" in i for i in indexes)


async def test_schema_rejects_bad_rows(conn: asyncpg.Connection) -> None:
    await apply_migrations(conn)
    with pytest.raises(asyncpg.CheckViolationError):
        await conn.execute(
            "INSERT INTO users (user_school_number, user_full_name, role)"
            " VALUES ('1', 'A', 'admin')"
        )
    await conn.execute(
        "INSERT INTO users (user_school_number, user_full_name, role, telegram_id)"
        " VALUES ('1', 'A', 'student', 42)"
    )
    with pytest.raises(asyncpg.UniqueViolationError):
        await conn.execute(
            "INSERT INTO users (user_school_number, user_full_name, role, telegram_id)"
            " VALUES ('2', 'B', 'student', 42)"
        )
    with pytest.raises(asyncpg.ForeignKeyViolationError):
        await conn.execute(
            "INSERT INTO attendances (attendance_id, teacher_school_number, lesson_name,"
            " start_time) VALUES (gen_random_uuid(), 'nobody', 'X', now())"
        )


async def test_reapplying_applies_nothing(conn: asyncpg.Connection) -> None:
    first = await apply_migrations(conn)
    ledger = await conn.fetch("SELECT version, name, applied_at FROM schema_migrations")

    second = await apply_migrations(conn)

    assert second == first
    assert await conn.fetch("SELECT version, name, applied_at FROM schema_migrations") == ledger
    assert len(ledger) == len(load_migrations())


async def test_two_replicas_applying_at_once_do_not_race(empty_dsn: str) -> None:
    a = await asyncpg.connect(empty_dsn)
    b = await asyncpg.connect(empty_dsn)
    try:
        versions = await asyncio.gather(apply_migrations(a), apply_migrations(b))
        rows = await a.fetch("SELECT version FROM schema_migrations ORDER BY version")
    finally:
        await a.close()
        await b.close()

    expected = load_migrations()[-1].version
    assert versions == [expected, expected]
    assert [r["version"] for r in rows] == [m.version for m in load_migrations()]


async def test_apply_accepts_a_pool(empty_dsn: str) -> None:
    pool = await asyncpg.create_pool(empty_dsn, min_size=1, max_size=2)
    try:
        assert await apply_migrations(pool) == load_migrations()[-1].version
    finally:
        await pool.close()


async def test_failing_migration_leaves_no_trace_and_releases_the_lock(
    conn: asyncpg.Connection, empty_dsn: str
) -> None:
    good = Migration(version=1, name="good", sql="CREATE TABLE kept (x int);")
    bad = Migration(version=2, name="bad", sql="CREATE TABLE half_done (x int); SELECT 1 / 0;")

    with pytest.raises(asyncpg.DivisionByZeroError):
        await apply_migrations(conn, migrations=[bad, good])

    assert await conn.fetchval("SELECT to_regclass('kept') IS NOT NULL")
    assert await conn.fetchval("SELECT to_regclass('half_done') IS NULL")
    assert await conn.fetchval("SELECT max(version) FROM schema_migrations") == 1
    other = await asyncpg.connect(empty_dsn)
    try:
        assert await other.fetchval("SELECT pg_try_advisory_lock($1)", MIGRATIONS_LOCK_KEY)
    finally:
        await other.close()
    # Fixed file, next start: only the missing one runs.
    fixed = Migration(version=2, name="fixed", sql="CREATE TABLE half_done (x int);")
    assert await apply_migrations(conn, migrations=[good, fixed]) == 2


async def test_refuses_to_run_inside_a_callers_transaction(conn: asyncpg.Connection) -> None:
    async with conn.transaction():
        with pytest.raises(RuntimeError, match="outside any transaction"):
            await apply_migrations(conn)


async def test_duplicate_versions_are_rejected_before_touching_the_database(
    conn: asyncpg.Connection,
) -> None:
    twins = [Migration(1, "a", "CREATE TABLE a (x int)"), Migration(1, "b", "SELECT 1")]
    with pytest.raises(ValueError, match="share version"):
        await apply_migrations(conn, migrations=twins)
    assert await conn.fetchval("SELECT to_regclass('schema_migrations') IS NULL")


async def test_migration_3_splits_rejection_notes_and_gives_every_record_a_status(
    conn: asyncpg.Connection,
) -> None:
    """Rows stored before migration 0003: "REJECTED: note" in fail_reason, no status column."""
    before = [m for m in load_migrations() if m.version < 3]
    await apply_migrations(conn, migrations=before)
    await conn.execute(
        "INSERT INTO users (user_school_number, user_full_name, role) VALUES"
        " ('T', 'Hoca', 'teacher'), ('1', 'A', 'student'), ('2', 'B', 'student'),"
        " ('3', 'C', 'student'), ('4', 'D', 'student'), ('5', 'E', 'student'),"
        " ('6', 'F', 'student')"
    )
    aid = "00000000-0000-0000-0000-000000000001"
    await conn.execute(
        "INSERT INTO attendances (attendance_id, teacher_school_number, lesson_name, start_time)"
        " VALUES ($1, 'T', 'L', now())",
        aid,
    )
    await conn.executemany(
        "INSERT INTO attendance_records"
        " (attendance_id, student_number, is_attended, fail_reason, is_late)"
        " VALUES ($1, $2, $3, $4, $5)",
        [
            (aid, "1", True, None, False),
            (aid, "2", True, None, True),
            (aid, "3", False, "ABSENT", False),
            (aid, "4", False, "NOT_IN_SCHEDULE", False),
            (aid, "5", False, "REJECTED: yanlış sınıf", False),
            (aid, "6", False, "MARKED_ABSENT", False),
        ],
    )

    await apply_migrations(conn)

    rows = await conn.fetch(
        "SELECT student_number, status, fail_reason, teacher_note FROM attendance_records"
        " ORDER BY student_number"
    )
    assert [tuple(r) for r in rows] == [
        ("1", "present", None, None),
        ("2", "late", None, None),
        ("3", "absent", "ABSENT", None),
        ("4", "pending", "NOT_IN_SCHEDULE", None),
        ("5", "rejected", "REJECTED", "yanlış sınıf"),
        ("6", "absent", "MARKED_ABSENT", None),
    ]
    with pytest.raises(asyncpg.CheckViolationError):
        await conn.execute(
            "UPDATE attendance_records SET status = 'gone' WHERE student_number = '1'"
        )


async def test_migration_4_turns_the_code_option_into_security_level_1(
    conn: asyncpg.Connection,
) -> None:
    """Sessions stored before migration 0004 carry security_option 'code': level 1 afterwards, and
    only the levels 1, 2 and 3 can be stored from then on."""
    before = [m for m in load_migrations() if m.version < 4]
    await apply_migrations(conn, migrations=before)
    await conn.execute(
        "INSERT INTO users (user_school_number, user_full_name, role) VALUES ('T', 'H', 'teacher')"
    )
    await conn.execute(
        "INSERT INTO attendances (attendance_id, teacher_school_number, lesson_name, start_time)"
        " VALUES ('00000000-0000-0000-0000-000000000001', 'T', 'L', now()),"
        " ('00000000-0000-0000-0000-000000000002', 'T', 'L', now())"
    )
    await conn.execute(
        "UPDATE attendances SET security_option = '2'"
        " WHERE attendance_id = '00000000-0000-0000-0000-000000000002'"
    )

    await apply_migrations(conn)

    rows = await conn.fetch("SELECT security_option FROM attendances ORDER BY attendance_id")
    assert [r["security_option"] for r in rows] == [1, 2]
    columns = await _columns(conn, "attendances")
    assert columns["security_option"] == ("smallint", False)
    with pytest.raises(asyncpg.CheckViolationError):
        await conn.execute("UPDATE attendances SET security_option = 4")


class _TransactionPooled:
    """What the bot sees through PgBouncer in transaction pooling mode: each statement outside
    a transaction, and each transaction, may run on another server connection (here: always
    a new one, so nothing session-scoped carries from one statement to the next)."""

    def __init__(self, dsn: str) -> None:
        self._dsn = dsn
        self.servers: list[asyncpg.Connection] = []
        self._pinned: asyncpg.Connection | None = None

    async def _next(self) -> asyncpg.Connection:
        if self._pinned is not None:
            return self._pinned
        server = await asyncpg.connect(self._dsn)
        self.servers.append(server)
        return server

    def is_in_transaction(self) -> bool:
        return self._pinned is not None

    def is_closed(self) -> bool:
        return False

    async def execute(self, *args: object) -> str:
        return await (await self._next()).execute(*args)

    async def fetch(self, *args: object) -> list[asyncpg.Record]:
        return await (await self._next()).fetch(*args)

    async def fetchval(self, *args: object) -> object:
        return await (await self._next()).fetchval(*args)

    @contextlib.asynccontextmanager
    async def transaction(self) -> AsyncIterator[None]:
        server = await self._next()
        self._pinned = server
        try:
            async with server.transaction():
                yield
        finally:
            self._pinned = None

    async def close(self) -> None:
        for server in self.servers:
            await server.close()


async def test_migrations_through_transaction_pooling_leave_no_lock_behind(empty_dsn: str) -> None:
    """Under PgBouncer transaction pooling a session-level lock is taken on one server
    connection and "released" on another: it stays held and the next replica to start waits
    for ever. The runner's locks end with their transactions, so another session can take the
    lock at once and a second run through the pooler applies nothing."""
    first, second = _TransactionPooled(empty_dsn), _TransactionPooled(empty_dsn)
    other = await asyncpg.connect(empty_dsn)
    try:
        version = await apply_migrations(first)  # type: ignore[arg-type]
        assert version == load_migrations()[-1].version
        assert await other.fetchval("SELECT pg_try_advisory_lock($1)", MIGRATIONS_LOCK_KEY)
        await other.execute("SELECT pg_advisory_unlock($1)", MIGRATIONS_LOCK_KEY)
        ledger = await other.fetch("SELECT version, applied_at FROM schema_migrations")
        assert await apply_migrations(second) == version  # type: ignore[arg-type]
        assert await other.fetch("SELECT version, applied_at FROM schema_migrations") == ledger
    finally:
        await first.close()
        await second.close()
        await other.close()


async def test_a_runner_waits_for_the_one_applying_a_file(empty_dsn: str) -> None:
    """Two runners, one slow file: the second waits on the lock inside its transaction and
    then finds the file recorded, so it runs once (a migrate job and a replica starting)."""
    slow = Migration(
        version=1, name="slow", sql="SELECT pg_sleep(0.5); CREATE TABLE once_only (x int);"
    )
    a = await asyncpg.connect(empty_dsn)
    b = await asyncpg.connect(empty_dsn)
    try:
        results = await asyncio.gather(
            apply_migrations(a, migrations=[slow]), apply_migrations(b, migrations=[slow])
        )
        assert results == [1, 1]
        assert await a.fetchval("SELECT count(*) FROM schema_migrations") == 1
    finally:
        await a.close()
        await b.close()
