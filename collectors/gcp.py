"""Cloud Run and Cloud Functions log entries through ``google-cloud-logging`` ``list_entries``.

Entries are read in ascending ``timestamp`` order between the checkpoint and ``now -
settle`` (Cloud Logging makes entries visible a few seconds after their timestamp). The
checkpoint is the last accepted timestamp plus the ``insertId``s seen at exactly that
timestamp, so a restart re-reads from that instant and drops only what it already sent.

Request logs (``httpRequest``) become invocation reports: latency, status, the
``trace`` / ``spanId`` linking them to traces; every entry also stays a log record.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from itertools import islice

from obsloop.collectors import selfmetrics
from obsloop.collectors.checkpoint import CheckpointStore
from obsloop.collectors.config import GcpCollectorConfig
from obsloop.collectors.cursor import Batch, CursorPuller, Page
from obsloop.collectors.encode import LogsBuilder
from obsloop.collectors.extras import require
from obsloop.collectors.forward import Submit
from obsloop.collectors.normalize import Invocation, gcp_trace_id, span_id
from obsloop.collectors.registry import CollectorKind, PullContext, Scheduled
from obsloop.core import semconv

COLLECTOR = "gcp.logging"
DEFAULT_FILTER = 'resource.type = ("cloud_run_revision" OR "cloud_function")'
_SEVERITY = {"DEFAULT": 0, "DEBUG": 5, "INFO": 9, "NOTICE": 10, "WARNING": 13, "ERROR": 17,
             "CRITICAL": 21, "ALERT": 22, "EMERGENCY": 23}


def make_client(project: str, endpoint: str | None = None):
    """A Cloud Logging client over HTTP/JSON; ``endpoint`` points it elsewhere (tests)."""
    logging_v2 = require("google.cloud.logging", "gcp")
    kwargs: dict = {"project": project, "_use_grpc": False}
    if endpoint:
        credentials = require("google.auth.credentials", "gcp").AnonymousCredentials()
        kwargs.update(credentials=credentials, client_options={"api_endpoint": endpoint})
    return logging_v2.Client(**kwargs)


def classify_google_error(exc: Exception) -> str | None:
    exceptions = require("google.api_core.exceptions", "gcp")
    if isinstance(exc, exceptions.TooManyRequests | exceptions.ResourceExhausted):
        return "throttled"
    if isinstance(exc, exceptions.ServerError):
        return "5xx"
    if isinstance(exc, ConnectionError):
        return "connection"
    return None


def _platform(resource_type: str, labels: dict[str, str]) -> str | None:
    if resource_type == "cloud_function":
        return semconv.PLATFORM_GCP_CLOUD_FUNCTIONS
    if resource_type == "cloud_run_revision":
        if labels.get("goog-managed-by") == "cloudfunctions":
            return semconv.PLATFORM_GCP_CLOUD_FUNCTIONS
        return semconv.PLATFORM_GCP_CLOUD_RUN
    return None


def _latency_ms(text: object) -> float | None:
    """``"0.123456s"`` (the JSON form of a protobuf Duration)."""
    if isinstance(text, str) and text.endswith("s"):
        try:
            return float(text[:-1]) * 1000
        except ValueError:
            return None
    return None


def entry_to_records(entry, builder: LogsBuilder, enrich: Callable[[Invocation], Invocation]
                     ) -> None:
    """One ``LogEntry`` as a log record, plus an invocation report for request logs."""
    resource_type = entry.resource.type if entry.resource else ""
    labels = dict(entry.resource.labels or {}) if entry.resource else {}
    entry_labels = dict(entry.labels or {})
    platform = _platform(resource_type, {**labels, **entry_labels})
    function = labels.get("service_name") or labels.get("function_name") or resource_type
    region = labels.get("location") or labels.get("region")
    project = labels.get("project_id")
    version = labels.get("revision_name")
    resource = {semconv.SERVICE_NAME: function, semconv.CLOUD_PROVIDER: semconv.PROVIDER_GCP,
                semconv.FAAS_NAME: function}
    for key, value in ((semconv.CLOUD_PLATFORM, platform), (semconv.CLOUD_REGION, region),
                       (semconv.CLOUD_ACCOUNT_ID, project), (semconv.FAAS_VERSION, version)):
        if value:
            resource[key] = value
    time_ns = int(entry.timestamp.timestamp() * 1_000_000) * 1000 if entry.timestamp else 0
    trace = gcp_trace_id(entry.trace) if entry.trace else None
    span = span_id(entry.span_id) if entry.span_id else None
    payload = entry.payload
    body = payload if isinstance(payload, str) else json.dumps(payload, default=str)
    severity = str(entry.severity or "")
    http = entry.http_request or {}
    execution_id = entry_labels.get("execution_id")
    attributes = {"gcp.log.insert_id": entry.insert_id or ""}
    if execution_id:
        attributes[semconv.FAAS_INVOCATION_ID] = execution_id
    builder.add(resource, time_ns=time_ns, body=body or "", attributes=attributes,
                severity_text=severity, severity_number=_SEVERITY.get(severity, 0),
                trace_id=trace, span_id=span)
    latency = _latency_ms(http.get("latency"))
    if not http or platform is None or latency is None:
        return
    status = int(http.get("status") or 0)
    invocation = Invocation(
        platform=platform, provider=semconv.PROVIDER_GCP, function=function,
        invocation_id=execution_id or (entry.trace and f"{entry.trace}/{entry.span_id}")
        or entry.insert_id or "",
        time_ns=time_ns, source=COLLECTOR, region=region, account_id=project, version=version,
        duration_ms=latency, http_status=status or None, trigger="http",
        status="error" if status >= 500 else "success",
        error_type=f"HTTP {status}" if status >= 500 else None,
        trace_id=trace, span_id=span,
    )
    builder.add_invocation(enrich(invocation), "", resource)


class CloudLoggingPuller(CursorPuller):
    collector = COLLECTOR

    def __init__(
        self,
        client,
        checkpoints: CheckpointStore,
        submit: Submit,
        enrich: Callable[[Invocation], Invocation],
        *,
        project: str,
        log_filter: str = DEFAULT_FILTER,
        initial_start: datetime,
        settle_s: float = 10.0,
        page_size: int = 1000,
        sleep: Callable[[float], None] = time.sleep,
        clock: Callable[[], float] = time.time,
    ) -> None:
        super().__init__(checkpoints, submit, sleep=sleep, clock=clock)
        self.client = client
        self.enrich = enrich
        self.project = project
        self.log_filter = log_filter
        self.initial_start = initial_start
        self.settle_s = settle_s
        self.page_size = page_size
        self._until = ""
        self._entries: Iterator | None = None

    def _state(self, saved: dict | None) -> tuple[str, set[str]]:
        if saved is None:
            return self.initial_start.astimezone(UTC).isoformat(), set()
        return saved["timestamp"], set(saved["ids"])

    def progress(self) -> tuple[float, float]:
        start = self.initial_start.timestamp()
        done = datetime.fromisoformat(self._state(self.checkpoints.get(self.project))[0]).timestamp() - start
        return max(0.0, done), max(0.0, self.clock() - start)

    def classify(self, exc: Exception) -> str | None:
        return classify_google_error(exc)

    def sources(self) -> list[str]:
        return [self.project]

    def begin(self, project: str) -> None:
        self._until = datetime.fromtimestamp(self.clock() - self.settle_s, UTC).isoformat()
        self._entries = None

    def next_page(self, project: str, saved: dict | None) -> Page | None:
        """The next ``page_size`` entries of one query per poll; after a failure the query
        restarts from the checkpoint (the client's entry generator cannot resume after an error)."""
        since, seen = self._state(saved)
        entries = self.retry(lambda: self._next_batch(since))
        if not entries:
            return None
        batch = self._encode(entries, since, seen)
        last = entries[-1].timestamp.astimezone(UTC).isoformat()
        if last != since:
            since, seen = last, set()
        seen.update(e.insert_id for e in entries if e.timestamp.astimezone(UTC).isoformat() == since)
        return Page({"timestamp": since, "ids": sorted(seen)}, batch,
                    more=len(entries) == self.page_size, newest=entries[-1].timestamp.timestamp())

    def _next_batch(self, since: str) -> list:
        if self._entries is None:
            self._entries = iter(self.client.list_entries(
                resource_names=[f"projects/{self.project}"],
                filter_=f'({self.log_filter}) AND timestamp >= "{since}" AND timestamp <= "{self._until}"',
                order_by="timestamp asc", page_size=self.page_size,
            ))
        try:
            return list(islice(self._entries, self.page_size))
        except Exception:
            self._entries = None
            raise

    def _encode(self, entries: list, since: str, seen: set[str]) -> Batch:
        builder = LogsBuilder()
        for entry in entries:
            at_boundary = entry.timestamp.astimezone(UTC).isoformat() == since
            if at_boundary and entry.insert_id in seen:
                continue
            try:
                entry_to_records(entry, builder, self.enrich)
            except (ValueError, TypeError, AttributeError) as exc:
                builder.add_raw({semconv.CLOUD_PROVIDER: semconv.PROVIDER_GCP}, 0,
                                repr(entry), f"unreadable log entry: {exc}")
                selfmetrics.MALFORMED.labels(COLLECTOR).inc()
        return Batch("logs", builder.serialize(), builder.count)


def build(ctx: PullContext) -> list[Scheduled]:
    gcp: GcpCollectorConfig = ctx.section
    if not gcp.project:
        raise ValueError("collectors.gcp.project is required")
    return [Scheduled("gcp.logging", CloudLoggingPuller(
        make_client(gcp.project, gcp.endpoint), ctx.checkpoints("gcp.logging"), ctx.submit,
        ctx.enrich(), project=gcp.project, log_filter=gcp.filter,
        initial_start=ctx.backfill_start(),
        settle_s=gcp.settle_seconds), gcp.poll_interval_seconds)]


KIND = CollectorKind("gcp", GcpCollectorConfig, build=build)
