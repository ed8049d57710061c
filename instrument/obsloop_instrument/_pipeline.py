"""The pipeline: the invocation spans, the FaaS metrics, prediction records, and the
bounded end-of-invocation flush.

Why buffers instead of the SDK's batch processors: a function is frozen (Lambda) or
throttled (Cloud Run, Azure) as soon as it returns, so a background export thread cannot be
relied on. Ended spans and prediction records are kept in memory and exported in the
calling thread at the end of every invocation, which also spares a thread wake-up per
invocation. The flush is bounded: each signal gets an equal share of
``OBSLOOP_FLUSH_TIMEOUT_MS`` (and the whole flush never more than all of it); export
failures are logged, never raised.

Cold start: nothing of OpenTelemetry is imported. The invocation span (``_span``), encoding
(``_encode``), sending (``_otlp``), the FaaS metrics (``_metrics``), prediction records and
the resource (the SDK's ``OTELResourceDetector`` rules, ``_resource``) are this library's
own. When the application loads the OpenTelemetry API, ``otel()`` registers lazy global
providers (``_otel``): the SDK tracer and meter providers are built at the handler's first
``get_tracer``/``get_meter``, and their spans and metrics go out with the same flush. This
module is imported by the background set-up (``_runtime``).
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Mapping

from obsloop_instrument import _encode as enc
from obsloop_instrument._config import Settings
from obsloop_instrument._log import logger
from obsloop_instrument._metrics import FaasMetrics, temporality_from_env
from obsloop_instrument._otlp import OtlpHttpExporter
from obsloop_instrument._semconv import (
    METRIC_COLDSTARTS,
    METRIC_ERRORS,
    METRIC_INVOCATIONS,
    METRIC_INVOKE_DURATION,
    SERVICE_NAME,
)
from obsloop_instrument._span import InvocationSpan, SpanLimits, env_int, sampler_from_env

TYPE_CHECKING = False  # not ``typing.TYPE_CHECKING``: no ``typing`` import at set-up
if TYPE_CHECKING:
    from typing import Any

    from obsloop_instrument._otel import Bridge

_logger = logger(__name__)

_SCOPE = "obsloop_instrument"
_SIGNALS = 3  # traces, metrics, logs share the flush bound
MAX_BUFFERED = 4096
"""Records kept between flushes at most; beyond it the oldest are dropped (memory bound)."""
_DEFAULT_ATTRIBUTE_COUNT_LIMIT = 128
SDK_VERSION = "1.45.2"
"""``telemetry.sdk.version`` when ``opentelemetry-api`` is not installed as a distribution."""


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
        self.resource_attributes = resource(resource_attributes, env)
        self._resource_bytes = enc.resource(self.resource_attributes)
        self._scope_bytes = enc.scope(_SCOPE)
        self._export_timeout_s = settings.flush_timeout_s / _SIGNALS
        self._flush_lock = threading.Lock()
        self._otel: Bridge | None = None
        self._otel_lock = threading.Lock()

        self.sampler = sampler_from_env(env)
        self._span_limits = SpanLimits(env)
        self._spans = _Buffer()  # encoded invocation spans
        self._sdk_spans = _Buffer()  # the handler's own SDK spans (``_otel``)
        self._span_exporter: OtlpHttpExporter | None = None
        if settings.traces_enabled:
            self._span_exporter = OtlpHttpExporter("traces", env)

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

        self._logs = _Buffer()
        self._log_exporter: OtlpHttpExporter | None = None
        if settings.logs_enabled:
            self._log_exporter = OtlpHttpExporter("logs", env)
        count_limit = env_int(env, "OTEL_LOGRECORD_ATTRIBUTE_COUNT_LIMIT", "OTEL_ATTRIBUTE_COUNT_LIMIT")
        self._log_attribute_limit = _DEFAULT_ATTRIBUTE_COUNT_LIMIT if count_limit is None else count_limit
        self._log_value_limit = env_int(
            env,
            "OTEL_LOGRECORD_ATTRIBUTE_VALUE_LENGTH_LIMIT",
            "OTEL_ATTRIBUTE_VALUE_LENGTH_LIMIT",
        )

    def otel(self) -> Bridge:
        """The bridge to the OpenTelemetry API, registered once the application loaded it."""
        bridge = self._otel
        if bridge is None:
            with self._otel_lock:
                if self._otel is None:
                    from obsloop_instrument._otel import Bridge

                    self._otel = Bridge(self, self._export_timeout_s)
                bridge = self._otel
        return bridge

    def record_span(self, span: InvocationSpan) -> None:
        """Keep an ended invocation span for the flush (encoded now; unsampled: dropped)."""
        if span.sampled and self._span_exporter is not None:
            self._spans.append(span.encode(self._span_limits))

    def buffer_sdk_span(self, span: Any) -> None:
        """Keep an ended SDK span (the handler's own) for the flush."""
        self._sdk_spans.append(span)

    def current_ids(self) -> tuple[int, int, int] | None:
        """(trace id, span id, flags) of the current span: the API's (a handler's own span
        inside the invocation) when bridged, else the invocation span's; ``None`` outside."""
        from obsloop_instrument._runtime import current_invocation

        if self._otel is not None:
            ids = self._otel.current_ids()
            if ids is not None:
                return ids
        current = current_invocation.get()
        if current is None:
            return None
        span = current[1]
        return span.trace_id, span.span_id, span.flags

    def after_fork(self) -> None:
        """In a forked child: new exporter connections and locks (see ``_runtime``)."""
        self._flush_lock = threading.Lock()
        self._otel_lock = threading.Lock()
        for exporter in (self._span_exporter, self._metric_exporter, self._log_exporter):
            if exporter is not None:
                exporter.after_fork()

    def connect(self) -> None:
        """Open the exporters' connections ahead of the first flush (set-up, best effort)."""
        timeout = self._export_timeout_s
        for exporter in (self._span_exporter, self._metric_exporter):
            if exporter is not None:
                exporter.connect(timeout)

    def emit_prediction(
        self, event_name: str, attributes: dict[str, Any], time_ns: int | None = None
    ) -> None:
        """Record one event with the current span's ids, exported at the next flush.

        ``time_ns`` is the event's time when it is not now (a label observed earlier).

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
        trace_id, span_id, flags = self.current_ids() or (0, 0, 0)
        self._logs.append(
            enc.log_record(time.time_ns(), attributes, trace_id, span_id, flags, event_name, dropped,
                           time_ns or 0)
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
        spans, sdk_spans = self._spans.drain(), self._sdk_spans.drain()
        if (
            (spans or sdk_spans)
            and self._span_exporter is not None
            and (t := self._timeout(deadline)) > 0
        ):
            body = enc.export_trace_request(
                sdk_spans, spans, self._resource_bytes, self._scope_bytes
            )
            pending.append((self._span_exporter, self._span_exporter.start(body, t)))
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
            if (
                self._otel is not None
                and self._metric_exporter is not None
                and (t := self._timeout(deadline)) > 0
            ):
                self._otel.collect(t)  # the handler's own OTel metrics, if any
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


def resource(attributes: Mapping[str, object], env: Mapping[str, str]) -> dict[str, Any]:
    """Platform attributes, overridden by ``OTEL_RESOURCE_ATTRIBUTES``/``OTEL_SERVICE_NAME``.

    The attributes ``Resource.create`` gives with the SDK's ``OTELResourceDetector`` (its
    parsing: comma-separated ``key=value``, URL-decoded values, an item without ``=``
    skipped with a warning), without the SDK: ``Resource.create`` would also scan installed
    distributions for resource-detector entry points, and the SDK import is most of a cold
    start (see ``_span``).
    """
    base: dict[str, Any] = {
        "telemetry.sdk.language": "python",
        "telemetry.sdk.name": "opentelemetry",
        "telemetry.sdk.version": _sdk_version(),
        "telemetry.distro.name": "obsloop-instrument",
        SERVICE_NAME: str(attributes.get("faas.name") or "unknown_service"),
    }
    base.update(attributes)
    raw = env.get("OTEL_RESOURCE_ATTRIBUTES")
    if raw:
        from urllib.parse import unquote

        for item in raw.split(","):
            if not item.strip():
                continue
            key, sep, value = item.partition("=")
            if not sep:
                _logger.warning("Invalid key value resource attribute pair %s", item)
                continue
            base[key.strip()] = unquote(value.strip())
    service_name = env.get("OTEL_SERVICE_NAME")
    if service_name:
        base[SERVICE_NAME] = service_name
    return base


def _sdk_version() -> str:
    """The installed OpenTelemetry release (the API's version module: one small file)."""
    try:
        from opentelemetry.version import __version__
    except ImportError:  # pragma: no cover - the API is a dependency
        return SDK_VERSION
    return str(__version__)
