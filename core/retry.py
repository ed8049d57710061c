"""Retrying something that is down (ClickHouse, mostly) until it is back.

A worker that retried every second and logged every failure would, after an hour of a
ClickHouse outage, have buried everything else in its log under thousands of copies of one
line. :class:`Retry` keeps the state instead: one line when it goes down, one when it is
back, and a delay between attempts that doubles while it stays down, so a long outage costs
few attempts and a short one is noticed soon.
"""

from __future__ import annotations

import logging


def summary(error: BaseException) -> str:
    """The first line of an error, bounded: drivers put whole tracebacks and request dumps
    in their messages."""
    text = str(error).splitlines()[0] if str(error) else type(error).__name__
    return text[:300]


class Retry:
    """Whether the last attempt worked, logged once per change of that state, and how long
    to wait before the next attempt."""

    def __init__(
        self, logger: logging.Logger, failing: str, recovered: str, *,
        first_delay: float = 1.0, max_delay: float = 30.0,
    ) -> None:
        """``failing`` is logged (a warning) when attempts start failing, ``recovered`` (info)
        when one works again after that."""
        if not 0 < first_delay <= max_delay:
            raise ValueError("need 0 < first_delay <= max_delay")
        self._log = logger
        self._failing = failing
        self._recovered = recovered
        self._first_delay = first_delay
        self._max_delay = max_delay
        self.delay = first_delay
        """Seconds to wait before the next attempt, after the last failure."""
        self.ok: bool | None = None
        """The last attempt's outcome; None before the first."""

    def succeeded(self) -> None:
        if self.ok is False:
            self._log.info(self._recovered)
        self.ok = True
        self.delay = self._first_delay

    def failed(self, error: BaseException) -> float:
        """Record a failed attempt; returns the seconds to wait before the next one."""
        if self.ok is False:
            self.delay = min(self.delay * 2, self._max_delay)
        else:
            self._log.warning(self._failing, extra={"error": summary(error)})
        self.ok = False
        return self.delay
