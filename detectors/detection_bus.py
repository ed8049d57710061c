"""Where detections go: the ``detections`` table and the in-process event stream.

Every :class:`~obsloop.detectors.detection.Detection` is first stored (so Grafana shows it
and a restarted feedback loop can look back), then handed to each subscriber in turn. A
subscriber that raises is logged and skipped: one broken consumer must not silence the
others or stop the detector host.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from datetime import UTC
from typing import TYPE_CHECKING, Any

from obsloop.detectors.detection import Detection

if TYPE_CHECKING:
    from obsloop.pipelines.schema import SchemaOptions

log = logging.getLogger(__name__)

TABLE = "detections"
Subscriber = Callable[[Detection], None]


def detections_ddl(o: SchemaOptions) -> list[str]:
    """The table (one row per detection or clearing), ordered by time for recent-first reads."""
    return [f"""CREATE TABLE IF NOT EXISTS `{o.database}`.{TABLE} {o.on_cluster} (
    time DateTime64(3, 'UTC'),
    id String,
    fingerprint String,
    kind LowCardinality(String),
    series Map(LowCardinality(String), String),
    score Float64,
    severity LowCardinality(String),
    observed Map(String, Float64),
    expected_low Map(String, Float64),
    expected_high Map(String, Float64),
    evidence Array(String),
    cleared Bool,
    summary String
) ENGINE = {o.engine()}
PARTITION BY toYYYYMM(time)
ORDER BY (time, kind, fingerprint)
{o.ttl("toDateTime(time)")}"""]


_COLUMNS = ["time", "id", "fingerprint", "kind", "series", "score", "severity", "observed",
            "expected_low", "expected_high", "evidence", "cleared", "summary"]


def _row(d: Detection) -> list[Any]:
    return [
        d.time.astimezone(UTC), d.id, d.fingerprint, d.kind, dict(d.series), d.score, d.severity,
        dict(d.observed), {k: v[0] for k, v in d.expected.items()},
        {k: v[1] for k, v in d.expected.items()}, list(d.evidence), d.cleared, d.describe(),
    ]


class DetectionBus:
    """Subscribers receive every detection, in the detector host's thread, in order.

    >>> from datetime import datetime, UTC
    >>> bus = DetectionBus()
    >>> seen = []
    >>> unsubscribe = bus.subscribe(seen.append)
    >>> d = Detection("x", datetime(2026, 1, 1, tzinfo=UTC), {"faas.name": "f"}, "latency", 0.9)
    >>> bus.publish(d)
    >>> unsubscribe(); bus.publish(d)
    >>> len(seen)
    1
    """

    def __init__(self) -> None:
        self._subscribers: list[Subscriber] = []
        self._lock = threading.Lock()

    def subscribe(self, callback: Subscriber) -> Callable[[], None]:
        """Register ``callback``; returns the function that unregisters it.

        The callback runs in the detector thread: a slow consumer (the feedback loop
        talking to a forge) should queue the detection and return.
        """
        with self._lock:
            self._subscribers.append(callback)

        def unsubscribe() -> None:
            with self._lock:
                if callback in self._subscribers:
                    self._subscribers.remove(callback)

        return unsubscribe

    def publish(self, detection: Detection) -> None:
        with self._lock:
            subscribers = list(self._subscribers)
        for callback in subscribers:
            try:
                callback(detection)
            except Exception:  # noqa: BLE001 - one consumer's bug must not stop the others
                log.exception("detection subscriber failed", extra={"detection": detection.id})


class DetectionStore:
    """Inserts detections into the ``detections`` table."""

    def __init__(self, client: Any, database: str = "default") -> None:
        self.client = client
        self.database = database

    def insert(self, detections: list[Detection]) -> None:
        if detections:
            self.client.insert(TABLE, [_row(d) for d in detections], column_names=_COLUMNS,
                               database=self.database)
