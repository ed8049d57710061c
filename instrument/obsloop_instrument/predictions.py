"""``log_prediction`` and ``log_ground_truth``: the events obsloop's model detectors read.

Each sampled call of ``log_prediction`` emits one OTLP log record with event name
``obsloop.model.prediction``, the model identity, a ``prediction.id``, ``prediction``,
optional ``prediction.score`` and ``label``, and one ``feature.<name>`` attribute per
exported feature. The record carries the current span's trace and span ids, so a drifting
prediction can be followed back to its invocation.

The truth usually arrives later, from another system: the caller stores the returned
prediction id with its business record and, when the outcome is known, calls
``log_ground_truth(prediction_id, label)`` (an ``obsloop.model.ground_truth`` record;
any OTLP client can send the same). obsloop joins the two on the id.

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

from obsloop_instrument import _semconv as sc
from obsloop_instrument._runtime import current_invocation, model_attributes, pipeline

TYPE_CHECKING = False  # not ``typing.TYPE_CHECKING``: no ``typing`` import at set-up
if TYPE_CHECKING:
    from collections.abc import Mapping
    from typing import Any, TypeAlias

    AttributeValue: TypeAlias = "str | bool | int | float | tuple[Any, ...]"

_TRACE_ID_LOW_BITS = (1 << 64) - 1


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
    prediction_id: str | None = None,
    score: float | None = None,
) -> str | None:
    """Emit one prediction event; returns its prediction id, or None when sampled out.

    The id is ``prediction_id`` when given (the caller's own key, such as an order id),
    else a random UUID; a sampled-out prediction has no event, so no ground truth to send.
    ``score`` is a classifier's probability of the positive class: with it obsloop
    estimates accuracy before the labels arrive. The model defaults to the enclosing
    instrumented handler's, then to ``OBSLOOP_MODEL_NAME``/``OBSLOOP_MODEL_VERSION``.
    """
    pipe = pipeline()
    settings = pipe.settings
    if not _sampled(settings.prediction_sample_rate):
        return None
    if prediction_id is None:
        import uuid

        prediction_id = uuid.uuid4().hex
    current = current_invocation.get()
    current_name, current_version = current[0] if current is not None else (None, None)
    attributes: dict[str, Any] = model_attributes(
        model_name or current_name or settings.model_name,
        model_version or current_version or settings.model_version,
    )
    attributes[sc.PREDICTION_ID] = str(prediction_id)
    attributes[sc.PREDICTION_VALUE] = _attribute_value(prediction)
    if score is not None:
        attributes[sc.PREDICTION_SCORE] = float(score)
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
    return str(prediction_id)


def log_ground_truth(
    prediction_id: str,
    label: Any,
    *,
    time: float | None = None,
    model_name: str | None = None,
    model_version: str | None = None,
) -> None:
    """Emit the observed outcome of an earlier prediction (never sampled: labels are rare).

    ``label`` is the true class or the observed value; ``time`` (epoch seconds) is when it
    was observed, default now. The model is optional: obsloop takes it from the prediction.
    """
    if not prediction_id:
        raise ValueError("log_ground_truth needs the prediction id log_prediction returned")
    if label is None:
        raise ValueError("log_ground_truth needs a label (the true class or observed value)")
    pipe = pipeline()
    attributes: dict[str, Any] = {sc.PREDICTION_ID: str(prediction_id),
                                  sc.PREDICTION_LABEL: _attribute_value(label)}
    if model_name:
        attributes[sc.MODEL_NAME] = model_name
    if model_version:
        attributes[sc.MODEL_VERSION] = model_version
    pipe.emit_prediction(sc.GROUND_TRUTH_EVENT, attributes,
                         None if time is None else round(time * 1_000_000_000))
