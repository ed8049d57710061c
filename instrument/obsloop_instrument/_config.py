"""Settings read once from the environment at set-up.

Standard ``OTEL_*`` variables (endpoint, headers, timeout, service name, resource attributes,
sampler, ``OTEL_{TRACES,METRICS,LOGS}_EXPORTER``) are honoured as the OpenTelemetry SDK and
the OTLP exporter define them; the ``OBSLOOP_*`` variables cover what OpenTelemetry has no
name for: model identity, the flush bound and the prediction-logging policy.
"""

from __future__ import annotations

import os
from collections.abc import Mapping


def _csv(value: str | None) -> frozenset[str] | None:
    if value is None or not value.strip():
        return None
    return frozenset(item.strip() for item in value.split(",") if item.strip())


def _exporter_enabled(env: Mapping[str, str], signal: str) -> bool:
    """``OTEL_<SIGNAL>_EXPORTER=none`` turns a signal off; only OTLP is supported otherwise.

    ``OTEL_SDK_DISABLED=true`` turns the spans off, as it did when the invocation span was
    the SDK's (its tracer provider then gives no-op tracers).
    """
    if signal == "TRACES" and env.get("OTEL_SDK_DISABLED", "").strip().lower() == "true":
        return False
    value = env.get(f"OTEL_{signal}_EXPORTER", "otlp").strip().lower()
    return value != "none"


class Settings:
    """Everything the library reads from the environment, parsed once.

    A plain class, not a dataclass or ``NamedTuple``: ``dataclasses`` (with ``inspect``) and
    ``typing`` are milliseconds of import, and this is read at set-up.
    """

    __slots__ = (
        "model_name",
        "model_version",
        "flush_timeout_s",
        "prediction_sample_rate",
        "feature_allowlist",
        "sensitive_features",
        "hash_salt",
        "traces_enabled",
        "metrics_enabled",
        "logs_enabled",
    )

    model_name: str | None
    model_version: str | None
    flush_timeout_s: float
    """Upper bound on the flush at the end of every invocation, all signals together."""
    prediction_sample_rate: float
    feature_allowlist: frozenset[str] | None
    """``None`` keeps every feature; otherwise only the named ones are exported."""
    sensitive_features: frozenset[str]
    hash_salt: bytes
    traces_enabled: bool
    metrics_enabled: bool
    logs_enabled: bool

    def __init__(self, **values: object) -> None:
        for name in self.__slots__:
            object.__setattr__(self, name, values[name])

    def __setattr__(self, name: str, value: object) -> None:
        raise AttributeError("Settings are read-only")

    def __repr__(self) -> str:
        fields = ", ".join(f"{name}={getattr(self, name)!r}" for name in self.__slots__)
        return f"Settings({fields})"

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Settings:
        env = os.environ if env is None else env
        rate = float(env.get("OBSLOOP_PREDICTION_SAMPLE_RATE", "1.0"))
        if not 0.0 <= rate <= 1.0:
            raise ValueError(f"OBSLOOP_PREDICTION_SAMPLE_RATE must be in [0, 1], got {rate}")
        return cls(
            model_name=env.get("OBSLOOP_MODEL_NAME") or None,
            model_version=env.get("OBSLOOP_MODEL_VERSION") or None,
            flush_timeout_s=float(env.get("OBSLOOP_FLUSH_TIMEOUT_MS", "1000")) / 1000.0,
            prediction_sample_rate=rate,
            feature_allowlist=_csv(env.get("OBSLOOP_FEATURE_ALLOWLIST")),
            sensitive_features=_csv(env.get("OBSLOOP_SENSITIVE_FEATURES")) or frozenset(),
            hash_salt=env.get("OBSLOOP_HASH_SALT", "").encode(),
            traces_enabled=_exporter_enabled(env, "TRACES"),
            metrics_enabled=_exporter_enabled(env, "METRICS"),
            logs_enabled=_exporter_enabled(env, "LOGS"),
        )
