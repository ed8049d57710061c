"""A small OTLP protobuf encoder for the messages this library sends.

Why not the OTLP exporter's encoder: it builds ``opentelemetry-proto`` message objects,
whose import (``google.protobuf`` plus the generated modules and the exporter's module
chain) was about 30 ms of a cold start budget of 30 ms. The wire format of the few messages
used here is simple enough to write directly: ``ExportTraceServiceRequest`` from SDK spans,
``ExportMetricsServiceRequest`` with sums and explicit-bucket histograms, and
``ExportLogsServiceRequest`` with event records. Field numbers are those of
opentelemetry-proto 1.x (``opentelemetry/proto/{common,resource,trace,metrics,logs}/v1``);
fields are written in field-number order and proto3 defaults are omitted, as protobuf
itself does. tests/instrument/test_instrument_encode.py checks the bytes against the
exporter's encoder and parses them with opentelemetry-proto.

Only the standard library is imported here.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from struct import Struct

from obsloop_instrument._log import logger

TYPE_CHECKING = False  # not ``typing.TYPE_CHECKING``: no ``typing`` import at set-up
if TYPE_CHECKING:
    from collections.abc import Iterable
    from typing import Any

_logger = logger(__name__)

_pack_fixed64 = Struct("<Q").pack
_pack_sfixed64 = Struct("<q").pack
_pack_fixed32 = Struct("<I").pack
_pack_double = Struct("<d").pack
_INT64_MIN = -(1 << 63)
_INT64_MAX = (1 << 63) - 1
_UINT64 = (1 << 64) - 1

# Wire types: 0 varint, 1 fixed64, 2 length-delimited, 5 fixed32. Tag = field << 3 | type.
AGGREGATION_TEMPORALITY_DELTA = 1
AGGREGATION_TEMPORALITY_CUMULATIVE = 2


_ONE_BYTE = tuple(bytes((i,)) for i in range(0x80))


def varint(value: int) -> bytes:
    """An unsigned varint (negative int64 values are passed as their two's complement).

    One- and two-byte values (tags, lengths below 16 KiB: most of a request) take a
    shortcut; the warm flush encodes about 80 varints per invocation.
    """
    if value < 0x80:
        return _ONE_BYTE[value]
    if value < 0x4000:
        return bytes(((value & 0x7F) | 0x80, value >> 7))
    out = bytearray()
    while value >= 0x80:
        out.append((value & 0x7F) | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


_tags: dict[int, bytes] = {}


def _tag(field: int, wire_type: int) -> bytes:
    key = field << 3 | wire_type
    tag = _tags.get(key)
    if tag is None:
        tag = _tags[key] = varint(key)
    return tag


def field_bytes(field: int, payload: bytes) -> bytes:
    """A length-delimited field: nested message, string or bytes."""
    return _tag(field, 2) + varint(len(payload)) + payload


def field_str(field: int, value: str | None) -> bytes:
    """A proto3 string field: omitted when empty."""
    return field_bytes(field, value.encode()) if value else b""


def field_varint(field: int, value: int) -> bytes:
    """A proto3 varint (uint32, int64, enum, bool) field: omitted when zero."""
    return _tag(field, 0) + varint(value & _UINT64) if value else b""


def field_fixed64(field: int, value: int | None) -> bytes:
    return _tag(field, 1) + _pack_fixed64(value) if value else b""


def field_fixed32(field: int, value: int) -> bytes:
    return _tag(field, 5) + _pack_fixed32(value) if value else b""


def field_double(field: int, value: float) -> bytes:
    return _tag(field, 1) + _pack_double(value) if value else b""


# --- common.v1 -------------------------------------------------------------------------


def any_value(value: Any) -> bytes:
    """``AnyValue`` content, with the same type mapping as the OTLP exporter's encoder.

    Raises ``ValueError`` for what protobuf would refuse (an int outside int64, or an
    unsupported type); ``key_values`` drops such an attribute and logs it, as the exporter
    does.
    """
    if value is None:
        return b""
    if value is True:
        return b"\x10\x01"
    if value is False:
        return b"\x10\x00"  # a oneof member is written even when it is the default
    if isinstance(value, str):
        return field_bytes(1, value.encode())
    if isinstance(value, int):
        if not _INT64_MIN <= value <= _INT64_MAX:
            raise ValueError(f"integer out of int64 range: {value}")
        return b"\x18" + varint(value & _UINT64)
    if isinstance(value, float):
        return b"\x21" + _pack_double(value)
    if isinstance(value, bytes):
        return field_bytes(7, value)
    if isinstance(value, Sequence):
        return field_bytes(5, b"".join(field_bytes(1, any_value(item)) for item in value))
    if isinstance(value, Mapping):
        return field_bytes(
            6, b"".join(field_bytes(1, key_value(str(k), v)) for k, v in value.items())
        )
    raise ValueError(f"Invalid type {type(value)} of value {value}")


def key_value(key: str, value: Any) -> bytes:
    return field_bytes(1, key.encode()) + field_bytes(2, any_value(value))


_SCALARS = frozenset((str, bool, int))  # not float: -0.0 == 0.0 would share an entry
_kv_cache: dict[tuple[int, str, type, Any], bytes] = {}
_KV_CACHE_SIZE = 4096


def key_values(field: int, attributes: Mapping[str, Any] | None) -> bytes:
    """Repeated ``KeyValue`` field; an attribute that cannot be encoded is dropped.

    str, bool and int attributes are memoized (most repeat on every invocation: the platform and
    model attributes); the cache is emptied when full.
    """
    if not attributes:
        return b""
    out = []
    cache = _kv_cache
    for key, value in attributes.items():
        scalar = value.__class__ in _SCALARS
        if scalar:
            hit = cache.get((field, key, value.__class__, value))
            if hit is not None:
                out.append(hit)
                continue
        try:
            encoded = field_bytes(field, key_value(key, value))
        except Exception as error:  # noqa: BLE001 - same policy as the exporter's encoder
            _logger.exception("Failed to encode key %s: %s", key, error)
            continue
        if scalar:
            if len(cache) >= _KV_CACHE_SIZE:
                cache.clear()
            cache[(field, key, value.__class__, value)] = encoded
        out.append(encoded)
    return b"".join(out)


def resource(attributes: Mapping[str, Any]) -> bytes:
    """``Resource`` content."""
    return key_values(1, attributes)


def scope(name: str | None, version: str | None = None, attributes: Any = None) -> bytes:
    """``InstrumentationScope`` content."""
    return field_str(1, name) + field_str(2, version) + key_values(3, attributes)


def _envelope(
    groups: Iterable[tuple[bytes, str | None, Iterable[tuple[bytes, str | None, list[bytes]]]]],
) -> bytes:
    """``Export*ServiceRequest``: resource groups of scope groups of encoded items.

    Every signal shares the shape ``Resource* { resource=1, Scope*=2, schema_url=3 }`` and
    ``Scope* { scope=1, items=2, schema_url=3 }``.
    """
    out = []
    for resource_bytes, resource_schema, scopes in groups:
        scoped = b"".join(
            field_bytes(
                2,
                field_bytes(1, scope_bytes)
                + b"".join(field_bytes(2, item) for item in items)
                + field_str(3, scope_schema),
            )
            for scope_bytes, scope_schema, items in scopes
        )
        out.append(
            field_bytes(1, field_bytes(1, resource_bytes) + scoped + field_str(3, resource_schema))
        )
    return b"".join(out)


# --- trace.v1 --------------------------------------------------------------------------

FLAGS_HAS_IS_REMOTE = 0x100
FLAGS_IS_REMOTE = 0x200


def _span_flags(parent: Any) -> int:
    flags = FLAGS_HAS_IS_REMOTE
    if parent is not None and parent.is_remote:
        flags |= FLAGS_IS_REMOTE
    return flags


def _trace_state(trace_state: Any) -> str:
    if trace_state is None:
        return ""
    return ",".join(f"{key}={value}" for key, value in trace_state.items())


def span(sdk_span: Any) -> bytes:
    """``Span`` content from an SDK ``ReadableSpan``."""
    ctx = sdk_span.get_span_context()
    parent = sdk_span.parent
    out = [
        b"\x0a\x10" + ctx.trace_id.to_bytes(16, "big"),
        b"\x12\x08" + ctx.span_id.to_bytes(8, "big"),
        field_str(3, _trace_state(ctx.trace_state)),
    ]
    if parent:
        out.append(b"\x22\x08" + parent.span_id.to_bytes(8, "big"))
    out.append(field_str(5, sdk_span.name))
    out.append(field_varint(6, sdk_span.kind.value + 1))  # SDK INTERNAL=0, proto INTERNAL=1
    out.append(field_fixed64(7, sdk_span.start_time))
    out.append(field_fixed64(8, sdk_span.end_time))
    out.append(key_values(9, sdk_span.attributes))
    out.append(field_varint(10, sdk_span.dropped_attributes))
    for event in sdk_span.events:
        out.append(
            field_bytes(
                11,
                field_fixed64(1, event.timestamp)
                + field_str(2, event.name)
                + key_values(3, event.attributes)
                + field_varint(4, event.dropped_attributes),
            )
        )
    out.append(field_varint(12, sdk_span.dropped_events))
    for link in sdk_span.links:
        out.append(
            field_bytes(
                13,
                b"\x0a\x10"
                + link.context.trace_id.to_bytes(16, "big")
                + b"\x12\x08"
                + link.context.span_id.to_bytes(8, "big")
                + key_values(4, link.attributes)
                + field_varint(5, link.dropped_attributes)
                + field_fixed32(6, _span_flags(link.context)),
            )
        )
    out.append(field_varint(14, sdk_span.dropped_links))
    status = sdk_span.status
    if status is not None:
        out.append(
            field_bytes(
                15, field_str(2, status.description) + field_varint(3, status.status_code.value)
            )
        )
    out.append(field_fixed32(16, _span_flags(parent)))
    return b"".join(out)


class _Cache:
    """Encoded resources and scopes, keyed by identity: a process has one or two."""

    def __init__(self) -> None:
        self._resources: dict[int, tuple[Any, bytes]] = {}
        self._scopes: dict[int, tuple[Any, bytes]] = {}

    def resource(self, sdk_resource: Any) -> bytes:
        hit = self._resources.get(id(sdk_resource))
        if hit is None or hit[0] is not sdk_resource:
            hit = (sdk_resource, resource(sdk_resource.attributes))
            self._resources[id(sdk_resource)] = hit
        return hit[1]

    def scope(self, sdk_scope: Any) -> bytes:
        if sdk_scope is None:
            return b""
        hit = self._scopes.get(id(sdk_scope))
        if hit is None or hit[0] is not sdk_scope:
            hit = (sdk_scope, scope(sdk_scope.name, sdk_scope.version, sdk_scope.attributes))
            self._scopes[id(sdk_scope)] = hit
        return hit[1]


_cache = _Cache()


def export_trace_request(
    sdk_spans: Sequence[Any],
    own_spans: Sequence[bytes] = (),
    resource_bytes: bytes = b"",
    scope_bytes: bytes = b"",
) -> bytes:
    """``ExportTraceServiceRequest``, grouped by resource then scope like the exporter.

    ``own_spans`` are ``Span`` contents already encoded (the invocation spans, ``_span``),
    under ``resource_bytes``/``scope_bytes``; SDK spans (a handler's own) with an equal
    resource and scope share their groups.
    """
    grouped: dict[tuple[bytes, str | None], dict[tuple[bytes, str | None], list[bytes]]] = {}
    if own_spans:
        grouped[(resource_bytes, None)] = {(scope_bytes, None): list(own_spans)}
    for sdk_span in sdk_spans:
        sdk_resource = sdk_span.resource
        by_scope = grouped.setdefault(
            (_cache.resource(sdk_resource), sdk_resource.schema_url or None), {}
        )
        sdk_scope = sdk_span.instrumentation_scope or None
        key = (_cache.scope(sdk_scope), (sdk_scope.schema_url or None) if sdk_scope else None)
        by_scope.setdefault(key, []).append(span(sdk_span))
    return _envelope(
        (
            resource_key[0],
            resource_key[1],
            ((scope_key[0], scope_key[1], items) for scope_key, items in by_scope.items()),
        )
        for resource_key, by_scope in grouped.items()
    )


# --- logs.v1 ---------------------------------------------------------------------------


def log_record(
    observed_ns: int,
    attributes: Mapping[str, Any],
    trace_id: int,
    span_id: int,
    trace_flags: int,
    event_name: str,
    dropped_attributes: int = 0,
    time_ns: int = 0,
) -> bytes:
    """``LogRecord`` content of an event record (no body, no severity, like the SDK's);
    ``time_ns`` is the event's own time when it differs from when it was observed."""
    return b"".join(
        (
            field_fixed64(1, time_ns) if time_ns else b"",
            b"\x2a\x00",  # body: an empty AnyValue, as the exporter writes for body=None
            key_values(6, attributes),
            field_varint(7, dropped_attributes),
            field_fixed32(8, trace_flags),
            b"\x4a\x10" + trace_id.to_bytes(16, "big") if trace_id else b"",
            b"\x52\x08" + span_id.to_bytes(8, "big") if span_id else b"",
            field_fixed64(11, observed_ns),
            field_str(12, event_name),
        )
    )


def export_logs_request(resource_bytes: bytes, scope_bytes: bytes, records: list[bytes]) -> bytes:
    return _envelope([(resource_bytes, None, [(scope_bytes, None, records)])])


# --- metrics.v1 ------------------------------------------------------------------------


def exemplar(time_ns: int, value: int, trace_id: int, span_id: int) -> bytes:
    """``Exemplar`` content of an integer measurement taken inside a sampled span."""
    return (
        field_fixed64(2, time_ns)
        + b"\x22\x08"
        + span_id.to_bytes(8, "big")
        + b"\x2a\x10"
        + trace_id.to_bytes(16, "big")
        + b"\x31"
        + _pack_sfixed64(value)
    )


def number_point(
    attributes_bytes: bytes,
    start_ns: int,
    time_ns: int,
    as_int: int,
    exemplars: Sequence[bytes] = (),
) -> bytes:
    """``NumberDataPoint`` content with an integer value; ``attributes_bytes`` from
    ``key_values(7, attributes)`` (a point's attributes never change: encoded once)."""
    return (
        field_fixed64(2, start_ns)
        + field_fixed64(3, time_ns)
        + b"".join(field_bytes(5, e) for e in exemplars)
        + b"\x31"
        + _pack_sfixed64(as_int)
        + attributes_bytes
    )


NUMBER_POINT_ATTRIBUTES = 7
HISTOGRAM_POINT_ATTRIBUTES = 9


def histogram_point(
    attributes_bytes: bytes,
    start_ns: int,
    time_ns: int,
    count: int,
    total: float,
    bucket_counts: Sequence[int],
    bounds_bytes: bytes,
    minimum: float,
    maximum: float,
) -> bytes:
    """``HistogramDataPoint`` content; ``attributes_bytes`` from ``key_values(9, ...)``,
    ``bounds_bytes`` the packed ``explicit_bounds``.

    ``sum``, ``min`` and ``max`` are proto3 ``optional``: written whenever set, zero too.
    """
    return b"".join(
        (
            field_fixed64(2, start_ns),
            field_fixed64(3, time_ns),
            field_fixed64(4, count),
            b"\x29" + _pack_double(total),
            field_bytes(6, _pack_fixed64s(len(bucket_counts), *bucket_counts)),
            bounds_bytes,
            attributes_bytes,
            b"\x59" + _pack_double(minimum),
            b"\x61" + _pack_double(maximum),
        )
    )


def _pack_fixed64s(count: int, *values: int) -> bytes:
    return Struct(f"<{count}Q").pack(*values)


def packed_doubles(field: int, values: Sequence[float]) -> bytes:
    return field_bytes(field, b"".join(_pack_double(v) for v in values)) if values else b""


def metric_sum(
    name: str, description: str, unit: str, points: list[bytes], temporality: int
) -> bytes:
    """``Metric`` content with a monotonic ``Sum``."""
    body = (
        b"".join(field_bytes(1, p) for p in points)
        + field_varint(2, temporality)
        + b"\x18\x01"  # is_monotonic
    )
    return field_str(1, name) + field_str(2, description) + field_str(3, unit) + field_bytes(7, body)


def metric_histogram(
    name: str, description: str, unit: str, points: list[bytes], temporality: int
) -> bytes:
    """``Metric`` content with an explicit-bucket ``Histogram``."""
    body = b"".join(field_bytes(1, p) for p in points) + field_varint(2, temporality)
    return field_str(1, name) + field_str(2, description) + field_str(3, unit) + field_bytes(9, body)


def export_metrics_request(
    resource_bytes: bytes, scope_bytes: bytes, metrics: list[bytes]
) -> bytes:
    return _envelope([(resource_bytes, None, [(scope_bytes, None, metrics)])])
