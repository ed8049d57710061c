"""An instrumented Lambda handler exporting to a running ``obsloop serve``: its span, metrics
and prediction event are read back from ClickHouse."""

from __future__ import annotations

import json
from typing import Any

import pytest
from conftest import _reset_library
from obsloop_instrument import instrument_lambda, log_prediction
from otlp_capture import LambdaContext, load_event


@pytest.fixture
def exporting_to_obsloop(obsloop, monkeypatch: pytest.MonkeyPatch, lambda_env: None):
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", obsloop.http)
    monkeypatch.setenv("OTEL_SERVICE_NAME", "fraud-scorer")
    for name in ("OBSLOOP_FEATURE_ALLOWLIST", "OBSLOOP_SENSITIVE_FEATURES", "OBSLOOP_PREDICTION_SAMPLE_RATE",
                 "OTEL_RESOURCE_ATTRIBUTES", "_X_AMZN_TRACE_ID"):
        monkeypatch.delenv(name, raising=False)
    _reset_library(monkeypatch)
    return obsloop


def test_span_metrics_and_prediction_land_in_clickhouse(exporting_to_obsloop) -> None:
    obsloop = exporting_to_obsloop

    @instrument_lambda(model_name="fraud-detection-model", model_version="2.1.0")
    def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
        features = json.loads(event["body"])
        log_prediction(features, 0.25)
        return {"statusCode": 200, "body": "{}"}

    handler(load_event("apigw_v2_http.json"), LambdaContext("req-obsloop-1"))

    obsloop.wait_for("SELECT count() FROM otel_traces WHERE SpanKind = 'Server'", 1)
    span = obsloop.query("SELECT ServiceName, SpanAttributes, ResourceAttributes FROM otel_traces")[0]
    assert span["ServiceName"] == "fraud-scorer"
    assert span["SpanAttributes"]["faas.invocation_id"] == "req-obsloop-1"
    assert span["SpanAttributes"]["faas.coldstart"] == "true"
    assert span["SpanAttributes"]["model.name"] == "fraud-detection-model"
    assert span["ResourceAttributes"]["cloud.provider"] == "aws"
    obsloop.wait_for("SELECT count() FROM otel_logs WHERE EventName = 'obsloop.model.prediction'", 1)
    prediction = obsloop.query("SELECT LogAttributes FROM otel_logs")[0]["LogAttributes"]
    assert prediction["model.version"] == "2.1.0" and prediction["prediction"] == "0.25"
    assert any(key.startswith("feature.") for key in prediction)
    invocations = obsloop.scalar("SELECT sum(Value) FROM otel_metrics_sum WHERE MetricName = 'faas.invocations'")
    assert invocations == 1
    # the detectors see the invocation as a window of the function
    obsloop.wait_for("SELECT count() > 0 FROM faas_windows WHERE function = 'fraud-scorer'", True)
