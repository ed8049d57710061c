"""Lambda log lines (text and JSON format) and Telemetry API events into OTLP log records.

The same facts arrive in three shapes: the text ``START`` / ``END`` / ``REPORT`` lines of
the default log format, JSON ``platform.*`` records when the function uses the JSON log
format, and the Telemetry API events an extension receives (the JSON records are the
Telemetry API schema). All three end in one :class:`Invocation` per ``REPORT`` /
``platform.report``, so ``faas_invocations`` merges them by request id.

Every input line also stays a log record: an unparseable platform line is kept verbatim
as a raw record (and counted) rather than dropped or allowed to stop the batch.
"""

from __future__ import annotations

import contextlib
import json
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import datetime

from obsloop.collectors.encode import LogsBuilder, line_record
from obsloop.collectors.normalize import Invocation, span_id, xray_parent_id, xray_trace_id
from obsloop.core import semconv

LOG_GROUP_PREFIX = "/aws/lambda/"
AWS_LOG_GROUP = "aws.log.group.names"
AWS_LOG_STREAM = "aws.log.stream.names"
EVENT_PREFIX = "aws.lambda."
"""``event_name`` of a platform event kept as a plain record: ``aws.lambda.platform.start``."""

_STREAM_VERSION = re.compile(r"\[([^\]]+)\]([0-9a-fA-F]+)$")
_SEVERITY = {"TRACE": 1, "DEBUG": 5, "INFO": 9, "WARN": 13, "WARNING": 13, "ERROR": 17,
             "FATAL": 21, "CRITICAL": 21}
_UUID_LEN = 36


@dataclass(slots=True)
class LambdaSource:
    """Where a batch of lines came from: one function instance's log stream."""

    function: str
    account_id: str | None
    region: str | None
    version: str | None = None
    instance: str | None = None
    log_group: str | None = None
    log_stream: str | None = None

    @classmethod
    def from_log_stream(
        cls, log_group: str, log_stream: str, account_id: str | None, region: str | None
    ) -> LambdaSource:
        """``/aws/lambda/<fn>`` and ``2024/01/01/[$LATEST]<instance>`` name the function,
        version and instance; a custom log group name is used as the function name."""
        function = log_group.removeprefix(LOG_GROUP_PREFIX)
        match = _STREAM_VERSION.search(log_stream)
        return cls(
            function=function,
            account_id=account_id,
            region=region,
            version=match.group(1) if match else None,
            instance=match.group(2) if match else None,
            log_group=log_group,
            log_stream=log_stream,
        )

    def resource(self) -> dict[str, str]:
        resource = {
            semconv.SERVICE_NAME: self.function,
            semconv.CLOUD_PROVIDER: semconv.PROVIDER_AWS,
            semconv.CLOUD_PLATFORM: semconv.PLATFORM_AWS_LAMBDA,
            semconv.FAAS_NAME: self.function,
        }
        for key, value in (
            (semconv.CLOUD_REGION, self.region),
            (semconv.CLOUD_ACCOUNT_ID, self.account_id),
            (semconv.FAAS_VERSION, self.version),
            (semconv.FAAS_INSTANCE, self.instance),
            (AWS_LOG_GROUP, self.log_group),
            (AWS_LOG_STREAM, self.log_stream),
        ):
            if value:
                resource[key] = value
        return resource

    def invocation(self, request_id: str, time_ns: int, collector: str) -> Invocation:
        return Invocation(
            platform=semconv.PLATFORM_AWS_LAMBDA,
            provider=semconv.PROVIDER_AWS,
            function=self.function,
            invocation_id=request_id,
            time_ns=time_ns,
            source=collector,
            region=self.region,
            account_id=self.account_id,
            version=self.version,
        )


class MalformedLine(ValueError):
    """A platform line whose shape is known but whose fields cannot be read."""


def _number(text: str) -> float:
    return float(text.split(" ", 1)[0])


def parse_report_line(message: str) -> dict[str, str]:
    """``REPORT RequestId: …\\tDuration: 102.25 ms\\t…\\nXRAY TraceId: …`` as a dict keyed
    by the field names Lambda prints (``Duration``, ``Billed Duration``, ``TraceId`` …)."""
    fields: dict[str, str] = {}
    for part in message.replace("\n", "\t").split("\t"):
        key, sep, value = part.partition(": ")
        if sep:
            fields[key.removeprefix("REPORT ").removeprefix("XRAY ").strip()] = value.strip()
    return fields


_REPORT = re.compile(
    r"REPORT RequestId: ([^\t\n]+)\tDuration: ([0-9.]+) ms\tBilled Duration: ([0-9]+) ms\t"
    r"Memory Size: ([0-9]+) MB\tMax Memory Used: ([0-9]+) MB\t(?:Init Duration: ([0-9.]+) ms\t)?"
    r"\s*(?:XRAY TraceId: 1-([0-9a-fA-F]{8})-([0-9a-fA-F]{24})\tSegmentId: ([0-9a-fA-F]{16})\t"
    r"(?:Sampled: (?:true|false)\t?)?)?\s*"
)
"""The REPORT line as Lambda prints it for a successful invocation, X-Ray part optional:
one match instead of splitting every field, on the line that costs the most per event.
Anything else (``Status:``, ``Error Type:``, field order changes) takes the general parser."""


def report_invocation(
    message: str, time_ns: int, source: LambdaSource, collector: str
) -> Invocation:
    match = _REPORT.fullmatch(message)
    if match is None:
        return _report_invocation_fields(message, time_ns, source, collector)
    request_id, duration, billed, memory, used, init, trace_a, trace_b, segment = match.groups()
    # Positional, in field order (platform … status): what source.invocation() and six
    # assignments after it would give, at a third of the cost on the busiest line.
    invocation = Invocation(
        semconv.PLATFORM_AWS_LAMBDA, source.function, request_id, time_ns, collector,
        semconv.PROVIDER_AWS, source.region, source.account_id, source.version,
        float(duration), float(billed), int(memory), float(used),
        None if init is None else float(init), init is not None, "success",
    )
    if trace_a is not None:
        invocation.trace_id = bytes.fromhex(trace_a + trace_b)
        invocation.span_id = bytes.fromhex(segment)
    return invocation


def _report_invocation_fields(
    message: str, time_ns: int, source: LambdaSource, collector: str
) -> Invocation:
    """Any REPORT line, field by field: older and newer formats, ``Status`` and
    ``Error Type`` of failed invocations, unknown fields ignored."""
    fields = parse_report_line(message)
    request_id = fields.get("RequestId")
    if not request_id or "Duration" not in fields:
        raise MalformedLine("REPORT line without RequestId or Duration")
    try:
        invocation = source.invocation(request_id, time_ns, collector)
        invocation.duration_ms = _number(fields["Duration"])
        if "Billed Duration" in fields:
            invocation.billed_duration_ms = _number(fields["Billed Duration"])
        if "Memory Size" in fields:
            invocation.memory_mb = int(_number(fields["Memory Size"]))
        if "Max Memory Used" in fields:
            invocation.memory_used_mb = _number(fields["Max Memory Used"])
        init = fields.get("Init Duration")
        invocation.init_duration_ms = _number(init) if init else None
    except ValueError as exc:
        raise MalformedLine(f"REPORT field is not a number: {exc}") from None
    invocation.coldstart = init is not None
    status = fields.get("Status")
    invocation.status = status or "success"
    invocation.error_type = fields.get("Error Type")
    if trace := fields.get("TraceId"):
        invocation.trace_id = xray_trace_id(trace)
    if segment := fields.get("SegmentId"):
        invocation.span_id = span_id(segment) if len(segment) == 16 else None
    return invocation


def iso_ns(text: str) -> int:
    return int(datetime.fromisoformat(text).timestamp() * 1_000_000) * 1000


def platform_invocation(
    event: dict, source: LambdaSource, collector: str
) -> Invocation | None:
    """An Invocation from ``platform.start`` (version, trace) or ``platform.report``
    (metrics, status); other platform events carry nothing for ``faas_invocations``."""
    kind = event.get("type")
    if kind not in ("platform.report", "platform.start"):
        return None
    record = event.get("record")
    if not isinstance(record, dict) or not record.get("requestId"):
        raise MalformedLine(f"{kind} without record.requestId")
    try:
        invocation = source.invocation(record["requestId"], iso_ns(event["time"]), collector)
    except (KeyError, TypeError, ValueError) as exc:
        raise MalformedLine(f"{kind} without a valid time: {exc}") from None
    tracing = record.get("tracing") or {}
    if isinstance(tracing, dict) and isinstance(tracing.get("value"), str):
        invocation.trace_id = xray_trace_id(tracing["value"])
        invocation.span_id = xray_parent_id(tracing["value"])
    if kind == "platform.start":
        invocation.version = record.get("version") or invocation.version
        return invocation
    metrics = record.get("metrics") or {}
    try:
        invocation.duration_ms = float(metrics["durationMs"])
        invocation.billed_duration_ms = float(metrics["billedDurationMs"])
        invocation.memory_mb = int(metrics["memorySizeMB"])
        invocation.memory_used_mb = float(metrics["maxMemoryUsedMB"])
        init = metrics.get("initDurationMs")
        invocation.init_duration_ms = None if init is None else float(init)
    except (KeyError, TypeError, ValueError) as exc:
        raise MalformedLine(f"platform.report metrics incomplete: {exc}") from None
    invocation.coldstart = invocation.init_duration_ms is not None
    invocation.status = record.get("status") or "success"
    invocation.error_type = record.get("errorType")
    return invocation


class LambdaLogDecoder:
    """Turns Lambda lines/events into records on a :class:`LogsBuilder`.

    ``enrich`` fills model, cost center and cost on each invocation before it is encoded.
    ``malformed`` counts inputs kept as raw records.
    """

    def __init__(self, enrich: Callable[[Invocation], Invocation], collector: str) -> None:
        self.enrich = enrich
        self.collector = collector
        self.malformed = 0
        self.invocations = 0

    def _invocation(
        self, builder: LogsBuilder, invocation: Invocation, body: str, resource: dict
    ) -> None:
        builder.add_invocation(self.enrich(invocation), body, resource)
        self.invocations += 1

    def _raw(self, builder: LogsBuilder, resource: dict, time_ns: int, raw: str, why: str) -> None:
        builder.add_raw(resource, time_ns, raw, why)
        self.malformed += 1

    def add_cloudwatch_events(
        self, builder: LogsBuilder, source: LambdaSource, events: Iterable[tuple[int, str]]
    ) -> None:
        """``(timestamp_ms, message)`` pairs of one log stream (a subscription payload or a
        ``filter_log_events`` page); the hot path, so plain lines take the fewest steps."""
        resource = source.resource()
        records = builder.records(resource)
        append = records.append
        plain = 0
        for timestamp_ms, message in events:
            time_ns = timestamp_ms * 1_000_000
            head = message[:7]
            if head == "REPORT ":
                try:
                    invocation = report_invocation(message, time_ns, source, self.collector)
                except MalformedLine as exc:
                    self._raw(builder, resource, time_ns, message, str(exc))
                    continue
                self._invocation(builder, invocation, message.rstrip(), resource)
                continue
            if head[0:1] == "{":
                self._add_json_line(builder, source, resource, time_ns, message)
                continue
            append(line_record(time_ns, message, _request_id(message)))
            plain += 1
        builder.count += plain

    def _add_json_line(
        self, builder: LogsBuilder, source: LambdaSource, resource: dict, time_ns: int,
        message: str,
    ) -> None:
        try:
            document = json.loads(message)
        except ValueError:
            document = None
        if not isinstance(document, dict):  # function output that merely starts with "{"
            builder.add(resource, time_ns=time_ns, body=message)
            return
        kind = document.get("type")
        if isinstance(kind, str) and kind.startswith("platform."):
            self.add_platform_event(builder, source, resource, time_ns, document, message)
        else:
            self._add_function_json(builder, resource, time_ns, document, message)

    def add_platform_event(
        self, builder: LogsBuilder, source: LambdaSource, resource: dict, time_ns: int,
        event: dict, raw: str,
    ) -> None:
        """A ``platform.*`` event (JSON log line or Telemetry API): an invocation record
        for ``start`` / ``report``, a plain record named after its type otherwise."""
        try:
            invocation = platform_invocation(event, source, self.collector)
        except MalformedLine as exc:
            self._raw(builder, resource, time_ns, raw, str(exc))
            return
        if invocation is not None:
            self._invocation(builder, invocation, raw, resource)
            return
        record = event.get("record")
        attributes = {}
        if isinstance(record, dict) and record.get("requestId"):
            attributes[semconv.FAAS_INVOCATION_ID] = str(record["requestId"])
        with contextlib.suppress(KeyError, TypeError, ValueError):
            time_ns = iso_ns(event["time"])
        builder.add(resource, time_ns=time_ns, body=raw, attributes=attributes,
                    event_name=EVENT_PREFIX + str(event["type"]))

    def _add_function_json(
        self, builder: LogsBuilder, resource: dict, time_ns: int, document: dict, raw: str
    ) -> None:
        level = str(document.get("level", "")).upper()
        message = document.get("message")
        attributes = {}
        if document.get("requestId"):
            attributes[semconv.FAAS_INVOCATION_ID] = str(document["requestId"])
        builder.add(
            resource,
            time_ns=time_ns,
            body=message if isinstance(message, str) else raw,
            attributes=attributes,
            severity_text=level if level in _SEVERITY else "",
            severity_number=_SEVERITY.get(level, 0),
        )


def _request_id(message: str) -> str | None:
    """The request id of ``START`` / ``END`` lines and of runtime-formatted function lines
    (``<time>\\t<request id>\\t<LEVEL>\\t…``, Python's ``[LEVEL]\\t<time>\\t<id>\\t…``), so
    function logs join their invocation; cheap checks first because most lines have none."""
    if message.startswith(("START RequestId: ", "END RequestId: ")):
        start = message.index(": ") + 2
        return message[start : start + _UUID_LEN] if len(message) >= start + _UUID_LEN else None
    tab = message.find("\t")
    if tab < 0:
        return None
    end = tab + 1 + _UUID_LEN  # the runtime format first: the id right after the first tab
    candidate = message[tab + 1 : end]
    if (message[end : end + 1] in ("\t", "") and len(candidate) == _UUID_LEN
            and candidate.count("-") == 4 and "\t" not in candidate):
        return candidate
    parts = message.split("\t", 3)
    for candidate in parts[1:3]:
        if len(candidate) == _UUID_LEN and candidate.count("-") == 4:
            return candidate
    return None
