"""Window aggregates per function and model version, computed by ClickHouse as data lands.

``faas_windows`` is an ``AggregatingMergeTree`` of partial aggregate states at a fixed
10-second granularity, filled by two materialized views:

* ``source = 'invocations'``: platform invocation reports (``obsloop.faas.invocation`` log
  records, the rows that feed ``faas_invocations``). They know cost, memory and billed
  duration. Counts are ``uniq`` of the invocation id, so an invocation reported by two
  collectors (a Lambda ``REPORT`` line and the Telemetry API) is counted once.
* ``source = 'spans'``: ``SERVER`` spans carrying FaaS attributes, for functions whose
  platform sends no reports (Knative, OpenFaaS, or an account with no log collector).

The loop reads a detection window (a multiple of 10 s) by merging the states with
``-Merge`` combinators, and per function and window takes the ``invocations`` row when one
exists and the ``spans`` row otherwise: reports are the platform's own accounting and carry
the cost, spans are the fallback. Mixing both within a window would count every invocation
twice, and a per-window choice keeps a function that gains a collector continuous.

Why states rather than raw rows: late data simply merges into its window's state, the
table stays small (a row per function per 10 s) and a window of any multiple of 10 s is one
cheap ``GROUP BY`` over the order key's leading ``window_start``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from obsloop.core import semconv

if TYPE_CHECKING:
    from obsloop.pipelines.schema import SchemaOptions

BASE_SECONDS = 10
"""Granularity of the stored states; detection windows are multiples of it."""
TABLE = "faas_windows"
SOURCE_INVOCATIONS = "invocations"
SOURCE_SPANS = "spans"
QUANTILES = (0.5, 0.95, 0.99)
_QUANTILES_SQL = ", ".join(str(q) for q in QUANTILES)
QUANTILE_GRID = (0.01, 0.05, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.85, 0.9, 0.925, 0.95,
                 0.97, 0.98, 0.99)
"""Levels read per window (the stored t-digest answers any level): the count-aware latency
tests need a percentile's lower confidence bound, a lower level of the same window."""
_GRID_SQL = ", ".join(str(q) for q in QUANTILE_GRID)


def _log_attr(key: str) -> str:
    return f"coalesce(nullIf(LogAttributes['{key}'], ''), nullIf(ResourceAttributes['{key}'], ''))"


def _span_attr(key: str) -> str:
    return f"coalesce(nullIf(SpanAttributes['{key}'], ''), nullIf(ResourceAttributes['{key}'], ''))"


def _truthy(expr: str) -> str:
    return f"toUInt8(lower(ifNull({expr}, '')) IN ('true', '1'))"


def _window_and_series(attr: Callable[[str], str]) -> str:
    """The window and series key columns, derived alike by both views (``attr`` reads an attribute)."""
    return f"""toStartOfInterval(Timestamp, INTERVAL {BASE_SECONDS} SECOND, 'UTC') AS window_start,
    ifNull({attr(semconv.CLOUD_PLATFORM)}, '') AS platform,
    ifNull({attr(semconv.FAAS_NAME)}, ServiceName) AS function,
    ifNull({attr(semconv.MODEL_NAME)}, '') AS model_name,
    ifNull({attr(semconv.MODEL_VERSION)}, '') AS model_version"""


def windows_ddl(o: SchemaOptions) -> list[str]:
    """``CREATE`` statements (idempotent) of ``faas_windows`` and its two feeding views.

    Requires ``otel_traces`` and ``otel_logs``; append after them in ``DDL_BUILDERS``.
    """
    db = f"`{o.database}`"
    table = f"""CREATE TABLE IF NOT EXISTS {db}.{TABLE} {o.on_cluster} (
    window_start DateTime('UTC'),
    platform LowCardinality(String),
    function String,
    model_name String,
    model_version String,
    source LowCardinality(String),
    invocations AggregateFunction(uniq, String),
    errors AggregateFunction(uniqIf, String, UInt8),
    cold_starts AggregateFunction(uniqIf, String, UInt8),
    duration_ms AggregateFunction(quantilesTDigest({_QUANTILES_SQL}), Float64),
    cost_usd SimpleAggregateFunction(sum, Float64),
    memory_used_mb SimpleAggregateFunction(max, Float64),
    cost_center SimpleAggregateFunction(max, String)
) ENGINE = {o.engine("AggregatingMergeTree")}
PARTITION BY toDate(window_start)
ORDER BY (window_start, platform, function, model_name, model_version, source)
{o.ttl("window_start")}
{o.dedup_settings_clause}"""
    key = f"ifNull({_log_attr(semconv.FAAS_INVOCATION_ID)}, concat(TraceId, toString(Timestamp)))"
    status = f"lower(ifNull({_log_attr(semconv.FAAS_STATUS)}, ''))"
    http = f"toUInt16OrZero(ifNull({_log_attr(semconv.HTTP_RESPONSE_STATUS_CODE)}, ''))"
    from_reports = f"""CREATE MATERIALIZED VIEW IF NOT EXISTS {db}.{TABLE}_invocations_mv {o.on_cluster}
TO {db}.{TABLE} AS
SELECT
    {_window_and_series(_log_attr)},
    '{SOURCE_INVOCATIONS}' AS source,
    uniqState({key}) AS invocations,
    uniqIfState({key}, toUInt8({status} IN ('error', 'timeout') OR {http} >= 500)) AS errors,
    uniqIfState({key}, {_truthy(_log_attr(semconv.FAAS_COLDSTART))}) AS cold_starts,
    quantilesTDigestStateIf({_QUANTILES_SQL})(
        toFloat64OrZero(ifNull({_log_attr(semconv.FAAS_DURATION_MS)}, '')),
        {_log_attr(semconv.FAAS_DURATION_MS)} IS NOT NULL) AS duration_ms,
    sum(toFloat64OrZero(ifNull({_log_attr(semconv.COST_USD)}, ''))) AS cost_usd,
    max(toFloat64OrZero(ifNull({_log_attr(semconv.FAAS_MEMORY_USED_MB)}, ''))) AS memory_used_mb,
    max(ifNull({_log_attr(semconv.COST_CENTER)}, '')) AS cost_center
FROM {db}.otel_logs
WHERE EventName = '{semconv.INVOCATION_REPORT_EVENT}'
GROUP BY window_start, platform, function, model_name, model_version"""
    from_spans = f"""CREATE MATERIALIZED VIEW IF NOT EXISTS {db}.{TABLE}_spans_mv {o.on_cluster}
TO {db}.{TABLE} AS
SELECT
    {_window_and_series(_span_attr)},
    '{SOURCE_SPANS}' AS source,
    uniqState(concat(TraceId, SpanId)) AS invocations,
    uniqIfState(concat(TraceId, SpanId), toUInt8(StatusCode = 'Error')) AS errors,
    uniqIfState(concat(TraceId, SpanId), {_truthy(f"SpanAttributes['{semconv.FAAS_COLDSTART}']")})
        AS cold_starts,
    quantilesTDigestStateIf({_QUANTILES_SQL})(Duration / 1e6, 1) AS duration_ms,
    toFloat64(0) AS cost_usd,
    toFloat64(0) AS memory_used_mb,
    '' AS cost_center
FROM {db}.otel_traces
WHERE SpanKind = 'Server'
    AND ({_span_attr(semconv.FAAS_NAME)} IS NOT NULL
         OR SpanAttributes['{semconv.FAAS_TRIGGER}'] != ''
         OR SpanAttributes['{semconv.FAAS_INVOCATION_ID}'] != '')
GROUP BY window_start, platform, function, model_name, model_version"""
    return [table, from_reports, from_spans]


@dataclass(frozen=True, slots=True)
class SeriesKey:
    """What one window row is about: a function, and the model version it served."""

    platform: str
    function: str
    model_name: str
    model_version: str

    @property
    def id(self) -> str:
        return "|".join((self.platform, self.function, self.model_name, self.model_version))

    @classmethod
    def from_id(cls, series_id: str) -> SeriesKey:
        platform, function, model_name, model_version = series_id.split("|", 3)
        return cls(platform, function, model_name, model_version)

    def labels(self) -> dict[str, str]:
        """OpenTelemetry names, as the feedback loop's manifest index expects them."""
        pairs = (
            (semconv.CLOUD_PLATFORM, self.platform),
            (semconv.FAAS_NAME, self.function),
            (semconv.MODEL_NAME, self.model_name),
            (semconv.MODEL_VERSION, self.model_version),
        )
        return {k: v for k, v in pairs if v}


@dataclass(slots=True)
class Window:
    """One closed window of one series, with the metrics the detectors score."""

    start: datetime
    seconds: int
    key: SeriesKey
    source: str
    invocations: int
    errors: int
    cold_starts: int
    p50_ms: float
    p95_ms: float
    p99_ms: float
    cost_usd: float
    memory_used_mb: float
    cost_center: str = ""
    quantiles: tuple[float, ...] = ()
    """Durations at :data:`QUANTILE_GRID` (empty: only p50, p95 and p99 are known)."""
    metrics: dict[str, float] = field(init=False)

    def __post_init__(self) -> None:
        n = self.invocations
        self.metrics = {"invocations": float(n), "cost_usd": self.cost_usd}
        if n:
            self.metrics.update(
                p50_ms=self.p50_ms, p95_ms=self.p95_ms, p99_ms=self.p99_ms,
                error_rate=self.errors / n, cold_start_rate=self.cold_starts / n,
            )
            if self.memory_used_mb > 0:
                self.metrics["memory_used_mb"] = self.memory_used_mb

    def quantile_function(self) -> Callable[[float], float]:
        """Duration at any level, interpolated between the known ones. Without the grid it
        runs from 0 at level 0 through p50, p95 and p99: below p50 it can only err low,
        which makes a lower confidence bound more conservative, never less."""
        if self.quantiles:
            return interpolate(QUANTILE_GRID, self.quantiles)
        return interpolate((0.0, *QUANTILES), (0.0, self.p50_ms, self.p95_ms, self.p99_ms))

    @classmethod
    def empty(cls, start: datetime, seconds: int, key: SeriesKey) -> Window:
        """A window in which a known series received nothing: throughput zero."""
        return cls(start, seconds, key, "", 0, 0, 0, 0.0, 0.0, 0.0, 0.0, 0.0)


def _utc(value: datetime) -> datetime:
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def _sql_time(value: datetime) -> str:
    return f"toDateTime('{_utc(value):%Y-%m-%d %H:%M:%S}', 'UTC')"


class WindowReader:
    """Reads closed windows from ``faas_windows`` through a ``clickhouse-connect`` client."""

    def __init__(self, client: Any, database: str = "default", window_seconds: int = 60) -> None:
        if window_seconds % BASE_SECONDS:
            raise ValueError(f"window_seconds must be a multiple of {BASE_SECONDS}")
        self.client = client
        self.table = f"`{database}`.{TABLE}"
        self.seconds = window_seconds

    def event_time_high(self) -> datetime | None:
        """End of the latest stored 10-second slot: how far event time has got."""
        value = self.client.command(
            f"SELECT toUnixTimestamp(max(window_start)) + {BASE_SECONDS}, count() > 0 "
            f"FROM {self.table}")
        end, any_rows = value if isinstance(value, list) else (value, 0)
        if not int(any_rows):
            return None
        return datetime.fromtimestamp(int(end), UTC)

    def read(self, start: datetime, end: datetime) -> Iterator[Window]:
        """Windows starting in ``[start, end)``, in time order, one per series and window."""
        w = self.seconds
        rows = self.client.query(f"""
SELECT toStartOfInterval(window_start, INTERVAL {w} SECOND, 'UTC') AS w,
       platform, function, model_name, model_version, source,
       uniqMerge(invocations), uniqIfMerge(errors), uniqIfMerge(cold_starts),
       quantilesTDigestMerge({_GRID_SQL})(duration_ms),
       sum(cost_usd), max(memory_used_mb), max(cost_center)
FROM {self.table}
WHERE window_start >= {_sql_time(start)} AND window_start < {_sql_time(end)}
GROUP BY w, platform, function, model_name, model_version, source
ORDER BY w""").result_rows
        p50, p95, p99 = (QUANTILE_GRID.index(q) for q in QUANTILES)
        yield from choose_sources(
            Window(_utc(r[0]), w, SeriesKey(*r[1:5]), r[5], int(r[6]), int(r[7]), int(r[8]),
                   float(r[9][p50]), float(r[9][p95]), float(r[9][p99]), float(r[10]), float(r[11]), r[12],
                   tuple(float(q) for q in r[9]))
            for r in rows
        )


def interpolate(levels: tuple[float, ...], values: tuple[float, ...]) -> Callable[[float], float]:
    """The quantile function through (level, value) points, linear between them and flat
    beyond the outer ones, made monotone (a lower level never gives a larger value).

    >>> at = interpolate((0.5, 0.95), (40.0, 90.0))
    >>> at(0.5), at(0.725), at(0.99), at(0.1)
    (40.0, 65.0, 90.0, 40.0)
    """
    fixed: list[tuple[float, float]] = []
    for level, value in sorted(zip(levels, values, strict=True)):
        fixed.append((level, max(value, fixed[-1][1]) if fixed else value))

    def at(q: float) -> float:
        if q <= fixed[0][0]:
            return fixed[0][1]
        for (l0, v0), (l1, v1) in zip(fixed, fixed[1:], strict=False):
            if q <= l1:
                return v0 + (v1 - v0) * (q - l0) / (l1 - l0)
        return fixed[-1][1]

    return at


def choose_sources(windows: Iterable[Window]) -> Iterator[Window]:
    """Per series and window start, the ``invocations`` window if any, else the ``spans`` one.

    >>> from datetime import datetime, UTC
    >>> k = SeriesKey("aws_lambda", "f", "m", "1")
    >>> t = datetime(2026, 1, 1, tzinfo=UTC)
    >>> ws = [Window(t, 60, k, "spans", 9, 0, 0, 1, 2, 3, 0, 0),
    ...       Window(t, 60, k, "invocations", 10, 1, 0, 1, 2, 3, 0.5, 128)]
    >>> [(w.source, w.invocations) for w in choose_sources(ws)]
    [('invocations', 10)]
    """
    chosen: dict[tuple[datetime, SeriesKey], Window] = {}
    for window in windows:
        slot = (window.start, window.key)
        current = chosen.get(slot)
        if current is None or (current.source != SOURCE_INVOCATIONS
                               and window.source == SOURCE_INVOCATIONS):
            chosen[slot] = window
    yield from sorted(chosen.values(), key=lambda x: x.start)
