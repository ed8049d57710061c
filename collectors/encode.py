"""Build OTLP log requests: records grouped under one ``ResourceLogs`` per resource.

Grouping matters for the storage cost (resource attributes are written once per resource,
not once per record) and for speed.

The records are serialized by hand, straight to protobuf wire bytes, instead of being
built as upb messages and serialized: on the subscription path (tens of thousands of
Lambda log lines per second) each upb field assignment is a Python → C call, and an
invocation record has some twenty attributes, so building messages cost more than all
the parsing around it (profiled: ~60 % of the collector's CPU). Bytes concatenation of
pre-encoded pieces is several times cheaper, and attribute pairs that repeat on every
invocation of a function (platform, region, function, memory, cost center…) are encoded
once and reused.

What is emitted is a strict subset of OTLP that the receiver's validation would accept
unchanged: trace ids are 16 bytes and span ids 8 bytes or absent (a wrong-length id is
left out, never emitted), strings are UTF-8. That is what lets
:func:`obsloop.collectors.forward.intake_submit` hand these payloads to the pipeline
without parsing them again. ``tests/collectors/test_collector_encode.py`` checks the bytes
against what upb builds for the same records.
"""

from __future__ import annotations

import operator
import re
import struct
from collections.abc import Mapping

from opentelemetry.proto.common.v1.common_pb2 import AnyValue

from obsloop.collectors.normalize import ATTRIBUTE_FIELDS, Invocation
from obsloop.core import semconv

SCOPE_NAME = "obsloop.collectors"

AttributeValue = str | bool | int | float

_fixed64 = struct.Struct("<Q").pack
_double = struct.Struct("<d").pack
_SMALL_VARINTS = [bytes([n]) if n < 0x80 else bytes([(n & 0x7F) | 0x80, n >> 7])
                  for n in range(1 << 14)]
"""Pre-encoded varints below 16384: nearly every length on this path."""

# Field tags (field number << 3 | wire type) of the messages written here.
_REQUEST_RESOURCE_LOGS = b"\x0a"  # ExportLogsServiceRequest.resource_logs = 1
_RESOURCE = b"\x0a"  # ResourceLogs.resource = 1
_SCOPE_LOGS = b"\x12"  # ResourceLogs.scope_logs = 2
_RESOURCE_ATTRIBUTE = b"\x0a"  # Resource.attributes = 1
_SCOPE = b"\x0a"  # ScopeLogs.scope = 1
_LOG_RECORD = b"\x12"  # ScopeLogs.log_records = 2
_TIME = b"\x09"  # LogRecord.time_unix_nano = 1 (fixed64)
_SEVERITY_NUMBER = b"\x10"  # LogRecord.severity_number = 2
_SEVERITY_TEXT = b"\x1a"  # LogRecord.severity_text = 3
_BODY = b"\x2a"  # LogRecord.body = 5
_ATTRIBUTE = b"\x32"  # LogRecord.attributes = 6
_TRACE_ID = b"\x4a\x10"  # LogRecord.trace_id = 9, always 16 bytes
_SPAN_ID = b"\x52\x08"  # LogRecord.span_id = 10, always 8 bytes
_EVENT_NAME = b"\x62"  # LogRecord.event_name = 12


def varint(value: int) -> bytes:
    """Protobuf base-128 varint; negative ``int64`` values take their 64-bit two's complement."""
    if 0 <= value < 16384:
        return _SMALL_VARINTS[value]
    value &= 0xFFFFFFFFFFFFFFFF
    out = bytearray()
    while value > 0x7F:
        out.append((value & 0x7F) | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


_SURROGATE = re.compile("[\ud800-\udfff]")


def _utf8(text: str) -> bytes:
    """Protobuf strings must be UTF-8; a lone surrogate (valid in a JSON escape, invalid
    in UTF-8) becomes U+FFFD rather than failing the whole delivery."""
    try:
        return text.encode()
    except UnicodeEncodeError:
        return _SURROGATE.sub("\ufffd", text).encode()


def _time(time_ns: int) -> bytes:
    """``time_unix_nano``; a time outside ``fixed64`` (a source's year 9999) becomes 0,
    OTLP's "unknown", so that one bad field costs the record its time, not the delivery."""
    try:
        return _fixed64(time_ns)
    except struct.error:
        return _fixed64(0)


def _length_delimited(tag: bytes, payload: bytes) -> bytes:
    return tag + varint(len(payload)) + payload


def any_value(value: AttributeValue) -> bytes:
    """The ``AnyValue`` message body; bool before int: ``True`` is an ``int`` in Python
    but a bool in OTLP."""
    if isinstance(value, str):
        return _length_delimited(b"\x0a", _utf8(value))
    if isinstance(value, bool):
        return b"\x10\x01" if value else b"\x10\x00"
    if isinstance(value, int):
        if -(1 << 63) <= value < (1 << 63):
            return b"\x18" + varint(value)
        return b"\x21" + _double(float(value))  # past int64: a double, not a wrapped integer
    if isinstance(value, float):
        return b"\x21" + _double(value)
    return _length_delimited(b"\x0a", _utf8(str(value)))


def key_value(tag: bytes, key: str, value: AttributeValue) -> bytes:
    """One ``KeyValue`` as the repeated field ``tag`` (record or resource attributes)."""
    return _length_delimited(tag, _length_delimited(b"\x0a", _utf8(key))
                             + _length_delimited(b"\x12", any_value(value)))


def attributes_bytes(attributes: Mapping[str, AttributeValue], tag: bytes = _ATTRIBUTE) -> bytes:
    """Encoded ``KeyValue`` fields for ``attributes``."""
    return b"".join([key_value(tag, key, value) for key, value in attributes.items()])


def set_value(target: AnyValue, value: AttributeValue) -> None:
    """Fill a upb ``AnyValue`` (the metrics builder's path); bool before int, as above."""
    if isinstance(value, bool):
        target.bool_value = value
    elif isinstance(value, int):
        target.int_value = value
    elif isinstance(value, float):
        target.double_value = value
    else:
        target.string_value = str(value)


def add_attributes(target, attributes: Mapping[str, AttributeValue]) -> None:
    """Append ``attributes`` to a repeated upb ``KeyValue`` field (metrics builder)."""
    for key, value in attributes.items():
        kv = target.add()
        kv.key = key
        set_value(kv.value, value)


def log_record(
    time_ns: int,
    body: str,
    attributes: bytes = b"",
    *,
    event_name: str = "",
    severity_text: str = "",
    severity_number: int = 0,
    trace_id: bytes | None = None,
    span_id: bytes | None = None,
) -> bytes:
    """One ``LogRecord`` as the ``ScopeLogs.log_records`` field, fields in number order.

    ``attributes`` is already encoded (:func:`attributes_bytes`). An id of the wrong
    length is left out: the receiver would drop the whole record for it."""
    parts = [_TIME, _time(time_ns)]
    if severity_number:
        parts += [_SEVERITY_NUMBER, varint(severity_number)]
    if severity_text:
        parts.append(_length_delimited(_SEVERITY_TEXT, _utf8(severity_text)))
    parts.append(_length_delimited(_BODY, _length_delimited(b"\x0a", _utf8(body))))
    parts.append(attributes)
    if trace_id and len(trace_id) == 16:
        parts += [_TRACE_ID, trace_id]
    if span_id and len(span_id) == 8:
        parts += [_SPAN_ID, span_id]
    if event_name:
        parts.append(_length_delimited(_EVENT_NAME, _utf8(event_name)))
    return _length_delimited(_LOG_RECORD, b"".join(parts))


def line_record(time_ns: int, body: str, invocation_id: str | None) -> bytes:
    """The hot path's plain log line: time, body and maybe ``faas.invocation_id``."""
    body_bytes = _utf8(body)
    value = b"\x0a" + varint(len(body_bytes)) + body_bytes
    record = _TIME + _time(time_ns) + _BODY + varint(len(value)) + value
    if invocation_id:
        global _last_invocation_id
        last_id, encoded = _last_invocation_id
        if last_id != invocation_id:
            encoded = _ATTRIBUTE + _invocation_id_value(invocation_id)
            _last_invocation_id = (invocation_id, encoded)
        record += encoded
    return _LOG_RECORD + varint(len(record)) + record


_last_invocation_id: tuple[str, bytes] = ("", b"")
"""The last line's encoded invocation id: an invocation's START, function lines and END
arrive together and share it (one tuple, replaced whole, so threads never see it torn)."""


_INVOCATION_ID_KEY = _length_delimited(b"\x0a", semconv.FAAS_INVOCATION_ID.encode())


def _invocation_id_value(invocation_id: str) -> bytes:
    """Length-prefixed ``KeyValue`` body ``faas.invocation_id = invocation_id``."""
    value = _utf8(invocation_id)
    any_string = b"\x0a" + varint(len(value)) + value
    kv = _INVOCATION_ID_KEY + b"\x12" + varint(len(any_string)) + any_string
    return varint(len(kv)) + kv


_PER_INVOCATION = ("invocation_id", "duration_ms", "billed_duration_ms", "memory_used_mb",
                   "init_duration_ms", "cost_usd")
"""Fields that differ on every invocation; every other attribute field (platform, region,
function, version, source, status, model, cost center, memory …) repeats across the
invocations of one function, so their encoding is computed once per distinct combination."""
_STATIC_FIELDS = tuple(name for name, _ in ATTRIBUTE_FIELDS if name not in _PER_INVOCATION)
_static_values = operator.attrgetter(*_STATIC_FIELDS, "memory_mb")
_fresh_values = operator.attrgetter(*_PER_INVOCATION)
_KEYS = dict(ATTRIBUTE_FIELDS)
_FRESH_KEY_FIELDS = tuple(_length_delimited(b"\x0a", _KEYS[name].encode()) for name in _PER_INVOCATION)
_FRESH_FLOAT_PREFIXES = tuple(_ATTRIBUTE + varint(len(key) + 11) + key + b"\x12\x09\x21"
                              for key in _FRESH_KEY_FIELDS)
"""Everything before the 8 value bytes of a ``KeyValue`` holding a double: fixed length."""
_RESOURCE_LEVEL_KEYS = tuple(_KEYS[name] for name in
                             ("platform", "provider", "region", "account_id", "function", "version"))
"""Invocation facts that are resource attributes too (:meth:`Invocation.resource`). A record
under a resource that already says the same is not told again: every reader takes a record
attribute with the resource's as fallback (``coalesce(LogAttributes[k], ResourceAttributes[k])``,
the ``faas_invocations`` view, the detectors, the dashboards), so no result changes, and
they were a third of an invocation record's attributes, parsed, stored and merged by
ClickHouse for nothing."""
_CACHE_LIMIT = 4096
_static_cache: dict[tuple, bytes] = {}


def _static_attributes(values: tuple, on_resource: tuple) -> bytes:
    """Encoded attributes of the repeating fields (``values`` from ``_static_values``),
    without those the resource holds with the same value (``on_resource``: its values of
    ``_RESOURCE_LEVEL_KEYS``). The cache is bounded (cleared when full), so distinct
    combinations never grow it without limit. ``True`` and ``1`` hash alike, but no field
    holds both a bool and an int."""
    key = (values, on_resource)
    encoded = _static_cache.get(key)
    if encoded is None:
        if len(_static_cache) >= _CACHE_LIMIT:
            _static_cache.clear()
        *fields, memory_mb = values
        told = dict(zip(_RESOURCE_LEVEL_KEYS, on_resource, strict=True))
        attributes = {_KEYS[name]: value for name, value in zip(_STATIC_FIELDS, fields, strict=True)
                      if value is not None and told.get(_KEYS[name]) != value}
        if memory_mb is not None:  # the semantic convention counts bytes
            attributes[semconv.FAAS_MAX_MEMORY] = memory_mb * 1024 * 1024
        encoded = _static_cache[key] = attributes_bytes(attributes)
    return encoded


def _fresh_key_value(key_field: bytes, value: AttributeValue) -> bytes:
    """``key_value`` with the key's field pre-encoded: only the key of a per-invocation
    attribute can be reused."""
    if type(value) is str:
        text = _utf8(value)
        any_bytes = b"\x0a" + varint(len(text)) + text
    else:
        any_bytes = any_value(value)
    kv = key_field + b"\x12" + varint(len(any_bytes)) + any_bytes
    return _ATTRIBUTE + varint(len(kv)) + kv


_INVOCATION_ID_FIELD = _FRESH_KEY_FIELDS[0]
_FRESH_NUMBERS = tuple(zip(_FRESH_KEY_FIELDS[1:], _FRESH_FLOAT_PREFIXES[1:], strict=True))
"""(key field, double prefix) of the per-invocation numbers, after ``invocation_id``."""
_DURATION, _BILLED, _USED, _INIT, _COST = _FRESH_FLOAT_PREFIXES[1:]
_pack_warm = struct.Struct(f"<{len(_DURATION)}sd{len(_BILLED)}sd{len(_USED)}sd{len(_COST)}sd").pack
_pack_cold = struct.Struct(f"<{len(_DURATION)}sd{len(_BILLED)}sd{len(_USED)}sd{len(_INIT)}sd"
                           f"{len(_COST)}sd").pack
"""The numbers of a priced Lambda REPORT, warm and cold start, in one ``pack`` each."""


def _numbers_bytes(duration: AttributeValue | None, billed: AttributeValue | None, used: AttributeValue | None,
                  init: AttributeValue | None, cost: AttributeValue | None) -> bytes:
    """The per-invocation numbers' ``KeyValue`` fields, absent ones left out."""
    if type(duration) is float and type(billed) is float and type(used) is float and type(cost) is float:
        if init is None:
            return _pack_warm(_DURATION, duration, _BILLED, billed, _USED, used, _COST, cost)
        if type(init) is float:
            return _pack_cold(_DURATION, duration, _BILLED, billed, _USED, used, _INIT, init, _COST, cost)
    parts = []
    for (key_field, float_prefix), value in zip(_FRESH_NUMBERS, (duration, billed, used, init, cost),
                                                strict=True):
        if value is None:
            continue
        if type(value) is float:
            parts.append(float_prefix + _double(value))
        else:
            parts.append(_fresh_key_value(key_field, value))
    return b"".join(parts)


def _invocation_id_bytes(invocation_id: AttributeValue) -> bytes:
    """The ``faas.invocation_id`` field. It was usually just encoded for the invocation's
    ``END`` line (the same ``KeyValue`` bytes :func:`line_record` caches), so it is
    reused from there."""
    global _last_invocation_id
    if type(invocation_id) is not str:
        return _fresh_key_value(_INVOCATION_ID_FIELD, invocation_id)
    last_id, encoded = _last_invocation_id
    if last_id != invocation_id:
        encoded = _fresh_key_value(_INVOCATION_ID_FIELD, invocation_id)
        _last_invocation_id = (invocation_id, encoded)
    return encoded


_INVOCATION_EVENT_NAME = _length_delimited(_EVENT_NAME, semconv.INVOCATION_REPORT_EVENT.encode())


class LogsBuilder:
    """Accumulates encoded records per resource; :meth:`serialize` returns the request bytes."""

    def __init__(self, scope_name: str = SCOPE_NAME) -> None:
        self._groups: dict[tuple[tuple[str, str], ...], tuple[bytes, list[bytes], tuple]] = {}
        self._scope = _length_delimited(_SCOPE, _length_delimited(b"\x0a", _utf8(scope_name)))
        self._last: tuple[Mapping[str, str] | None, list[bytes], tuple] = (None, [], ())
        self.count = 0

    def records(self, resource: Mapping[str, str]) -> list[bytes]:
        """The list of encoded records of ``resource``, created on first use; appending an
        encoded record (:func:`line_record`) to it is the cheapest way in, the caller then
        adds to :attr:`count`. The mapping passed last is recognised by identity (a log
        stream passes the same one for each of its lines), so it must not change after."""
        return self._group(resource)[0]

    def _group(self, resource: Mapping[str, str]) -> tuple[list[bytes], tuple]:
        """(records, the resource's values of the invocation facts it can hold)."""
        last, records, on_resource = self._last
        if resource is last:
            return records, on_resource
        key = tuple(sorted(resource.items()))
        group = self._groups.get(key)
        if group is None:
            encoded = _length_delimited(_RESOURCE, attributes_bytes(resource, _RESOURCE_ATTRIBUTE))
            on_resource = tuple(map(resource.get, _RESOURCE_LEVEL_KEYS))
            group = self._groups[key] = (encoded, [], on_resource)
        self._last = (resource, group[1], group[2])
        return group[1], group[2]

    def add(
        self,
        resource: Mapping[str, str],
        *,
        time_ns: int,
        body: str,
        attributes: Mapping[str, AttributeValue] | None = None,
        event_name: str = "",
        severity_text: str = "",
        severity_number: int = 0,
        trace_id: bytes | None = None,
        span_id: bytes | None = None,
    ) -> None:
        self.records(resource).append(log_record(
            time_ns, body, attributes_bytes(attributes) if attributes else b"",
            event_name=event_name, severity_text=severity_text, severity_number=severity_number,
            trace_id=trace_id, span_id=span_id,
        ))
        self.count += 1

    def add_invocation(
        self, invocation: Invocation, body: str = "", resource: Mapping[str, str] | None = None
    ) -> None:
        """One normalized invocation report (the ``faas_invocations`` input); ``resource``
        defaults to the invocation's own, a log stream passes its richer one."""
        # log_record's fields in the same order, its optional ones known absent here;
        # attributes as Invocation.attributes() gives them, less what the resource holds
        records, on_resource = self._group(resource or invocation.resource())
        invocation_id, *numbers = _fresh_values(invocation)
        body_bytes = _utf8(body)
        value = b"\x0a" + varint(len(body_bytes)) + body_bytes
        parts = [_TIME, _time(invocation.time_ns), _BODY, varint(len(value)), value,
                 _static_attributes(_static_values(invocation), on_resource),
                 b"" if invocation_id is None else _invocation_id_bytes(invocation_id),
                 _numbers_bytes(*numbers)]
        trace_id, span_id = invocation.trace_id, invocation.span_id
        if trace_id and len(trace_id) == 16:
            parts += (_TRACE_ID, trace_id)
        if span_id and len(span_id) == 8:
            parts += (_SPAN_ID, span_id)
        parts.append(_INVOCATION_EVENT_NAME)
        record = b"".join(parts)
        records.append(_LOG_RECORD + varint(len(record)) + record)
        self.count += 1

    def add_raw(self, resource: Mapping[str, str], time_ns: int, raw: str, reason: str) -> None:
        """Keep an unparseable input verbatim: losing it would hide the very data to debug."""
        self.add(
            resource,
            time_ns=time_ns,
            body=raw,
            attributes={"obsloop.parse_error": reason},
            event_name=semconv.RAW_RECORD_EVENT,
            severity_text="WARN",
            severity_number=13,
        )

    def serialize(self) -> bytes:
        """The ``ExportLogsServiceRequest`` bytes (resources without records left out),
        joined once: the records are the bulk of the payload and are not copied per level."""
        pieces: list[bytes] = []
        for resource, records, _ in self._groups.values():
            if not records:
                continue
            scope_logs_length = len(self._scope) + sum(map(len, records))
            scope_logs_header = _SCOPE_LOGS + varint(scope_logs_length)
            resource_logs_length = len(resource) + len(scope_logs_header) + scope_logs_length
            pieces += (_REQUEST_RESOURCE_LOGS, varint(resource_logs_length), resource,
                       scope_logs_header, self._scope)
            pieces += records
        return b"".join(pieces)
