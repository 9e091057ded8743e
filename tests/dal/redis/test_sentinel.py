"""Redis high availability through Sentinel, against real processes: a master, its replica and
three sentinels. The bot runs with REDIS_SENTINELS / REDIS_SENTINEL_MASTER; the master is
killed in the middle of a class; the sentinels promote the replica and the bot, without a
restart, finds the new master: the open session is still there and check-ins go on."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import redis

from bot.cli import _check_redis
from bot.config import ConfigError, load_settings
from dal.redis.connection import client as redis_client
from tests.fakes.aksis_server import FakeAksis, portal_lesson
from tests.harness import PASSWORD, Running, reply, running_bot
from tests.throwaway import HOST, ThrowawayRedis, ThrowawaySentinel, sentinel_command
from ui.i18n import t

MASTER = "attn"
SENTINEL_PASSWORD = "sentinel-secret-for-tests"
TEACHER = ("hoca.kartal", "Doç. Dr. ELİF KARTAL")
STUDENTS = [
    ("ayse.yildiz", "AYŞE YILDIZ", "2024201"),
    ("ismail.isik", "İSMAİL IŞIK", "2024202"),
    ("cagri.ozgur", "ÇAĞRI ÖZGÜR", "2024203"),
]


def _wait_for(what: str, condition: object, timeout: float = 15.0) -> None:
    """Poll `condition()` (sync, a few ms each) until true."""
    deadline = time.monotonic() + timeout
    while True:
        with contextlib.suppress(redis.RedisError):
            if condition():  # type: ignore[operator]
                return
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.1)


class Topology:
    """One master, one replica, three sentinels (quorum 2), all on free ports."""

    def __init__(self, root: Path) -> None:
        self.master = ThrowawayRedis(root / "master", "--appendonly", "no")
        self.replica: ThrowawayRedis | None = None
        self.root = root
        self.sentinels: list[ThrowawaySentinel] = []

    async def start(self) -> None:
        await self.master.start()
        self.replica = ThrowawayRedis(
            self.root / "replica",
            "--appendonly", "no",
            "--replicaof", HOST, str(self.master.port),
        )  # fmt: skip
        await self.replica.start()
        replica = redis.Redis(host=HOST, port=self.replica.port, decode_responses=True)
        try:
            _wait_for(
                "the replica's first sync",
                lambda: replica.info("replication").get("master_link_status") == "up",
            )
        finally:
            replica.close()
        self.sentinels = [
            ThrowawaySentinel(
                self.root / f"sentinel{n}",
                name=MASTER,
                master_port=self.master.port,
                password=SENTINEL_PASSWORD,
            )
            for n in range(3)
        ]
        for sentinel in self.sentinels:
            await sentinel.start()
        # A failover needs each sentinel to know the replica and the two other sentinels.
        for sentinel in self.sentinels:
            node = sentinel.client()
            try:
                _wait_for(
                    "the sentinels to find the replica and each other",
                    lambda node=node: (
                        len(node.sentinel_slaves(MASTER)) == 1
                        and len(node.sentinel_sentinels(MASTER)) == 2
                    ),
                )
            finally:
                node.close()

    def master_port(self) -> int:
        node = self.sentinels[0].client()
        try:
            _host, port = node.sentinel_get_master_addr_by_name(MASTER)
            return int(port)
        finally:
            node.close()

    @property
    def addresses(self) -> str:
        return ",".join(sentinel.address for sentinel in self.sentinels)

    async def stop(self) -> None:
        for sentinel in self.sentinels:
            await sentinel.stop()
        if self.replica is not None:
            await self.replica.stop()
        await self.master.stop()


@pytest.fixture
async def topology(tmp_path: Path) -> AsyncIterator[Topology]:
    if sentinel_command() is None:
        pytest.skip("no redis-sentinel binary and no redis-server to run as one (--sentinel)")
    servers = Topology(tmp_path)
    try:
        await servers.start()
        yield servers
    finally:
        await servers.stop()


@pytest.fixture
async def portal() -> AsyncIterator[FakeAksis]:
    async with FakeAksis() as fake:
        now = datetime.now(UTC)
        lesson = portal_lesson(now - timedelta(minutes=5), minutes=60, hocalar=TEACHER[1])
        fake.add_teacher(TEACHER[0], PASSWORD, TEACHER[1], lessons=[lesson])
        for username, name, number in STUDENTS:
            fake.add_student(username, PASSWORD, name, number, lessons=[lesson])
        yield fake


async def _checked_in(bot: Running, user: object, code: str, *, within: float) -> None:
    """`user` sends `code` until the bot says checked in; meanwhile only "try again"."""
    deadline = time.monotonic() + within
    while True:
        await user.send(code)  # type: ignore[attr-defined]
        text = str((await reply(user)).get("text"))  # type: ignore[arg-type]
        if "checked in" in text:
            return
        assert text == t("error.unavailable", locale="en"), text
        assert time.monotonic() < deadline, "the bot did not find the new master"
        await asyncio.sleep(0.3)


@pytest.mark.slow  # processes of its own: the embedded pass would run the same binaries again
async def test_a_failover_keeps_the_open_session_and_check_ins_go_on(
    pg_dsn: str, topology: Topology, portal: FakeAksis
) -> None:
    first_master = topology.master.port
    sentinel_settings = {
        "redis_sentinels": topology.addresses,
        "redis_sentinel_master": MASTER,
        "redis_sentinel_password": SENTINEL_PASSWORD,
    }
    # REDIS_URL names the first master (the harness flushes it before the bot starts); with
    # the Sentinel settings the bot asks the sentinels instead, which the failover proves.
    async with running_bot(
        pg_dsn=pg_dsn, redis_url=topology.master.url, aksis=portal, **sentinel_settings
    ) as bot:
        teacher = bot.user(8_100, "Elif", "tr")
        students = [bot.user(8_200 + i, name.split()[0], "en") for i, (_, name, _) in
                    enumerate(STUDENTS)]  # fmt: skip
        await bot.login(teacher, TEACHER[0])
        for user, (username, *_rest) in zip(students, STUDENTS, strict=True):
            await bot.login(user, username)
        code = await bot.start_session(teacher)
        first, second, third = students
        await _checked_in(bot, first, code, within=0)

        # Everything written so far has reached the replica (replication is asynchronous: what
        # it had not received would be lost with the master, as the README says).
        raw = redis_client(topology.master.url)
        try:
            assert await raw.execute_command("WAIT", 1, 5000) == 1
        finally:
            await raw.aclose()
        started = time.monotonic()
        await topology.master.kill()

        await _checked_in(bot, second, code, within=20)
        took = time.monotonic() - started
        assert topology.master_port() != first_master
        assert topology.replica is not None and topology.master_port() == topology.replica.port
        # The session opened before the failover is whole on the new master.
        attendance_id = await bot.app.redis.sessions.get_attendance_id_by_code(code=code)
        assert attendance_id is not None
        session = await bot.app.redis.sessions.get_attendance(attendance_id=attendance_id)
        assert session is not None and session.end_time is None
        await _checked_in(bot, third, code, within=0)
        sessions = bot.app.redis.sessions
        assert await sessions.count_attendance_records(attendance_id=attendance_id) == 3
        # A second try from the first student is a duplicate on the new master: their record
        # from before the failover is there.
        await first.send(code)
        assert "You are already checked in" in str((await reply(first)).get("text"))
        print(f"failover: check-ins again {took:.1f} s after the master was killed")

    # The operator's check reaches the master the sentinels name (the first one is dead).
    settings = load_settings(
        aksis_mode="demo", database_url=pg_dsn, redis_url=topology.master.url, **sentinel_settings
    )
    (reached, found), (policy_ok, policy) = (await _check_redis(settings))[:2]
    assert reached, found
    assert f"Sentinel master via {topology.addresses}" in found
    assert policy_ok and policy == "redis eviction policy: noeviction"


def test_sentinel_settings_come_in_pairs_and_name_host_port() -> None:
    with pytest.raises(ConfigError, match="REDIS_SENTINEL_MASTER"):
        load_settings(aksis_mode="demo", redis_sentinels="10.0.0.1:26379")
    with pytest.raises(ConfigError, match="REDIS_SENTINELS"):
        load_settings(aksis_mode="demo", redis_sentinel_master="attn")
    with pytest.raises(ConfigError, match=r"REDIS_SENTINELS.*host:port"):
        load_settings(
            aksis_mode="demo",
            redis_sentinels="10.0.0.1:26379,sentinel-b",
            redis_sentinel_master="attn",
        )
    with pytest.raises(ConfigError, match="REDIS_URL"):
        load_settings(
            aksis_mode="demo",
            redis_sentinels="10.0.0.1:26379",
            redis_sentinel_master="attn",
            redis_url="unix:///run/redis.sock",
        )
    settings = load_settings(
        aksis_mode="demo",
        redis_sentinels=" 10.0.0.1:26379, [::1]:26380 ,",
        redis_sentinel_master="attn",
        redis_url="rediss://:pw@ignored:6379/2",
    )
    target = settings.redis_sentinel
    assert target is not None
    assert target.sentinels == (("10.0.0.1", 26379), ("::1", 26380))
    assert target.master == "attn" and target.password is None
    assert load_settings(aksis_mode="demo").redis_sentinel is None
