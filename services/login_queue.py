"""Portal sign-ons beyond the portal's pace wait in line instead of being refused.

`submit` signs on at once while the line is empty and the minute's turns
(`AKSIS_LOGINS_PER_MINUTE`, counted by `AccountService`) allow; otherwise the sign-on is queued
(dal/redis/login_queue.py: in Redis, shared by replicas, kept across restarts) with the user
name and password sealed together, and the caller learns its place and an estimate. `run_once`,
called every second on every replica (bot/login_worker.py), claims as many tickets from the
head of the line as the portal's pace leaves and signs each on, exactly once per claim: the
claim and the portal turn are one atomic step, and a claim held by a replica that died lapses
and goes back to the head of the line. The sealed credentials are deleted when the sign-on is
done; they never reach a log. A class of N at pace R is signed on in about N / R minutes.

Every outcome, whether at once or from the line, is a `SignOnResult`; the bot layer renders it
in the user's language (ui/login.py), on the page or in the chat.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import uuid
from collections.abc import Callable
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from typing import Literal, Protocol

from dal.redis.guards import Guards
from dal.redis.login_queue import LoginQueueStore
from services.accounts import PORTAL_LOGINS_KEY, AccountService, LoginOutcome
from services.aksis import InvalidCredentials, PortalChanged, PortalUnavailable
from services.errors import LoginThrottled, PortalBusy

log = logging.getLogger(__name__)

Kind = Literal["ok", "throttled", "wrong", "portal_down", "portal_changed", "expired"]
Channel = Literal["page", "chat"]


class CredentialSealer(Protocol):
    """bot.secrets.Sealer: encryption with an expiry."""

    def seal(self, value: str) -> str: ...

    def unseal(self, token: str) -> str | None: ...


@dataclass(frozen=True, slots=True)
class SignOnResult:
    kind: Kind
    name: str = ""
    role: str = ""
    number: str = ""
    lessons: int = 0
    retry_after: int = 0

    @classmethod
    def of(cls, outcome: LoginOutcome) -> SignOnResult:
        session = outcome.session
        return cls(
            "ok",
            name=session.full_name,
            role=str(session.role),
            number=session.school_number,
            lessons=outcome.lessons,
        )


@dataclass(frozen=True, slots=True)
class Queued:
    ticket: str
    place: int  # 1-based; 0 while being signed on
    wait_seconds: int


@dataclass(frozen=True, slots=True)
class Ticket:
    """Who waits and where they are told: the chat and progress message for a chat login."""

    ticket: str
    telegram_id: int
    language: str
    channel: Channel
    chat_id: int | None
    message_id: int | None


@dataclass(frozen=True, slots=True)
class Finished:
    ticket: Ticket
    result: SignOnResult


@dataclass(frozen=True, slots=True)
class Progress:
    ticket: Ticket
    queued: Queued


def _result_of_error(exc: Exception) -> SignOnResult:
    if isinstance(exc, LoginThrottled):
        return SignOnResult("throttled", retry_after=exc.retry_after)
    if isinstance(exc, InvalidCredentials):
        return SignOnResult("wrong")
    if isinstance(exc, PortalChanged):
        log.error("Aksis pages did not look as expected during a login")
        return SignOnResult("portal_changed")
    return SignOnResult("portal_down")


class LoginQueue:
    def __init__(
        self,
        *,
        accounts: AccountService,
        store: LoginQueueStore,
        guards: Guards,
        sealer: CredentialSealer,
        ticket_ttl_seconds: int = 7200,
        result_ttl_seconds: int = 900,
        claim_seconds: int = 120,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self._accounts = accounts
        self._store = store
        self._guards = guards
        self._sealer = sealer
        # The portal's pace is AccountService's: its turns are what the queue waits for.
        self._per_window, self._window = accounts.portal_pace
        self._ticket_ttl = ticket_ttl_seconds
        self._result_ttl = result_ttl_seconds
        self._claim_seconds = claim_seconds
        self._clock = clock

    # --- the way in ----------------------------------------------------------------------

    async def submit(
        self,
        *,
        telegram_id: int,
        language: str,
        username: str,
        password: str,
        channel: Channel = "page",
        chat_id: int | None = None,
        message_id: int | None = None,
    ) -> SignOnResult | Queued:
        """Sign on now, or queue the sign-on when the portal's turns are taken (or others are
        already waiting: nobody overtakes the line)."""
        wait = await self._accounts.login_retry_after(telegram_id=telegram_id, username=username)
        if wait:
            return SignOnResult("throttled", retry_after=wait)
        if await self._store.waiting_count() == 0:
            try:
                outcome = await self._accounts.login(
                    telegram_id=telegram_id, language=language, username=username, password=password
                )
            except PortalBusy:
                pass
            except (LoginThrottled, InvalidCredentials, PortalUnavailable, PortalChanged) as exc:
                return _result_of_error(exc)
            else:
                return SignOnResult.of(outcome)
        ticket_id = uuid.uuid4().hex
        sealed = self._sealer.seal(json.dumps({"u": username, "p": password}))
        fields = {
            "tg": str(telegram_id),
            "lang": language,
            "channel": channel,
            "sealed": sealed,
            "chat": "" if chat_id is None else str(chat_id),
            "msg": "" if message_id is None else str(message_id),
        }
        place = await self._store.add(
            ticket_id=ticket_id, fields=fields, ttl_seconds=self._ticket_ttl
        )
        log.info("portal busy: sign-on queued at place %d", place)
        return Queued(ticket_id, place, await self._estimate(place))

    async def attach_message(self, *, ticket: str, message_id: int) -> None:
        """The chat's progress message of a queued chat login (edited as the line moves)."""
        await self._store.set_field(ticket_id=ticket, name="msg", value=str(message_id))

    async def status(self, *, ticket: str, telegram_id: int) -> SignOnResult | Queued | None:
        """Where this account's ticket stands; None when it is not this account's (or gone)."""
        fields = await self._store.get(ticket_id=ticket)
        if fields.get("tg") != str(telegram_id):
            return None
        raw = fields.get("result")
        if raw:
            return SignOnResult(**json.loads(raw))
        place = await self._store.place(ticket_id=ticket)
        if place is None:
            return None
        return Queued(ticket, place, await self._estimate(place))

    async def _estimate(self, place: int) -> int:
        """Seconds until the sign-on at `place` gets a portal turn (0 while being signed on)."""
        if place <= 0:
            return 0
        used, ttl = await self._guards.get_counter(key=PORTAL_LOGINS_KEY)
        free_now = self._per_window - used if ttl > 0 else self._per_window
        if place <= free_now:
            return 1
        later = place - max(free_now, 0)
        # The turns beyond those free now come with the next window: at the current one's end,
        # or, when no window is running (the last one ran out and nobody has taken a turn
        # since), a whole window after the free turns are taken, which is now.
        next_window = ttl if ttl > 0 else self._window
        return next_window + ((later - 1) // self._per_window) * self._window + 1

    # --- the worker ----------------------------------------------------------------------

    async def run_once(self) -> list[Finished]:
        """Sign on the tickets whose turn has come; their results."""
        claimed = await self._store.claim(
            counter_key=PORTAL_LOGINS_KEY,
            per_window=self._per_window,
            window_seconds=self._window,
            claim_seconds=self._claim_seconds,
            limit=self._per_window,
        )
        if not claimed:
            return []
        done = await asyncio.gather(*(self._sign_on(ticket_id) for ticket_id in claimed))
        return [x for x in done if x is not None]

    async def _sign_on(self, ticket_id: str) -> Finished | None:
        try:
            return await self._sign_on_claimed(ticket_id)
        except asyncio.CancelledError:
            # Stopping (SIGTERM) mid sign-on: the ticket goes back to the head of the line at
            # once, not after the claim's two minutes.
            with contextlib.suppress(Exception):
                await asyncio.shield(self._store.release(ticket_id=ticket_id))
            raise

    async def _sign_on_claimed(self, ticket_id: str) -> Finished | None:
        fields = await self._store.get(ticket_id=ticket_id)
        ticket = self._ticket(ticket_id, fields)
        creds = self._sealer.unseal(fields.get("sealed", "")) if fields.get("sealed") else None
        if ticket is None or creds is None:
            result = SignOnResult("expired")
        else:
            secret = json.loads(creds)
            try:
                outcome = await self._accounts.login(
                    telegram_id=ticket.telegram_id,
                    language=ticket.language,
                    username=str(secret["u"]),
                    password=str(secret["p"]),
                    turn_taken=True,
                )
            except (LoginThrottled, InvalidCredentials, PortalUnavailable, PortalChanged) as exc:
                result = _result_of_error(exc)
            else:
                result = SignOnResult.of(outcome)
            del secret, creds
        if not await self._store.finish(
            ticket_id=ticket_id, result=json.dumps(asdict(result)), ttl_seconds=self._result_ttl
        ):
            log.warning("a queued sign-on's claim lapsed before it finished")
            return None
        if ticket is None:
            return None
        return Finished(ticket, result)

    @staticmethod
    def _ticket(ticket_id: str, fields: dict[str, str]) -> Ticket | None:
        if not fields.get("tg"):
            return None
        channel: Channel = "chat" if fields.get("channel") == "chat" else "page"
        return Ticket(
            ticket=ticket_id,
            telegram_id=int(fields["tg"]),
            language=fields.get("lang", "en"),
            channel=channel,
            chat_id=int(fields["chat"]) if fields.get("chat") else None,
            message_id=int(fields["msg"]) if fields.get("msg") else None,
        )

    async def chat_progress(self, *, limit: int = 500) -> list[Progress]:
        """Chat logins in line whose estimate (in minutes) changed since they were last told:
        their progress message is edited with the new place."""
        changed: list[Progress] = []
        for place, ticket_id in enumerate(await self._store.waiting(limit=limit), start=1):
            fields = await self._store.get(ticket_id=ticket_id)
            ticket = self._ticket(ticket_id, fields)
            if ticket is None or ticket.channel != "chat" or ticket.message_id is None:
                continue
            queued = Queued(ticket_id, place, await self._estimate(place))
            shown = f"{place}:{minutes(queued.wait_seconds)}"
            if fields.get("shown") != shown:
                await self._store.set_field(ticket_id=ticket_id, name="shown", value=shown)
                changed.append(Progress(ticket, queued))
        return changed


def minutes(seconds: int) -> int:
    """Whole minutes to show for a wait (at least 1)."""
    return max(1, (seconds + 59) // 60)
