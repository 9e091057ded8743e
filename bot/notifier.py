"""The services' `Notifier`: `OutboxNotifier` puts notices in the durable outbox (each in its
lane, the once-marker in the same atomic step), from where the worker of bot/delivery.py renders
and sends them.
"""

from __future__ import annotations

from collections.abc import Sequence

from dal.redis.outbox import Outbox, OutboxLanes
from services.notice_codec import digest_entry, encode
from services.notify import Notice


class OutboxNotifier:
    """`services.notify.Notifier` over the durable outbox."""

    def __init__(self, outbox: Outbox | OutboxLanes) -> None:
        self._outbox = lanes_of(outbox)

    async def enqueue(
        self,
        notices: Sequence[Notice],
        *,
        once: str | None = None,
        once_ttl: int = 0,
        once_state: str | None = None,
    ) -> bool:
        """Each notice into its lane (`Notice.lane`); with `once`, all of them atomically."""
        return await self._outbox.add(
            [(n.lane, encode(n), outbox_digest(n) if n.digest else None) for n in notices],
            once=once,
            once_ttl=once_ttl,
            once_state=once_state,
        )


def outbox_digest(notice: Notice) -> tuple[str, int, str]:
    """The outbox's digest of a notice: its kind, its recipient, the entry that sends it."""
    return (notice.digest, notice.telegram_id, digest_entry(notice.digest, notice.telegram_id))


def lanes_of(outbox: Outbox | OutboxLanes) -> OutboxLanes:
    """The lanes; a bare `Outbox` is one lane for everything (first in, first out)."""
    return outbox if isinstance(outbox, OutboxLanes) else OutboxLanes.single(outbox)
