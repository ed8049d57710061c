"""Small requests that decode to far more than they weigh are refused with 413, within one
budget per request, and the server's peak memory stays bounded: against a real
``obsloop serve`` whose ``/proc`` status is read before and after."""

from __future__ import annotations

import base64
import gzip
import json

import pytest
from push_attacks import (
    TOKEN,
    bearer,
    data_message,
    envelope,
    firehose_headers,
    gz,
    memory_kib,
    nested_awslogs_body,
    object_flood,
    padded_message,
    post,
    record,
    serve,
)

MAX_REQUEST = 1 << 20  # the decoding budget is 8 MiB (max_decompressed_ratio 8)
PEAK_GROWTH_KIB = 96 << 10
"""What the attacks below may add to the server's peak RSS; each one decodes to 256 MiB
or more when nothing bounds it."""


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    process = serve(tmp_path_factory.mktemp("amplification"), max_request_bytes=MAX_REQUEST,
                    max_documents_per_request=1000, max_events_per_request=5000)
    yield process
    process.stop()


def _refused(status: int, reply: bytes, expected_status: int, fragment: str) -> None:
    answer = json.loads(reply)
    message = answer.get("error") or answer.get("errorMessage")
    assert status == expected_status and fragment in message, (status, answer)


def test_nested_and_enveloped_bombs_are_refused_with_bounded_memory(server) -> None:
    before = memory_kib(server.process.pid)
    url = f"{server.http}/aws/cloudwatch-logs"
    answers = []
    # awslogs wrappers inside a gzip body, each wrapping 64 MiB: every layer is charged
    body = nested_awslogs_body("amp-nested", documents=4, pad_bytes=64 << 20)
    assert len(body) < MAX_REQUEST
    answers.append((post(url, body, bearer()), 413, "exceeds the 1048576-byte limit"))
    # Firehose records of base64 of gzip, 64 MiB each
    bombs = [{"data": base64.b64encode(padded_message("amp-firehose", 64 << 20)).decode()} for _ in range(4)]
    answers.append((post(f"{server.http}/aws/firehose", envelope("req-bomb", bombs), firehose_headers("req-bomb")),
                    413, "exceeds the 1048576-byte limit"))
    # 2 million empty objects: 6 MB of JSON from 10 KB, ~25x that as Python objects
    answers.append((post(url, object_flood("amp-objects", 2_000_000), bearer()), 413, "exceeds the 1048576-byte limit"))
    # a compressed Telemetry API body
    events = json.dumps([{"time": "2026-11-27T10:00:00Z", "type": "function", "record": "x" * (32 << 20)}])
    answers.append((post(f"{server.http}/aws/telemetry?function=amp-telemetry", gz(events.encode()),
                         {**bearer(), "Content-Encoding": "gzip"}),
                    413, "decompressed body exceeds the 1048576-byte limit"))
    after = memory_kib(server.process.pid)
    growth = after["VmHWM"] - max(before["VmHWM"], before["VmRSS"])
    print(f"amplification: server peak RSS grew {growth / 1024:.1f} MiB ({before} -> {after})")
    assert growth < PEAK_GROWTH_KIB, (before, after)
    for (status, reply), expected_status, fragment in answers:
        _refused(status, reply, expected_status, fragment)


def test_the_budget_is_shared_by_every_layer_of_a_request(server) -> None:
    """Each wrapped document fits the per-document limit; together they exceed the
    request's budget (8 x 1 MiB)."""
    body = nested_awslogs_body("amp-shared", documents=12, pad_bytes=800 << 10)
    status, reply = post(f"{server.http}/aws/cloudwatch-logs", body, bearer())
    _refused(status, reply, 413, "the request decodes to more than 8388608 bytes")
    records = [{"data": base64.b64encode(padded_message("amp-shared", 800 << 10)).decode()}] * 12
    status, reply = post(f"{server.http}/aws/firehose", envelope("req-shared", records), firehose_headers("req-shared"))
    _refused(status, reply, 413, "the request decodes to more than 8388608 bytes")


def test_documents_and_events_are_capped_per_request(server) -> None:
    tiny = record(data_message("amp-docs", ["x"]))
    status, reply = post(f"{server.http}/aws/firehose", envelope("req-docs", [tiny] * 1001),
                         firehose_headers("req-docs"))
    _refused(status, reply, 413, "more than 1000 documents in one request")
    many = gzip.compress(json.dumps(data_message("amp-events", ["e"] * 5001)).encode())
    status, reply = post(f"{server.http}/aws/cloudwatch-logs", many, bearer())
    _refused(status, reply, 413, "more than 5000 events in one request")
    concatenated = gzip.compress(b"".join(json.dumps(data_message("amp-docs", [])).encode() for _ in range(1001)))
    status, reply = post(f"{server.http}/aws/cloudwatch-logs", concatenated, bearer())
    _refused(status, reply, 413, "more than 1000 documents in one request")


def test_a_huge_firehose_request_id_is_refused_not_remembered(server) -> None:
    request_id = "r" * 600_000
    body = envelope(request_id, [record(data_message("amp-request-id", ["x"]))])
    status, reply = post(f"{server.http}/aws/firehose", body, firehose_headers("req-id"))
    _refused(status, reply, 400, "requestId must be a string of at most 256 printable ASCII characters")


def test_nothing_from_the_attacks_was_stored(server) -> None:
    assert post(f"{server.http}/aws/cloudwatch-logs",
                gzip.compress(json.dumps(data_message("amp-marker", ["after"])).encode()), bearer())[0] == 200
    server.wait_for("SELECT count() FROM otel_logs WHERE ServiceName = 'amp-marker'", 1)
    assert server.scalar("SELECT count() FROM otel_logs WHERE ServiceName LIKE 'amp-%' "
                         "AND ServiceName != 'amp-marker'") == 0


def test_grpc_compressed_messages_are_bounded_after_decompression(server) -> None:
    """OTLP/gRPC leaves decompression to gRPC itself, whose limit on a decompressed message
    is ``grpc.max_receive_message_length``, set to ``max_request_bytes``."""
    import grpc

    with grpc.insecure_channel(server.grpc, compression=grpc.Compression.Gzip) as channel:
        export = channel.unary_unary("/opentelemetry.proto.collector.logs.v1.LogsService/Export")
        with pytest.raises(grpc.RpcError) as refused:
            export(b"\x0a\x00" * (MAX_REQUEST + 1), metadata=(("authorization", f"Bearer {TOKEN}"),), timeout=30)
    assert refused.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED


def test_a_firehose_delivery_within_the_caps_is_stored(server) -> None:
    """The caps count what a request holds once: 900 records of one document each fit
    under 1,000 documents."""
    records = [record(data_message("within-caps", [f"line {i}"])) for i in range(900)]
    status, reply = post(f"{server.http}/aws/firehose", envelope("req-within", records), firehose_headers("req-within"))
    assert status == 200, reply
    server.wait_for("SELECT count() FROM otel_logs WHERE ServiceName = 'within-caps'", 900)
