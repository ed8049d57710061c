"""Fixtures for obsloop-instrument tests: a real OTLP/HTTP receiver on 127.0.0.1 and a
fresh library state per test (the library keeps one pipeline per process, as a function
instance does; each test plays a new instance)."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))  # pytest's importlib mode adds no test folder

from otlp_capture import OtlpCaptureReceiver  # noqa: E402


@pytest.fixture(scope="session")
def _receiver() -> Iterator[OtlpCaptureReceiver]:
    receiver = OtlpCaptureReceiver()
    yield receiver
    receiver.close()


def _reset_library(monkeypatch: pytest.MonkeyPatch) -> None:
    """Play a new function instance: no pipeline yet, next invocation is a cold start,
    and the OTel API's set-once global providers may be set again."""
    from obsloop_instrument import _runtime
    from opentelemetry import trace
    from opentelemetry.metrics import _internal as metrics_internal

    monkeypatch.setattr(_runtime, "_pipeline", None)
    monkeypatch.setattr(_runtime, "_cold", True)
    monkeypatch.setattr(trace, "_TRACER_PROVIDER", None)
    monkeypatch.setattr(trace._TRACER_PROVIDER_SET_ONCE, "_done", False)
    monkeypatch.setattr(metrics_internal, "_METER_PROVIDER", None)
    monkeypatch.setattr(metrics_internal._METER_PROVIDER_SET_ONCE, "_done", False)
    # meters taken before a provider is set are proxies of this one: a fresh one per test
    monkeypatch.setattr(metrics_internal, "_PROXY_METER_PROVIDER", metrics_internal._ProxyMeterProvider())


@pytest.fixture
def otlp(_receiver: OtlpCaptureReceiver, monkeypatch: pytest.MonkeyPatch) -> OtlpCaptureReceiver:
    """The receiver, emptied, with the library configured to export to it."""
    _receiver.clear()
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", _receiver.endpoint)
    monkeypatch.setenv("OTEL_SERVICE_NAME", "fraud-scorer")
    for name in (
        "OBSLOOP_MODEL_NAME",
        "OBSLOOP_MODEL_VERSION",
        "OBSLOOP_PREDICTION_SAMPLE_RATE",
        "OBSLOOP_FEATURE_ALLOWLIST",
        "OBSLOOP_SENSITIVE_FEATURES",
        "OBSLOOP_HASH_SALT",
        "OBSLOOP_FLUSH_TIMEOUT_MS",
        "OTEL_RESOURCE_ATTRIBUTES",
        "_X_AMZN_TRACE_ID",
    ):
        monkeypatch.delenv(name, raising=False)
    _reset_library(monkeypatch)
    return _receiver


@pytest.fixture
def lambda_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """The variables the Lambda runtime sets in every execution environment."""
    monkeypatch.setenv("AWS_REGION", "eu-west-1")
    monkeypatch.setenv("AWS_LAMBDA_FUNCTION_NAME", "fraud-scorer")
    monkeypatch.setenv("AWS_LAMBDA_FUNCTION_VERSION", "7")
    monkeypatch.setenv("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "1024")
    monkeypatch.setenv("AWS_LAMBDA_LOG_STREAM_NAME", "2026/11/27/[7]0123456789abcdef")
