"""Seed data for every dashboard, and every ClickHouse query the dashboards send.

Rows go through the real DDL (the whole schema ``obsloop schema apply`` creates: the
exporter tables, ``faas_invocations`` and its materialized view, the detections, the
feedback audit and dead-letter tables), so a panel returns rows only if its SQL
matches what obsloop really stores.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from obsloop.core import semconv as sc
from obsloop.dashboards.boards import all_dashboards
from obsloop.dashboards.grafana import Constant, Sql, Variable
from obsloop.dashboards.macros import TimeRange, expand
from obsloop.feedback.audit import AUDIT_TABLE
from obsloop.feedback.deadletter import DEAD_LETTER_TABLE
from obsloop.pipelines.schema import SchemaOptions
from obsloop.schema import ddl

try:
    from obsloop.detectors.detection_bus import DetectionStore, detections_ddl
except ImportError:  # the detectors' table has not landed yet
    DetectionStore = detections_ddl = None

DETECTIONS_MISSING = "the detections table (obsloop.detectors.detection_bus) does not exist yet"

FUNCTIONS = [  # platform, function, model, version, cost center
    (sc.PLATFORM_AWS_LAMBDA, "fraud-scorer", "fraud-detection-model", "2.1.0", "risk"),
    (sc.PLATFORM_GCP_CLOUD_RUN, "image-tagger", "vit-tagger", "3.0.1", "media"),
    (sc.PLATFORM_AZURE_FUNCTIONS, "recommender", "two-tower-recs", "7.0.3", None),
    (sc.PLATFORM_KNATIVE, "anomaly-scorer", "isolation-forest", "1.1.0", "risk"),
]


@dataclass(frozen=True)
class PanelQuery:
    dashboard: str
    title: str
    sql: str

    @property
    def id(self) -> str:
        return f"{self.dashboard}:{self.title}"

    @property
    def needs_detections(self) -> bool:
        return "FROM detections" in self.sql


def panel_queries() -> list[PanelQuery]:
    """Every panel target, variable query and annotation query that goes to ClickHouse."""
    queries = []
    for board in all_dashboards():
        for panel in board.panels():
            queries += [PanelQuery(board.uid, panel.title, q.sql) for q in panel.queries if isinstance(q, Sql)]
        queries += [PanelQuery(board.uid, f"variable {v.name}", v.sql) for v in board.variables
                    if isinstance(v, Variable)]
        queries += [PanelQuery(board.uid, f"annotation {a.name}", a.sql) for a in board.annotations]
    return queries


def time_range() -> TimeRange:
    now = int(time.time())
    return TimeRange(start=now - 6 * 3600, end=now + 60, interval_seconds=300)


def variable_values(run: Callable[[str], list[tuple[Any, ...]]], dashboard: str) -> dict[str, list[str]]:
    """Each variable as Grafana fills it with ``All`` selected: every value its query returns
    (on an empty installation none, and Grafana selects its "None" option, an empty value)."""
    board = next(b for b in all_dashboards() if b.uid == dashboard)
    values: dict[str, list[str]] = {}
    for variable in board.variables:
        if isinstance(variable, Constant):
            values[variable.name] = [variable.default]
        else:
            found = [str(row[0]) for row in run(expand(variable.sql, values, time_range()))]
            values[variable.name] = found or [""]  # Grafana's "None" option of an empty variable
    return values


def _moments(count: int, rng: random.Random) -> Iterator[datetime]:
    """Times in the last two hours, but never before this month began (the budget panels)."""
    now = datetime.now(UTC)
    month_start = now.replace(day=1, hour=0, minute=0, second=0, microsecond=0)
    span = min(7200.0, (now - month_start).total_seconds() - 1)
    for _ in range(count):
        yield now - timedelta(seconds=rng.uniform(0, span))


def _logs(rng: random.Random) -> list[list[Any]]:
    rows = []
    for platform, function, model, version, cost_center in FUNCTIONS:
        resource = {sc.CLOUD_PLATFORM: platform, sc.FAAS_NAME: function, sc.SERVICE_NAME: function}
        for moment in _moments(40, rng):
            status = "error" if rng.random() < 0.1 else "success"
            attributes = {
                sc.FAAS_INVOCATION_ID: f"{rng.getrandbits(64):016x}", sc.FAAS_DURATION_MS: f"{rng.lognormvariate(4, 0.4):.2f}",
                sc.FAAS_BILLED_DURATION_MS: "100", sc.FAAS_COLDSTART: "true" if rng.random() < 0.1 else "false",
                sc.FAAS_STATUS: status, sc.COST_USD: f"{rng.uniform(1e-6, 5e-5):.8f}", sc.INVOCATION_SOURCE: "test",
                sc.FAAS_MAX_MEMORY: str(1024 * 1024 * 1024),
            }
            if cost_center:
                attributes[sc.COST_CENTER] = cost_center
            rows.append([moment, function, sc.INVOCATION_REPORT_EVENT, "", resource, attributes])
        for i, moment in enumerate(_moments(60, rng)):
            pid = f"{function}-{i}"
            attributes = {sc.MODEL_NAME: model, sc.MODEL_VERSION: version, sc.PREDICTION_ID: pid,
                          sc.PREDICTION_VALUE: f"{rng.random():.4f}", f"{sc.FEATURE_PREFIX}amount": "12.5"}
            if rng.random() < 0.3:
                attributes[sc.PREDICTION_LABEL] = "1"
            rows.append([moment, function, sc.PREDICTION_EVENT, f"prediction for {model}", resource, attributes])
            if rng.random() < 0.5:  # its ground truth, half a minute later
                rows.append([moment + timedelta(seconds=30), function, sc.GROUND_TRUTH_EVENT, "", resource,
                             {sc.PREDICTION_ID: pid, sc.PREDICTION_LABEL: str(rng.getrandbits(1))}])
    return rows


def _spans(rng: random.Random) -> list[list[Any]]:
    rows = []
    for platform, function, _model, _version, _cost_center in FUNCTIONS:
        resource = {sc.CLOUD_PLATFORM: platform, sc.FAAS_NAME: function}
        for moment in _moments(30, rng):
            rows.append([moment, f"{rng.getrandbits(128):032x}", f"{rng.getrandbits(64):016x}", f"{function} invoke",
                         "Server", function, resource, int(rng.lognormvariate(17, 0.4)),
                         "Error" if rng.random() < 0.1 else "Unset"])
    return rows


def seed(client: Any, database: str) -> None:
    """Create the schema in ``database`` (what ``obsloop schema apply`` creates) and fill every
    table a dashboard reads."""
    rng = random.Random(11)
    for statement in ddl(SchemaOptions(database=database)):
        client.command(statement)
    client.insert("otel_logs", _logs(rng), database=database, column_names=[
        "Timestamp", "ServiceName", "EventName", "Body", "ResourceAttributes", "LogAttributes"])
    client.insert("otel_traces", _spans(rng), database=database, column_names=[
        "Timestamp", "TraceId", "SpanId", "SpanName", "SpanKind", "ServiceName", "ResourceAttributes", "Duration",
        "StatusCode"])
    moments = list(_moments(12, rng))
    client.insert(AUDIT_TABLE, [
        [moment, "fraud-scorer", "apps/fraud.yaml:12", f"d{i}", action, outcome, "p95 above band", "{}", "{}", ref]
        for i, (moment, (action, outcome, ref)) in enumerate(zip(moments, [
            ("scale_up", "applied", "3f2a9c1"), ("alert", "applied", ""), ("retrain", "dry_run", "run-7"),
            ("scale_down", "refused", ""), ("rollback", "applied", "https://git.example/pr/4"),
            ("alert", "failed", "")] * 2, strict=False))
    ], database=database, column_names=["time", "deployment", "manifest", "detection_id", "action", "outcome",
                                        "reason", "before", "after", "reference"])
    client.insert(DEAD_LETTER_TABLE, [[moments[0], "pagerduty", "alert", "fp1", 5, "HTTP 503", "{}"]],
                  database=database, column_names=["time", "target", "kind", "key", "attempts", "error", "payload"])
    if detections_ddl is not None:
        _seed_detections(client, database, moments)


def _seed_detections(client: Any, database: str, moments: list[datetime]) -> None:
    from obsloop.detectors.detection import Detection

    for statement in detections_ddl(SchemaOptions(database=database)):
        client.command(statement)
    series = [{sc.FAAS_NAME: function, sc.MODEL_NAME: model, sc.MODEL_VERSION: version}
              for _platform, function, model, version, _cc in FUNCTIONS]
    kinds = ["latency", "drift", "cost", "drift", "error_rate", "budget_forecast"]
    DetectionStore(client, database).insert([
        Detection(f"det-{i}", moment, series[i % len(series)], kinds[i % len(kinds)], 0.5 + i / 40,
                  observed={"p95_ms": 900.0}, expected={"p95_ms": (100.0, 400.0)}, evidence=("http://grafana/d/x",))
        for i, moment in enumerate(moments)
    ])


def meaningful(rows: list[tuple[Any, ...]]) -> bool:
    """Whether a result holds something besides NULL, zero, NaN and empty strings."""
    return any(value not in (None, 0, "", [], {}) and value == value for row in rows for value in row)
