"""Why the intake refuses a request, and how refusals are counted and logged.

Receivers answer :class:`PipelineFull` (and its subclass :class:`DiskFull`) with 503 +
``Retry-After`` (gRPC ``UNAVAILABLE``): the client keeps its data and retries, and nothing
is acknowledged that could not be made durable. A refusal storm is thousands of requests a
second, so refusals are counted per request but logged at most once per interval.
"""

from __future__ import annotations

import logging
import threading
import time

from prometheus_client import Counter

log = logging.getLogger(__name__)


class PipelineFull(RuntimeError):
    """Too much acknowledged data is waiting for storage; retry later."""

    reason = "pending_bytes"
    """The ``reason`` label of ``obsloop_receiver_refused_total``."""


class DiskFull(PipelineFull):
    """The disk of the write-ahead log (or of the embedded ClickHouse) is down to its
    reserve, or a write ran out of space; retry later, once segments are stored."""

    reason = "disk_space"


class RefusalLog:
    """Counts every refusal; logs the first after a quiet interval, then at most one line per
    interval with the count since the previous line."""

    def __init__(self, counter: Counter, *, interval_seconds: float = 10.0) -> None:
        self._counter = counter
        self._interval = interval_seconds
        self._lock = threading.Lock()
        self._unlogged = 0
        self._logged_at = -interval_seconds

    def refused(self, signal: str, error: PipelineFull) -> None:
        self._counter.labels(signal, error.reason).inc()
        now = time.monotonic()
        with self._lock:
            self._unlogged += 1
            if now - self._logged_at < self._interval:
                return
            refused, self._unlogged, self._logged_at = self._unlogged, 0, now
        log.warning("refusing requests with 503 (clients retry): %s", error,
                    extra={"reason": error.reason, "refused_since_last_line": refused})
