"""Build OTLP log requests: records grouped under one ``ResourceLogs`` per resource.

Grouping matters for the storage cost (resource attributes are written once per resource,
not once per record) and for speed: the hot subscription path appends bare records to an
existing scope instead of building attribute lists per event.
"""

from __future__ import annotations

from collections.abc import Mapping

from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue
from opentelemetry.proto.logs.v1.logs_pb2 import LogRecord, ScopeLogs

from obsloop import semconv
from obsloop.collectors.normalize import Invocation

SCOPE_NAME = "obsloop.collectors"

AttributeValue = str | bool | int | float


def set_value(target: AnyValue, value: AttributeValue) -> None:
    """bool before int: ``True`` is an ``int`` in Python but a bool in OTLP."""
    if isinstance(value, bool):
        target.bool_value = value
    elif isinstance(value, int):
        target.int_value = value
    elif isinstance(value, float):
        target.double_value = value
    else:
        target.string_value = str(value)


def add_attributes(target, attributes: Mapping[str, AttributeValue]) -> None:
    """Append ``attributes`` to a repeated ``KeyValue`` field."""
    for key, value in attributes.items():
        kv: KeyValue = target.add()
        kv.key = key
        set_value(kv.value, value)


class LogsBuilder:
    """Accumulates records per resource; :meth:`build` returns one export request."""

    def __init__(self, scope_name: str = SCOPE_NAME) -> None:
        self._request = ExportLogsServiceRequest()
        self._scopes: dict[tuple[tuple[str, str], ...], ScopeLogs] = {}
        self._scope_name = scope_name
        self.count = 0

    def scope(self, resource: Mapping[str, str]) -> ScopeLogs:
        """The ``ScopeLogs`` for ``resource``, created on first use."""
        key = tuple(sorted(resource.items()))
        scope = self._scopes.get(key)
        if scope is None:
            resource_logs = self._request.resource_logs.add()
            add_attributes(resource_logs.resource.attributes, resource)
            scope = resource_logs.scope_logs.add()
            scope.scope.name = self._scope_name
            self._scopes[key] = scope
        return scope

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
    ) -> LogRecord:
        record = self.scope(resource).log_records.add()
        record.time_unix_nano = time_ns
        record.body.string_value = body
        if attributes:
            add_attributes(record.attributes, attributes)
        if event_name:
            record.event_name = event_name
        if severity_text:
            record.severity_text = severity_text
            record.severity_number = severity_number
        if trace_id:
            record.trace_id = trace_id
        if span_id:
            record.span_id = span_id
        self.count += 1
        return record

    def add_invocation(
        self, invocation: Invocation, body: str = "", resource: Mapping[str, str] | None = None
    ) -> LogRecord:
        """One normalized invocation report (the ``faas_invocations`` input); ``resource``
        defaults to the invocation's own, a log stream passes its richer one."""
        return self.add(
            resource or invocation.resource(),
            time_ns=invocation.time_ns,
            body=body,
            attributes=invocation.attributes(),
            event_name=semconv.INVOCATION_REPORT_EVENT,
            trace_id=invocation.trace_id,
            span_id=invocation.span_id,
        )

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

    def build(self) -> ExportLogsServiceRequest:
        return self._request
