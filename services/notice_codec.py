"""The one wire form of a `services.notify.Notice`: what an outbox entry holds.

The outbox (dal/redis/outbox.py) stores these strings without reading them; the delivery
worker (bot/delivery.py) decodes them when it sends. Entries outlive a deploy, so the form is
a contract with entries already queued: change it only in ways `decode` still reads.

A notice entry is one compact JSON object:

    t  telegram id                     l  language        k  message key
    v  values (a `Moment` as {"$m": iso, "z": tz[, "o": 1]}, a `Percent` as {"$p": n},
       anything else JSON has no type for as its str)
    b  buttons, [[label_key, action, [args...]], ...]
    d  drop-if conditions, [[kind, args...], ...] (`conditions`)
    m  attachment, [kind, file_id]
    a, f  transient failures so far and the epoch seconds of the first (`Tries`)

Two entries carry no message key: {"t", "x"} is already rendered text sent as is (an answer
that could not go out at once), {"t", "g"} sends a recipient's digest of kind g.

The staleness conditions travel apart from the notice too: `conditions` is the JSON array the
outbox's staleness script (dal/redis/lua/outbox_check_stale.lua) evaluates, one
`[kind, args...]` per `Stale`; the kinds and their meaning are `Stale`'s constructors.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from services.notify import Attachment, Button, Moment, Notice, Percent, Stale


@dataclass(frozen=True, slots=True)
class Tries:
    """How often a notice failed transiently, and since when (epoch seconds of the first)."""

    count: int = 0
    since: float = 0.0

    def failed(self, now: float) -> Tries:
        return Tries(self.count + 1, self.since or now)


def encode(notice: Notice, tries: Tries | None = None) -> str:
    if notice.digest and not notice.key:  # the entry that sends a recipient's digest
        body: dict[str, Any] = {"t": notice.telegram_id, "g": notice.digest}
    elif not notice.key:
        body = {"t": notice.telegram_id, "x": notice.values["text"]}
    else:
        body = {"t": notice.telegram_id, "l": notice.language, "k": notice.key}
        if notice.values:
            body["v"] = notice.values
        if notice.buttons:
            body["b"] = [[b.label_key, b.action, list(b.args)] for b in notice.buttons]
        if notice.drop_if:
            body["d"] = [[c.kind, *c.args] for c in notice.drop_if]
        if notice.attachment is not None:
            body["m"] = [notice.attachment.kind, notice.attachment.file_id]
    if tries is not None and tries.count:
        body["a"] = tries.count
        body["f"] = round(tries.since, 3)
    return json.dumps(body, ensure_ascii=False, separators=(",", ":"), default=_typed)


def _typed(value: object) -> object:
    """A value JSON has no type for: times and percentages keep theirs, to be written in the
    recipient's locale when the notice is delivered."""
    if isinstance(value, Moment):
        typed: dict[str, object] = {"$m": value.at.isoformat(), "z": value.tz}
        if value.time_only:
            typed["o"] = 1
        return typed
    if isinstance(value, Percent):
        return {"$p": value.value}
    return str(value)


def _untyped(value: object) -> object:
    if isinstance(value, dict):
        if "$m" in value:
            at = datetime.fromisoformat(str(value["$m"]))
            return Moment(at, str(value["z"]), time_only=bool(value.get("o")))
        if "$p" in value:
            return Percent(float(value["$p"]))
    return value


def encode_text(chat_id: int, text: str) -> str:
    """An already rendered answer (bot/answers.py moves unsent ones here at shutdown)."""
    return json.dumps({"t": chat_id, "x": text}, ensure_ascii=False, separators=(",", ":"))


def digest_entry(kind: str, telegram_id: int) -> str:
    """The entry that sends a recipient's digest of `kind` (what `encode` writes for
    `Notice(telegram_id, "", "", digest=kind)`). The outbox queues it again, byte for byte,
    while notices wait in the digest, so it is always spelled by this one function."""
    return json.dumps({"t": telegram_id, "g": kind}, separators=(",", ":"))


def decode(payload: str) -> tuple[Notice, Tries]:
    """The notice and its tries; ValueError, KeyError, IndexError or TypeError for an entry
    that is not a notice."""
    body = json.loads(payload)
    tries = Tries(int(body.get("a", 0)), float(body.get("f", 0.0)))
    if "g" in body:  # a digest: the notices waiting in it are read when it is sent
        return Notice(int(body["t"]), "", "", digest=str(body["g"])), tries
    if "x" in body:  # rendered text: no key, sent as is
        return Notice(int(body["t"]), "", "", {"text": str(body["x"])}), tries
    notice = Notice(
        telegram_id=int(body["t"]),
        language=str(body["l"]),
        key=str(body["k"]),
        values={k: _untyped(v) for k, v in (body.get("v") or {}).items()},
        buttons=tuple(Button(b[0], b[1], tuple(b[2])) for b in body.get("b") or ()),
        drop_if=tuple(Stale(c[0], tuple(c[1:])) for c in body.get("d") or ()),
        attachment=Attachment(str(body["m"][0]), str(body["m"][1])) if body.get("m") else None,
    )
    return notice, tries


def conditions(drop_if: tuple[Stale, ...]) -> str:
    """A notice's drop-if conditions as the outbox's staleness script reads them."""
    return json.dumps([[c.kind, *c.args] for c in drop_if], ensure_ascii=False)
