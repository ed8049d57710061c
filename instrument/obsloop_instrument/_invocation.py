"""The per-invocation span/metrics lifecycle shared by all platforms.

Imports the OpenTelemetry API: loaded by the background set-up (``_runtime``), not on the
handler module's import path.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.trace import SpanKind, Status, StatusCode

from ._runtime import ModelIdentity, _take_coldstart, current_model
from ._semconv import (
    FAAS_COLDSTART,
    FAAS_INVOCATION_ID,
    FAAS_NAME,
    FAAS_TRIGGER,
    MODEL_NAME,
    MODEL_VERSION,
)

if TYPE_CHECKING:
    from ._pipeline import Pipeline


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
        "_token",
        "_model_token",
        "_start",
        "_cold",
    )

    def __init__(
        self,
        pipe: Pipeline,
        name: str,
        parent: otel_context.Context | None,
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
        self.span = self._pipeline.tracer.start_span(
            self._name,
            context=self._parent,
            kind=SpanKind.SERVER,
            attributes=self._attributes,
            record_exception=False,
            set_status_on_exception=False,
        )
        self._token = otel_context.attach(trace.set_span_in_context(self.span, self._parent))
        self._model_token = current_model.set(self._model)
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
            self.span.set_status(Status(StatusCode.ERROR))

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: object
    ) -> None:
        duration = time.perf_counter() - self._start
        pipe = self._pipeline
        attrs = self._metric_attributes
        if exc is not None:
            self.span.record_exception(exc)
            self.span.set_status(Status(StatusCode.ERROR, f"{type(exc).__name__}: {exc}"))
            pipe.errors.add(
                1,
                {**attrs, "error.type": type(exc).__qualname__},
                self.span.get_span_context(),  # the trace-based exemplar
            )
        self.span.end()
        current_model.reset(self._model_token)
        otel_context.detach(self._token)
        pipe.invocations.add(1, attrs)
        pipe.duration.record(duration, attrs)
        if self._cold:
            pipe.coldstarts.add(1, attrs)
        if self._flush:
            pipe.flush()

