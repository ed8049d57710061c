"""Process-wide state and the per-invocation span/metrics lifecycle shared by all platforms."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Mapping
from contextvars import ContextVar
from typing import Any, TypeVar

from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.trace import SpanKind, Status, StatusCode

from ._config import Settings
from ._pipeline import Pipeline
from ._semconv import (
    FAAS_COLDSTART,
    FAAS_INVOCATION_ID,
    FAAS_NAME,
    FAAS_TRIGGER,
    MODEL_NAME,
    MODEL_VERSION,
)

F = TypeVar("F", bound=Callable[..., Any])

_lock = threading.Lock()
_pipeline: Pipeline | None = None
_cold = True

ModelIdentity = tuple[str | None, str | None]
current_model: ContextVar[ModelIdentity | None] = ContextVar("obsloop_model", default=None)
"""The model of the invocation in progress, read by ``log_prediction``."""


def pipeline(resource_attributes: Mapping[str, object] | None = None) -> Pipeline:
    """The process's pipeline, built (and registered globally) on first call.

    The first caller's platform attributes become the resource; set-up happens when a
    handler is decorated, i.e. during the platform's init phase, not in an invocation.
    """
    global _pipeline
    if _pipeline is None:
        with _lock:
            if _pipeline is None:
                built = Pipeline(Settings.from_env(), resource_attributes or {})
                # Registering globally lets the handler's own spans and metrics join the
                # invocation's trace and the end-of-invocation flush. An SDK provider the
                # application registered first stays global (the API refuses an override).
                from opentelemetry import metrics

                trace.set_tracer_provider(built.tracer_provider)
                metrics.set_meter_provider(built.meter_provider)
                _pipeline = built
    return _pipeline


def _take_coldstart() -> bool:
    global _cold
    with _lock:
        cold, _cold = _cold, False
    return cold


def model_attributes(model_name: str | None, model_version: str | None) -> dict[str, str]:
    attrs = {}
    if model_name:
        attrs[MODEL_NAME] = model_name
    if model_version:
        attrs[MODEL_VERSION] = model_version
    return attrs


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
            pipe.errors.add(1, {**attrs, "error.type": type(exc).__qualname__})
        self.span.end()
        current_model.reset(self._model_token)
        otel_context.detach(self._token)
        pipe.invocations.add(1, attrs)
        pipe.duration.record(duration, attrs)
        if self._cold:
            pipe.coldstarts.add(1, attrs)
        if self._flush:
            pipe.flush()


def decorator_factory(
    wrap: Callable[[Callable[..., Any], str | None, str | None], Callable[..., Any]],
) -> Callable[..., Any]:
    """Lets a platform wrapper be used bare (``@w``) or with arguments (``@w(model_name=...)``)."""

    def decorator(
        handler: F | None = None, *, model_name: str | None = None, model_version: str | None = None
    ) -> Any:
        def apply(fn: F) -> F:
            return wrap(fn, model_name, model_version)  # type: ignore[return-value]

        return apply(handler) if handler is not None else apply

    return decorator
