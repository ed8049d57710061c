"""In-function OpenTelemetry instrumentation for serverless AI handlers.

One decorator per platform (``instrument_lambda``, ``instrument_cloud_function``,
``instrument_azure_function``) plus ``log_prediction`` and ``log_ground_truth``. Names resolve lazily so that
importing the package costs nothing until a platform wrapper is actually used: a Lambda
handler never loads the Azure or GCP code.
"""

from __future__ import annotations

from importlib import import_module

TYPE_CHECKING = False  # not ``typing.TYPE_CHECKING``: no ``typing`` import at set-up
if TYPE_CHECKING:
    from typing import Any

    from obsloop_instrument.aws import instrument_lambda
    from obsloop_instrument.azure import instrument_azure_function
    from obsloop_instrument.gcp import instrument_cloud_function
    from obsloop_instrument.predictions import log_ground_truth, log_prediction

__all__ = [
    "flush",
    "instrument_azure_function",
    "instrument_cloud_function",
    "instrument_lambda",
    "log_ground_truth",
    "log_prediction",
]

_LAZY = {
    "instrument_lambda": ".aws",
    "instrument_cloud_function": ".gcp",
    "instrument_azure_function": ".azure",
    "log_prediction": ".predictions",
    "log_ground_truth": ".predictions",
}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(import_module(module, __name__), name)
    globals()[name] = value
    return value


def flush() -> float:
    """Export everything recorded so far (bounded, never raises); seconds taken.

    The decorators already flush after every invocation; this is for work done outside one,
    such as a prediction logged during start-up.
    """
    from obsloop_instrument._runtime import pipeline

    return pipeline().flush()
