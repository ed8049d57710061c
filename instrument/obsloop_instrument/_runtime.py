"""Process-wide state: the pipeline, built at set-up; its connections opened in the background.

Set-up (decorating a handler) reads the settings and builds the pipeline (``_pipeline``)
in the decorating thread: a few milliseconds of imports and nothing of OpenTelemetry (see
``_span``). Then it warms up what is slow for another reason than the CPU: the exporters'
connections (name resolution, TCP and TLS handshakes, ``ssl`` for an https endpoint) and,
when the application has loaded the OpenTelemetry API, the SDK tracer it will use. That
runs in one daemon thread, so it overlaps with the platform's own init (importing the
application, loading the model) and never delays an invocation: a flush that starts while
a connection attempt is in progress waits for it within its own deadline.
``OBSLOOP_BACKGROUND_SETUP=false`` does the warm-up in the decorating thread too
(everything done during init; useful before a Lambda SnapStart snapshot or with a
pre-forking server).

Why not the whole set-up in the background, as before: with the GIL, a thread importing
Python modules does not overlap with the application's own imports, it competes with
them; once the set-up was a few milliseconds of CPU, the thread start and the hand-offs
cost more than they saved (bench/instrument: cold total +4 ms over building in place).

It also holds what the three platform wrappers (``aws``, ``gcp``, ``azure``) share:
``prepare_handler`` (the set-up while decorating, the static part of every invocation at
the first call) and ``decorator_factory``. Here rather than in a module of their own: this
module is imported by every wrapper anyway, another would be one more import in the cold
start.

Only the standard library is imported here: this module is on the import path of the
handler module.
"""

from __future__ import annotations

import os
import sys
import threading
from contextvars import ContextVar

from obsloop_instrument._config import Settings
from obsloop_instrument._semconv import FAAS_NAME, MODEL_NAME, MODEL_VERSION

TYPE_CHECKING = False  # not ``typing.TYPE_CHECKING``: no ``typing`` import at set-up
if TYPE_CHECKING:
    from collections.abc import Callable, Mapping
    from typing import Any, TypeVar

    from obsloop_instrument._invocation import Invocation
    from obsloop_instrument._pipeline import Pipeline
    from obsloop_instrument._span import InvocationSpan, Parent

    F = TypeVar("F", bound=Callable[..., Any])

_lock = threading.Lock()
_pipeline: Pipeline | None = None
_cold = True

ModelIdentity = tuple  # (model name, model version), each str or None
current_invocation: ContextVar[tuple[ModelIdentity, InvocationSpan] | None] = ContextVar(
    "obsloop_invocation", default=None
)
"""The model and span of the invocation in progress, read by ``log_prediction``."""


def _build(settings: Settings, resource_attributes: Mapping[str, object]) -> Pipeline:
    """Build the pipeline (no network, no OpenTelemetry import)."""
    from obsloop_instrument._pipeline import Pipeline

    built = Pipeline(settings, resource_attributes)
    # What the first invocation touches, loaded now rather than in it.
    from obsloop_instrument import _invocation, _propagation  # noqa: F401

    return built


def _warm_up(built: Pipeline) -> None:
    """Open the exporters' connections and prepare the OpenTelemetry bridge (best effort).

    The API is not imported: if the application has loaded it by now, its global
    providers are registered here (``Pipeline.otel``), else by the first invocation that
    finds it loaded.
    """
    try:
        if "opentelemetry.context" in sys.modules:  # loaded by the trace and metrics APIs
            bridge = built.otel()
            if "opentelemetry.trace" in sys.modules:
                # An application that loaded the trace API makes spans: the SDK tracer it
                # will get (~20 ms of import) is built now, not in its first invocation.
                bridge.tracer_provider.sdk_provider()
        built.connect()
    except Exception:  # noqa: BLE001 - the first invocation retries and reports
        from obsloop_instrument._log import logger

        logger(__name__).debug("obsloop-instrument: warm-up failed", exc_info=True)


def _background() -> bool:
    value = os.environ.get("OBSLOOP_BACKGROUND_SETUP", "true").strip().lower()
    return value not in ("0", "false", "no", "off")


def prepare(resource_attributes: Mapping[str, object]) -> Settings:
    """Build the process's pipeline (the first caller's attributes win) and start its
    warm-up; returns the settings it is built with.

    Reads the environment now, so invalid ``OBSLOOP_*`` values fail the set-up.
    """
    with _lock:
        if _pipeline is not None:
            return _pipeline.settings
        settings = Settings.from_env()
        built = _build(settings, resource_attributes)
        _set_pipeline(built)
    if _background():
        threading.Thread(
            target=_warm_up, args=(built,), name="obsloop-instrument-warm-up", daemon=True
        ).start()
    else:
        _warm_up(built)
    return settings


def _set_pipeline(built: Pipeline) -> None:
    global _pipeline
    _pipeline = built


def pipeline(resource_attributes: Mapping[str, object] | None = None) -> Pipeline:
    """The process's pipeline, built now if no wrapper has prepared one."""
    if _pipeline is not None:
        return _pipeline
    with _lock:
        if _pipeline is None:
            built = _build(Settings.from_env(), resource_attributes or {})
            _warm_up(built)
            _set_pipeline(built)
        return _pipeline  # type: ignore[return-value]


def _after_fork_in_child() -> None:
    """A forked worker (a pre-forking server) gets its own connections and locks: the
    parent's keep-alive sockets are not shared, and a lock a warm-up thread held at the
    fork (that thread is gone in the child) does not stay locked forever."""
    global _lock
    _lock = threading.Lock()
    if _pipeline is not None:
        _pipeline.after_fork()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)


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


def prepare_handler(
    handler: Callable[..., Any],
    model_name: str | None,
    model_version: str | None,
    resource_attributes: Mapping[str, object],
    static_keys: tuple[str, ...],
) -> Callable[..., Invocation]:
    """The set-up a platform wrapper does while decorating ``handler``; returns the
    function that makes each call's ``Invocation``.

    Now: the process's pipeline (``prepare``, with the platform's resource attributes) and
    the model identity (the decorator's, else ``OBSLOOP_MODEL_*``). At the first call: the
    pipeline, the attributes every invocation span repeats (the resource attributes under
    ``static_keys``, then the model's) and the span name (``faas.name`` among them, else
    the handler's name).

    ``start(parent, attributes, name=None, *, flush=True)``: an ``Invocation`` (not entered)
    with the parent context the platform extracted, the static attributes followed by the
    call's own ``attributes`` (``faas.trigger`` and what else only the call knows), named
    ``name`` or the span name; ``flush=False`` leaves the flush to the caller.
    """
    settings = prepare(resource_attributes)
    model = (model_name or settings.model_name, model_version or settings.model_version)
    ready: tuple[Any, ...] | None = None

    def setup() -> tuple[Any, ...]:
        nonlocal ready
        pipe = pipeline()
        from obsloop_instrument._invocation import Invocation  # loaded by the set-up (not at import: a cycle)

        resource = pipe.resource_attributes
        static = {k: resource[k] for k in static_keys if k in resource}
        static.update(model_attributes(*model))
        ready = (pipe, static, str(static.get(FAAS_NAME) or handler.__name__), Invocation)
        return ready

    def start(
        parent: Parent | None,
        attributes: dict[str, Any],
        name: str | None = None,
        *,
        flush: bool = True,
    ) -> Invocation:
        pipe, static, span_name, invocation_type = ready or setup()
        return invocation_type(
            pipe,
            span_name if name is None else name,
            parent,
            {**static, **attributes},
            model,
            flush=flush,
        )

    return start


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
