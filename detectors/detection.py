"""The one record the detectors hand to the feedback loop: the contract between the two layers.

It lives with its producers, so ``feedback/`` imports it and ``detectors/`` imports nothing of
``feedback/``. Kept plain (a frozen dataclass of strings, floats and dicts) so that it
serializes to JSON for webhooks and audit rows as is.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from typing import Any, Literal

from obsloop.core import semconv

Kind = Literal[
    "latency", "error_rate", "cold_start", "throughput", "cost", "drift", "budget_forecast",
    "quality",
]
Severity = Literal["info", "warning", "error", "critical"]

VARIANT = "deployment.variant"
"""Series label naming the traffic-split side a detection is about (``blue`` or ``green``).
A ``latency`` or ``error_rate`` detection on the ``green`` side is a canary regression."""
NAMESPACE = "k8s.namespace.name"
"""Series label for the manifest's ``metadata.namespace`` (the OpenTelemetry name)."""


@dataclass(frozen=True)
class Detection:
    """An anomaly on one series, or (``cleared=True``) the news that it is over.

    ``id`` must be stable for one anomaly episode: the loop uses it to make every action
    idempotent (one detection never yields two commits or two retraining runs).
    ``observed`` and ``expected`` are metric name -> value and metric name -> (low, high),
    e.g. ``{"p95_ms": 2400.0}`` and ``{"p95_ms": (200.0, 800.0)}``.
    """

    id: str
    time: datetime
    series: dict[str, str]
    kind: Kind
    score: float
    severity: Severity = "warning"
    observed: dict[str, float] = field(default_factory=dict)
    expected: dict[str, tuple[float, float]] = field(default_factory=dict)
    evidence: tuple[str, ...] = ()
    """Links (dashboards, drift reports, queries) that show the anomaly to a human."""
    cleared: bool = False
    summary: str = ""
    pending: bool = False
    """Stored and shown, but not paged: an anomaly not confirmed yet (Prometheus' ``for:``),
    or the clearing of one that never paged. The alerter skips it."""

    def __post_init__(self) -> None:
        if not 0.0 <= self.score <= 1.0:
            raise ValueError(f"score must be in [0, 1], got {self.score}")
        if self.time.tzinfo is None:
            raise ValueError("time must be timezone-aware")

    @property
    def fingerprint(self) -> str:
        """Identity of the anomalous series and kind, shared by a detection and its clearing;
        alerts are grouped and deduplicated on it."""
        labels = json.dumps(sorted(self.series.items()))
        return hashlib.sha256(f"{self.kind}|{labels}".encode()).hexdigest()[:16]

    @property
    def function(self) -> str | None:
        return self.series.get(semconv.FAAS_NAME)

    @property
    def model(self) -> tuple[str | None, str | None]:
        return self.series.get(semconv.MODEL_NAME), self.series.get(semconv.MODEL_VERSION)

    def describe(self) -> str:
        """One line for commit subjects, alert summaries and audit reasons."""
        if self.summary:
            return self.summary
        target = self.function or "/".join(filter(None, self.model)) or "series"
        state = "cleared" if self.cleared else f"score {self.score:.2f}"
        return f"{self.kind} anomaly on {target} ({self.severity}, {state})"

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        data["time"] = self.time.astimezone(UTC).isoformat()
        data["expected"] = {k: list(v) for k, v in self.expected.items()}
        data["evidence"] = list(self.evidence)
        data["fingerprint"] = self.fingerprint
        return data
