"""obsloop's own telemetry, exposed on ``/metrics`` in Prometheus conventions
(``obsloop_`` prefix, base units in names, ``_total`` counters).

One :class:`SelfMetrics` per server, each with its own registry, so that several servers in
one process (tests, the demo) never share counters.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram


class SelfMetrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.requests = Counter(
            "obsloop_receiver_requests", "OTLP export requests answered, by outcome.",
            ["signal", "transport", "outcome"], registry=r,
        )
        self.items_received = Counter(
            "obsloop_receiver_items_received", "Spans, log records and metric data points acknowledged.",
            ["signal"], registry=r,
        )
        self.items_rejected = Counter(
            "obsloop_receiver_items_rejected", "Items refused: invalid ids, malformed or refused requests.",
            ["signal", "reason"], registry=r,
        )
        self.refused = Counter(
            "obsloop_receiver_refused", "Requests refused with 503 (the client retries), by limit: "
            "pending_bytes (wal.max_pending_bytes) or disk_space (wal.min_free_bytes, or out of space).",
            ["signal", "reason"], registry=r,
        )
        self.request_bytes = Counter(
            "obsloop_receiver_request_bytes", "Bytes of acknowledged requests (after decompression).",
            ["signal"], registry=r,
        )
        self.items_stored = Counter(
            "obsloop_storage_items_stored", "Items inserted into ClickHouse (replays not included).",
            ["signal"], registry=r,
        )
        self.items_replayed = Counter(
            "obsloop_storage_items_replayed",
            "Items in segments recovered at start-up, inserted again under their deduplication token: "
            "ClickHouse skips those it stored before the restart.", ["signal"], registry=r,
        )
        self.segments_stored = Counter(
            "obsloop_storage_segments_stored", "Write-ahead segments inserted into ClickHouse.",
            ["signal"], registry=r,
        )
        self.insert_errors = Counter(
            "obsloop_storage_insert_errors", "Failed segment inserts (each retried).", ["signal"], registry=r,
        )
        self.segments_quarantined = Counter(
            "obsloop_storage_segments_quarantined",
            "Segments ClickHouse refused as unreadable: split, the unreadable requests set aside.",
            ["signal"], registry=r,
        )
        self.items_quarantined = Counter(
            "obsloop_storage_items_quarantined",
            "Items of requests set aside because ClickHouse cannot read them, by ClickHouse's error.",
            ["signal", "reason"], registry=r,
        )
        self.requests_quarantined = Counter(
            "obsloop_storage_requests_quarantined",
            "Requests set aside because ClickHouse cannot read them (items counts what protobuf finds "
            "in them, none when it cannot parse them either).",
            ["signal", "reason"], registry=r,
        )
        self.insert_duration = Histogram(
            "obsloop_storage_insert_duration_seconds", "Time to insert one segment into ClickHouse.",
            ["signal"], registry=r,
            buckets=(0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
        )
        self.wal_bytes = Gauge(
            "obsloop_wal_bytes", "Bytes in write-ahead segments not yet stored.", registry=r,
        )
        self.wal_segments = Gauge(
            "obsloop_wal_segments", "Closed write-ahead segments waiting for insertion (queue depth).",
            registry=r,
        )
