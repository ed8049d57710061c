"""The bridge to the OpenTelemetry API, loaded only once the application has loaded the API.

Why a bridge: the invocation span is this library's own (``_span``), so a handler that
never touches OpenTelemetry never imports it. A handler that does (its own spans, its own
metrics, an instrumented client library) gets what it had before:

- the global tracer provider is a ``LazyTracerProvider``: the SDK ``TracerProvider`` (same
  resource, the invocation's buffer as span processor) is built at the first
  ``get_tracer``; the handler's spans are exported by the end-of-invocation flush;
- the global meter provider is a ``LazyMeterProvider``: the metrics SDK and the OTLP metric
  exporter are loaded at the first ``get_meter``; the flush collects them;
- during an invocation the API's current span is the invocation span (a
  ``NonRecordingSpan`` with its ids: children need only the parent's span context).

Registration follows the API's rules: a provider the application registered first stays
global (the API refuses an override), and meters or tracers taken from the API before the
registration are proxies that start delegating to it.
"""

from __future__ import annotations

import sys
import threading

from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.trace import NonRecordingSpan, SpanContext, TraceFlags, TraceState

from obsloop_instrument._log import logger

TYPE_CHECKING = False  # not ``typing.TYPE_CHECKING``
if TYPE_CHECKING:
    from typing import Any

    from opentelemetry.sdk.metrics import MeterProvider
    from opentelemetry.sdk.metrics.export import MetricReader
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider

    from obsloop_instrument._pipeline import Pipeline
    from obsloop_instrument._span import InvocationSpan

_logger = logger(__name__)


def _sdk_resource(attributes: dict[str, Any]) -> Resource:
    """The pipeline's resource as an SDK ``Resource`` (no detectors: already merged)."""
    from opentelemetry.sdk.resources import Resource

    return Resource(attributes)


class LazyTracerProvider(trace.TracerProvider):
    """The global tracer provider: the SDK's is built at the first ``get_tracer``."""

    def __init__(self, pipe: Pipeline) -> None:
        self._pipeline = pipe
        self._lock = threading.Lock()
        self._provider: TracerProvider | None = None

    def sdk_provider(self) -> TracerProvider:
        with self._lock:
            if self._provider is None:
                from opentelemetry.sdk.trace import SpanProcessor, TracerProvider

                pipe = self._pipeline

                class BufferSpanProcessor(SpanProcessor):
                    """Keeps ended sampled spans for the end-of-invocation flush."""

                    def on_end(self, span: Any) -> None:
                        if span.context is not None and span.context.trace_flags.sampled:
                            pipe.buffer_sdk_span(span)

                provider = TracerProvider(resource=_sdk_resource(pipe.resource_attributes))
                if pipe.settings.traces_enabled:
                    provider.add_span_processor(BufferSpanProcessor())
                self._provider = provider
            return self._provider

    def get_tracer(
        self,
        instrumenting_module_name: str,
        instrumenting_library_version: str | None = None,
        schema_url: str | None = None,
        attributes: Any = None,
    ) -> trace.Tracer:
        return self.sdk_provider().get_tracer(
            instrumenting_module_name, instrumenting_library_version, schema_url, attributes
        )

    def force_flush(self, timeout_millis: int = 30_000) -> bool:
        """The SDK's ``force_flush``; spans go out with the pipeline's flush anyway."""
        return self._provider.force_flush(timeout_millis) if self._provider else True

    def shutdown(self) -> None:
        if self._provider is not None:
            self._provider.shutdown()


def lazy_meter_provider(pipe: Pipeline, timeout_s: float) -> Any:
    """A ``LazyMeterProvider`` (the metrics API is imported here, when the app loaded it)."""
    from opentelemetry import metrics as metrics_api

    class LazyMeterProvider(metrics_api.MeterProvider):
        """The global meter provider: the metrics SDK is loaded at the first ``get_meter``.

        The library's own metrics do not need it (``_metrics``); a handler that records
        its own OpenTelemetry metrics gets SDK meters, exported by the end-of-invocation
        flush through the OTLP metric exporter.
        """

        def __init__(self) -> None:
            self._lock = threading.Lock()
            self._provider: MeterProvider | None = None
            self._reader: MetricReader | None = None

        def sdk_provider(self) -> MeterProvider:
            with self._lock:
                if self._provider is None:
                    self._provider, self._reader = _sdk_meter_provider(pipe, timeout_s)
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

    return LazyMeterProvider()


def _sdk_meter_provider(pipe: Pipeline, timeout_s: float) -> tuple[MeterProvider, MetricReader | None]:
    from opentelemetry.sdk.metrics import MeterProvider

    resource = _sdk_resource(pipe.resource_attributes)
    if not pipe.settings.metrics_enabled:
        return MeterProvider(resource=resource), None
    import math

    from opentelemetry.exporter.otlp.proto.http.metric_exporter import OTLPMetricExporter
    from opentelemetry.sdk.metrics.export import PeriodicExportingMetricReader

    from obsloop_instrument._transport import StdlibHTTPTransport

    exporter = OTLPMetricExporter(timeout=timeout_s, _transport=StdlibHTTPTransport())
    # math.inf: no background thread; collection happens in the end-of-invocation flush.
    reader = PeriodicExportingMetricReader(exporter, export_interval_millis=math.inf)
    return MeterProvider(resource=resource, metric_readers=[reader]), reader


class Bridge:
    """Registers the pipeline's providers with the API; makes invocation spans current."""

    def __init__(self, pipe: Pipeline, timeout_s: float) -> None:
        self._pipeline = pipe
        self._timeout_s = timeout_s
        self.tracer_provider = LazyTracerProvider(pipe)
        trace.set_tracer_provider(self.tracer_provider)
        self.meter_provider: Any = None
        self.register_metrics()

    def register_metrics(self) -> None:
        """The meter provider, once the application has loaded the metrics API."""
        if self.meter_provider is None and "opentelemetry.metrics" in sys.modules:
            from opentelemetry import metrics

            self.meter_provider = lazy_meter_provider(self._pipeline, self._timeout_s)
            metrics.set_meter_provider(self.meter_provider)

    def attach(self, span: InvocationSpan) -> object:
        """Make ``span`` the API's current span; the token for ``detach``."""
        if self.meter_provider is None:
            self.register_metrics()
        trace_state = TraceState.from_header([span.trace_state]) if span.trace_state else None
        span_context = SpanContext(
            span.trace_id,
            span.span_id,
            is_remote=False,
            trace_flags=TraceFlags(span.flags),
            trace_state=trace_state,
        )
        return otel_context.attach(trace.set_span_in_context(NonRecordingSpan(span_context)))

    def detach(self, token: object) -> None:
        otel_context.detach(token)  # type: ignore[arg-type]

    def collect(self, timeout_s: float) -> None:
        """Export the handler's own OTel metrics, if it recorded any."""
        if self.meter_provider is not None:
            self.meter_provider.collect(timeout_s)

    @staticmethod
    def current_ids() -> tuple[int, int, int] | None:
        """(trace id, span id, flags) of the API's current span, if valid."""
        span_context = trace.get_current_span().get_span_context()
        if not span_context.is_valid:
            return None
        return span_context.trace_id, span_context.span_id, int(span_context.trace_flags)
