"""AWS Lambda wrapper: real handlers, real event shapes, exported over OTLP/HTTP."""

from __future__ import annotations

import json
from typing import Any

import pytest
from obsloop_instrument import instrument_lambda, log_prediction
from opentelemetry.proto.trace.v1.trace_pb2 import Span, Status
from otlp_capture import LambdaContext, OtlpCaptureReceiver, attributes, load_event, picked


def score(features: dict[str, Any]) -> float:
    """A stand-in fraud model: large amounts from young accounts score high."""
    return round(min(1.0, features["amount"] / 5000 + (0.3 if features["age"] < 25 else 0.0)), 4)


def make_api_handler() -> Any:
    @instrument_lambda(model_name="fraud-scorer", model_version="2026.11.1")
    def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
        features = json.loads(event["body"])
        probability = score(features)
        log_prediction(features, probability)
        return {"statusCode": 200, "body": json.dumps({"fraud_probability": probability})}

    return handler


def test_api_gateway_v2_span_has_faas_attributes_and_w3c_parent(
    otlp: OtlpCaptureReceiver, lambda_env: None
) -> None:
    handler = make_api_handler()
    response = handler(load_event("apigw_v2_http.json"), LambdaContext("req-1"))

    assert json.loads(response["body"]) == {"fraud_probability": 0.1825}
    [(resource, span)] = otlp.spans()
    assert span.kind == Span.SPAN_KIND_SERVER
    assert span.name == "fraud-scorer"
    expected = {
        "faas.trigger": "http",
        "faas.invocation_id": "req-1",
        "faas.coldstart": True,
        "faas.name": "fraud-scorer",
        "faas.version": "7",
        "faas.max_memory": 1024 * 1024 * 1024,
        "cloud.provider": "aws",
        "cloud.region": "eu-west-1",
        "cloud.resource_id": "arn:aws:lambda:eu-west-1:123456789012:function:fraud-scorer:live",
        "cloud.account.id": "123456789012",
        "model.name": "fraud-scorer",
        "model.version": "2026.11.1",
        "http.response.status_code": 200,
    }
    assert picked(attributes(span.attributes), expected) == expected
    # traceparent wins over the X-Amzn-Trace-Id header in the same request
    assert span.trace_id.hex() == "0af7651916cd43dd8448eb211c80319c"
    assert span.parent_span_id.hex() == "b7ad6b7169203331"
    assert resource["service.name"] == "fraud-scorer"
    assert resource["cloud.platform"] == "aws_lambda"
    assert resource["faas.instance"] == "2026/11/27/[7]0123456789abcdef"


def test_second_invocation_is_warm(otlp: OtlpCaptureReceiver, lambda_env: None) -> None:
    handler = make_api_handler()
    handler(load_event("apigw_v2_http.json"), LambdaContext("req-1"))
    handler(load_event("apigw_v2_http.json"), LambdaContext("req-2"))

    by_id = {attributes(s.attributes)["faas.invocation_id"]: s for _, s in otlp.spans()}
    assert attributes(by_id["req-1"].attributes)["faas.coldstart"] is True
    assert attributes(by_id["req-2"].attributes)["faas.coldstart"] is False


def test_sqs_batch_takes_parent_from_xray_environment(
    otlp: OtlpCaptureReceiver, lambda_env: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Lambda sets Sampled=0 when X-Ray active tracing is off; the span must still be kept.
    monkeypatch.setenv(
        "_X_AMZN_TRACE_ID",
        "Root=1-6746e1f3-0c9b8d3e6f7a1b2c3d4e5f60;Parent=1a2b3c4d5e6f7081;Sampled=0",
    )

    @instrument_lambda(model_name="fraud-scorer")
    def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
        failures = []
        for record in event["Records"]:
            features = json.loads(record["body"])
            if score(features) > 0.8:
                failures.append({"itemIdentifier": record["messageId"]})
        return {"batchItemFailures": failures}

    result = handler(load_event("sqs.json"), LambdaContext("req-sqs"))

    assert result == {
        "batchItemFailures": [{"itemIdentifier": "2e1424d4-f796-459a-8184-9c92662be6da"}]
    }
    [(_, span)] = otlp.spans()
    assert attributes(span.attributes)["faas.trigger"] == "pubsub"
    assert span.trace_id.hex() == "6746e1f30c9b8d3e6f7a1b2c3d4e5f60"
    assert span.parent_span_id.hex() == "1a2b3c4d5e6f7081"


def test_xray_header_is_used_without_traceparent_or_environment(
    otlp: OtlpCaptureReceiver, lambda_env: None
) -> None:
    event = load_event("apigw_v2_http.json")
    del event["headers"]["traceparent"]
    make_api_handler()(event, LambdaContext("req-x"))

    [(_, span)] = otlp.spans()
    assert span.trace_id.hex() == "5759e988bd862e3fe1be46a994272793"
    assert span.parent_span_id.hex() == "53995c3f42cd8ad8"


def test_eventbridge_schedule_is_a_timer_trigger_and_root_span(
    otlp: OtlpCaptureReceiver, lambda_env: None
) -> None:
    @instrument_lambda
    def handler(event: dict[str, Any], context: Any) -> str:
        return f"recalibrated at {event['time']}"

    assert handler(load_event("eventbridge_scheduled.json"), LambdaContext("req-eb")) == (
        "recalibrated at 2026-11-27T09:00:00Z"
    )
    [(_, span)] = otlp.spans()
    assert attributes(span.attributes)["faas.trigger"] == "timer"
    assert span.parent_span_id == b""


def test_exception_is_recorded_counted_and_reraised(
    otlp: OtlpCaptureReceiver, lambda_env: None
) -> None:
    @instrument_lambda(model_name="fraud-scorer")
    def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
        json.loads(event["body"])["missing"]  # noqa: B018 - the bug under test
        return {"statusCode": 200}

    with pytest.raises(KeyError, match="missing"):
        handler(load_event("apigw_v2_http.json"), LambdaContext("req-err"))

    [(_, span)] = otlp.spans()
    assert span.status.code == Status.STATUS_CODE_ERROR
    [event] = span.events
    assert event.name == "exception"
    event_attrs = attributes(event.attributes)
    assert event_attrs["exception.type"] == "KeyError"
    assert "missing" in event_attrs["exception.message"]
    errors = otlp.latest_metrics()["faas.errors"]
    [point] = errors.sum.data_points
    assert point.as_int == 1
    assert attributes(point.attributes)["error.type"] == "KeyError"


def test_5xx_response_marks_span_as_error(otlp: OtlpCaptureReceiver, lambda_env: None) -> None:
    @instrument_lambda
    def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
        return {"statusCode": 503, "body": "model not loaded"}

    handler(load_event("apigw_v2_http.json"), LambdaContext("req-503"))
    [(_, span)] = otlp.spans()
    assert span.status.code == Status.STATUS_CODE_ERROR
    assert attributes(span.attributes)["http.response.status_code"] == 503


def test_metrics_count_invocations_coldstarts_and_durations(
    otlp: OtlpCaptureReceiver, lambda_env: None
) -> None:
    handler = make_api_handler()
    for i in range(3):
        handler(load_event("apigw_v2_http.json"), LambdaContext(f"req-{i}"))

    metrics = otlp.latest_metrics()
    [invocations] = metrics["faas.invocations"].sum.data_points
    assert invocations.as_int == 3
    assert attributes(invocations.attributes) == {
        "faas.trigger": "http",
        "faas.name": "fraud-scorer",
        "model.name": "fraud-scorer",
        "model.version": "2026.11.1",
    }
    [coldstarts] = metrics["faas.coldstarts"].sum.data_points
    assert coldstarts.as_int == 1
    [duration] = metrics["faas.invoke_duration"].histogram.data_points
    assert duration.count == 3
    assert metrics["faas.invoke_duration"].unit == "s"
    assert 0 < duration.sum < 1.0
    assert "faas.errors" not in metrics
    # one metrics export per invocation: nothing waits for a later, frozen, period
    assert len(otlp.requests["/v1/metrics"]) == 3
