"""Every Redis key name ATTN uses, built (and, for the purge, read back) in this one place.

    users:<telegram_id>                  CachedAccount JSON, TTL by role
    users:<telegram_id>:undeliverable    present while Telegram refuses to deliver to the account
                                         (expiry: RETENTION_DAYS; purged with the account)
    login:prompt:<telegram_id>           the bot asked this account for a credential (expiry)
    attendances:{<id>}                   LiveSession JSON
    attendance_records:{<id>}            hash student_number -> record JSON without attendance_id
    attendances:{<id>}:enrolled          set of enrolled student numbers (written at open)
    attendances:{<id>}:claim             finalization claim (owner token, with expiry)
    attendances:code:<6 digits>          attendance id; unique among sessions not yet finalized
    attendances:teacher:<school_number>  id of the teacher's open session
    attendances:due                      zset: id scored by end epoch seconds (planned end while
                                         open, actual end once ended); ended means score <= now
    attendances:rotations                zset: id of each open level-3 session scored by when
                                         its code last changed (the rotation schedule)
    checkin:location:<telegram_id>       "<id>|<student number>": a level 2/3 check-in waits
                                         for this account's location (with expiry)
    loginq:waiting                       zset: queued portal sign-ons, ticket id scored by order
    loginq:claimed                       zset: ticket ids being signed on, scored by claim expiry
    loginq:seq                           counter giving each queued sign-on its order
    loginq:ticket:<id>                   hash: one queued sign-on (credentials sealed), with expiry
    throttle:<kind>:<subject>            counters with expiry
    once:<kind>:<...>                    dedupe markers
    locks:<name>                         job locks (one replica per scheduler tick)
    outbox, outbox:alive:<consumer>      the notice stream and its consumers' heartbeats
    outbox:answer|urgent|result          the other lanes' streams (dal/redis/outbox.py)
    outbox:later                         entries due later (held digests), by due ms
    digest:<kind>:<tg id>[:w|:h]         a recipient's waiting digest, its marker, its hold
    prefs:receipts:<school number>       /receipts is on
    flood:<bot id>:...                   the shared flood budget (bot/flood.py)
    <fsm prefix>:<chat>[:<thread>]:<user>:(state|data|lock)   aiogram's FSM (its key builder)

Keys of one session share the `{<id>}` hash tag. The code, teacher and due keys are global
indexes: a script that starts from one of them and reaches a session's keys builds those names
in Lua (`SESSION_PREFIX` and friends below, the same strings); each such script says so at its
top. Fine on one Redis primary (with replicas and Sentinel: the supported topology), not on
Cluster, which would place the indexes on other shards than the sessions they index.
"""

from __future__ import annotations

import re
from typing import Final
from uuid import UUID

# The pieces the Lua scripts also spell (they build session keys from ids they look up).
SESSION_PREFIX: Final = "attendances:"
RECORDS_PREFIX: Final = "attendance_records:"

DUE: Final = "attendances:due"
ROTATIONS: Final = "attendances:rotations"
OUTBOX_STREAM: Final = "outbox"
OUTBOX_GROUP: Final = "delivery"
OUTBOX_LATER: Final = "outbox:later"  # zset: entries due later (digests on hold), by due ms

# SCAN patterns of the purge (services/purge.py).
CODE_PATTERN: Final = "attendances:code:*"
TEACHER_PATTERN: Final = "attendances:teacher:*"
RECORDS_PATTERN: Final = "attendance_records:*"
SESSION_PARTS_PATTERN: Final = "attendances:{*}:*"
THROTTLE_PATTERN: Final = "throttle:*"
ONCE_PATTERN: Final = "once:*"
LOCK_PATTERN: Final = "locks:*"

_SESSION_ID: Final = re.compile(r"\{([0-9a-fA-F-]{36})\}")
_FSM_PARTS: Final = frozenset({"state", "data"})


def user(telegram_id: int) -> str:
    return f"users:{telegram_id}"


def undeliverable(telegram_id: int) -> str:
    return f"users:{telegram_id}:undeliverable"


def digest(kind: str, telegram_id: int) -> tuple[str, str, str]:
    """A recipient's digest of `kind`: (its waiting notices, the marker "an entry will send
    them", the hold "one went out within the hour")."""
    base = f"digest:{kind}:{telegram_id}"
    return base, f"{base}:w", f"{base}:h"


def receipts(school_number: str) -> str:
    """Set while the person wants a result notice even when it only repeats their answer."""
    return f"prefs:receipts:{school_number}"


def login_prompt(telegram_id: int) -> str:
    return f"login:prompt:{telegram_id}"


LOGIN_WAITING: Final = "loginq:waiting"
LOGIN_CLAIMED: Final = "loginq:claimed"
LOGIN_SEQ: Final = "loginq:seq"


def login_ticket(ticket_id: str) -> str:
    return f"loginq:ticket:{ticket_id}"


def attendance(attendance_id: UUID | str) -> str:
    return f"attendances:{{{attendance_id}}}"


def records(attendance_id: UUID | str) -> str:
    return f"attendance_records:{{{attendance_id}}}"


def enrolled(attendance_id: UUID | str) -> str:
    return f"attendances:{{{attendance_id}}}:enrolled"


def claim(attendance_id: UUID | str) -> str:
    return f"attendances:{{{attendance_id}}}:claim"


def code(value: str) -> str:
    return f"attendances:code:{value}"


def teacher(teacher_school_number: str) -> str:
    return f"attendances:teacher:{teacher_school_number}"


def location_wait(telegram_id: int) -> str:
    return f"checkin:location:{telegram_id}"


def throttle(kind: str, subject: object) -> str:
    return f"throttle:{kind}:{subject}"


def once(kind: str, *parts: object) -> str:
    return ":".join(["once", kind, *(str(p) for p in parts)])


def lock(name: str) -> str:
    return f"locks:{name}"


def outbox_alive(consumer: str) -> str:
    return f"outbox:alive:{consumer}"


def flood_prefix(bot_id: int | str) -> str:
    return f"flood:{bot_id}:"


def fsm_pattern(prefix: str) -> str:
    return f"{prefix}:*"


def session_part(key: str) -> tuple[str, str] | None:
    """`attendance_records:{<id>}` -> (id, ""), `attendances:{<id>}:enrolled` -> (id,
    ":enrolled"): the session id a per-session key belongs to and what follows its tag."""
    match = _SESSION_ID.search(key)
    if match is None:
        return None
    return match.group(1), key[match.end() :]


def fsm_owner(key: str) -> tuple[str, int] | None:
    """aiogram's `<prefix>:<chat>[:<thread>]:<user>:(state|data)` -> (the key without its
    last part, the Telegram user id); None for any other key (e.g. aiogram's locks)."""
    parts = key.split(":")
    if len(parts) < 4 or parts[-1] not in _FSM_PARTS:
        return None
    try:
        return ":".join(parts[:-1]), int(parts[-2])
    except ValueError:
        return None


def fsm_pair(base: str) -> tuple[str, str]:
    """The state and data keys of one FSM conversation (`base` from `fsm_owner`)."""
    return f"{base}:state", f"{base}:data"
