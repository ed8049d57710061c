"""Azure Functions invocations from Application Insights via ``azure-monitor-query``.

Two schemas hold the same requests: ``AppRequests`` in a Log Analytics workspace
(workspace-based Application Insights, ``query_workspace``) and the classic ``requests``
table (``query_resource`` on the Application Insights component). The Logs API has no
cursor, so the query itself pages: rows after the checkpoint in ascending time, ``take``
a batch, and the ids already accepted at the checkpoint instant excluded in KQL, so a
batch boundary inside one timestamp neither repeats nor skips a row.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from obsloop.collectors import selfmetrics
from obsloop.collectors.checkpoint import CheckpointStore
from obsloop.collectors.config import AzureCollectorConfig
from obsloop.collectors.cursor import Batch, CursorPuller, Page
from obsloop.collectors.encode import LogsBuilder
from obsloop.collectors.extras import require
from obsloop.collectors.forward import Submit
from obsloop.collectors.normalize import Invocation, azure_span_id, azure_trace_id
from obsloop.collectors.registry import CollectorKind, PullContext, Scheduled
from obsloop.core import semconv

COLLECTOR = "azure.appinsights"


@dataclass(frozen=True)
class Schema:
    """Column names of one requests table, in the order the query projects them."""

    table: str
    time: str
    id: str
    name: str
    success: str
    result_code: str
    duration: str
    operation_id: str
    role: str
    instance: str
    properties: str


WORKSPACE = Schema("AppRequests", "TimeGenerated", "Id", "Name", "Success", "ResultCode",
                   "DurationMs", "OperationId", "AppRoleName", "AppRoleInstance", "Properties")
CLASSIC = Schema("requests", "timestamp", "id", "name", "success", "resultCode", "duration",
                 "operation_Id", "cloud_RoleName", "cloud_RoleInstance", "customDimensions")


def make_client(endpoint: str | None = None, credential=None, **kwargs):
    """A ``LogsQueryClient``; ``DefaultAzureCredential`` unless a credential is given."""
    query = require("azure.monitor.query", "azure")
    if credential is None:
        credential = require("azure.identity", "azure").DefaultAzureCredential()
    if endpoint:
        kwargs["endpoint"] = endpoint
    return query.LogsQueryClient(credential, **kwargs)


class PartialResult(RuntimeError):
    """The service answered with part of the rows: retried, never checkpointed past."""


def classify_azure_error(exc: Exception) -> str | None:
    if isinstance(exc, PartialResult):
        return "partial"
    exceptions = require("azure.core.exceptions", "azure")
    if isinstance(exc, exceptions.HttpResponseError):
        status = exc.status_code or 0
        if status == 429:
            return "throttled"
        return "5xx" if status >= 500 else None
    if isinstance(exc, exceptions.ServiceRequestError | exceptions.ServiceResponseError):
        return "connection"
    return None


def _kql_string(value: str) -> str:
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def build_query(schema: Schema, since: datetime, until: datetime, seen: list[str],
                batch: int) -> str:
    s = schema
    boundary = f"{s.time} == datetime({since.isoformat()})"
    if seen:
        boundary += f" and {s.id} !in ({', '.join(_kql_string(i) for i in seen)})"
    return (
        f"{s.table}\n"
        f"| where {s.time} > datetime({since.isoformat()}) or ({boundary})\n"
        f"| where {s.time} <= datetime({until.isoformat()})\n"
        f"| order by {s.time} asc, {s.id} asc\n"
        f"| take {batch}\n"
        f"| project {s.time}, {s.id}, {s.name}, {s.success}, {s.result_code}, {s.duration}, "
        f"{s.operation_id}, {s.role}, {s.instance}, {s.properties}"
    )


def _properties(value: object) -> dict:
    if isinstance(value, dict):
        return value
    if isinstance(value, str) and value:
        try:
            loaded = json.loads(value)
        except ValueError:
            return {}
        return loaded if isinstance(loaded, dict) else {}
    return {}


def row_invocation(row: list, region: str | None, subscription: str | None) -> Invocation:
    """One requests row (projected by :func:`build_query`) as an invocation. ``faas.name``
    is ``<function app>/<function>``, the semantic-convention form for Azure."""
    when, request_id, name, success, code, duration, operation, role, instance, props = row
    properties = _properties(props)
    if not isinstance(when, datetime):
        when = datetime.fromisoformat(str(when))
    app = str(role or "")
    status_code = int(code) if str(code or "").isdigit() else None
    ok = success in (True, "True", "true", 1)
    return Invocation(
        platform=semconv.PLATFORM_AZURE_FUNCTIONS, provider=semconv.PROVIDER_AZURE,
        function=f"{app}/{name}" if app else str(name),
        invocation_id=str(properties.get("InvocationId") or request_id),
        time_ns=int(when.timestamp() * 1_000_000) * 1000, source=COLLECTOR,
        region=region, account_id=subscription,
        duration_ms=float(duration), http_status=status_code,
        status="success" if ok else "error",
        error_type=None if ok else (str(code) if code else "failure"),
        trace_id=azure_trace_id(str(operation or "")),
        span_id=azure_span_id(str(request_id or "")),
    )


class AppInsightsPuller(CursorPuller):
    collector = COLLECTOR

    def __init__(
        self,
        client,
        checkpoints: CheckpointStore,
        submit: Submit,
        enrich: Callable[[Invocation], Invocation],
        *,
        target: str,
        schema: Schema = WORKSPACE,
        region: str | None = None,
        subscription: str | None = None,
        initial_start: datetime,
        settle_s: float = 120.0,
        batch: int = 5000,
        sleep: Callable[[float], None] = time.sleep,
        clock: Callable[[], float] = time.time,
    ) -> None:
        """``target`` is a workspace id (``WORKSPACE``) or an Application Insights
        resource id (``CLASSIC``)."""
        super().__init__(checkpoints, submit, sleep=sleep, clock=clock)
        self.client = client
        self.enrich = enrich
        self.target = target
        self.schema = schema
        self.region = region
        self.subscription = subscription
        self.initial_start = initial_start
        self.settle_s = settle_s
        self.batch = batch
        self._until = initial_start

    def _state(self, saved: dict | None) -> tuple[datetime, list[str]]:
        if saved is None:
            return self.initial_start.astimezone(UTC) - timedelta(microseconds=1), []
        return datetime.fromisoformat(saved["time"]), saved["ids"]

    def progress(self) -> tuple[float, float]:
        start = self.initial_start.timestamp()
        done = self._state(self.checkpoints.get(self.target))[0].timestamp() - start
        return max(0.0, done), max(0.0, self.clock() - start)

    def _query(self, kql: str, since: datetime, until: datetime) -> list[list]:
        options: dict[str, Any] = {"timespan": (since, until + timedelta(seconds=1))}
        endpoint = getattr(getattr(self.client, "_config", None), "endpoint", "")
        if str(endpoint).startswith("http://"):
            options["enforce_https"] = False  # a local endpoint (tests, a proxy)
        if self.schema is WORKSPACE:
            result = self.client.query_workspace(self.target, kql, **options)
        else:
            result = self.client.query_resource(self.target, kql, **options)
        if getattr(result, "partial_error", None) is not None:
            raise PartialResult(str(result.partial_error))
        return [list(row) for row in result.tables[0].rows] if result.tables else []

    def classify(self, exc: Exception) -> str | None:
        return classify_azure_error(exc)

    def sources(self) -> list[str]:
        return [self.target]

    def begin(self, target: str) -> None:
        self._until = datetime.fromtimestamp(self.clock() - self.settle_s, UTC)

    def next_page(self, target: str, saved: dict | None) -> Page | None:
        since, seen = self._state(saved)
        kql = build_query(self.schema, since, self._until, seen, self.batch)
        rows = self.retry(lambda: self._query(kql, since, self._until))
        if not rows:
            return None
        batch = self._encode(rows)
        last = rows[-1][0]
        last = last if isinstance(last, datetime) else datetime.fromisoformat(str(last))
        ids = [str(r[1]) for r in rows if r[0] == rows[-1][0]]
        seen = (seen + ids) if last == since else ids
        return Page({"time": last.isoformat(), "ids": seen}, batch,
                    more=len(rows) == self.batch, newest=last.timestamp())

    def _encode(self, rows: list[list]) -> Batch:
        builder = LogsBuilder()
        for row in rows:
            try:
                invocation = self.enrich(row_invocation(row, self.region, self.subscription))
            except (ValueError, TypeError) as exc:
                builder.add_raw({semconv.CLOUD_PROVIDER: semconv.PROVIDER_AZURE}, 0,
                                json.dumps(row, default=str), f"unreadable requests row: {exc}")
                selfmetrics.MALFORMED.labels(COLLECTOR).inc()
                continue
            builder.add_invocation(invocation, str(row[2] or ""))
        return Batch("logs", builder.serialize(), builder.count)


def build(ctx: PullContext) -> list[Scheduled]:
    azure: AzureCollectorConfig = ctx.section
    if not azure.target:
        raise ValueError("collectors.azure.target is required")
    return [Scheduled("azure.appinsights", AppInsightsPuller(
        make_client(azure.endpoint), ctx.checkpoints("azure.appinsights"), ctx.submit, ctx.enrich(),
        target=azure.target, schema=WORKSPACE if azure.schema_ == "workspace" else CLASSIC,
        region=azure.region, subscription=azure.subscription,
        initial_start=ctx.backfill_start(),
        settle_s=azure.settle_seconds), azure.poll_interval_seconds)]


KIND = CollectorKind("azure", AzureCollectorConfig, build=build)
