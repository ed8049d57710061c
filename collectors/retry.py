"""Retry a call with jittered exponential backoff, counting each failure by kind.

Throttling and 5xx answers are part of normal operation against cloud APIs (CloudWatch
Logs allows a few ``FilterLogEvents`` per second per account); the page being fetched is
simply asked for again, so a throttle delays data but never loses a page.
"""

from __future__ import annotations

import random
import time
import urllib.error
from collections.abc import Callable
from typing import TypeVar

from obsloop.collectors import selfmetrics

T = TypeVar("T")


class GaveUp(RuntimeError):
    """Still failing after every attempt; the caller keeps its checkpoint and tries later."""


def with_backoff(
    call: Callable[[], T],
    classify: Callable[[Exception], str | None],
    *,
    collector: str,
    attempts: int = 8,
    base_delay: float = 0.2,
    max_delay: float = 20.0,
    sleep: Callable[[float], None] = time.sleep,
) -> T:
    """Run ``call``; ``classify`` names a retryable error's kind (``throttled``, ``5xx``)
    or returns ``None`` for an error that retrying cannot fix (re-raised at once)."""
    for attempt in range(attempts):
        try:
            return call()
        except Exception as exc:  # noqa: BLE001 - classify decides
            kind = classify(exc)
            if kind is None:
                raise
            selfmetrics.ERRORS.labels(collector, kind).inc()
            if attempt == attempts - 1:
                raise GaveUp(f"{collector}: still {kind} after {attempts} attempts") from exc
            delay = min(max_delay, base_delay * 2**attempt)
            sleep(delay * random.uniform(0.5, 1.0))
    raise AssertionError("unreachable")


def submit_error(exc: Exception) -> str | None:
    """Any failure of the ingest path is "not accepted yet": retry, never skip."""
    return "ingest_refused"


def classify_http_error(exc: Exception) -> str | None:
    """``urllib``'s errors: 429 is throttling, 5xx and dropped connections are retried."""
    if isinstance(exc, urllib.error.HTTPError):
        return "throttled" if exc.code == 429 else ("5xx" if exc.code >= 500 else None)
    if isinstance(exc, OSError):
        return "connection"
    return None
