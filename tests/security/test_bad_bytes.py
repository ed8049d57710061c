"""Deeply nested JSON and odd header bytes on every route of the OTLP/HTTP port get a 4xx
naming the problem, never a 500, and store nothing: against a real ``obsloop serve``."""

from __future__ import annotations

import base64
import gzip
import json

import pytest
from push_attacks import FIREHOSE_KEY, bearer, data_message, envelope, firehose_headers, post, record, serve


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    process = serve(tmp_path_factory.mktemp("bad-bytes"))
    yield process
    process.stop()


def _deep(depth: int) -> bytes:
    return b"[" * depth + b"]" * depth


def _deep_attribute(depth: int) -> bytes:
    """An OTLP/JSON span whose attribute nests ``depth`` kvlist values: valid OTLP, too deep."""
    value: dict = {"stringValue": "leaf"}
    for _ in range(depth):
        value = {"kvlistValue": {"values": [{"key": "k", "value": value}]}}
    span = {"traceId": "5759e988bd862e3fe1be46a994272793", "spanId": "53995c3f42cd8ad8", "name": "deep",
            "attributes": [{"key": "nested", "value": value}]}
    return json.dumps({"resourceSpans": [{"scopeSpans": [{"spans": [span]}]}]}).encode()


DEPTHS = (1000, 5000)


def test_deep_json_is_a_400_on_every_json_route(server) -> None:
    refusals = []
    for depth in DEPTHS:
        deep = _deep(depth)
        for signal in ("traces", "metrics", "logs"):
            status, reply = post(f"{server.http}/v1/{signal}", deep, bearer())
            refusals.append((signal, depth, status, json.loads(reply)["message"]))
        inner = base64.b64encode(gzip.compress(deep)).decode()
        for name, path, body, headers in (
            ("telemetry", "/aws/telemetry?function=deep", deep, bearer()),
            ("subscription", "/aws/cloudwatch-logs", deep, bearer()),
            ("subscription gzip", "/aws/cloudwatch-logs", gzip.compress(deep), bearer()),
            ("awslogs", "/aws/cloudwatch-logs", json.dumps({"awslogs": {"data": inner}}).encode(), bearer()),
            ("firehose", "/aws/firehose", deep, firehose_headers("req-deep")),
            ("firehose record", "/aws/firehose", envelope("req-deep", [{"data": inner}]), firehose_headers("req-deep")),
        ):
            status, reply = post(server.http + path, body, headers)
            answer = json.loads(reply)
            refusals.append((name, depth, status, answer.get("error") or answer.get("errorMessage")))
    status, reply = post(f"{server.http}/v1/traces", _deep_attribute(100), bearer())
    refusals.append(("otlp attribute", 100, status, json.loads(reply)["message"]))
    deep_event = {"time": "2026-11-27T10:00:00Z", "type": "function", "record": json.loads(_deep(200))}
    status, reply = post(f"{server.http}/aws/telemetry?function=deep", json.dumps([deep_event]).encode(), bearer())
    refusals.append(("telemetry record", 200, status, json.loads(reply)["error"]))
    for name, depth, status, message in refusals:
        assert status == 400 and message, (name, depth, status, message)
    walked = {name for name, _, _, message in refusals if "nested deeper than 128 levels" in message}
    assert walked >= {"traces", "telemetry", "otlp attribute", "telemetry record"}, refusals
    # the push decoders never walk a document: orjson's own limit bounds them
    too_deep_for_orjson = {name for name, depth, _, message in refusals
                           if depth == 5000 and ("1024 levels" in message or "depth limit exceeded" in message)}
    assert too_deep_for_orjson >= {"subscription", "awslogs", "firehose", "firehose record"}, refusals
    # a reasonably nested attribute is still accepted
    assert post(f"{server.http}/v1/traces", _deep_attribute(5), bearer())[0] == 200
    server.wait_for("SELECT count() FROM otel_traces WHERE SpanName = 'deep'", 1)


def test_odd_bytes_in_firehose_headers_are_never_a_500(server) -> None:
    body = envelope("req-bytes", [record(data_message("odd-bytes", ["x"]))])
    for key in (b"\xff" + FIREHOSE_KEY.encode(), "🔑".encode(), b"\x80"):
        status, reply = post(f"{server.http}/aws/firehose", body, firehose_headers("req-bytes", key))
        assert status == 401 and json.loads(reply)["errorMessage"] == "missing or invalid Firehose access key"
    odd = {"X-Amz-Firehose-Request-Id": b"req-\xff\xfe", "X-Amz-Firehose-Access-Key": FIREHOSE_KEY,
           "X-Amz-Firehose-Source-Arn": b"arn:aws:firehose:\xff\xfe:123456789012:deliverystream/x"}
    status, reply = post(f"{server.http}/aws/firehose", body, odd)
    assert status == 200 and json.loads(reply)["requestId"] == "req-bytes"
    status, reply = post(f"{server.http}/aws/cloudwatch-logs?region=%FF%FE",
                         gzip.compress(json.dumps(data_message("odd-region", ["x"])).encode()), bearer())
    assert status == 200
    server.wait_for("SELECT count() FROM otel_logs WHERE ServiceName IN ('odd-bytes', 'odd-region')", 2)


def test_non_string_fields_are_refused_not_rendered(server) -> None:
    """A ``messageType`` or ``logGroup`` that is a deep list must not be ``repr``-ed or
    ``str``-ed into the answer (recursion, megabytes of error message)."""
    deep = json.loads(_deep(900))
    for message in ({"messageType": deep, "logEvents": []},
                    dict(data_message("odd-fields", ["x"]), logGroup=deep),
                    {"messageType": "x" * 100_000, "logEvents": []}):
        status, reply = post(f"{server.http}/aws/cloudwatch-logs", gzip.compress(json.dumps(message).encode()),
                             bearer())
        assert status == 400 and len(reply) < 1000, reply[:200]
    assert server.scalar("SELECT count() FROM otel_logs WHERE ServiceName = 'odd-fields'") == 0


def test_an_unpaired_surrogate_in_an_otlp_json_key_is_a_400(server) -> None:
    """Found by bench/fuzz/decoders.py: upb raised SystemError on such a key (a 500)."""
    for body in (b'{"\\ud800": 1}', b'{"resourceMetrics": [], "x\\udc00": {}}'):
        status, reply = post(f"{server.http}/v1/metrics", body, bearer())
        assert status == 400 and "unpaired surrogate" in json.loads(reply)["message"], (body, reply)
