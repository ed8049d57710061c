"""The SDK pipeline: providers, per-invocation buffers and the bounded flush.

Why buffers instead of the SDK's batch processors: a function is frozen (Lambda) or
throttled (Cloud Run, Azure) as soon as it returns, so a background export thread cannot be
relied on. Ended spans and emitted log records are kept in memory and exported in the
calling thread at the end of every invocation, which also spares a thread wake-up per
invocation. The flush is bounded: each signal's exporter gets an equal share of
``OBSLOOP_FLUSH_TIMEOUT_MS`` and export failures are logged, never raised.
"""

from __future__ import annotations

import logging
import math
import threading
import time
from collections.abc import Mapping
from typing import TYPE_CHECKING

from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan, SpanProcessor, TracerProvider

from ._config import Settings
from ._semconv import (
    METRIC_COLDSTARTS,
    METRIC_ERRORS,
    METRIC_INVOCATIONS,
    METRIC_INVOKE_DURATION,
    SERVICE_NAME,
)

if TYPE_CHECKING:
    from opentelemetry.sdk._logs import LoggerProvider, ReadableLogRecord, ReadWriteLogRecord
    from opentelemetry.sdk.metrics import MeterProvider
    from opentelemetry.sdk.metrics.export import MetricReader
    from opentelemetry.sdk.trace.export import SpanExporter

_logger = logging.getLogger(__name__)

_SCOPE = "obsloop_instrument"
_SIGNALS = 3  # traces, metrics, logs share the flush bound
MAX_BUFFERED = 4096
"""Records kept between flushes at most; beyond it the oldest are dropped (memory bound)."""


class _Buffer:
    """A thread-safe list drained by the flush, with a size cap."""

    def __init__(self) -> None:
        self._items: list[object] = []
        self._lock = threading.Lock()
        self.dropped = 0

    def append(self, item: object) -> None:
        with self._lock:
            if len(self._items) >= MAX_BUFFERED:
                self._items.pop(0)
                self.dropped += 1
            self._items.append(item)

    def drain(self) -> list[object]:
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


def _otlp_exporter_kwargs(timeout_s: float) -> dict[str, object]:
    from ._transport import StdlibHTTPTransport

    return {"timeout": timeout_s, "_transport": StdlibHTTPTransport()}


class Pipeline:
    """One per process: the providers plus the instruments every invocation records."""

    def __init__(self, settings: Settings, resource_attributes: Mapping[str, object]) -> None:
        self.settings = settings
        self.resource = _resource(resource_attributes)
        self._export_timeout_s = settings.flush_timeout_s / _SIGNALS
        self._flush_lock = threading.Lock()

        self.tracer_provider = TracerProvider(resource=self.resource)
        self._spans = InvocationSpanProcessor()
        self._span_exporter: SpanExporter | None = None
        if settings.traces_enabled:
            from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

            self._span_exporter = OTLPSpanExporter(**_otlp_exporter_kwargs(self._export_timeout_s))
            self.tracer_provider.add_span_processor(self._spans)
        self.tracer = self.tracer_provider.get_tracer(_SCOPE)

        self.meter_provider, self._metric_reader = _meter_provider(
            self.resource, settings.metrics_enabled, self._export_timeout_s
        )
        meter = self.meter_provider.get_meter(_SCOPE)
        self.duration = meter.create_histogram(
            METRIC_INVOKE_DURATION, unit="s", description="Invocation duration, handler only."
        )
        self.invocations = meter.create_counter(
            METRIC_INVOCATIONS, unit="{invocation}", description="Invocations handled."
        )
        self.coldstarts = meter.create_counter(
            METRIC_COLDSTARTS, unit="{coldstart}", description="Invocations that were cold starts."
        )
        self.errors = meter.create_counter(
            METRIC_ERRORS, unit="{error}", description="Invocations that raised."
        )

        # The Logs SDK and its exporter are loaded on the first prediction only: many
        # functions never log one, and it is ~10 ms of import on the cold path.
        self._logger_provider: LoggerProvider | None = None
        self._logs: _Buffer | None = None
        self._log_exporter: object | None = None
        self._logs_lock = threading.Lock()

    def logger_provider(self) -> LoggerProvider:
        """The Logs SDK provider, created on first use."""
        with self._logs_lock:
            if self._logger_provider is None:
                self._logger_provider = self._make_logger_provider()
            return self._logger_provider

    def _make_logger_provider(self) -> LoggerProvider:
        from opentelemetry.sdk._logs import LoggerProvider, LogRecordProcessor

        buffer = _Buffer()

        class InvocationLogProcessor(LogRecordProcessor):
            """Keeps emitted records until the end-of-invocation flush exports them."""

            def on_emit(self, log_record: ReadWriteLogRecord) -> None:
                buffer.append(log_record)

            def shutdown(self) -> None:
                """Nothing to release: the pipeline's flush owns the buffer."""

            def force_flush(self, timeout_millis: int = 30000) -> bool:
                """The pipeline's flush exports the buffer; nothing is pending here."""
                return True

        provider = LoggerProvider(resource=self.resource)
        if self.settings.logs_enabled:
            from opentelemetry.exporter.otlp.proto.http._log_exporter import OTLPLogExporter

            self._log_exporter = OTLPLogExporter(**_otlp_exporter_kwargs(self._export_timeout_s))
            self._logs = buffer
            provider.add_log_record_processor(InvocationLogProcessor())
        return provider

    def flush(self) -> float:
        """Export everything recorded so far; returns the seconds it took.

        Bounded by ``settings.flush_timeout_s`` (each exporter has a third of it as its
        deadline, retries included). Never raises.
        """
        start = time.perf_counter()
        with self._flush_lock:
            try:
                self._flush_locked()
            except Exception:  # noqa: BLE001 - telemetry must never fail the handler
                _logger.exception("obsloop-instrument: flush failed")
        return time.perf_counter() - start

    def _flush_locked(self) -> None:
        spans = self._spans.buffer.drain()
        if spans and self._span_exporter is not None:
            self._span_exporter.export(spans)  # type: ignore[arg-type]
        if self._metric_reader is not None:
            self._metric_reader.collect(timeout_millis=self._export_timeout_s * 1000)
        if self._logs is not None and self._log_exporter is not None:
            records: list[ReadableLogRecord] = self._logs.drain()  # type: ignore[assignment]
            if records:
                self._log_exporter.export(records)  # type: ignore[attr-defined]


def _resource(attributes: Mapping[str, object]) -> Resource:
    """Platform attributes, overridden by ``OTEL_RESOURCE_ATTRIBUTES``/``OTEL_SERVICE_NAME``.

    ``Resource.create`` would also scan installed distributions for resource-detector
    entry points (about 2 ms here); the environment detector alone is what a function needs.
    """
    from opentelemetry.sdk.resources import OTELResourceDetector
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


def _meter_provider(
    resource: Resource, enabled: bool, timeout_s: float
) -> tuple[MeterProvider, MetricReader | None]:
    from opentelemetry.sdk.metrics import MeterProvider

    if not enabled:
        return MeterProvider(resource=resource), None
    from opentelemetry.exporter.otlp.proto.http.metric_exporter import OTLPMetricExporter
    from opentelemetry.sdk.metrics.export import PeriodicExportingMetricReader

    exporter = OTLPMetricExporter(**_otlp_exporter_kwargs(timeout_s))
    # math.inf: no background thread; collection happens in the end-of-invocation flush.
    reader = PeriodicExportingMetricReader(exporter, export_interval_millis=math.inf)
    return MeterProvider(resource=resource, metric_readers=[reader]), reader
