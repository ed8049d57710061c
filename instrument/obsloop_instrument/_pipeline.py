"""The pipeline: the SDK tracer provider, the FaaS metrics, prediction records, and the
bounded end-of-invocation flush.

Why buffers instead of the SDK's batch processors: a function is frozen (Lambda) or
throttled (Cloud Run, Azure) as soon as it returns, so a background export thread cannot be
relied on. Ended spans and prediction records are kept in memory and exported in the
calling thread at the end of every invocation, which also spares a thread wake-up per
invocation. The flush is bounded: each signal gets an equal share of
``OBSLOOP_FLUSH_TIMEOUT_MS`` (and the whole flush never more than all of it); export
failures are logged, never raised.

Cold start: spans are the SDK's (``TracerProvider``, so a handler's own spans join the
invocation's trace); encoding (``_encode``), sending (``_otlp``), the FaaS metrics
(``_metrics``) and prediction records are this library's own, so neither protobuf, the OTLP
exporter modules, the metrics SDK nor the logs SDK is imported. A handler's own metrics
load the metrics SDK and the OTLP metric exporter when it first asks for a meter
(``LazyMeterProvider``). This module is imported by the background set-up (``_runtime``).
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from opentelemetry import metrics as metrics_api
from opentelemetry import trace
from opentelemetry.sdk.resources import OTELResourceDetector, Resource
from opentelemetry.sdk.trace import ReadableSpan, SpanProcessor, TracerProvider

from . import _encode as enc
from ._config import Settings
from ._metrics import FaasMetrics, temporality_from_env
from ._otlp import OtlpHttpExporter
from ._semconv import (
    METRIC_COLDSTARTS,
    METRIC_ERRORS,
    METRIC_INVOCATIONS,
    METRIC_INVOKE_DURATION,
    SERVICE_NAME,
)

if TYPE_CHECKING:
    from opentelemetry.sdk.metrics import MeterProvider
    from opentelemetry.sdk.metrics.export import MetricReader

_logger = logging.getLogger(__name__)

_SCOPE = "obsloop_instrument"
_SIGNALS = 3  # traces, metrics, logs share the flush bound
MAX_BUFFERED = 4096
"""Records kept between flushes at most; beyond it the oldest are dropped (memory bound)."""
_DEFAULT_ATTRIBUTE_COUNT_LIMIT = 128


class _Buffer:
    """A thread-safe list drained by the flush, with a size cap."""

    def __init__(self) -> None:
        self._items: list[Any] = []
        self._lock = threading.Lock()
        self.dropped = 0

    def append(self, item: object) -> None:
        with self._lock:
            if len(self._items) >= MAX_BUFFERED:
                self._items.pop(0)
                self.dropped += 1
            self._items.append(item)

    def drain(self) -> list[Any]:
        with self._lock:
            items, self._items = self._items, []
        return items


class InvocationSpanProcessor(SpanProcessor):
    """Keeps ended sampled spans until the end-of-invocation flush exports them."""

    def __init__(self) -> None:
        self.buffer = _Buffer()

    def on_end(self, span: ReadableSpan) -> None:
        if span.context is not None and span.context.trace_flags.sampled:
            self.buffer.append(span)


class LazyMeterProvider(metrics_api.MeterProvider):
    """The global meter provider: the metrics SDK is loaded at the first ``get_meter``.

    The library's own metrics do not need it (``_metrics``); a handler that records its
    own OpenTelemetry metrics gets SDK meters, exported by the end-of-invocation flush
    through the OTLP metric exporter, as before. Meters taken from the API before this
    provider was registered are upgraded by the API's proxies.
    """

    def __init__(self, resource: Resource, enabled: bool, timeout_s: float) -> None:
        self._resource = resource
        self._enabled = enabled
        self._timeout_s = timeout_s
        self._lock = threading.Lock()
        self._provider: MeterProvider | None = None
        self._reader: MetricReader | None = None

    def sdk_provider(self) -> MeterProvider:
        with self._lock:
            if self._provider is None:
                self._provider, self._reader = _sdk_meter_provider(
                    self._resource, self._enabled, self._timeout_s
                )
            return self._provider

    def get_meter(
        self,
        name: str,
        version: str | None = None,
        schema_url: str | None = None,
        attributes: Any = None,
    ) -> metrics_api.Meter:
        return self.sdk_provider().get_meter(name, version, schema_url, attributes)

    def collect(self, timeout_s: float) -> None:
        """Export the handler's own metrics, if it has any."""
        if self._reader is not None:
            self._reader.collect(timeout_millis=timeout_s * 1000)

    def force_flush(self, timeout_millis: float = 10_000) -> bool:
        return self._provider.force_flush(timeout_millis) if self._provider else True

    def shutdown(self, timeout_millis: float = 30_000) -> None:
        if self._provider is not None:
            self._provider.shutdown(timeout_millis)


def _sdk_meter_provider(
    resource: Resource, enabled: bool, timeout_s: float
) -> tuple[MeterProvider, MetricReader | None]:
    from opentelemetry.sdk.metrics import MeterProvider

    if not enabled:
        return MeterProvider(resource=resource), None
    import math

    from opentelemetry.exporter.otlp.proto.http.metric_exporter import OTLPMetricExporter
    from opentelemetry.sdk.metrics.export import PeriodicExportingMetricReader

    from ._transport import StdlibHTTPTransport

    exporter = OTLPMetricExporter(timeout=timeout_s, _transport=StdlibHTTPTransport())
    # math.inf: no background thread; collection happens in the end-of-invocation flush.
    reader = PeriodicExportingMetricReader(exporter, export_interval_millis=math.inf)
    return MeterProvider(resource=resource, metric_readers=[reader]), reader


def _env_int(env: Mapping[str, str], *names: str) -> int | None:
    for name in names:
        value = env.get(name)
        if value:
            try:
                return int(value)
            except ValueError:
                _logger.warning("%s must be an integer, got %r", name, value)
    return None


class Pipeline:
    """One per process: the providers plus the instruments every invocation records."""

    def __init__(
        self,
        settings: Settings,
        resource_attributes: Mapping[str, object],
        env: Mapping[str, str] | None = None,
    ) -> None:
        env = os.environ if env is None else env
        self.settings = settings
        self.resource = _resource(resource_attributes)
        self._resource_bytes = enc.resource(self.resource.attributes)
        self._scope_bytes = enc.scope(_SCOPE)
        self._export_timeout_s = settings.flush_timeout_s / _SIGNALS
        self._flush_lock = threading.Lock()

        self.tracer_provider = TracerProvider(resource=self.resource)
        self._spans = InvocationSpanProcessor()
        self._span_exporter: OtlpHttpExporter | None = None
        if settings.traces_enabled:
            self._span_exporter = OtlpHttpExporter("traces", env)
            self.tracer_provider.add_span_processor(self._spans)
        self.tracer = self.tracer_provider.get_tracer(_SCOPE)

        self._metric_exporter: OtlpHttpExporter | None = None
        if settings.metrics_enabled:
            self._metric_exporter = OtlpHttpExporter("metrics", env)
        exemplar_filter = env.get("OTEL_METRICS_EXEMPLAR_FILTER", "trace_based").strip().lower()
        self.metrics = FaasMetrics(temporality_from_env(env), exemplar_filter != "always_off")
        self.invocations = self.metrics.counter(
            METRIC_INVOCATIONS, "{invocation}", "Invocations handled."
        )
        self.duration = self.metrics.histogram(
            METRIC_INVOKE_DURATION, "s", "Invocation duration, handler only."
        )
        self.coldstarts = self.metrics.counter(
            METRIC_COLDSTARTS, "{coldstart}", "Invocations that were cold starts."
        )
        self.errors = self.metrics.counter(METRIC_ERRORS, "{error}", "Invocations that raised.")
        self.meter_provider = LazyMeterProvider(
            self.resource, settings.metrics_enabled, self._export_timeout_s
        )

        self._logs = _Buffer()
        self._log_exporter: OtlpHttpExporter | None = None
        if settings.logs_enabled:
            self._log_exporter = OtlpHttpExporter("logs", env)
        self._log_attribute_limit = _env_int(
            env, "OTEL_LOGRECORD_ATTRIBUTE_COUNT_LIMIT", "OTEL_ATTRIBUTE_COUNT_LIMIT"
        )
        if self._log_attribute_limit is None:
            self._log_attribute_limit = _DEFAULT_ATTRIBUTE_COUNT_LIMIT
        self._log_value_limit = _env_int(
            env,
            "OTEL_LOGRECORD_ATTRIBUTE_VALUE_LENGTH_LIMIT",
            "OTEL_ATTRIBUTE_VALUE_LENGTH_LIMIT",
        )

    def connect(self) -> None:
        """Open the exporters' connections ahead of the first flush (set-up, best effort)."""
        timeout = self._export_timeout_s
        for exporter in (self._span_exporter, self._metric_exporter):
            if exporter is not None:
                exporter.connect(timeout)

    def emit_prediction(self, event_name: str, attributes: dict[str, Any]) -> None:
        """Record one event with the current span's ids, exported at the next flush.

        Attribute limits as the OpenTelemetry spec has them (``OTEL_LOGRECORD_ATTRIBUTE_*``,
        else ``OTEL_ATTRIBUTE_*``; 128 attributes by default): attributes beyond the count
        are discarded and counted, string values are truncated.
        """
        if self._log_exporter is None:
            return
        dropped = 0
        if len(attributes) > self._log_attribute_limit:
            dropped = len(attributes) - self._log_attribute_limit
            attributes = dict(list(attributes.items())[: self._log_attribute_limit])
            _logger.warning("Log record attributes were dropped due to limits")
        if self._log_value_limit is not None:
            attributes = {k: _truncate(v, self._log_value_limit) for k, v in attributes.items()}
        span_context = trace.get_current_span().get_span_context()
        self._logs.append(
            enc.log_record(
                time.time_ns(),
                attributes,
                span_context.trace_id,
                span_context.span_id,
                int(span_context.trace_flags),
                event_name,
                dropped,
            )
        )

    def flush(self) -> float:
        """Export everything recorded so far; returns the seconds it took.

        Bounded by ``settings.flush_timeout_s``: each signal's export has a third of it as
        its deadline, retries included, and none starts past the whole bound. Never raises.
        """
        start = time.perf_counter()
        with self._flush_lock:
            try:
                self._flush_locked(time.monotonic() + self.settings.flush_timeout_s)
            except Exception:  # noqa: BLE001 - telemetry must never fail the handler
                _logger.exception("obsloop-instrument: flush failed")
        return time.perf_counter() - start

    def _timeout(self, deadline: float) -> float:
        return min(self._export_timeout_s, deadline - time.monotonic())

    def _flush_locked(self, deadline: float) -> None:
        # Every signal's request is sent before any response is read: the flush costs one
        # round trip, not one per signal (each exporter has its own connection).
        pending = []
        spans = self._spans.buffer.drain()
        if spans and self._span_exporter is not None and (t := self._timeout(deadline)) > 0:
            pending.append(
                (self._span_exporter, self._span_exporter.start(enc.export_trace_request(spans), t))
            )
        if self._metric_exporter is not None:
            collected = self.metrics.collect()
            if collected and (t := self._timeout(deadline)) > 0:
                body = enc.export_metrics_request(self._resource_bytes, self._scope_bytes, collected)
                pending.append((self._metric_exporter, self._metric_exporter.start(body, t)))
        records = self._logs.drain()
        if records and self._log_exporter is not None and (t := self._timeout(deadline)) > 0:
            body = enc.export_logs_request(self._resource_bytes, self._scope_bytes, records)
            pending.append((self._log_exporter, self._log_exporter.start(body, t)))
        try:
            if self._metric_exporter is not None and (t := self._timeout(deadline)) > 0:
                self.meter_provider.collect(t)  # the handler's own metrics, if any
        finally:
            for exporter, started in pending:
                if started is not None:
                    try:
                        exporter.finish(started)  # releases the exporter, whatever happens
                    except Exception:  # noqa: BLE001 - the other signals still complete
                        _logger.exception("obsloop-instrument: %s export failed", exporter.signal)


def _truncate(value: Any, limit: int) -> Any:
    if isinstance(value, str):
        return value[:limit]
    if isinstance(value, tuple):
        return tuple(v[:limit] if isinstance(v, str) else v for v in value)
    return value


def _resource(attributes: Mapping[str, object]) -> Resource:
    """Platform attributes, overridden by ``OTEL_RESOURCE_ATTRIBUTES``/``OTEL_SERVICE_NAME``.

    ``Resource.create`` would also scan installed distributions for resource-detector
    entry points (about 2 ms here); the environment detector alone is what a function needs.
    """
    from opentelemetry.version import __version__

    base = {
        "telemetry.sdk.language": "python",
        "telemetry.sdk.name": "opentelemetry",
        "telemetry.sdk.version": __version__,
        "telemetry.distro.name": "obsloop-instrument",
        SERVICE_NAME: str(attributes.get("faas.name") or "unknown_service"),
    }
    base.update(attributes)  # type: ignore[arg-type]
    return Resource(base).merge(OTELResourceDetector().detect())  # type: ignore[arg-type]
