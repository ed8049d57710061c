"""Requests protobuf accepts but ClickHouse's reader would refuse, sent between valid ones to
a real ``obsloop serve``: each is stored as protobuf parsed it or refused with 400, and none
of the valid requests around it is lost or held up."""

from __future__ import annotations

import grpc
from google.protobuf.internal.encoder import _VarintBytes
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from prometheus_client.parser import text_string_to_metric_families
from test_receiver_errors import post, status_message

from obsloop.demo.loadgen import FLEET, ServerlessTraffic


def _field(number: int, payload: bytes) -> bytes:
    return _VarintBytes(number << 3 | 2) + _VarintBytes(len(payload)) + payload


def _varint(number: int, value: int) -> bytes:
    return _VarintBytes(number << 3) + _VarintBytes(value)


def _one_span(*fields: bytes) -> bytes:
    span = _field(1, bytes(range(16))) + _field(2, bytes(range(8))) + b"".join(fields)
    return _field(1, _field(2, _field(2, span)))


TWICE_SET = _field(1, b"first") + _varint(3, 5)
"""An AnyValue whose oneof is set twice (a string, then the int 5)."""

POISON = {
    "wrong wire type": b"\x08\x01",
    "fixed32 on a message field": b"\x0d\x01\x02\x03\x04",
    "oneof set twice": _one_span(_field(5, b"twice"), _field(9, _field(1, b"k") + _field(2, TWICE_SET))),
    "mistyped span name": _one_span(_varint(5, 7)),
    "name given twice": _one_span(_field(5, b"first"), _field(5, b"again")),
    "truncated inside": _field(1, b"\x12\x05ab"),
}
REFUSED = {"truncated inside"}


def _spans(body: bytes) -> int:
    request = ExportTraceServiceRequest.FromString(body)
    return sum(len(ss.spans) for rs in request.resource_spans for ss in rs.scope_spans)


def test_poison_between_valid_requests_loses_nothing(obsloop) -> None:
    traffic = ServerlessTraffic(seed=31, fleet=FLEET[:2])
    valid = [traffic.traces(50).SerializeToString() for _ in range(len(POISON) + 1)]
    # A known field with the wrong wire type at the end of a request survives protobuf's
    # own re-serialization (it keeps such fields, at the end): only dropping them helps.
    poisons = {**POISON, "wrong wire type after valid data": valid[-1] + b"\x08\x01"}
    expected = 0
    for (name, poison), body in zip(poisons.items(), valid, strict=False):
        status, _, reply = post(f"{obsloop.http}/v1/traces", body)
        assert status == 200, reply
        expected += _spans(body)
        status, _, reply = post(f"{obsloop.http}/v1/traces", poison)
        if name in REFUSED:
            assert status == 400 and "invalid OTLP/protobuf traces request" in status_message(reply), name
        else:
            assert status == 200, (name, reply)
            expected += _spans(poison)
    # gRPC: a log record whose body sets its oneof twice, between two valid log requests.
    logs = [traffic.logs(20).SerializeToString() for _ in range(2)]
    twice = _field(1, _field(2, _field(2, _field(5, TWICE_SET))))
    channel = grpc.insecure_channel(obsloop.grpc)
    export = channel.unary_unary("/opentelemetry.proto.collector.logs.v1.LogsService/Export")
    for body in (logs[0], twice, logs[1]):
        export(body, timeout=10)
    channel.close()
    records = sum(len(sl.log_records) for body in logs
                  for rl in ExportLogsServiceRequest.FromString(body).resource_logs for sl in rl.scope_logs)

    obsloop.wait_for("SELECT count() FROM otel_traces", expected)
    obsloop.wait_for("SELECT count() FROM otel_logs", records + 1)
    assert obsloop.scalar("SELECT count() FROM otel_traces WHERE SpanName = 'again'") == 1
    assert obsloop.scalar("SELECT SpanAttributes['k'] FROM otel_traces WHERE SpanName = 'twice'") == "5"
    assert obsloop.scalar("SELECT count() FROM otel_logs WHERE Body = '5'") == 1
    quarantined = [
        s for family in text_string_to_metric_families(obsloop.get("/metrics")[1])
        for s in family.samples if "quarantined" in s.name and s.value
    ]
    assert quarantined == []
    assert not (obsloop.data_dir / "wal" / "quarantine").exists()
