"""Recently accepted push deliveries, so that a client's retry of one is not stored twice.

A delivery is retried when its acknowledgement was lost: Kinesis Data Firehose re-sends
the same ``requestId`` after a timeout (for up to its configured retry duration, 300 s by
default, at most 7200 s), a forwarding Lambda re-posts the same bytes. The receivers
answer only after the data is durable, so the first copy is already in the write-ahead
log: the retry is acknowledged again without being appended.

Why here and not in ClickHouse: ClickHouse deduplicates an *insert* by its
``insert_deduplication_token`` (``non_replicated_deduplication_window`` on the
single-node tables), and the write-ahead log inserts a *segment* of many requests under
one token derived from the segment. A retry lands in another segment, with other
requests beside it, so no token or block hash can recognise it there. Deduplicating per
delivery in ClickHouse needs the pipeline to give a keyed delivery a segment (and token)
of its own: see the note in ``README.md`` (collectors section). What ClickHouse already
makes idempotent is ``faas_invocations``: its ``AggregatingMergeTree`` folds every copy of
an invocation into one row (``min``/``max``/``anyLast``/``groupUniqArray`` merges).

The window is bounded in time and entries (oldest first out), and local to the process:
a retry that reaches another replica, or this one after a restart, is stored again.
"""

from __future__ import annotations

import hashlib
import threading
import time
from collections import OrderedDict
from collections.abc import Callable

DEFAULT_TTL_SECONDS = 7200.0
"""Firehose's longest retry duration: a retry later than that is not a retry."""
DEFAULT_MAX_ENTRIES = 100_000
MAX_DELIVERY_ID_CHARS = 256
"""Longest delivery id accepted (Firehose sends a UUID); a longer one is refused, not kept."""


def body_key(body: bytes) -> str:
    """A raw push has no delivery id, but its bytes identify it: CloudWatch event ids make
    two genuine deliveries differ, while a re-post is byte for byte the same."""
    return "sha256:" + hashlib.sha256(body).hexdigest()


def delivery_key(kind: str, delivery_id: str) -> str:
    """The key of a delivery that names itself (Firehose's ``requestId``): a digest, so an
    entry costs the same whatever the id the client chose."""
    digest = hashlib.blake2b(delivery_id.encode("utf-8", "surrogatepass"), digest_size=16).hexdigest()
    return f"{kind}:{digest}"


class RecentDeliveries:
    """Keys of deliveries made durable in the last ``ttl`` seconds (at most ``max_entries``)."""

    def __init__(self, ttl: float = DEFAULT_TTL_SECONDS, max_entries: int = DEFAULT_MAX_ENTRIES,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.ttl = ttl
        self.max_entries = max_entries
        self._clock = clock
        self._accepted: OrderedDict[str, float] = OrderedDict()
        self._lock = threading.Lock()

    def _expire(self, now: float) -> None:
        while self._accepted:
            key, at = next(iter(self._accepted.items()))
            if now - at < self.ttl and len(self._accepted) <= self.max_entries:
                return
            del self._accepted[key]

    def seen(self, key: str) -> bool:
        """Whether ``key`` was accepted within the window."""
        with self._lock:
            self._expire(self._clock())
            return key in self._accepted

    def accepted(self, key: str) -> None:
        """Remember ``key``; call only once the delivery is durable, so that a retry of a
        delivery that failed is never mistaken for a duplicate."""
        with self._lock:
            now = self._clock()
            self._accepted[key] = now
            self._accepted.move_to_end(key)
            self._expire(now)

    def __len__(self) -> int:
        return len(self._accepted)
