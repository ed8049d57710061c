"""Test helpers: a real OTLP/HTTP receiver, Lambda context and event loading.

A uniquely named module (not ``conftest``) so test files can import it unambiguously."""

from __future__ import annotations

import gzip
import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest
from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import (
    ExportMetricsServiceRequest,
)
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import AnyValue

EVENTS = Path(__file__).parent / "events"

_REQUEST_TYPES = {
    "/v1/traces": ExportTraceServiceRequest,
    "/v1/metrics": ExportMetricsServiceRequest,
    "/v1/logs": ExportLogsServiceRequest,
}


def any_value(value: AnyValue) -> Any:
    kind = value.WhichOneof("value")
    if kind == "array_value":
        return [any_value(v) for v in value.array_value.values]
    return getattr(value, kind) if kind else None


def attributes(kvs: Any) -> dict[str, Any]:
    return {kv.key: any_value(kv.value) for kv in kvs}


def picked(actual: dict[str, Any], expected: dict[str, Any]) -> dict[str, Any]:
    """``actual``'s items under ``expected``'s keys (None where missing): assert it equals
    ``expected``, and a failure shows every differing attribute at once."""
    return {key: actual.get(key) for key in expected}


class OtlpCaptureReceiver:
    """An OTLP/HTTP (protobuf) receiver that keeps every parsed export request."""

    def __init__(self, port: int = 0) -> None:
        self.requests: dict[str, list[Any]] = {path: [] for path in _REQUEST_TYPES}
        self._lock = threading.Lock()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_POST(self) -> None:  # noqa: N802 - http.server API
                body = self.rfile.read(int(self.headers["Content-Length"]))
                if self.headers.get("Content-Encoding") == "gzip":
                    body = gzip.decompress(body)
                request_type = _REQUEST_TYPES.get(self.path)
                if (
                    request_type is None
                    or self.headers.get("Content-Type") != "application/x-protobuf"
                ):
                    self.send_response(404)
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                message = request_type()
                message.ParseFromString(body)
                with receiver._lock:
                    receiver.requests[self.path].append(message)
                self.send_response(200)
                self.send_header("Content-Type", "application/x-protobuf")
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
                """Silence per-request logging."""

        self._server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
        self._server.daemon_threads = True
        self.endpoint = f"http://127.0.0.1:{self._server.server_address[1]}"
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()

    def clear(self) -> None:
        with self._lock:
            for requests in self.requests.values():
                requests.clear()

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    def spans(self) -> list[tuple[dict[str, Any], Any]]:
        """(resource attributes, span) for every span received."""
        return [
            (attributes(rs.resource.attributes), span)
            for req in self.requests["/v1/traces"]
            for rs in req.resource_spans
            for ss in rs.scope_spans
            for span in ss.spans
        ]

    def log_records(self) -> list[Any]:
        return [
            record
            for req in self.requests["/v1/logs"]
            for rl in req.resource_logs
            for sl in rl.scope_logs
            for record in sl.log_records
        ]

    def latest_metrics(self) -> dict[str, Any]:
        """Metric name -> Metric from the most recent metrics request (cumulative totals)."""
        if not self.requests["/v1/metrics"]:
            return {}
        last = self.requests["/v1/metrics"][-1]
        return {
            metric.name: metric
            for rm in last.resource_metrics
            for sm in rm.scope_metrics
            for metric in sm.metrics
        }


def load_event(name: str) -> dict[str, Any]:
    return json.loads((EVENTS / name).read_text())


class LambdaContext:
    """The attributes awslambdaric's LambdaContext gives a handler."""

    def __init__(
        self, request_id: str, function_name: str = "fraud-scorer", region: str = "eu-west-1"
    ) -> None:
        self.aws_request_id = request_id
        self.function_name = function_name
        self.function_version = "7"
        self.memory_limit_in_mb = "1024"
        self.invoked_function_arn = (
            f"arn:aws:lambda:{region}:123456789012:function:{function_name}:live"
        )
        self.log_group_name = f"/aws/lambda/{function_name}"
        self.log_stream_name = "2026/11/27/[7]0123456789abcdef"

    def get_remaining_time_in_millis(self) -> int:
        return 30_000
