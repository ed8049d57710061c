"""Validate OTLP export requests before they are acknowledged.

Every request gets a full protobuf parse, so a malformed payload is refused with 400 while
the client can still fix it. What is acknowledged and written to the write-ahead log is the
parsed request serialized again (:func:`canonical`), the bytes ClickHouse's ``Protobuf``
reader is sure to read as parsed; JSON requests get the same. Spans and log records with ids
of the wrong length are dropped and reported through OTLP partial success.
Design: docs/design/canonical-otlp-bytes.md.
"""

from __future__ import annotations

import base64
import binascii
import json
from dataclasses import dataclass
from typing import Any

from google.protobuf import json_format
from google.protobuf.message import DecodeError, Message
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest, ExportLogsServiceResponse
from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import (
    ExportMetricsServiceRequest,
    ExportMetricsServiceResponse,
)
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)

MAX_JSON_DEPTH = 128
"""Deepest JSON nesting accepted where the parsed JSON is walked (OTLP/JSON, Telemetry API
events), 400 past it. OTLP/JSON needs about ten levels plus four per nested
``kvlistValue``; Python's recursion limit is about 1,000."""


SIGNALS = ("traces", "metrics", "logs")
ExportRequest = ExportTraceServiceRequest | ExportMetricsServiceRequest | ExportLogsServiceRequest
ExportResponse = ExportTraceServiceResponse | ExportMetricsServiceResponse | ExportLogsServiceResponse
REQUEST_TYPES: dict[str, type[ExportRequest]] = {
    "traces": ExportTraceServiceRequest, "metrics": ExportMetricsServiceRequest, "logs": ExportLogsServiceRequest}
RESPONSE_TYPES: dict[str, type[ExportResponse]] = {
    "traces": ExportTraceServiceResponse, "metrics": ExportMetricsServiceResponse, "logs": ExportLogsServiceResponse}
_REJECTED_FIELD = {"traces": "rejected_spans", "metrics": "rejected_data_points", "logs": "rejected_log_records"}
# OTLP/JSON carries these as hex strings, where the protobuf JSON mapping expects base64.
_HEX_ID_KEYS = frozenset({"traceId", "spanId", "parentSpanId", "trace_id", "span_id", "parent_span_id"})
_METRIC_KINDS = ("gauge", "sum", "histogram", "exponential_histogram", "summary")


class InvalidRequest(ValueError):
    """The request cannot be parsed; the message says what is wrong (sent to the client)."""


@dataclass(frozen=True)
class ValidRequest:
    signal: str
    payload: bytes
    """Canonical protobuf bytes, what the write-ahead log stores."""
    items: int
    """Accepted spans, log records or metric data points."""
    rejected: int = 0
    message: str = ""

    def response(self) -> ExportResponse:
        """The ``Export*ServiceResponse``, with partial success when items were dropped."""
        response = RESPONSE_TYPES[self.signal]()
        if self.rejected:
            setattr(response.partial_success, _REJECTED_FIELD[self.signal], self.rejected)
            response.partial_success.error_message = self.message
        return response


def _hex_ids_to_base64(node: Any, depth: int = 1) -> Any:
    if depth > MAX_JSON_DEPTH and isinstance(node, dict | list):
        raise InvalidRequest(f"invalid JSON: nested deeper than {MAX_JSON_DEPTH} levels")
    if isinstance(node, dict):
        converted = {}
        for key, value in node.items():
            if not key.isascii():  # an unpaired surrogate escape in a key fails inside upb, not as ParseError
                try:
                    key.encode()
                except UnicodeEncodeError:
                    raise InvalidRequest("invalid JSON: an object key holds an unpaired surrogate") from None
            if key in _HEX_ID_KEYS and isinstance(value, str):
                try:
                    value = base64.b64encode(bytes.fromhex(value)).decode()
                except ValueError:
                    raise InvalidRequest(f"{key} {value!r} is not a hex string") from None
            else:
                value = _hex_ids_to_base64(value, depth + 1)
            converted[key] = value
        return converted
    if isinstance(node, list):
        return [_hex_ids_to_base64(item, depth + 1) for item in node]
    return node


def parse_json(signal: str, body: bytes) -> Message:
    try:
        document = json.loads(body)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise InvalidRequest(f"invalid JSON: {exc}") from None
    except RecursionError:
        raise InvalidRequest(f"invalid JSON: nested deeper than {MAX_JSON_DEPTH} levels") from None
    if not isinstance(document, dict):
        raise InvalidRequest("invalid JSON: the request must be a JSON object")
    try:
        return json_format.ParseDict(
            _hex_ids_to_base64(document), REQUEST_TYPES[signal](), ignore_unknown_fields=True
        )
    except (json_format.ParseError, binascii.Error, TypeError, ValueError) as exc:
        raise InvalidRequest(f"invalid OTLP/JSON {signal} request: {exc}") from None


def parse_protobuf(signal: str, body: bytes) -> Message:
    try:
        return REQUEST_TYPES[signal].FromString(body)
    except DecodeError as exc:
        raise InvalidRequest(f"invalid OTLP/protobuf {signal} request: {exc}") from None


def canonical(request: Message) -> bytes:
    """The bytes ClickHouse reads as protobuf parsed ``request``: unknown fields dropped
    (protobuf keeps a known field with the wrong wire type among them; ClickHouse refuses
    it), each field once, in field-number order, repeated scalars packed."""
    request.DiscardUnknownFields()
    return request.SerializeToString()


def _drop_bad_ids(groups: Any, scope_field: str, item_field: str, *, ids_required: bool) -> tuple[int, int]:
    """Drop the items whose trace or span id has the wrong length; (kept, dropped).

    Spans must carry both ids; log records may carry none (a log outside any trace).
    """
    kept = dropped = 0
    allowed_trace, allowed_span = ((16,), (8,)) if ids_required else ((0, 16), (0, 8))
    for group in groups:
        for scope in getattr(group, scope_field):
            items = getattr(scope, item_field)
            bad = [i for i, item in enumerate(items)
                   if len(item.trace_id) not in allowed_trace or len(item.span_id) not in allowed_span]
            for index in reversed(bad):
                del items[index]
            kept += len(items)
            dropped += len(bad)
    return kept, dropped


def _check_traces(request: Any) -> tuple[int, int]:
    return _drop_bad_ids(request.resource_spans, "scope_spans", "spans", ids_required=True)


def _check_logs(request: Any) -> tuple[int, int]:
    return _drop_bad_ids(request.resource_logs, "scope_logs", "log_records", ids_required=False)


def _check_metrics(request: Any) -> tuple[int, int]:
    items = 0
    for resource_metrics in request.resource_metrics:
        for scope_metrics in resource_metrics.scope_metrics:
            for metric in scope_metrics.metrics:
                kind = metric.WhichOneof("data")
                if kind is not None:
                    items += len(getattr(metric, kind).data_points)
    return items, 0


_CHECKS = {"traces": _check_traces, "logs": _check_logs, "metrics": _check_metrics}
_ITEM_NAMES = {"traces": "spans", "logs": "log records", "metrics": "data points"}


def validate(signal: str, body: bytes, encoding: str = "protobuf") -> ValidRequest:
    """Parse ``body`` (``protobuf`` or ``json``) and return what may be acknowledged."""
    request = parse_json(signal, body) if encoding == "json" else parse_protobuf(signal, body)
    items, rejected = _CHECKS[signal](request)
    message = ""
    if rejected:
        message = (
            f"{rejected} {_ITEM_NAMES[signal]} dropped: trace_id must be 16 bytes and span_id 8 bytes"
        )
    return ValidRequest(signal, canonical(request), items, rejected, message)
