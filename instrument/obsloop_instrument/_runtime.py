"""Process-wide state: the pipeline, built in the background from set-up on.

Set-up (decorating a handler) reads the settings and starts one daemon thread that builds
the pipeline (``_pipeline``; a few milliseconds of imports, nothing of OpenTelemetry) and
then opens the exporters' connections: the platform's own init work (loading the model,
importing the application) overlaps with it instead of waiting for it. The first
invocation, or anything else that needs the pipeline (``log_prediction``, ``flush``), waits
for the build, never for the connections (a flush waits for a connection attempt in
progress within its own deadline); if the build failed, the pipeline is built in the caller
instead, so a set-up error surfaces there. ``OBSLOOP_BACKGROUND_SETUP=false`` builds and
connects in the decorating thread instead (everything done during init; useful before a
Lambda SnapStart snapshot or with a pre-forking server).

Only the standard library is imported here: this module is on the import path of the
handler module.
"""

from __future__ import annotations

import os
import sys
import threading
from contextvars import ContextVar

from ._config import Settings
from ._semconv import MODEL_NAME, MODEL_VERSION

TYPE_CHECKING = False  # not ``typing.TYPE_CHECKING``: no ``typing`` import at set-up
if TYPE_CHECKING:
    from collections.abc import Callable, Mapping
    from typing import Any, TypeVar

    from ._pipeline import Pipeline
    from ._span import InvocationSpan

    F = TypeVar("F", bound=Callable[..., Any])

_lock = threading.Lock()
_pipeline: Pipeline | None = None
_builder: _Builder | None = None
_cold = True

ModelIdentity = tuple  # (model name, model version), each str or None
current_invocation: ContextVar[tuple[ModelIdentity, InvocationSpan] | None] = ContextVar(
    "obsloop_invocation", default=None
)
"""The model and span of the invocation in progress, read by ``log_prediction``."""


def _build(
    settings: Settings, resource_attributes: Mapping[str, object], connect: bool = True
) -> Pipeline:
    """Build the pipeline and (``connect``) open the exporters' connections.

    The OpenTelemetry API is not imported: if the application has loaded it by now, its
    global providers are registered here (``Pipeline.otel``), else by the first
    invocation that finds it loaded.
    """
    from ._pipeline import Pipeline

    built = Pipeline(settings, resource_attributes)
    # What the first invocation touches, loaded now rather than in it, and the exporters'
    # connections opened (name resolution, TCP and TLS handshakes; best effort).
    from . import _invocation, _propagation  # noqa: F401

    if "opentelemetry.context" in sys.modules:  # loaded by the trace and metrics APIs
        bridge = built.otel()
        if "opentelemetry.trace" in sys.modules:
            # An application that loaded the trace API makes spans: the SDK tracer it will
            # get (~20 ms of import) is built here, not in its first invocation.
            bridge.tracer_provider.sdk_provider()
    if connect:
        built.connect()
    return built


class _Builder:
    """Builds the pipeline in a daemon thread; ``result`` once ``done`` is set."""

    def __init__(self, settings: Settings, resource_attributes: Mapping[str, object]) -> None:
        self.settings = settings
        self.resource_attributes = dict(resource_attributes)
        self.result: Pipeline | None = None
        self.done = threading.Event()
        self._thread = threading.Thread(
            target=self._run, name="obsloop-instrument-setup", daemon=True
        )
        self._thread.start()

    def _run(self) -> None:
        try:
            self.result = _build(self.settings, self.resource_attributes, connect=False)
        except BaseException:  # noqa: BLE001 - the waiting caller rebuilds and raises
            import logging

            logging.getLogger(__name__).debug("background set-up failed", exc_info=True)
        finally:
            self.done.set()
        # Connecting comes after ``done``: an invocation never waits for the network here.
        # A flush that starts meanwhile waits for the connection attempt within its own
        # deadline (the exporter's lock), so an endpoint that drops packets costs the
        # first invocation no more than the flush bound.
        if self.result is not None:
            self.result.connect()

    def wait(self) -> Pipeline | None:
        # A thread lost to a fork never sets ``done``: only a live one is waited for.
        while not self.done.wait(0.05):
            if not self._thread.is_alive():
                break
        return self.result


def _background() -> bool:
    value = os.environ.get("OBSLOOP_BACKGROUND_SETUP", "true").strip().lower()
    return value not in ("0", "false", "no", "off")


def prepare(resource_attributes: Mapping[str, object]) -> Settings:
    """Start building the process's pipeline (the first caller's attributes win).

    Returns the settings it is built with. Reads the environment now, so invalid
    ``OBSLOOP_*`` values fail the set-up as before.
    """
    global _builder
    with _lock:
        if _pipeline is not None:
            return _pipeline.settings
        if _builder is not None:
            return _builder.settings
        settings = Settings.from_env()
        if not _background():
            _set_pipeline(_build(settings, resource_attributes))
            return settings
        _builder = _Builder(settings, resource_attributes)
        return settings


def _set_pipeline(built: Pipeline) -> None:
    global _pipeline
    _pipeline = built


def pipeline(resource_attributes: Mapping[str, object] | None = None) -> Pipeline:
    """The process's pipeline; waits for the background set-up, or builds it now."""
    if _pipeline is not None:
        return _pipeline
    builder = _builder
    built = builder.wait() if builder is not None else None
    with _lock:
        if _pipeline is None:
            if built is None:
                settings = builder.settings if builder is not None else Settings.from_env()
                attrs = builder.resource_attributes if builder is not None else None
                built = _build(settings, attrs or resource_attributes or {})
            _set_pipeline(built)
        return _pipeline  # type: ignore[return-value]


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


def static_attributes(pipe: Pipeline, keys: tuple[str, ...]) -> dict[str, Any]:
    """The resource attributes a wrapper repeats on every invocation span."""
    resource = pipe.resource_attributes
    return {k: resource[k] for k in keys if k in resource}


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
