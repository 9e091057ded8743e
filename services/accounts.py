"""Linking a Telegram account to an Aksis account, and finding who a chat belongs to."""

from __future__ import annotations

import hashlib
import hmac
import logging
from collections.abc import Callable, Iterable
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from dal.models import CachedAccount, Role, ScheduleEntry, User
from dal.pg import AccountStore, RetentionStore, ScheduleStore
from dal.redis import keys
from dal.redis.accounts import UserStore, session_ttl_seconds
from dal.redis.guards import Guards
from services.aksis import AksisClient, InvalidCredentials
from services.errors import LoginThrottled, PortalBusy
from services.lesson_finder import Lesson, lesson_slot
from services.members import Member
from services.notify import URGENT, Notice, Notifier
from services.pseudonyms import pseudonym

log = logging.getLogger(__name__)

# A login step (the user name, then the password) is answered within this long (the sealed
# user name expires with it); for as long again afterwards, plain text from the account is
# treated as a late credential: deleted, and answered "login timed out".
LOGIN_STEP_SECONDS = 600
LOGIN_EXPIRED_WINDOW_SECONDS = 600
# The prompt mark's step once a login step has timed out: only this mark outlives the end of
# the conversation (`login_conversation_ended`).
EXPIRED_STEP = "expired"
# The window of the per-account ceiling on portal sign-ons (LOGIN_SIGNONS_PER_HOUR).
SIGNON_WINDOW_SECONDS = 3600
PORTAL_LOGINS_KEY = keys.throttle("portal", "logins")
USERNAME_CHARS = frozenset("0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ._-@")
MAX_PASSWORD_LENGTH = 256


def valid_username(text: str) -> bool:
    """A portal user name as the chat and the sign-in page accept it."""
    return 3 <= len(text) <= 64 and set(text) <= USERNAME_CHARS


@dataclass(frozen=True, slots=True)
class LoginOutcome:
    session: CachedAccount
    lessons: int
    previous_telegram_id: int | None


# A term's "please /login again" goes to each user once (the marker outlives a term).
_TERM_NOTICE_TTL_SECONDS = 250 * 86_400


def term_notice_key(term: str, school_number: str) -> str:
    return keys.once("term", term, school_number)


def lesson_to_entry(school_number: str, lesson: Lesson, term: str | None = None) -> ScheduleEntry:
    """A portal lesson as a cached schedule row. `teacher_key` holds every teacher's key."""
    return ScheduleEntry(
        term=term,
        school_number=school_number,
        start_time=lesson.start,
        end_time=lesson.end,
        course_code=lesson.course_code,
        course_name=lesson.course_name,
        teachers=lesson.teachers,
        teacher_key="|".join(lesson.teacher_keys),
    )


class AccountService:
    def __init__(
        self,
        *,
        accounts: AccountStore,
        schedules: ScheduleStore,
        retention: RetentionStore,
        user_store: UserStore,
        guards: Guards,
        aksis: AksisClient,
        notifier: Notifier,
        throttle_key: bytes,
        student_ttl_days: int,
        teacher_ttl_days: int,
        max_failures: int = 5,
        max_failures_per_username: int = 20,
        failure_window_seconds: int = 15 * 60,
        portal_logins_per_minute: int = 60,
        signons_per_hour: int = 10,
        portal_window_seconds: int = 60,
        undeliverable_ttl_days: int = 365,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
        tz: ZoneInfo | None = None,
    ) -> None:
        self._tz = tz or ZoneInfo("Europe/Istanbul")  # the TIMEZONE setting's default
        self._accounts = accounts
        self._schedules = schedules
        # The Redis copy of an undeliverable mark lives as long as retention keeps inactive
        # accounts (RETENTION_DAYS): a chat that blocked the bot logs in and checks in no more,
        # so by then retention has forgotten the account and cleared its mark in PostgreSQL.
        # A mark still in PostgreSQL gets a fresh expiry at each start (`load_undeliverable`).
        self._undeliverable_ttl = undeliverable_ttl_days * 86_400
        self._retention = retention
        self._user_store = user_store
        self._guards = guards
        self._aksis = aksis
        self._notifier = notifier
        self._throttle_key = throttle_key
        self._student_days = student_ttl_days
        self._teacher_days = teacher_ttl_days
        self._max_failures = max_failures
        self._max_per_username = max_failures_per_username
        self._window = failure_window_seconds
        # `portal_logins_per_minute` sign-ons per window of `portal_window_seconds` (a minute;
        # shorter only in tests, to prove the queue's pace in seconds).
        self._portal_per_minute = portal_logins_per_minute
        self._signons_per_hour = signons_per_hour
        self._portal_window = portal_window_seconds
        self._clock = clock

    # --- throttling ----------------------------------------------------------------------

    def _digest(self, username: str) -> str:
        # The user name is as sensitive as the password: only a keyed digest reaches Redis.
        return hmac.new(
            self._throttle_key, username.strip().casefold().encode(), hashlib.sha256
        ).hexdigest()[:24]

    def _throttle_keys(self, telegram_id: int, username: str | None) -> list[tuple[str, int]]:
        """(counter key, ceiling) pairs of failed sign-ons: from this Telegram account, and
        for this user name from any account. A user name's ceiling is higher than an
        account's, so one account alone can never lock the user name's owner out; it takes
        several accounts, and each of them is stopped at its own ceiling first."""
        counters = [(keys.throttle("login:tg", telegram_id), self._max_failures)]
        if username:
            counters.append(
                (keys.throttle("login:user", self._digest(username)), self._max_per_username)
            )
        return counters

    def _signon_keys(self, telegram_id: int, username: str | None) -> list[tuple[str, int]]:
        """(counter key, ceiling) pairs of portal sign-ons whatever their outcome, per hour:
        from this Telegram account and for this user name. Neither a success nor /logout
        resets them, so no sequence of logins and logouts spends more of the portal-wide
        budget than this."""
        counters = [(keys.throttle("signon:tg", telegram_id), self._signons_per_hour)]
        if username:
            counters.append(
                (keys.throttle("signon:user", self._digest(username)), self._signons_per_hour)
            )
        return counters

    async def login_retry_after(self, *, telegram_id: int, username: str | None = None) -> int:
        """Seconds until this account (and this portal user name) may try again; 0 if now."""
        wait = 0
        counters = self._throttle_keys(telegram_id, username)
        counters += self._signon_keys(telegram_id, username)
        for key, ceiling in counters:
            count, ttl = await self._guards.get_counter(key=key)
            if count >= ceiling:
                wait = max(wait, max(ttl, 1))
        return wait

    async def _portal_turn(self) -> None:
        """Count one sign-on against the overall cap per minute (every replica shares the
        counter); PortalBusy when this minute's sign-ons are used up."""
        count = await self._guards.hit_counter(
            key=PORTAL_LOGINS_KEY, window_seconds=self._portal_window
        )
        if count > self._portal_per_minute:
            _, ttl = await self._guards.get_counter(key=PORTAL_LOGINS_KEY)
            log.warning("portal sign-on cap of %d a minute reached", self._portal_per_minute)
            raise PortalBusy(max(ttl, 1))

    @property
    def portal_pace(self) -> tuple[int, int]:
        """(sign-ons, per this many seconds) the portal takes: the login queue's pace."""
        return self._portal_per_minute, self._portal_window

    # --- the credential prompts ----------------------------------------------------------

    async def prompted_for_credential(self, *, telegram_id: int, step: str) -> None:
        """The bot has just asked this account for its user name or password: until the
        step has expired and the "login expired" window after it has passed, plain text
        from the account may be a credential."""
        await self._user_store.set_login_prompt(
            telegram_id=telegram_id,
            step=step,
            ttl_seconds=LOGIN_STEP_SECONDS + LOGIN_EXPIRED_WINDOW_SECONDS,
        )

    async def credential_answered(self, *, telegram_id: int) -> None:
        await self._user_store.clear_login_prompt(telegram_id=telegram_id)

    async def login_step_expired(self, *, telegram_id: int) -> None:
        """A credential arrived after its step had timed out: for the "login expired" window,
        plain text from the account may still be a credential (the one way a conversation
        ends and the mark stays)."""
        await self._user_store.set_login_prompt(
            telegram_id=telegram_id, step=EXPIRED_STEP, ttl_seconds=LOGIN_EXPIRED_WINDOW_SECONDS
        )

    async def login_conversation_ended(self, *, telegram_id: int) -> None:
        """The /login conversation ended by any route but a timeout (/cancel, the password
        answered, a command that leaves or replaces the conversation): no credential is
        expected any more. Called by the FSM middleware (bot/fsm.py) whenever the state
        leaves the login states."""
        await self._user_store.clear_login_prompt(telegram_id=telegram_id, keep_step=EXPIRED_STEP)

    async def awaits_credential(self, *, telegram_id: int) -> bool:
        """True while the bot's last question to this account was for a credential."""
        return await self._user_store.get_login_prompt(telegram_id=telegram_id) is not None

    async def code_may_be_credential(self, *, telegram_id: int) -> bool:
        """A six-digit text from an account outside any conversation, whose credential prompt
        mark is set: it may be a late password, unless the account is linked (then it is a
        class code: a linked student's check-in is never swallowed by an abandoned /login)."""
        return not await self._user_store.is_linked(telegram_id=telegram_id)

    # --- deliverability ------------------------------------------------------------------

    async def mark_undeliverable(self, *, telegram_id: int, reason: str) -> None:
        """Telegram refused for good to deliver to this account (it blocked the bot): notices
        skip it until it is heard from again (`heard_from`)."""
        await self._accounts.mark_undeliverable(telegram_id=telegram_id, reason=reason)
        await self._user_store.add_undeliverable(
            telegram_ids=[telegram_id], ttl_seconds=self._undeliverable_ttl
        )

    async def heard_from(self, *, telegram_id: int) -> bool:
        """An update came from this account, so Telegram delivers to it again. One Redis
        command; PostgreSQL is written only when the account was marked undeliverable.
        True when it was."""
        if not await self._user_store.remove_undeliverable(telegram_id=telegram_id):
            return False
        await self._accounts.mark_deliverable(telegram_id=telegram_id)
        log.info("chat %s is deliverable again", pseudonym(telegram_id))
        return True

    async def load_undeliverable(self) -> int:
        """Copy the undeliverable marks from PostgreSQL into Redis (at start-up: the set in
        Redis is what `heard_from` checks). Returns how many there are."""
        ids = await self._accounts.get_undeliverable_telegram_ids()
        await self._user_store.add_undeliverable(
            telegram_ids=ids, ttl_seconds=self._undeliverable_ttl
        )
        return len(ids)

    # --- login / logout ------------------------------------------------------------------

    async def login(
        self,
        *,
        telegram_id: int,
        language: str,
        username: str,
        password: str,
        turn_taken: bool = False,
    ) -> LoginOutcome:
        """Sign in through Aksis and link this Telegram account to the portal identity.

        Raises LoginThrottled, PortalBusy (the overall cap on portal sign-ons), or the Aksis
        client's errors (InvalidCredentials,
        PortalUnavailable, PortalChanged). The password is only passed on, never kept.
        `turn_taken`: the login queue already counted this sign-on's portal turn when it
        claimed it (services/login_queue.py).
        """
        wait = await self.login_retry_after(telegram_id=telegram_id, username=username)
        if wait:
            raise LoginThrottled(wait)
        for key, _ in self._signon_keys(telegram_id, username):
            await self._guards.hit_counter(key=key, window_seconds=SIGNON_WINDOW_SECONDS)
        if not turn_taken:
            await self._portal_turn()
        try:
            result = await self._aksis.login(username, password)
        except InvalidCredentials:
            for key, _ in self._throttle_keys(telegram_id, username):
                await self._guards.hit_counter(key=key, window_seconds=self._window)
            raise
        identity = result.identity
        user = User(
            user_school_number=identity.school_number,
            user_full_name=identity.full_name,
            role=identity.role,
        )
        previous = await self._accounts.link_telegram(
            user=user, telegram_id=telegram_id, language=language
        )
        now = self._clock()
        term_before = await self._schedules.get_current_term(now=now)
        await self._schedules.replace_schedule(
            school_number=user.user_school_number,
            entries=[
                lesson_to_entry(user.user_school_number, x, result.term) for x in result.lessons
            ],
        )
        # A new term has begun when a schedule of it has a lesson already started: a page of
        # next term read before it begins asks nobody (the first login after it begins does).
        begun = any(x.start <= now for x in result.lessons)
        if result.term is not None and begun and (term_before is None or result.term > term_before):
            await self._ask_stale_users_to_login(result.term)
        linked = await self._accounts.get_linked_user(telegram_id=telegram_id)
        session = CachedAccount(
            telegram_id=telegram_id,
            school_number=user.user_school_number,
            full_name=user.user_full_name,
            role=user.role,
            language=language,
            reminders_enabled=linked.reminders_enabled if linked else True,
            logged_in_at=self._clock(),
            courses=sorted({x.course_code for x in result.lessons if x.course_code}),
            slots=self._slots(
                (x.course_code, x.start, x.teacher_keys) for x in result.lessons if x.course_code
            ),
            term=result.term,
        )
        await self._user_store.save_user_session(session=session, ttl_seconds=self._ttl(user.role))
        for key, _ in self._throttle_keys(telegram_id, None):
            await self._guards.reset_counter(key=key)
        if previous is not None and previous != telegram_id:
            await self._user_store.delete_user_session(telegram_id=previous)
            await self._notifier.enqueue(
                [
                    Notice(
                        telegram_id=previous,
                        language=language,
                        key="login.moved",
                        values={"number": user.user_school_number},
                        lane=URGENT,  # someone else now uses this account: tell at once
                    )
                ]
            )
        # The account by its pseudonym only: a line holding the school number too would tie the
        # pseudonym to a person for anyone with the logs.
        log.info("linked telegram account %s (%s)", pseudonym(telegram_id), user.role)
        return LoginOutcome(
            session=session, lessons=len(result.lessons), previous_telegram_id=previous
        )

    async def logout(self, *, telegram_id: int) -> bool:
        """Unlink this Telegram account and forget what was kept for it: the link, the cached
        schedule, the language and reminder preferences (PostgreSQL, one transaction), then
        the Redis copy of the link and the receipts preference. Attendance records stay (they
        are the institution's). The login throttles stay too: they count what the account
        tried, not what it is linked to. True if the account was linked."""
        unlinked = await self._retention.forget_telegram_user(telegram_id=telegram_id)
        await self._user_store.delete_user_session(telegram_id=telegram_id)
        if unlinked is not None:
            await self._user_store.set_receipts(school_number=unlinked, enabled=False)
        return unlinked is not None

    # --- who is this chat ----------------------------------------------------------------

    def _ttl(self, role: Role) -> int:
        return session_ttl_seconds(
            role, student_days=self._student_days, teacher_days=self._teacher_days
        )

    async def current_user(self, *, telegram_id: int) -> CachedAccount | None:
        """The linked account of this chat: Redis first, PostgreSQL when the cache is cold.

        A link older than the role's session lifetime has expired: the user logs in again.
        """
        session = await self._user_store.get_user_session(telegram_id=telegram_id)
        if session is not None:
            return session
        linked = await self._accounts.get_linked_user(telegram_id=telegram_id)
        if linked is None or linked.linked_at is None:
            return None
        ttl = self._ttl(linked.role)
        remaining = linked.linked_at + timedelta(seconds=ttl) - self._clock()
        if remaining.total_seconds() <= 0:
            return None
        session = CachedAccount(
            telegram_id=telegram_id,
            school_number=linked.school_number,
            full_name=linked.full_name,
            role=linked.role,
            language=linked.language,
            reminders_enabled=linked.reminders_enabled,
            logged_in_at=linked.linked_at,
            **await self._courses(linked.school_number),
        )
        await self._user_store.save_user_session(
            session=session, ttl_seconds=max(1, int(remaining.total_seconds()))
        )
        return session

    async def _courses(self, school_number: str) -> dict[str, Any]:
        """Course codes and lesson slots of the cached schedule's current term."""
        now = self._clock()
        entries = await self._schedules.get_schedule(
            school_number=school_number,
            start=now - timedelta(days=366),
            end=now + timedelta(days=366),
        )
        coded = [e for e in entries if e.course_code]
        return {
            "term": coded[0].term if coded else None,
            "courses": sorted({e.course_code for e in coded}),
            "slots": self._slots(
                (e.course_code, e.start_time, e.teacher_key.split("|")) for e in coded
            ),
        }

    def _slots(self, lessons: Iterable[tuple[str, datetime, Iterable[str]]]) -> list[str]:
        return sorted({lesson_slot(code, start, keys, self._tz) for code, start, keys in lessons})

    async def _ask_stale_users_to_login(self, term: str) -> None:
        """A new term has begun (the first schedule of `term` just came in): users whose
        cached schedule is from an older term are asked, once each, to /login again. Each
        notice and its once-marker go into the outbox in one step, so a crash part way loses
        none (the next login of the term asks the rest) and repeats none."""
        asked = 0
        for contact in await self._schedules.get_stale_term_contacts(term=term):
            notice = Notice(
                telegram_id=contact.telegram_id,
                language=contact.language,
                key="term.login_again",
                values={},
            )
            if await self._notifier.enqueue(
                [notice],
                once=term_notice_key(term, contact.school_number),
                once_ttl=_TERM_NOTICE_TTL_SECONDS,
            ):
                asked += 1
        if asked:
            log.info("term %s began: %d user(s) asked to /login again", term, asked)

    async def receipts_enabled(self, *, member: Member) -> bool:
        wanted = await self._user_store.receipts_wanted(school_numbers=[member.school_number])
        return member.school_number in wanted

    async def set_receipts(self, *, member: Member, enabled: bool) -> None:
        """Receipts: a result notice also when it only repeats what the check-in answer said
        (present, on time). Off by default: at the top of the hour those repeats would take
        the bot's message budget from notices that tell something."""
        await self._user_store.set_receipts(school_number=member.school_number, enabled=enabled)

    async def set_reminders(self, *, member: Member, enabled: bool) -> Member:
        await self._accounts.set_reminders(school_number=member.school_number, enabled=enabled)
        cached = await self._user_store.get_user_session(telegram_id=member.telegram_id)
        if cached is not None:
            updated = cached.model_copy(update={"reminders_enabled": enabled})
            await self._user_store.save_user_session(
                session=updated, ttl_seconds=self._ttl(member.role)
            )
        return replace(member, reminders_enabled=enabled)
