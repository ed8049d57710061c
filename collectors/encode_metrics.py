"""Build OTLP metric requests; one ``Metric`` per (resource, name), points appended to it."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import (
    ExportMetricsServiceRequest,
)
from opentelemetry.proto.metrics.v1.metrics_pb2 import AggregationTemporality, Metric, ScopeMetrics

from obsloop.collectors.encode import SCOPE_NAME, AttributeValue, add_attributes

DELTA = AggregationTemporality.AGGREGATION_TEMPORALITY_DELTA
CUMULATIVE = AggregationTemporality.AGGREGATION_TEMPORALITY_CUMULATIVE


class MetricsBuilder:
    def __init__(self) -> None:
        self._request = ExportMetricsServiceRequest()
        self._scopes: dict[tuple, ScopeMetrics] = {}
        self._metrics: dict[tuple, Metric] = {}
        self.points = 0

    def _metric(self, resource: Mapping[str, str], name: str, unit: str, description: str,
                kind: str) -> Metric:
        resource_key = tuple(sorted(resource.items()))
        key = (resource_key, name, kind)
        metric = self._metrics.get(key)
        if metric is None:
            scope = self._scopes.get(resource_key)
            if scope is None:
                resource_metrics = self._request.resource_metrics.add()
                add_attributes(resource_metrics.resource.attributes, resource)
                scope = resource_metrics.scope_metrics.add()
                scope.scope.name = SCOPE_NAME
                self._scopes[resource_key] = scope
            metric = scope.metrics.add(name=name, unit=unit, description=description)
            self._metrics[key] = metric
        return metric

    def gauge(self, resource: Mapping[str, str], name: str, *, time_ns: int, value: float,
              attributes: Mapping[str, AttributeValue] | None = None, unit: str = "",
              description: str = "") -> None:
        point = self._metric(resource, name, unit, description, "gauge").gauge.data_points.add()
        point.time_unix_nano = time_ns
        point.as_double = value
        add_attributes(point.attributes, attributes or {})
        self.points += 1

    def sum(self, resource: Mapping[str, str], name: str, *, start_ns: int, time_ns: int,
            value: float, temporality: AggregationTemporality.ValueType, monotonic: bool = True,
            attributes: Mapping[str, AttributeValue] | None = None, unit: str = "",
            description: str = "") -> None:
        metric = self._metric(resource, name, unit, description, "sum")
        metric.sum.aggregation_temporality = temporality
        metric.sum.is_monotonic = monotonic
        point = metric.sum.data_points.add()
        point.start_time_unix_nano = start_ns
        point.time_unix_nano = time_ns
        point.as_double = value
        add_attributes(point.attributes, attributes or {})
        self.points += 1

    def histogram(self, resource: Mapping[str, str], name: str, *, start_ns: int, time_ns: int,
                  bounds: Sequence[float], counts: Sequence[int], total: float, count: int,
                  attributes: Mapping[str, AttributeValue] | None = None, unit: str = "",
                  description: str = "") -> None:
        """Explicit-bucket histogram, cumulative: ``counts`` per bucket (not cumulative
        counts), one more than ``bounds`` (the last is the +Inf bucket)."""
        metric = self._metric(resource, name, unit, description, "histogram")
        metric.histogram.aggregation_temporality = CUMULATIVE
        point = metric.histogram.data_points.add()
        point.start_time_unix_nano = start_ns
        point.time_unix_nano = time_ns
        point.explicit_bounds.extend(bounds)
        point.bucket_counts.extend(counts)
        point.sum = total
        point.count = count
        add_attributes(point.attributes, attributes or {})
        self.points += 1

    def build(self) -> ExportMetricsServiceRequest:
        return self._request
