"""The login queue (services/login_queue.py, dal/redis/login_queue.py) against real PostgreSQL,
Redis and the fake portal: sign-ons beyond the portal's pace wait in line and are all signed on
in turn, nobody asked to start over; each ticket is done once, also across replicas and after a
restart; the sealed credentials are gone once it is done.

The portal's window is shortened here (20 sign-ons per 10 s, a pace of 120 a minute) so that the
line's pace shows in seconds; the class at the real minute window runs in
tests/e2e/test_login_wave.py (slow) and, against `python -m bot`, in bench/login_wave.py."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator

import pytest
import redis.asyncio as aioredis

from bot.config import load_settings
from bot.secrets import Sealer
from dal.pg import Postgres
from dal.redis import keys
from dal.redis.stores import RedisStores
from services.accounts import AccountService
from services.login_queue import LoginQueue, Queued, SignOnResult
from tests.fakes.aksis_server import FakeAksis
from tests.harness import PASSWORD
from tests.support import (
    build_test_services,
)

CLASS = 60
PER_WINDOW = 20
WINDOW = 10


@pytest.fixture
async def portal() -> AsyncIterator[FakeAksis]:
    async with FakeAksis() as fake:
        for i in range(CLASS):
            fake.add_student(f"s{i:03d}", PASSWORD, f"ÖĞRENCİ {i}", f"2024{i:04d}")
        yield fake


def _accounts(pg: Postgres, redis: RedisStores, portal: FakeAksis) -> AccountService:
    services = build_test_services(
        pg,
        redis,
        settings=load_settings(**portal.settings_overrides()),
        accounts={"portal_logins_per_minute": PER_WINDOW, "portal_window_seconds": WINDOW},
    )
    return services.accounts


def _queue(accounts: AccountService, redis: RedisStores, **kwargs: int) -> LoginQueue:
    return LoginQueue(
        accounts=accounts,
        store=redis.login_queue,
        guards=redis.guards,
        sealer=Sealer("q" * 32, ttl_seconds=7200, purpose="login-queue"),
        **kwargs,
    )


async def _everything_in_redis(raw: aioredis.Redis) -> str:
    dump = []
    async for key in raw.scan_iter("*"):
        kind = await raw.type(key)
        if kind == b"hash":
            dump.append(repr(await raw.hgetall(key)))
        elif kind == b"string":
            dump.append(repr(await raw.get(key)))
        elif kind == b"zset":
            dump.append(repr(await raw.zrange(key, 0, -1)))
    return "\n".join(dump)


async def test_a_class_beyond_the_portal_pace_is_linked_in_turn_none_told_to_try_again(
    pg_client: Postgres, redis_client: RedisStores, redis_raw: aioredis.Redis, portal: FakeAksis
) -> None:
    accounts = _accounts(pg_client, redis_client, portal)
    queue = _queue(accounts, redis_client)
    started = time.monotonic()
    first = await asyncio.gather(
        *(
            queue.submit(
                telegram_id=9000 + i, language="tr", username=f"s{i:03d}", password=PASSWORD
            )
            for i in range(CLASS)
        )
    )
    at_once = [x for x in first if isinstance(x, SignOnResult)]
    queued = [x for x in first if isinstance(x, Queued)]
    assert all(x.kind == "ok" for x in at_once)  # nobody refused, nobody asked to come back
    assert len(at_once) == PER_WINDOW and len(queued) == CLASS - PER_WINDOW
    assert sorted(x.place for x in queued) == list(range(1, len(queued) + 1))
    # Each is told about how long: the last in line waits about two more windows.
    last = max(queued, key=lambda x: x.place)
    assert WINDOW < last.wait_seconds <= 2 * WINDOW + 2

    finished: list[tuple[float, SignOnResult]] = []
    while len(finished) < len(queued) and time.monotonic() - started < 4 * WINDOW:
        for done in await queue.run_once():
            finished.append((time.monotonic() - started, done.result))
        await asyncio.sleep(0.2)
    elapsed = time.monotonic() - started
    assert len(finished) == len(queued), f"{len(finished)} of {len(queued)} signed on"
    assert all(result.kind == "ok" for _, result in finished)
    # The portal's pace held: nobody from the line before the first window ended, and the
    # class took about N / R windows (3 here: 60 at 20 a window), not much more.
    assert min(at for at, _ in finished) >= WINDOW - 1
    assert elapsed <= 2 * WINDOW + 8, f"took {elapsed:.1f} s"
    for i in range(CLASS):
        linked = await pg_client.accounts.get_linked_user(telegram_id=9000 + i)
        assert linked is not None and linked.school_number == f"2024{i:04d}"
    # The sealed credentials left Redis with their sign-on.
    dump = await _everything_in_redis(redis_raw)
    assert "sealed" not in dump and PASSWORD not in dump
    assert await redis_raw.zcard(keys.LOGIN_WAITING) == 0
    assert await redis_raw.zcard(keys.LOGIN_CLAIMED) == 0


async def _fill_the_portal_window(redis_raw: aioredis.Redis) -> None:
    from services.accounts import PORTAL_LOGINS_KEY

    await redis_raw.set(PORTAL_LOGINS_KEY, PER_WINDOW, ex=2)


async def test_a_queued_sign_on_is_done_once_by_one_of_two_replicas_after_a_restart(
    pg_client: Postgres, redis_client: RedisStores, redis_raw: aioredis.Redis, portal: FakeAksis
) -> None:
    await _fill_the_portal_window(redis_raw)
    before = _queue(_accounts(pg_client, redis_client, portal), redis_client)
    queued = await before.submit(
        telegram_id=4242, language="en", username="s007", password=PASSWORD
    )
    assert isinstance(queued, Queued) and queued.place == 1
    assert await before.status(ticket=queued.ticket, telegram_id=4243) is None  # not theirs
    del before  # the process that queued it is gone; the ticket is in Redis
    replicas = [_queue(_accounts(pg_client, redis_client, portal), redis_client) for _ in "ab"]
    done = []
    deadline = time.monotonic() + 10
    while not done and time.monotonic() < deadline:
        rounds = await asyncio.gather(*(r.run_once() for r in replicas))
        done = [x for batch in rounds for x in batch]
        await asyncio.sleep(0.1)
    assert len(done) == 1 and done[0].result.kind == "ok"
    assert done[0].result.number == "20240007" and done[0].ticket.telegram_id == 4242
    again = await asyncio.gather(*(r.run_once() for r in replicas))
    assert again == [[], []]
    status = await replicas[0].status(ticket=queued.ticket, telegram_id=4242)
    assert status == done[0].result


async def test_a_claim_whose_replica_died_goes_back_to_the_head_of_the_line(
    pg_client: Postgres, redis_client: RedisStores, redis_raw: aioredis.Redis, portal: FakeAksis
) -> None:
    accounts = _accounts(pg_client, redis_client, portal)
    await _fill_the_portal_window(redis_raw)
    queue = _queue(accounts, redis_client, claim_seconds=1)
    queued = await queue.submit(telegram_id=77, language="en", username="s001", password=PASSWORD)
    assert isinstance(queued, Queued)
    await asyncio.sleep(2.2)  # the portal's window has passed
    # A replica claims it and dies before signing on: nothing but the claim happens.
    claimed = await redis_client.login_queue.claim(
        counter_key="throttle:portal:logins",
        per_window=PER_WINDOW,
        window_seconds=WINDOW,
        claim_seconds=1,
        limit=5,
    )
    assert claimed == [queued.ticket]
    assert await queue.status(ticket=queued.ticket, telegram_id=77) == Queued(queued.ticket, 0, 0)
    assert await queue.run_once() == []  # still claimed
    await asyncio.sleep(1.2)
    done = await queue.run_once()
    assert [x.result.kind for x in done] == ["ok"]
    assert await pg_client.accounts.get_linked_user(telegram_id=77) is not None


async def test_a_sign_on_cut_off_by_a_stop_goes_back_to_the_head_at_once(
    pg_client: Postgres, redis_client: RedisStores, redis_raw: aioredis.Redis, portal: FakeAksis
) -> None:
    """The process stops (its worker cancelled) while the portal is still answering a queued
    sign-on: the ticket does not sit out the claim's two minutes, the next round signs it on."""
    accounts = _accounts(pg_client, redis_client, portal)
    await _fill_the_portal_window(redis_raw)
    queue = _queue(accounts, redis_client)  # claims of the production 120 s
    queued = await queue.submit(telegram_id=78, language="en", username="s003", password=PASSWORD)
    assert isinstance(queued, Queued)
    await asyncio.sleep(2.2)  # the portal's window has passed
    portal.delay_seconds = 5.0  # a slow portal: the sign-on is under way when the stop comes
    worker = asyncio.create_task(queue.run_once())
    deadline = time.monotonic() + 5
    while await queue.status(ticket=queued.ticket, telegram_id=78) != Queued(queued.ticket, 0, 0):
        assert time.monotonic() < deadline, "never claimed"
        await asyncio.sleep(0.05)
    await asyncio.sleep(0.3)
    worker.cancel()
    with pytest.raises(asyncio.CancelledError):
        await worker
    portal.delay_seconds = 0.0
    began = time.monotonic()
    done: list[SignOnResult] = []
    while not done and time.monotonic() - began < 10:
        done = [x.result for x in await queue.run_once()]
        await asyncio.sleep(0.2)
    assert [x.kind for x in done] == ["ok"]
    assert time.monotonic() - began < 5  # not the claim's 120 s
    assert await pg_client.accounts.get_linked_user(telegram_id=78) is not None


async def test_wrong_credentials_in_line_are_answered_and_counted_like_the_chat(
    pg_client: Postgres, redis_client: RedisStores, redis_raw: aioredis.Redis, portal: FakeAksis
) -> None:
    accounts = _accounts(pg_client, redis_client, portal)
    await _fill_the_portal_window(redis_raw)
    queue = _queue(accounts, redis_client)
    queued = await queue.submit(telegram_id=5, language="en", username="s002", password="nope")
    assert isinstance(queued, Queued)
    await asyncio.sleep(2.2)
    done = await queue.run_once()
    assert [x.result.kind for x in done] == ["wrong"]
    assert await pg_client.accounts.get_linked_user(telegram_id=5) is None
    count, _ = await redis_client.guards.get_counter(key=keys.throttle("login:tg", 5))
    assert count == 1  # the same failure throttle as a chat login


async def test_the_estimate_holds_between_a_window_running_out_and_the_next_claim(
    pg_client: Postgres, redis_client: RedisStores, redis_raw: aioredis.Redis, portal: FakeAksis
) -> None:
    """The moment a student in line is promised stays put from one poll to the next, also in
    the second between the portal's window running out and the worker taking the next turns:
    there, only the first window's worth of places may be told "any moment now"."""
    from services.accounts import PORTAL_LOGINS_KEY

    accounts = _accounts(pg_client, redis_client, portal)
    queue = _queue(accounts, redis_client)
    await redis_raw.set(PORTAL_LOGINS_KEY, PER_WINDOW, ex=WINDOW)
    waiting = 2 * PER_WINDOW
    tickets = await asyncio.gather(
        *(
            queue.submit(
                telegram_id=9500 + i, language="en", username=f"s{i:03d}", password=PASSWORD
            )
            for i in range(waiting)
        )
    )
    assert all(isinstance(x, Queued) for x in tickets)
    by_place = {x.place: (i, x) for i, x in enumerate(tickets) if isinstance(x, Queued)}
    head_of_line, first = by_place[1]
    second_at, second_window = by_place[PER_WINDOW + 1]
    assert WINDOW + 1 <= second_window.wait_seconds <= 2 * WINDOW + 1
    promised = time.monotonic() + second_window.wait_seconds

    # The window runs out; the worker has not run yet.
    await redis_raw.delete(PORTAL_LOGINS_KEY)
    head = await queue.status(ticket=first.ticket, telegram_id=9500 + head_of_line)
    assert isinstance(head, Queued) and head.wait_seconds <= 1
    assert head.place == 1
    now = await queue.status(ticket=second_window.ticket, telegram_id=9500 + second_at)
    assert isinstance(now, Queued) and now.place == PER_WINDOW + 1
    # Not "any moment now": it still needs a window after the first twenty's turns.
    assert now.wait_seconds >= WINDOW
    assert abs(time.monotonic() + now.wait_seconds - promised) <= WINDOW + 2

    # The worker takes the first twenty turns: the promise is the same as just before.
    assert len(await queue.run_once()) == PER_WINDOW
    after = await queue.status(ticket=second_window.ticket, telegram_id=9500 + second_at)
    assert isinstance(after, Queued) and after.place == 1
    assert abs(after.wait_seconds - now.wait_seconds) <= 2
