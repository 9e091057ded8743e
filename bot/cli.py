"""`python -m bot` (or `attn`): the operator's commands.

    run                      the bot (the default when no command is given)
    migrate                  apply pending schema migrations, then exit (a job before replicas)
    check                    settings, both stores, versions, Redis's eviction policy, the
                             portal; prints the effective configuration with secrets masked
    outbox stats|requeue|drop
                             the notice outbox: what waits; hand a stopped worker's notices
                             back; drop notices (all, or those older than --older-than)
    forget-user NUMBER       a KVKK/GDPR erasure request: the person leaves every table and key
    export --term --course   a course's attendance over a term, every teacher, for the registrar
    --version

Exit status: 0 done, 1 a check or command failed, 2 bad configuration or usage.
"""

from __future__ import annotations

import argparse
import asyncio
import re
import sys
import time
from collections.abc import Awaitable, Callable, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Final
from zoneinfo import ZoneInfo

import aiohttp
from pydantic import SecretStr

from bot.build import VERSION
from bot.config import ConfigError, Settings, load_settings
from dal.errors import DatabaseUnavailable, RedisUnavailable, UnsupportedServer, mask_url
from dal.migrations import apply_migrations, pending_migrations
from dal.pg import Database, Postgres
from dal.redis.erasure import RedisErasure
from dal.redis.outbox import Outbox, OutboxLanes
from dal.redis.stores import RedisStores
from services.errors import SessionGone
from services.exports import course_csv, course_xlsx, document_name
from services.reports import ReportService
from services.text import person_key
from services.warnings import warning_rule

__all__ = ["build_parser", "main"]

# Store errors a command reports in one line (the URL masked) rather than as a traceback.
STORE_ERRORS: Final = (DatabaseUnavailable, RedisUnavailable, UnsupportedServer)
_DATE_RANGE: Final = re.compile(r"^(\d{4}-\d{2}-\d{2})\.\.(\d{4}-\d{2}-\d{2})$")
_PORTAL_TIMEOUT: Final = 10.0


def _out(line: str = "") -> None:
    sys.stdout.write(line + "\n")


def _err(line: str) -> None:
    sys.stderr.write(f"attn: {line}\n")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="attn", description="ATTN: class attendance over Telegram (see README.md)."
    )
    parser.add_argument("--version", action="version", version=f"attn {VERSION}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")
    commands.add_parser("run", help="run the bot (the default)")
    commands.add_parser("migrate", help="apply pending schema migrations and exit")
    commands.add_parser("check", help="check settings, stores and portal; show the configuration")
    outbox = commands.add_parser("outbox", help="inspect or repair the notice outbox")
    actions = outbox.add_subparsers(dest="action", metavar="ACTION", required=True)
    actions.add_parser("stats", help="notices waiting, in flight, the oldest one's age")
    requeue = actions.add_parser(
        "requeue", help="put the notices a stopped worker holds back in line"
    )
    requeue.add_argument(
        "--consumer", help="only this worker (default: every worker without a heartbeat)"
    )
    drop = actions.add_parser("drop", help="delete notices without sending them")
    which = drop.add_mutually_exclusive_group(required=True)
    which.add_argument("--all", action="store_true", help="every notice not yet delivered")
    which.add_argument(
        "--older-than", type=float, metavar="SECONDS", help="notices waiting this long or more"
    )
    forget = commands.add_parser(
        "forget-user", help="erase a person from every table and key (KVKK/GDPR request)"
    )
    forget.add_argument("school_number", metavar="SCHOOL_NUMBER")
    export = commands.add_parser("export", help="a course's attendance over a term (registrar)")
    export.add_argument(
        "--term",
        required=True,
        help='a term as cached schedules name it ("2026-1"), or dates FROM..TO (TO excluded)',
    )
    export.add_argument("--course", required=True, help="the course code (or lesson name)")
    export.add_argument("--format", choices=("xlsx", "csv"), default="xlsx")
    export.add_argument("--output", type=Path, help="file to write (default: COURSE_DATE.ext)")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    command = args.command or "run"
    try:
        settings = load_settings(require_token=command == "run")
    except ConfigError as exc:
        _err(f"configuration error: {exc}")
        return 2
    if command == "run":
        from bot.__main__ import serve  # the bot itself; imported only when it runs

        return serve(settings)
    if command == "check":
        return asyncio.run(check(settings))
    job: Callable[[], Awaitable[int]]
    if command == "migrate":
        job = lambda: migrate(settings)  # noqa: E731
    elif command == "outbox":
        job = lambda: outbox_command(settings, args)  # noqa: E731
    elif command == "forget-user":
        job = lambda: forget_user(settings, args.school_number)  # noqa: E731
    else:
        job = lambda: export(settings, args)  # noqa: E731
    try:
        return asyncio.run(job())
    except STORE_ERRORS as exc:
        _err(str(exc))
        return 1


# --- migrate ------------------------------------------------------------------------------


async def migrate(settings: Settings) -> int:
    db = await Database.connect(settings.database_url, max_size=1, migrate=False)
    try:
        async with db.pool.acquire() as conn:
            before, pending = await pending_migrations(conn)
            version = await apply_migrations(conn)
    finally:
        await db.close()
    names = ", ".join(f"{m.version:04d}_{m.name}" for m in pending) or "none pending"
    _out(f"schema version {before} -> {version} ({names})")
    return 0


# --- check ----------------------------------------------------------------------------------


def effective_configuration(settings: Settings) -> list[tuple[str, str]]:
    """Every setting as in force, secrets shown only as set or not and URL passwords masked."""
    shown: list[tuple[str, str]] = []
    for name in type(settings).model_fields:
        value = getattr(settings, name)
        if isinstance(value, SecretStr):
            text = "*** (set)"
        elif value is None:
            text = "(unset)"
        elif isinstance(value, str) and "://" in value:
            text = mask_url(value)
        else:
            text = str(value)
        shown.append((name.upper(), text))
    return shown


async def _check_redis(settings: Settings) -> list[tuple[bool, str]]:
    redis = RedisStores.from_url(
        settings.redis_url, sentinel=settings.redis_sentinel, max_connections=2
    )
    sentinel = settings.redis_sentinel
    where = mask_url(settings.redis_url if sentinel is None else sentinel.where(settings.redis_url))
    try:
        await redis.ping()
        version = await redis.require_supported_version()
        memory = await redis.redis.info("memory")
        persistence = await redis.redis.info("persistence")
    except STORE_ERRORS as exc:
        return [(False, f"redis: {exc}")]
    finally:
        await redis.close()
    results = [(True, f"redis: {version} at {where}")]
    policy = str(memory.get("maxmemory_policy", "unknown"))
    results.append(
        (
            policy == "noeviction",
            f"redis eviction policy: {policy}"
            + (
                ""
                if policy == "noeviction"
                else " (must be noeviction: an evicted live session"
                " or outbox entry is lost silently)"
            ),
        )
    )
    aof = str(persistence.get("aof_enabled", "0")) == "1"
    # A warning, not a failure: a managed Redis may persist otherwise (replicas, snapshots).
    results.append(
        (
            True,
            "redis persistence: appendonly "
            + ("yes" if aof else "no (warning: open sessions are lost when Redis restarts)"),
        )
    )
    return results


async def _check_postgres(settings: Settings) -> list[tuple[bool, str]]:
    where = mask_url(settings.database_url)
    try:
        db = await Database.connect(settings.database_url, max_size=1, migrate=False)
    except STORE_ERRORS as exc:
        return [(False, f"postgres: {exc}")]
    try:
        async with db.pool.acquire() as conn:
            shown = str(conn.get_settings().server_version).split(" ")[0]
            version, pending = await pending_migrations(conn)
    finally:
        await db.close()
    results = [(True, f"postgres: {shown} at {where}")]
    if pending:
        todo = ", ".join(f"{m.version:04d}" for m in pending)
        results.append((False, f"schema version {version}: pending {todo} (run: attn migrate)"))
    else:
        results.append((True, f"schema version {version}: up to date"))
    return results


async def _check_portal(settings: Settings) -> list[tuple[bool, str]]:
    if settings.aksis_mode == "demo":
        return [(True, "portal: demo mode (built-in accounts, no portal contacted)")]
    url = settings.aksis_login_url
    timeout = aiohttp.ClientTimeout(total=min(settings.aksis_timeout_seconds, _PORTAL_TIMEOUT))
    started = time.monotonic()
    try:
        async with (
            aiohttp.ClientSession(timeout=timeout) as session,
            session.get(url, allow_redirects=True) as response,
        ):
            status = response.status
    except (aiohttp.ClientError, TimeoutError, OSError) as exc:
        return [(False, f"portal: {url} unreachable: {type(exc).__name__}: {exc}")]
    took = time.monotonic() - started
    return [(status < 500, f"portal: {url} answered HTTP {status} in {took:.2f} s")]


async def check(settings: Settings) -> int:
    _out(f"attn {VERSION}")
    _out("effective configuration:")
    for name, text in effective_configuration(settings):
        _out(f"  {name}={text}")
    results = [
        (True, "settings: valid"),
        *await _check_redis(settings),
        *await _check_postgres(settings),
        *await _check_portal(settings),
    ]
    _out("checks:")
    for ok, line in results:
        _out(f"  {'ok  ' if ok else 'FAIL'} {line}")
    failed = sum(1 for ok, _ in results if not ok)
    _out(f"{failed} check(s) failed" if failed else "all checks passed")
    return 1 if failed else 0


# --- outbox ---------------------------------------------------------------------------------


async def outbox_command(settings: Settings, args: argparse.Namespace) -> int:
    redis = RedisStores.from_url(
        settings.redis_url, sentinel=settings.redis_sentinel, max_connections=2
    )
    try:
        await redis.ping()
        outbox = OutboxLanes(redis.redis)
        if args.action == "stats":
            return await _outbox_stats(outbox, redis)
        if args.action == "requeue":
            return await _outbox_requeue(outbox, redis, args.consumer)
        return await _outbox_drop(outbox, redis, args.older_than)
    finally:
        await redis.close()


async def _outbox_stats(outbox: OutboxLanes, redis: RedisStores) -> int:
    depth, in_flight, oldest_ms = await outbox.overview()
    age = 0.0 if oldest_ms is None else max(0.0, time.time() - oldest_ms / 1000.0)
    _out(f"waiting: {depth} (in flight: {in_flight})")
    _out(f"oldest: {age:.0f} s")
    for name, pending, alive in await _consumers(outbox, redis):
        _out(f"worker {name}: {pending} in flight, {'alive' if alive else 'stopped'}")
    return 0


async def _consumers(outbox: OutboxLanes, redis: RedisStores) -> list[tuple[str, int, bool]]:
    """Every consumer of any lane, with its entries pending over all lanes."""
    from dal.redis import keys

    await outbox.ensure_group()
    pending: dict[str, int] = {}
    for lane in outbox.outboxes:
        for info in await redis.redis.xinfo_consumers(lane.stream, lane.group):
            name = info["name"].decode() if isinstance(info["name"], bytes) else str(info["name"])
            pending[name] = pending.get(name, 0) + int(info["pending"])
    found = []
    for name, count in pending.items():
        alive = bool(await redis.redis.exists(keys.outbox_alive(name)))
        found.append((name, count, alive))
    return found


async def _outbox_requeue(outbox: OutboxLanes, redis: RedisStores, consumer: str | None) -> int:
    """The notices taken by a worker that stopped go back to the end of the stream, for any
    live worker to send (one that is alive is left alone unless named)."""
    moved = 0
    for name, pending, alive in await _consumers(outbox, redis):
        if (consumer is not None and name != consumer) or (consumer is None and alive):
            continue
        if pending:
            entries = await outbox.read(name, pending, block_ms=None, own=True)
            moved += await outbox.requeue(name, entries)
        for lane in outbox.outboxes:
            await redis.redis.xgroup_delconsumer(lane.stream, lane.group, name)
    _out(f"requeued {moved} notice(s)")
    return 0


async def _outbox_drop(outbox: OutboxLanes, redis: RedisStores, older_than: float | None) -> int:
    cutoff_ms = None if older_than is None else (time.time() - older_than) * 1000.0
    await outbox.ensure_group()
    dropped = 0
    for lane in outbox.outboxes:
        dropped += await _drop_lane(lane, redis, cutoff_ms)
    _out(f"dropped {dropped} notice(s)")
    return 0


async def _drop_lane(outbox: Outbox, redis: RedisStores, cutoff_ms: float | None) -> int:
    doomed: list[str] = []
    start = "-"
    while True:
        page: list[Any] = list(
            await redis.redis.xrange(outbox.stream, start, "+", count=1000) or ()
        )
        for raw_id, _fields in page:
            entry_id = raw_id.decode() if isinstance(raw_id, bytes) else str(raw_id)
            if cutoff_ms is None or int(entry_id.split("-", 1)[0]) <= cutoff_ms:
                doomed.append(entry_id)
        if len(page) < 1000:
            break
        last = page[-1][0]
        start = "(" + (last.decode() if isinstance(last, bytes) else str(last))
    for first in range(0, len(doomed), 500):
        await outbox.ack(doomed[first : first + 500])
    return len(doomed)


# --- forget-user ----------------------------------------------------------------------------


async def forget_user(settings: Settings, school_number: str) -> int:
    number = school_number.strip()
    redis = RedisStores.from_url(
        settings.redis_url, sentinel=settings.redis_sentinel, max_connections=2
    )
    try:
        await redis.ping()
        pg = await Postgres.connect(settings.database_url, max_size=2, migrate=False)
        try:
            erasure = RedisErasure(redis.redis, OutboxLanes(redis.redis))
            live = await erasure.live_sessions_of(school_number=number)
            if live:
                _err(
                    f"{number} is in {len(live)} session(s) not yet saved ({', '.join(live)});"
                    " nothing was changed: run again once they are finalized"
                )
                return 1
            person = await pg.erasure.get_person(school_number=number)
            if person is None:
                # Still sweep Redis: a link that outlived its user row would hold the number.
                deleted, dropped = await erasure.erase(school_number=number, telegram_id=None)
                _err(f"no user {number} in PostgreSQL; {deleted} Redis key(s) removed")
                return 1
            full_name, _role, telegram_id = person
            name_key = person_key(full_name)
            erased = await pg.erasure.erase_person(school_number=number, name_key=name_key)
            deleted, dropped = await erasure.erase(
                school_number=number, telegram_id=telegram_id, texts=[full_name], name_key=name_key
            )
        finally:
            await pg.db.close()
    finally:
        await redis.close()
    assert erased is not None  # the row was locked and read inside the erasure
    _out(
        f"erased {number} ({erased.role}): {erased.records} attendance record(s),"
        f" {erased.excuse_requests} excuse request(s),"
        f" {deleted} Redis key(s), {dropped} queued notice(s)"
        + (
            f"; {erased.sessions_kept} session(s) taught kept under {erased.tombstone}"
            if erased.tombstone
            else ""
        )
    )
    return 0


# --- export ---------------------------------------------------------------------------------


async def _term_window(pg: Postgres, term: str, tz: ZoneInfo) -> tuple[datetime, datetime] | None:
    """[start, end) of the term: the dates given, or the span of the cached schedules that name
    the term (a day either side, for lessons moved at its edges)."""
    match = _DATE_RANGE.match(term)
    if match is not None:
        start, end = (datetime.fromisoformat(d).replace(tzinfo=tz) for d in match.groups())
        return start, end
    span = await pg.schedules.get_term_span(term=term)
    if span is None:
        return None
    return span[0] - timedelta(days=1), span[1] + timedelta(days=1)


async def export(settings: Settings, args: argparse.Namespace) -> int:
    pg = await Postgres.connect(settings.database_url, max_size=2, migrate=False)
    try:
        window = await _term_window(pg, args.term, settings.tz)
        if window is None:
            _err(f"no cached schedule names term {args.term!r}; give dates as FROM..TO instead")
            return 1
        reports = ReportService(
            accounts=pg.accounts,
            attendance=pg.attendance,
            corrections=pg.corrections,
            reports=pg.reports,
            tz=settings.tz,
            rule=warning_rule(settings),
        )
        try:
            data = await reports.registrar_course_data(
                course_key=args.course, start=window[0], end=window[1]
            )
        except SessionGone:
            _err(f"no saved session of {args.course} in {args.term}")
            return 1
    finally:
        await pg.db.close()
    body = (course_xlsx if args.format == "xlsx" else course_csv)(data, tz=settings.tz)
    target: Path = args.output or Path(
        document_name(args.course, datetime.now(UTC).astimezone(settings.tz), args.format)
    )
    await asyncio.to_thread(target.write_bytes, body)
    students = len(data.students())
    _out(f"wrote {target}: {len(data.sessions)} session(s), {students} student(s)")
    return 0
