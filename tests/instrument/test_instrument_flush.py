"""Flush before return, and a bounded, harmless flush when the endpoint is down."""

from __future__ import annotations

import socket
import time
from collections.abc import Iterator
from typing import Any

import pytest
from obsloop_instrument import instrument_lambda, log_prediction
from opentelemetry import trace
from otlp_capture import LambdaContext, OtlpCaptureReceiver, attributes

EVENT = {"requestContext": {"http": {"method": "POST"}}, "headers": {}, "body": "{}"}


def test_child_spans_and_events_are_exported_before_the_handler_returns(
    otlp: OtlpCaptureReceiver,
) -> None:
    @instrument_lambda(model_name="fraud-scorer")
    def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
        with trace.get_tracer("model").start_as_current_span("inference"):
            log_prediction({"amount": 1.0}, 0.0)
        return {"statusCode": 200}

    handler(EVENT, LambdaContext("req-1"))
    # No sleep, no wait: everything is at the receiver once the handler returned.
    names = {span.name: span for _, span in otlp.spans()}
    assert set(names) == {"inference", "handler"}
    assert names["inference"].parent_span_id == names["handler"].span_id
    assert len(otlp.log_records()) == 1
    assert len(otlp.requests["/v1/metrics"]) == 1


@pytest.fixture
def silent_endpoint() -> Iterator[str]:
    """A port that accepts TCP connections and never answers: the slowest failure."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(16)
    yield f"http://127.0.0.1:{server.getsockname()[1]}"
    server.close()


@pytest.fixture
def refused_endpoint() -> str:
    probe = socket.socket()
    probe.bind(("127.0.0.1", 0))
    port = probe.getsockname()[1]
    probe.close()  # nothing listens there any more: connections are refused
    return f"http://127.0.0.1:{port}"


def timed_invocations(count: int) -> list[float]:
    @instrument_lambda(model_name="fraud-scorer")
    def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
        log_prediction({"amount": 1.0}, 0.0)
        return {"statusCode": 200}

    durations = []
    for i in range(count):
        start = time.perf_counter()
        assert handler(EVENT, LambdaContext(f"req-{i}")) == {"statusCode": 200}
        durations.append(time.perf_counter() - start)
    return durations


@pytest.mark.parametrize("endpoint_fixture", ["silent_endpoint", "refused_endpoint"])
def test_unreachable_endpoint_neither_fails_nor_exceeds_the_bound(
    otlp: OtlpCaptureReceiver,
    monkeypatch: pytest.MonkeyPatch,
    request: pytest.FixtureRequest,
    endpoint_fixture: str,
) -> None:
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", request.getfixturevalue(endpoint_fixture))
    monkeypatch.setenv("OBSLOOP_FLUSH_TIMEOUT_MS", "300")

    durations = timed_invocations(3)

    assert max(durations) < 0.3 + 0.15  # the bound plus scheduling slack
    if endpoint_fixture == "refused_endpoint":
        assert max(durations) < 0.05  # a refused connection costs no waiting at all
    assert otlp.spans() == []


def test_spans_of_a_failed_flush_are_dropped_and_export_resumes(
    otlp: OtlpCaptureReceiver, monkeypatch: pytest.MonkeyPatch, refused_endpoint: str
) -> None:
    """A collector restarting on its port: the next invocation after it is back exports."""
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", refused_endpoint)

    @instrument_lambda
    def handler(event: dict[str, Any], context: Any) -> str:
        return "ok"

    assert handler(EVENT, LambdaContext("req-down")) == "ok"
    restarted = OtlpCaptureReceiver(port=int(refused_endpoint.rsplit(":", 1)[1]))
    try:
        assert handler(EVENT, LambdaContext("req-up")) == "ok"
        ids = [attributes(s.attributes)["faas.invocation_id"] for _, s in restarted.spans()]
        assert ids == ["req-up"]
        [invocations] = restarted.latest_metrics()["faas.invocations"].sum.data_points
        assert invocations.as_int == 2  # cumulative metrics lose nothing across the outage
    finally:
        restarted.close()


def test_handler_metrics_are_exported_by_the_flush(otlp: OtlpCaptureReceiver) -> None:
    """The handler's own OTel metrics: the SDK is loaded for them on the first get_meter."""
    from opentelemetry import metrics

    early = metrics.get_meter("app").create_counter("app.early")  # a proxy until set-up

    @instrument_lambda
    def handler(event: dict[str, Any], context: Any) -> str:
        early.add(1)
        metrics.get_meter("app").create_histogram("app.latency").record(0.25)
        return "ok"

    handler(EVENT, LambdaContext("req-m"))
    names = {
        metric.name
        for request in otlp.requests["/v1/metrics"]
        for rm in request.resource_metrics
        for sm in rm.scope_metrics
        for metric in sm.metrics
    }
    assert {"app.early", "app.latency", "faas.invocations"} <= names
