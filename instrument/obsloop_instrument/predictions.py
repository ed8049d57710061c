"""``log_prediction``: the prediction events obsloop's drift detectors read.

Each sampled call emits one OTLP log record with event name ``obsloop.model.prediction``,
the model identity, ``prediction``, optional ``label`` and one ``feature.<name>`` attribute
per exported feature. The record carries the current span's trace and span ids, so a
drifting prediction can be followed back to its invocation.

Policy, from the environment (see ``_config.Settings``):
- ``OBSLOOP_PREDICTION_SAMPLE_RATE``: fraction kept. Inside a traced invocation the decision
  is taken from the trace id, so all predictions of one invocation are kept or dropped
  together; outside one it is random.
- ``OBSLOOP_FEATURE_ALLOWLIST``: comma-separated feature names; others are never exported.
- ``OBSLOOP_SENSITIVE_FEATURES``: their values are replaced by HMAC-SHA256 (key
  ``OBSLOOP_HASH_SALT``) hex digests: equal inputs still hash equal, so category
  distributions, and hence drift, stay measurable without exporting the raw value.
"""

from __future__ import annotations

from . import _semconv as sc
from ._runtime import current_invocation, model_attributes, pipeline

TYPE_CHECKING = False  # not ``typing.TYPE_CHECKING``: no ``typing`` import at set-up
if TYPE_CHECKING:
    from collections.abc import Mapping
    from typing import Any

_TRACE_ID_LOW_BITS = (1 << 64) - 1

AttributeValue = "str | bool | int | float | tuple[Any, ...]"


def _attribute_value(value: Any) -> AttributeValue:
    """OTLP attributes hold str/bool/int/float (and homogeneous arrays): convert the rest.

    NumPy scalars and arrays expose ``item()``/``tolist()``; anything else becomes ``str``.
    """
    if isinstance(value, (str, bool, int, float)):
        return value
    if hasattr(value, "tolist"):  # NumPy array or scalar
        value = value.tolist()
        if isinstance(value, (str, bool, int, float)):
            return value
    if isinstance(value, (list, tuple)):
        items = [_attribute_value(item) for item in value]
        if items and all(
            type(item) is type(items[0]) and not isinstance(item, tuple) for item in items
        ):
            return tuple(items)
        return str(value)
    return str(value)


def _hash(value: Any, salt: bytes) -> str:
    import hashlib
    import hmac

    return hmac.new(salt, str(value).encode(), hashlib.sha256).hexdigest()


def _sampled(rate: float) -> bool:
    if rate >= 1.0:
        return True
    if rate <= 0.0:
        return False
    ids = pipeline().current_ids()
    if ids is not None:
        # Same rule as the SDK's TraceIdRatioBased sampler: the trace id's low 64 bits.
        return (ids[0] & _TRACE_ID_LOW_BITS) < round(rate * (_TRACE_ID_LOW_BITS + 1))
    import random

    return random.random() < rate


def log_prediction(
    features: Mapping[str, Any],
    prediction: Any,
    label: Any = None,
    *,
    model_name: str | None = None,
    model_version: str | None = None,
) -> bool:
    """Emit one prediction event; returns whether it was sampled in.

    The model defaults to the enclosing instrumented handler's, then to
    ``OBSLOOP_MODEL_NAME``/``OBSLOOP_MODEL_VERSION``.
    """
    pipe = pipeline()
    settings = pipe.settings
    if not _sampled(settings.prediction_sample_rate):
        return False
    current = current_invocation.get()
    current_name, current_version = current[0] if current is not None else (None, None)
    attributes: dict[str, Any] = model_attributes(
        model_name or current_name or settings.model_name,
        model_version or current_version or settings.model_version,
    )
    attributes[sc.PREDICTION_VALUE] = _attribute_value(prediction)
    if label is not None:
        attributes[sc.PREDICTION_LABEL] = _attribute_value(label)
    allow = settings.feature_allowlist
    sensitive = settings.sensitive_features
    for name, value in features.items():
        if allow is not None and name not in allow:
            continue
        attributes[sc.FEATURE_PREFIX + name] = (
            _hash(value, settings.hash_salt) if name in sensitive else _attribute_value(value)
        )
    pipe.emit_prediction(sc.PREDICTION_EVENT, attributes)
    return True
