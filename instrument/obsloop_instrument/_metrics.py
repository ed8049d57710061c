"""The four FaaS metrics, aggregated here instead of by the OpenTelemetry metrics SDK.

Why: the metrics SDK was ~14 ms of cold start, to aggregate three counters and one
histogram recorded once per invocation. This module keeps the same data model as the SDK
with its default views: per attribute set, a monotonic sum (``faas.invocations``,
``faas.coldstarts``, ``faas.errors``) or an explicit-bucket histogram with the SDK's default
boundaries, min and max (``faas.invoke_duration``); cumulative temporality unless
``OTEL_EXPORTER_OTLP_METRICS_TEMPORALITY_PREFERENCE`` is ``delta`` or ``lowmemory`` (both
make counters and histograms delta, as the OTLP exporter does). A point's start time is
its first measurement (cumulative) or the previous collection (delta); a metric without
points is not exported. ``faas.errors`` carries the SDK's trace-based exemplar: the last
failing invocation's span since the previous collection (``OTEL_METRICS_EXEMPLAR_FILTER=
always_off`` turns it off).

A handler's own OpenTelemetry metrics still go through the SDK: see
``_otel.lazy_meter_provider``.
"""

from __future__ import annotations

import threading
from bisect import bisect_left
from collections.abc import Mapping
from time import time_ns

from obsloop_instrument import _encode as enc
from obsloop_instrument._log import logger

TYPE_CHECKING = False  # not ``typing.TYPE_CHECKING``: no ``typing`` import at set-up
if TYPE_CHECKING:
    from typing import Any

_logger = logger(__name__)

DEFAULT_BOUNDARIES = (
    0.0, 5.0, 10.0, 25.0, 50.0, 75.0, 100.0, 250.0, 500.0, 750.0, 1000.0, 2500.0, 5000.0,
    7500.0, 10000.0,
)  # fmt: skip
"""The SDK's default explicit-bucket boundaries (what the metrics SDK used before)."""


def temporality_from_env(env: Mapping[str, str]) -> int:
    value = env.get("OTEL_EXPORTER_OTLP_METRICS_TEMPORALITY_PREFERENCE", "CUMULATIVE")
    value = value.upper().strip()
    if value in ("DELTA", "LOWMEMORY"):
        return enc.AGGREGATION_TEMPORALITY_DELTA
    if value != "CUMULATIVE":
        _logger.warning(
            "Invalid value for OTEL_EXPORTER_OTLP_METRICS_TEMPORALITY_PREFERENCE: %s,"
            " using cumulative temporality aggregation",
            value,
        )
    return enc.AGGREGATION_TEMPORALITY_CUMULATIVE


class _SumPoint:
    __slots__ = ("attributes", "start_ns", "value", "updated", "exemplar")

    def __init__(self, attributes: Mapping[str, Any], now: int) -> None:
        self.attributes = enc.key_values(enc.NUMBER_POINT_ATTRIBUTES, attributes)
        self.start_ns = now
        self.value = 0
        self.updated = False
        self.exemplar: bytes | None = None


class _HistogramPoint:
    __slots__ = ("attributes", "start_ns", "count", "sum", "min", "max", "buckets", "updated")

    def __init__(self, attributes: Mapping[str, Any], now: int, buckets: int) -> None:
        self.attributes = enc.key_values(enc.HISTOGRAM_POINT_ATTRIBUTES, attributes)
        self.start_ns = now
        self.updated = False
        self._reset(buckets)

    def _reset(self, buckets: int) -> None:
        self.count = 0
        self.sum = 0.0
        self.min = float("inf")
        self.max = float("-inf")
        self.buckets = [0] * buckets


class Counter:
    """A monotonic integer sum per attribute set."""

    def __init__(
        self, metrics: FaasMetrics, name: str, unit: str, description: str, exemplars: bool
    ) -> None:
        self._metrics = metrics
        self._lock = metrics.lock
        self.name, self.unit, self.description = name, unit, description
        self._exemplars = exemplars
        self._points: dict[frozenset[tuple[str, Any]], _SumPoint] = {}
        metrics.instruments.append(self)

    def add(self, amount: int, attributes: Mapping[str, Any], span: Any = None) -> None:
        """``span``: the measurement's invocation span, for the exemplar when it is sampled."""
        key = frozenset(attributes.items())
        now = time_ns()
        exemplar = None
        if self._exemplars and span is not None and span.sampled:
            exemplar = enc.exemplar(now, amount, span.trace_id, span.span_id)
        with self._lock:
            point = self._points.get(key)
            if point is None:
                point = self._points[key] = _SumPoint(attributes, now)
            point.value += amount
            point.updated = True
            if exemplar is not None:
                point.exemplar = exemplar

    def collect(self, now: int, delta: bool) -> bytes | None:
        encoded = []
        for point in self._points.values():
            if delta and not point.updated:
                continue
            exemplars = (point.exemplar,) if point.exemplar is not None else ()
            encoded.append(enc.number_point(point.attributes, point.start_ns, now, point.value, exemplars))
            point.exemplar = None
            point.updated = False
            if delta:
                point.value = 0
                point.start_ns = now
        if not encoded:
            return None
        return enc.metric_sum(
            self.name, self.description, self.unit, encoded, self._metrics.temporality
        )


class Histogram:
    """An explicit-bucket histogram (count, sum, min, max, bucket counts) per attribute set."""

    def __init__(self, metrics: FaasMetrics, name: str, unit: str, description: str) -> None:
        self._metrics = metrics
        self._lock = metrics.lock
        self.name, self.unit, self.description = name, unit, description
        self._boundaries = DEFAULT_BOUNDARIES
        self._bounds_bytes = enc.packed_doubles(7, DEFAULT_BOUNDARIES)
        self._points: dict[frozenset[tuple[str, Any]], _HistogramPoint] = {}
        metrics.instruments.append(self)

    def record(self, value: float, attributes: Mapping[str, Any]) -> None:
        key = frozenset(attributes.items())
        index = bisect_left(self._boundaries, value)
        with self._lock:
            point = self._points.get(key)
            if point is None:
                point = self._points[key] = _HistogramPoint(
                    attributes, time_ns(), len(self._boundaries) + 1
                )
            point.count += 1
            point.sum += value
            point.min = min(point.min, value)
            point.max = max(point.max, value)
            point.buckets[index] += 1
            point.updated = True

    def collect(self, now: int, delta: bool) -> bytes | None:
        encoded = []
        for point in self._points.values():
            if delta and not point.updated:
                continue
            encoded.append(
                enc.histogram_point(
                    point.attributes,
                    point.start_ns,
                    now,
                    point.count,
                    point.sum,
                    point.buckets,
                    self._bounds_bytes,
                    point.min,
                    point.max,
                )
            )
            point.updated = False
            if delta:
                point._reset(len(self._boundaries) + 1)
                point.start_ns = now
        if not encoded:
            return None
        return enc.metric_histogram(
            self.name, self.description, self.unit, encoded, self._metrics.temporality
        )


class FaasMetrics:
    """The instruments of one pipeline and their collection into one OTLP request."""

    def __init__(self, temporality: int, exemplars: bool = True) -> None:
        self.lock = threading.Lock()
        self.temporality = temporality
        self.exemplars = exemplars
        self.instruments: list[Counter | Histogram] = []

    def counter(self, name: str, unit: str, description: str) -> Counter:
        return Counter(self, name, unit, description, self.exemplars)

    def histogram(self, name: str, unit: str, description: str) -> Histogram:
        return Histogram(self, name, unit, description)

    def collect(self) -> list[bytes]:
        """Encoded ``Metric`` messages of every instrument with points; resets delta state."""
        delta = self.temporality == enc.AGGREGATION_TEMPORALITY_DELTA
        with self.lock:
            now = time_ns()
            collected = (instrument.collect(now, delta) for instrument in self.instruments)
            return [metric for metric in collected if metric is not None]
