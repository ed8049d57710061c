"""Prediction events: event name, attributes, sampling, allowlist and hashing."""

from __future__ import annotations

import hashlib
import hmac
from typing import Any

import pytest
from obsloop_instrument import instrument_lambda, log_prediction
from otlp_capture import LambdaContext, OtlpCaptureReceiver, attributes

FEATURES = {"amount": 912.5, "country": "DE", "user_id": "u-4711", "age": 37}


def invoke_with_prediction(traceparent: str | None = None, label: Any = None) -> None:
    @instrument_lambda(model_name="fraud-scorer", model_version="2026.11.1")
    def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
        log_prediction(FEATURES, 0.1825, label=label)
        return {"statusCode": 200}

    event: dict[str, Any] = {"requestContext": {"http": {"method": "POST"}}, "headers": {}}
    if traceparent:
        event["headers"]["traceparent"] = traceparent
    handler(event, LambdaContext("req-p"))


def test_prediction_event_carries_model_features_and_trace(otlp: OtlpCaptureReceiver) -> None:
    invoke_with_prediction(label=1)

    [record] = otlp.log_records()
    assert record.event_name == "obsloop.model.prediction"
    attrs = attributes(record.attributes)
    generated = attrs.pop("prediction.id")
    assert len(generated) == 32 and int(generated, 16) >= 0  # a fresh UUID4, hex
    assert attrs == {
        "model.name": "fraud-scorer",
        "model.version": "2026.11.1",
        "prediction": 0.1825,
        "label": 1,
        "feature.amount": 912.5,
        "feature.country": "DE",
        "feature.user_id": "u-4711",
        "feature.age": 37,
    }
    [(_, span)] = otlp.spans()
    assert record.trace_id == span.trace_id
    assert record.span_id == span.span_id


def test_prediction_outside_a_handler_uses_environment_model(
    otlp: OtlpCaptureReceiver, monkeypatch: pytest.MonkeyPatch
) -> None:
    import obsloop_instrument

    monkeypatch.setenv("OBSLOOP_MODEL_NAME", "churn")
    monkeypatch.setenv("OBSLOOP_MODEL_VERSION", "3")
    assert log_prediction({"tenure": 14}, "stay", prediction_id="order-17") == "order-17"
    assert otlp.log_records() == []  # buffered until a flush
    obsloop_instrument.flush()

    [record] = otlp.log_records()
    attrs = attributes(record.attributes)
    assert (attrs["model.name"], attrs["model.version"], attrs["prediction"], attrs["prediction.id"]) == (
        "churn",
        "3",
        "stay",
        "order-17",
    )
    assert "label" not in attrs


def test_allowlist_keeps_only_named_features(
    otlp: OtlpCaptureReceiver, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("OBSLOOP_FEATURE_ALLOWLIST", "amount, age")
    invoke_with_prediction()

    [record] = otlp.log_records()
    features = {k for k in attributes(record.attributes) if k.startswith("feature.")}
    assert features == {"feature.amount", "feature.age"}


def test_sensitive_features_are_hmac_hashed(
    otlp: OtlpCaptureReceiver, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("OBSLOOP_SENSITIVE_FEATURES", "user_id")
    monkeypatch.setenv("OBSLOOP_HASH_SALT", "pepper-2026")
    invoke_with_prediction()

    [record] = otlp.log_records()
    attrs = attributes(record.attributes)
    expected = hmac.new(b"pepper-2026", b"u-4711", hashlib.sha256).hexdigest()
    assert attrs["feature.user_id"] == expected
    assert attrs["feature.country"] == "DE"  # not marked sensitive
    assert all("u-4711" not in str(v) for v in attrs.values())


def test_sampling_follows_the_trace_id(
    otlp: OtlpCaptureReceiver, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("OBSLOOP_PREDICTION_SAMPLE_RATE", "0.5")
    # low 64 bits of the trace id below / above half of 2**64
    kept = "00-0af7651916cd43dd0000000000000001-b7ad6b7169203331-01"
    dropped = "00-0af7651916cd43ddf000000000000000-b7ad6b7169203331-01"
    invoke_with_prediction(traceparent=kept)
    invoke_with_prediction(traceparent=dropped)

    records = otlp.log_records()
    assert [r.trace_id.hex() for r in records] == ["0af7651916cd43dd0000000000000001"]
    assert len(otlp.spans()) == 2  # sampling applies to prediction events, not to spans


def test_sample_rate_zero_emits_nothing(
    otlp: OtlpCaptureReceiver, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("OBSLOOP_PREDICTION_SAMPLE_RATE", "0")
    invoke_with_prediction()
    assert otlp.log_records() == []
    assert otlp.requests["/v1/logs"] == []


def test_non_primitive_values_become_attribute_values(otlp: OtlpCaptureReceiver) -> None:
    class Embedding:
        def tolist(self) -> list[float]:
            return [0.25, 0.5]

    log_prediction({"embedding": Embedding(), "tags": ["a", "b"], "meta": {"k": 1}}, [0.9, 0.1])
    import obsloop_instrument

    obsloop_instrument.flush()
    [record] = otlp.log_records()
    attrs = attributes(record.attributes)
    assert attrs["feature.embedding"] == [0.25, 0.5]
    assert attrs["feature.tags"] == ["a", "b"]
    assert attrs["feature.meta"] == "{'k': 1}"
    assert attrs["prediction"] == [0.9, 0.1]
