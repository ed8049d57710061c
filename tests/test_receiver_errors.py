"""Broken input on every endpoint gets the OTLP status and a message naming the problem,
and nothing accepted before it is lost."""

from __future__ import annotations

import gzip
import json
import urllib.error
import urllib.request

import grpc
import pytest
from google.rpc import status_pb2
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)
from prometheus_client.parser import text_string_to_metric_families

from obsloop.demo.loadgen import ServerlessTraffic

TOKEN = "s3cret-token-value"


def post(url: str, body: bytes, content_type: str = "application/x-protobuf", **headers: str):
    request = urllib.request.Request(url, data=body, headers={"Content-Type": content_type, **headers})
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, dict(response.headers), response.read()
    except urllib.error.HTTPError as exc:
        return exc.code, dict(exc.headers), exc.read()


def status_message(body: bytes, content_type: str = "application/x-protobuf") -> str:
    if content_type == "application/json":
        return json.loads(body)["message"]
    return status_pb2.Status.FromString(body).message


@pytest.fixture
def server(obsloop_factory):
    return obsloop_factory(receiver={"bearer_token": TOKEN, "max_request_bytes": 200_000})


def test_every_broken_request_is_refused_and_earlier_data_kept(server) -> None:
    auth = {"Authorization": f"Bearer {TOKEN}"}
    traffic = ServerlessTraffic(seed=1)
    good = {
        "traces": traffic.traces(40).SerializeToString(),
        "logs": traffic.logs(16).SerializeToString(),
        "metrics": traffic.metrics().SerializeToString(),
    }
    for signal, body in good.items():
        status, _, reply = post(f"{server.http}/v1/{signal}", body, **auth)
        assert status == 200, reply
    spans = ExportTraceServiceRequest.FromString(good["traces"])
    expected_spans = sum(len(ss.spans) for rs in spans.resource_spans for ss in rs.scope_spans)
    server.wait_for("SELECT count() FROM otel_traces", expected_spans)
    logs_before = server.wait_for("SELECT count() FROM otel_logs", 16)

    for signal in ("traces", "logs", "metrics"):
        url = f"{server.http}/v1/{signal}"
        body = good[signal]
        # truncated protobuf
        status, _, reply = post(url, body[: len(body) // 2], **auth)
        assert status == 400 and f"invalid OTLP/protobuf {signal} request" in status_message(reply)
        # wrong content type
        status, _, reply = post(url, body, "text/plain", **auth)
        assert status == 415 and "unsupported Content-Type 'text/plain'" in status_message(reply)
        # invalid JSON, and JSON of the wrong shape
        status, _, reply = post(url, b'{"resourceSpans": [', "application/json", **auth)
        assert status == 400 and "invalid JSON" in status_message(reply, "application/json")
        status, _, reply = post(url, b'{"resourceSpans": 7, "resourceLogs": 7, "resourceMetrics": 7}',
                                "application/json", **auth)
        assert status == 400 and "invalid OTLP/JSON" in status_message(reply, "application/json")
        # oversized body, plain and as a gzip bomb
        status, _, reply = post(url, b"\x00" * 300_000, **auth)
        assert status == 413 and "200000-byte limit" in status_message(reply)
        status, _, reply = post(url, gzip.compress(b"\x0a" * 1_000_000), **auth, **{"Content-Encoding": "gzip"})
        assert status == 413 and "decompressed body exceeds" in status_message(reply)
        # bad gzip
        status, _, reply = post(url, b"not gzip at all", **auth, **{"Content-Encoding": "gzip"})
        assert status == 400 and "invalid gzip body" in status_message(reply)
        # missing and wrong token; the token never appears in the answer
        status, _, reply = post(url, body)
        assert status == 401 and "bearer token" in status_message(reply)
        status, _, reply = post(url, body, Authorization="Bearer wrong")
        assert status == 401 and TOKEN.encode() not in reply

    # gzip that is valid is accepted
    status, _, _ = post(f"{server.http}/v1/logs", gzip.compress(good["logs"]), **auth,
                        **{"Content-Encoding": "gzip"})
    assert status == 200
    server.wait_for("SELECT count() FROM otel_logs", logs_before + 16)
    assert server.scalar("SELECT count() FROM otel_traces") == expected_spans
    requests = {
        (s.labels["signal"], s.labels["outcome"]): s.value
        for family in text_string_to_metric_families(server.get("/metrics")[1])
        for s in family.samples if s.name == "obsloop_receiver_requests_total"
    }
    assert requests[("traces", "malformed")] == 3  # truncated protobuf, two broken JSON bodies
    assert requests[("logs", "unauthenticated")] == 2
    assert requests[("metrics", "too_large")] == 2
    assert requests[("logs", "accepted")] == 2


def test_grpc_errors(server) -> None:
    channel = grpc.insecure_channel(server.grpc)
    export = channel.unary_unary("/opentelemetry.proto.collector.trace.v1.TraceService/Export")
    body = ServerlessTraffic(seed=2).traces(10).SerializeToString()
    metadata = (("authorization", f"Bearer {TOKEN}"),)
    reply = ExportTraceServiceResponse.FromString(export(body, metadata=metadata, timeout=10))
    assert not reply.HasField("partial_success")
    with pytest.raises(grpc.RpcError) as malformed:
        export(body[:-3], metadata=metadata, timeout=10)
    assert malformed.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "invalid OTLP/protobuf traces request" in malformed.value.details()
    with pytest.raises(grpc.RpcError) as unauthenticated:
        export(body, metadata=(("authorization", "Bearer nope"),), timeout=10)
    assert unauthenticated.value.code() == grpc.StatusCode.UNAUTHENTICATED
    with pytest.raises(grpc.RpcError) as too_large:
        export(b"\x0a" * 300_000, metadata=metadata, timeout=10)
    assert too_large.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    spans = ExportTraceServiceRequest.FromString(body)
    server.wait_for("SELECT count() FROM otel_traces",
                    sum(len(ss.spans) for rs in spans.resource_spans for ss in rs.scope_spans))
    channel.close()


def test_partial_success_for_spans_with_bad_ids(obsloop) -> None:
    request = ExportTraceServiceRequest()
    spans = request.resource_spans.add().scope_spans.add().spans
    spans.add(trace_id=b"\x01" * 16, span_id=b"\x02" * 8, name="good")
    spans.add(trace_id=b"\x01" * 3, span_id=b"\x02" * 8, name="short trace id")
    spans.add(trace_id=b"\x01" * 16, span_id=b"", name="no span id")
    status, _, reply = post(f"{obsloop.http}/v1/traces", request.SerializeToString())
    assert status == 200
    response = ExportTraceServiceResponse.FromString(reply)
    assert response.partial_success.rejected_spans == 2
    assert "trace_id must be 16 bytes" in response.partial_success.error_message
    obsloop.wait_for("SELECT count() FROM otel_traces", 1)
    assert obsloop.scalar("SELECT SpanName FROM otel_traces") == "good"


def test_backpressure_answers_503_with_retry_after(obsloop_factory) -> None:
    """With ClickHouse unreachable, segments pile up to the limit; then 503 + Retry-After,
    and once storage is back nothing acknowledged is missing."""
    server = obsloop_factory(
        storage={"dsn": "http://127.0.0.1:9"},  # nothing listens on the discard port
        wal={"max_pending_bytes": 30_000},
        receiver={"retry_after_seconds": 3},
    )
    body = ServerlessTraffic(seed=3).logs(40).SerializeToString()
    statuses = []
    for _ in range(20):
        status, headers, _ = post(f"{server.http}/v1/logs", body)
        statuses.append((status, headers.get("Retry-After")))
    assert (200, None) in statuses
    assert (503, "3") in statuses
    assert server.get("/readyz")[0] == 503
    assert server.get("/healthz")[0] == 200
    accepted = sum(1 for status, _ in statuses if status == 200)
    records = len(ExportLogsServiceRequest.FromString(body).resource_logs[0].scope_logs[0].log_records) * 8
    assert server.stop() == 0
    # The same write-ahead log with working storage: every acknowledged record is stored, once.
    restarted = obsloop_factory(storage={"dsn": None}, wal={"max_pending_bytes": 30_000})
    restarted.wait_for("SELECT count() FROM otel_logs", accepted * records)
