"""The library's own OTLP encoding, HTTP client and set-up, checked against opentelemetry-proto.

Spans must encode byte for byte as the OTLP exporter's encoder does; metrics and prediction
records must parse with opentelemetry-proto into the values recorded.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import textwrap
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from obsloop_instrument import _encode, _otlp
from obsloop_instrument._metrics import FaasMetrics
from obsloop_instrument._span import InvocationSpan, Parent, sampler_from_env
from opentelemetry import trace
from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest
from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import (
    ExportMetricsServiceRequest,
)
from opentelemetry.proto.metrics.v1.metrics_pb2 import AggregationTemporality
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import (
    Link,
    NonRecordingSpan,
    SpanContext,
    SpanKind,
    Status,
    StatusCode,
    TraceFlags,
    TraceState,
)
from otlp_capture import attributes


def test_spans_encode_exactly_as_the_otlp_exporter() -> None:
    exporter = InMemorySpanExporter()
    provider = TracerProvider(
        resource=Resource(
            {"service.name": "s", "n": -5, "f": 1.5, "b": False, "l": ("a", "b"), "big": 2**62}
        )
    )
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    tracer = provider.get_tracer("scope", "1.2", schema_url="https://opentelemetry.io/schemas/1")
    other = provider.get_tracer("other")
    remote = SpanContext(
        0xABC,
        0xDEF,
        is_remote=True,
        trace_flags=TraceFlags(1),
        trace_state=TraceState([("k", "v"), ("a", "b")]),
    )
    parent = trace.set_span_in_context(NonRecordingSpan(remote))
    with tracer.start_as_current_span(
        "root",
        context=parent,
        kind=SpanKind.SERVER,
        attributes={"a": 1, "s": "x", "empty": "", "zero": 0, "bools": [True, False]},
        links=[Link(remote, {"x": 1})],
    ) as span:
        span.add_event("ev", {"k": "v", "floats": [0.0, 2.5]})
        span.add_event("", {})
        span.set_status(Status(StatusCode.ERROR, "boom"))
        with other.start_as_current_span("child", kind=SpanKind.CLIENT) as child:
            child.record_exception(ValueError("ünïcode"))
    with tracer.start_as_current_span(""):
        pass
    spans = exporter.get_finished_spans()

    assert _encode.export_trace_request(spans) == encode_spans(spans).SerializeToString()


def test_attribute_that_cannot_be_encoded_is_dropped_not_raised() -> None:
    encoded = _encode.key_values(1, {"ok": 1, "huge": 2**64, "obj": object()})
    assert encoded == _encode.field_bytes(1, _encode.key_value("ok", 1))


@pytest.mark.parametrize("temporality", ["cumulative", "delta"])
def test_faas_metrics_parse_as_otlp(temporality: str) -> None:
    delta = temporality == "delta"
    metrics = FaasMetrics(
        _encode.AGGREGATION_TEMPORALITY_DELTA if delta else _encode.AGGREGATION_TEMPORALITY_CUMULATIVE
    )
    calls = metrics.counter("calls", "{call}", "Calls.")
    errors = metrics.counter("errors", "{error}", "Errors.")
    duration = metrics.histogram("duration", "s", "Duration.")
    sampled = InvocationSpan("s", Parent(0x1234, 0x77, 1), {}, sampler_from_env({}))
    sampled.span_id = 0x5678
    for value in (0.0, 3.0, 12.0, 20000.0):
        calls.add(1, {"k": "a"})
        duration.record(value, {"k": "a"})
    calls.add(2, {"k": "b"})
    errors.add(1, {"k": "a"}, sampled)

    def parse(collected: list[bytes]) -> dict[str, Any]:
        request = ExportMetricsServiceRequest()
        request.ParseFromString(
            _encode.export_metrics_request(_encode.resource({"r": 1}), _encode.scope("s"), collected)
        )
        [resource_metrics] = request.resource_metrics
        assert attributes(resource_metrics.resource.attributes) == {"r": 1}
        [scope_metrics] = resource_metrics.scope_metrics
        assert scope_metrics.scope.name == "s"
        return {m.name: m for m in scope_metrics.metrics}

    first = parse(metrics.collect())
    expected_temporality = (
        AggregationTemporality.AGGREGATION_TEMPORALITY_DELTA
        if delta
        else AggregationTemporality.AGGREGATION_TEMPORALITY_CUMULATIVE
    )
    assert first["calls"].sum.is_monotonic
    assert first["calls"].sum.aggregation_temporality == expected_temporality
    assert first["calls"].unit == "{call}" and first["calls"].description == "Calls."
    points = {attributes(p.attributes)["k"]: p for p in first["calls"].sum.data_points}
    assert (points["a"].as_int, points["b"].as_int) == (4, 2)
    assert 0 < points["a"].start_time_unix_nano <= points["a"].time_unix_nano
    [error_point] = first["errors"].sum.data_points
    [exemplar] = error_point.exemplars
    assert (exemplar.trace_id.hex(), exemplar.span_id.hex()) == (f"{0x1234:032x}", f"{0x5678:016x}")
    assert exemplar.as_int == 1
    [histogram] = first["duration"].histogram.data_points
    assert histogram.count == 4 and histogram.sum == 20015.0
    assert (histogram.min, histogram.max) == (0.0, 20000.0)
    assert list(histogram.explicit_bounds)[:4] == [0.0, 5.0, 10.0, 25.0]
    assert list(histogram.bucket_counts) == [1, 1, 0, 1] + [0] * 11 + [1]  # v <= bound

    calls.add(1, {"k": "a"})
    second = parse(metrics.collect())
    assert not second["errors"].sum.data_points[0].exemplars if "errors" in second else delta
    points = {attributes(p.attributes)["k"]: p for p in second["calls"].sum.data_points}
    if delta:
        assert set(points) == {"a"} and points["a"].as_int == 1
        assert "duration" not in second  # nothing recorded since the last collection
    else:
        assert (points["a"].as_int, points["b"].as_int) == (5, 2)
        assert second["duration"].histogram.data_points[0].count == 4


def test_prediction_record_parses_as_otlp() -> None:
    record = _encode.log_record(
        123, {"prediction": 0.5, "feature.x": [1, 2], "label": None}, 0xAB, 0xCD, 1, "evt", 2
    )
    request = ExportLogsServiceRequest()
    request.ParseFromString(
        _encode.export_logs_request(_encode.resource({}), _encode.scope("s"), [record])
    )
    [parsed] = request.resource_logs[0].scope_logs[0].log_records
    assert parsed.event_name == "evt"
    assert parsed.observed_time_unix_nano == 123
    assert (parsed.trace_id.hex()[-2:], parsed.span_id.hex()[-2:], parsed.flags) == ("ab", "cd", 1)
    assert parsed.dropped_attributes_count == 2
    assert attributes(parsed.attributes) == {"prediction": 0.5, "feature.x": [1, 2], "label": None}


# --- the HTTP client -------------------------------------------------------------------


class ScriptedServer:
    """Answers each request on a connection with the next scripted raw response."""

    def __init__(self, responses: list[bytes]) -> None:
        self.responses = responses
        self.requests: list[bytes] = []
        self.connections = 0
        self._server = socket.socket()
        self._server.bind(("127.0.0.1", 0))
        self._server.listen(8)
        self.endpoint = f"http://127.0.0.1:{self._server.getsockname()[1]}"
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        while self.responses:
            try:
                conn, _ = self._server.accept()
            except OSError:
                return
            self.connections += 1
            with conn:
                data = b""
                while self.responses:
                    while b"\r\n\r\n" not in data:
                        chunk = conn.recv(65536)
                        if not chunk:
                            break
                        data += chunk
                    if b"\r\n\r\n" not in data:
                        break
                    head, _, data = data.partition(b"\r\n\r\n")
                    length = int(head.lower().split(b"content-length: ")[1].split(b"\r\n")[0])
                    while len(data) < length:
                        data += conn.recv(65536)
                    self.requests.append(head + b"\r\n\r\n" + data[:length])
                    data = data[length:]
                    response = self.responses.pop(0)
                    conn.sendall(response)
                    if response.endswith(b"<close>"):
                        break

    def close(self) -> None:
        self._server.close()


@pytest.fixture
def scripted() -> Iterator[Any]:
    servers: list[ScriptedServer] = []

    def make(*responses: bytes) -> ScriptedServer:
        servers.append(ScriptedServer(list(responses)))
        return servers[-1]

    yield make
    for server in servers:
        server.close()


def exporter_for(endpoint: str, **env: str) -> _otlp.OtlpHttpExporter:
    return _otlp.OtlpHttpExporter("traces", {"OTEL_EXPORTER_OTLP_ENDPOINT": endpoint, **env})


def test_http_client_reads_every_response_framing_on_one_connection(scripted: Any) -> None:
    server = scripted(
        b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\nabc",
        b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
        b"2\r\nab\r\n1;x=y\r\nc\r\n0\r\n\r\n",
        b"HTTP/1.1 204 No Content\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n",
    )
    exporter = exporter_for(server.endpoint, OTEL_EXPORTER_OTLP_HEADERS="Api-Key=s%20t,x=1")
    assert all(exporter.export(b"payload", 1.0) for _ in range(4))
    assert server.connections == 1  # kept alive throughout
    head = server.requests[0].split(b"\r\n\r\n")[0].decode().lower()
    assert head.startswith("post /v1/traces http/1.1\r\n")
    assert "content-type: application/x-protobuf" in head
    assert "api-key: s t" in head and "x: 1" in head
    assert server.requests[0].endswith(b"\r\n\r\npayload")


def test_http_client_reconnects_after_close_and_retries_stale_connection(scripted: Any) -> None:
    server = scripted(
        b"HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 0\r\n\r\n<close>",
        b"HTTP/1.0 200 OK\r\n\r\nbody until close<close>",
        b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n<close>",  # server then drops it
        b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n",
    )
    exporter = exporter_for(server.endpoint)
    assert all(exporter.export(b"x", 1.0) for _ in range(4))
    assert server.connections == 4


def test_retryable_status_honours_retry_after_within_the_deadline(scripted: Any) -> None:
    server = scripted(
        b"HTTP/1.1 503 Unavailable\r\nRetry-After: 0\r\nContent-Length: 0\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n",
    )
    assert exporter_for(server.endpoint).export(b"x", 1.0)
    server = scripted(b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n")
    assert not exporter_for(server.endpoint).export(b"x", 1.0)


def test_gzip_compression(scripted: Any) -> None:
    import gzip

    server = scripted(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n")
    exporter = exporter_for(server.endpoint, OTEL_EXPORTER_OTLP_TRACES_COMPRESSION="gzip")
    assert exporter.export(b"payload" * 10, 1.0)
    head, _, body = server.requests[0].partition(b"\r\n\r\n")
    assert b"content-encoding: gzip" in head.lower()
    assert gzip.decompress(body) == b"payload" * 10


@pytest.fixture
def tls_server(tmp_path: Path) -> Iterator[tuple[str, str, list[bytes]]]:
    """(endpoint, CA file, received requests) of a TLS OTLP/HTTP endpoint on 127.0.0.1 with
    a self-signed certificate (openssl), answering every request with an empty 200."""
    import ssl

    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1"]
        + ["-keyout", str(key), "-out", str(cert), "-subj", "/CN=127.0.0.1"]
        + ["-addext", "subjectAltName=IP:127.0.0.1"],
        check=True,
        capture_output=True,
    )
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)
    server = socket.create_server(("127.0.0.1", 0))
    received: list[bytes] = []

    def serve() -> None:
        while True:
            try:
                raw, _ = server.accept()
            except OSError:
                return
            try:
                with context.wrap_socket(raw, server_side=True) as conn:
                    data = b""
                    while b"\r\n\r\n" not in data:
                        data += conn.recv(65536)
                    head, _, body = data.partition(b"\r\n\r\n")
                    length = int(head.lower().split(b"content-length: ")[1].split(b"\r\n")[0])
                    while len(body) < length:
                        body += conn.recv(65536)
                    received.append(body)
                    conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n")
            except (OSError, ssl.SSLError):
                continue  # a client that refused the certificate

    threading.Thread(target=serve, daemon=True).start()
    yield f"https://127.0.0.1:{server.getsockname()[1]}", str(cert), received
    server.close()


def test_https_endpoint_is_verified_against_the_configured_ca(tls_server: Any) -> None:
    endpoint, ca_file, received = tls_server
    untrusted = exporter_for(endpoint)
    assert not untrusted.export(b"secret", 2.0)  # the system CAs do not know this one
    assert received == []
    trusted = exporter_for(endpoint, OTEL_EXPORTER_OTLP_CERTIFICATE=ca_file)
    assert trusted.export(b"payload", 2.0)
    assert received == [b"payload"]


def test_per_signal_endpoint_is_used_as_is() -> None:
    exporter = _otlp.OtlpHttpExporter(
        "metrics",
        {
            "OTEL_EXPORTER_OTLP_ENDPOINT": "http://collector:4318/",
            "OTEL_EXPORTER_OTLP_METRICS_ENDPOINT": "https://m.example:8443/custom",
        },
    )
    assert exporter.endpoint == "https://m.example:8443/custom"
    assert _otlp.OtlpHttpExporter("logs", {}).endpoint == "http://localhost:4318/v1/logs"


# --- what the cold path imports -----------------------------------------------------------

HANDLER = textwrap.dedent(
    """
    import json, sys
    from obsloop_instrument import instrument_lambda, log_prediction

    @instrument_lambda(model_name="m")
    def handler(event, context):
        log_prediction({"x": 1}, 0.5)
        return {"statusCode": 200}

    handler({"headers": {}}, None)
    heavy = ["google.protobuf", "opentelemetry.proto", "opentelemetry.exporter.otlp.proto.http",
             "opentelemetry.sdk", "opentelemetry.sdk.metrics", "opentelemetry.sdk._logs", "http.client",
             "dataclasses", "importlib.metadata"]
    print(json.dumps(sorted(m for m in heavy if m in sys.modules)))
    """
)


@pytest.mark.parametrize("background", ["true", "false"])
def test_an_invocation_loads_neither_protobuf_nor_metrics_and_logs_sdks(
    otlp: Any, background: str
) -> None:
    env = dict(os.environ, OBSLOOP_BACKGROUND_SETUP=background)
    out = subprocess.run(
        [sys.executable, "-c", HANDLER],
        env=env,
        capture_output=True,
        text=True,
        check=True,
        cwd=Path(__file__).parent,
    )
    # Not even the OpenTelemetry SDK (and its dataclasses) since the invocation span is the
    # library's own; test_instrument_span.py checks the API, typing and logging too.
    assert eval(out.stdout) == []  # noqa: S307
    assert len(otlp.spans()) == 1 and len(otlp.log_records()) == 1
