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


# What each platform sets in every function instance's environment.
LAMBDA_ENV = {
    "AWS_REGION": "eu-west-1",
    "AWS_LAMBDA_FUNCTION_NAME": "fraud-scorer",
    "AWS_LAMBDA_FUNCTION_VERSION": "7",
    "AWS_LAMBDA_FUNCTION_MEMORY_SIZE": "1024",
    "AWS_LAMBDA_LOG_STREAM_NAME": "2026/11/27/[7]0123456789abcdef",
}
GCP_ENV = {  # Cloud Functions gen2, with the gen1 region name
    "K_SERVICE": "fraud-scorer",
    "K_REVISION": "fraud-scorer-00007-xam",
    "FUNCTION_TARGET": "predict",
    "FUNCTION_REGION": "europe-west1",
    "GOOGLE_CLOUD_PROJECT": "ml-prod-4711",
}
AZURE_ENV = {  # App Service
    "WEBSITE_SITE_NAME": "ml-scoring",
    "REGION_NAME": "West Europe",
    "WEBSITE_OWNER_NAME": "0d5b1f7e-0000-4000-8000-000000000001+ml-rg-WestEuropewebspace",
    "WEBSITE_RESOURCE_GROUP": "ml-rg",
}


def _setenv(monkeypatch: pytest.MonkeyPatch, variables: dict[str, str]) -> None:
    for name, value in variables.items():
        monkeypatch.setenv(name, value)


@pytest.fixture
def lambda_env(monkeypatch: pytest.MonkeyPatch) -> None:
    _setenv(monkeypatch, LAMBDA_ENV)


@pytest.fixture
def gcp_env(monkeypatch: pytest.MonkeyPatch) -> None:
    _setenv(monkeypatch, GCP_ENV)


@pytest.fixture
def azure_env(monkeypatch: pytest.MonkeyPatch) -> None:
    _setenv(monkeypatch, AZURE_ENV)
