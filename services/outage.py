"""An outage logged once when it starts and once when it ends: the finalizer, the purge and
the scheduler's jobs retry every tick, and a line per failed try would bury the log."""

from __future__ import annotations

import logging
import time


class OutageLog:
    """Logs an outage once when it starts and once when it ends, not on every failed try."""

    def __init__(self, what: str, logger: logging.Logger) -> None:
        self._what = what
        self._log = logger
        self._since: float | None = None
        self._tries = 0

    @property
    def down(self) -> bool:
        return self._since is not None

    def failed(self, exc: BaseException) -> None:
        self._tries += 1
        if self._since is None:
            self._since = time.monotonic()
            self._log.warning("%s unavailable, will retry every tick: %s", self._what, exc)
        else:
            self._log.debug("%s still unavailable: %s", self._what, exc)

    def succeeded(self) -> None:
        if self._since is not None:
            self._log.warning(
                "%s available again after %.0f s (%d failed tries)",
                self._what,
                time.monotonic() - self._since,
                self._tries,
            )
        self._since = None
        self._tries = 0


__all__ = ["OutageLog"]
