"""The per-invocation span/metrics lifecycle shared by all platforms.

Only the standard library is imported here: the invocation span is this library's own
(``_span``). When the application has loaded the OpenTelemetry API, the span is also made
the API's current span for the duration of the handler (``_otel``), so the handler's own
spans join the invocation's trace.
"""

from __future__ import annotations

import sys
import time

from obsloop_instrument._runtime import ModelIdentity, _take_coldstart, current_invocation
from obsloop_instrument._semconv import (
    FAAS_COLDSTART,
    FAAS_INVOCATION_ID,
    FAAS_NAME,
    FAAS_TRIGGER,
    MODEL_NAME,
    MODEL_VERSION,
)
from obsloop_instrument._span import InvocationSpan, Parent

TYPE_CHECKING = False  # not ``typing.TYPE_CHECKING``: no ``typing`` import at set-up
if TYPE_CHECKING:
    from typing import Any

    from obsloop_instrument._pipeline import Pipeline

_modules = sys.modules


class Invocation:
    """One handler call: a SERVER span, the FaaS metrics and the flush before returning.

    Used as a context manager around the user's handler; the exception (if any) is
    recorded and re-raised unchanged.
    """

    __slots__ = (
        "_pipeline",
        "_name",
        "_parent",
        "_attributes",
        "_metric_attributes",
        "_model",
        "_flush",
        "span",
        "_otel_token",
        "_token",
        "_start",
        "_cold",
    )

    def __init__(
        self,
        pipe: Pipeline,
        name: str,
        parent: Parent | None,
        attributes: dict[str, Any],
        model: ModelIdentity,
        *,
        flush: bool = True,
    ) -> None:
        """``flush=False`` leaves the flush to the caller (async handlers flush off-loop)."""
        self._pipeline = pipe
        self._flush = flush
        self._name = name
        self._parent = parent
        self._attributes = attributes
        self._model = model
        self._metric_attributes = {
            key: attributes[key]
            for key in (FAAS_TRIGGER, FAAS_NAME, MODEL_NAME, MODEL_VERSION)
            if key in attributes
        }

    def __enter__(self) -> Invocation:
        self._cold = _take_coldstart()
        self._attributes[FAAS_COLDSTART] = self._cold
        pipe = self._pipeline
        self.span = span = InvocationSpan(self._name, self._parent, self._attributes, pipe.sampler)
        # The OpenTelemetry API (trace or metrics: both load its context module) is bridged
        # only once the application has loaded it: a handler that never uses it never pays
        # for its import (one dict lookup here).
        self._otel_token = (
            pipe.otel().attach(span) if "opentelemetry.context" in _modules else None
        )
        self._token = current_invocation.set((self._model, span))
        self._start = time.perf_counter()
        return self

    def set_invocation_id(self, invocation_id: str | None) -> None:
        if invocation_id:
            self.span.set_attribute(FAAS_INVOCATION_ID, invocation_id)

    def set_http_status(self, status: int | None) -> None:
        """A 5xx response is an error of this server span even when nothing raised."""
        if status is None:
            return
        self.span.set_attribute("http.response.status_code", status)
        if status >= 500:
            self.span.set_error()

    def flush(self) -> float:
        """The pipeline's flush: for a caller that created this with ``flush=False``."""
        return self._pipeline.flush()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: object
    ) -> None:
        duration = time.perf_counter() - self._start
        pipe = self._pipeline
        attrs = self._metric_attributes
        span = self.span
        if exc is not None:
            span.record_exception(exc)
            span.set_error(f"{type(exc).__name__}: {exc}")
            pipe.errors.add(1, {**attrs, "error.type": type(exc).__qualname__}, span)
        span.end()
        pipe.record_span(span)
        current_invocation.reset(self._token)
        if self._otel_token is not None:
            pipe.otel().detach(self._otel_token)
        pipe.invocations.add(1, attrs)
        pipe.duration.record(duration, attrs)
        if self._cold:
            pipe.coldstarts.add(1, attrs)
        if self._flush:
            pipe.flush()
