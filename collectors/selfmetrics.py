"""Each collector's own health on ``/metrics``: lag, pages, events, errors, malformed input.

One set of metric families labelled by ``collector`` (``aws.logs``, ``gcp.logging`` …) so a
single Grafana panel shows every source, and a stuck collector shows as rising lag.
"""

from __future__ import annotations

from prometheus_client import Counter, Gauge

EVENTS = Counter(
    "obsloop_collector_events", "Records handed to the ingest path", ["collector"]
)
PAGES = Counter("obsloop_collector_pages", "API pages or push requests processed", ["collector"])
ERRORS = Counter(
    "obsloop_collector_errors",
    "Failed calls (throttled, 5xx, rejected by the ingest path) by kind",
    ["collector", "kind"],
)
MALFORMED = Counter(
    "obsloop_collector_malformed",
    "Inputs that could not be parsed and were kept as raw log records",
    ["collector"],
)
LAG = Gauge(
    "obsloop_collector_lag_seconds",
    "Wall clock minus the newest event time the collector has checkpointed",
    ["collector"],
)
DUPLICATES = Counter(
    "obsloop_collector_duplicate_deliveries",
    "Push deliveries acknowledged again without being stored: a retry of one already accepted",
    ["collector"],
)
