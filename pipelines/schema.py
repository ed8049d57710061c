"""DDL of the tables obsloop writes: the OpenTelemetry Collector ``clickhouseexporter``
layout (so Grafana's OpenTelemetry views and users switching collectors need no migration),
plus obsloop's own tables.

The builders write single-node DDL (``MergeTree`` with a deduplication window, on every
materialized view's target table too; an older table gets it by :func:`window_alterations`);
:func:`ddl` derives the cluster layout from it (``X_local`` replicated tables under a
``Distributed`` ``X``), so a part adding tables gets it without knowing about it.
Design: docs/design/cluster-schema-layout.md, docs/design/view-deduplication.md.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass

#: Inserts remembered per table for deduplication (each segment is one insert per table).
DEDUPLICATION_WINDOW = 10_000
DEDUPLICATION_SETTING = "non_replicated_deduplication_window"


@dataclass(frozen=True)
class SchemaOptions:
    database: str = "default"
    cluster: str | None = None
    ttl_days: int = 0

    @property
    def on_cluster(self) -> str:
        return f"ON CLUSTER `{self.cluster}`" if self.cluster else ""

    def engine(self, family: str = "MergeTree") -> str:
        if self.cluster:
            return f"Replicated{family}('/clickhouse/tables/{{shard}}/{{database}}/{{table}}', '{{replica}}')"
        return f"{family}()"

    @property
    def dedup_setting(self) -> str:
        """The window, to append to a table's ``SETTINGS`` list. Empty with a cluster:
        Replicated tables deduplicate by default (``replicated_deduplication_window``)."""
        return "" if self.cluster else f", {DEDUPLICATION_SETTING} = {DEDUPLICATION_WINDOW}"

    @property
    def dedup_settings_clause(self) -> str:
        """A whole ``SETTINGS`` clause holding only the window, for a table that sets nothing else."""
        return f"SETTINGS {self.dedup_setting.removeprefix(', ')}" if self.dedup_setting else ""

    def ttl(self, time_expression: str) -> str:
        return f"TTL {time_expression} + toIntervalDay({self.ttl_days})" if self.ttl_days else ""


_ATTR_INDEXES = """
    INDEX idx_res_attr_key mapKeys(ResourceAttributes) TYPE bloom_filter(0.01) GRANULARITY 1,
    INDEX idx_res_attr_value mapValues(ResourceAttributes) TYPE bloom_filter(0.01) GRANULARITY 1,
    INDEX idx_scope_attr_key mapKeys(ScopeAttributes) TYPE bloom_filter(0.01) GRANULARITY 1,
    INDEX idx_scope_attr_value mapValues(ScopeAttributes) TYPE bloom_filter(0.01) GRANULARITY 1,
    INDEX idx_attr_key mapKeys(Attributes) TYPE bloom_filter(0.01) GRANULARITY 1,
    INDEX idx_attr_value mapValues(Attributes) TYPE bloom_filter(0.01) GRANULARITY 1,
    INDEX idx_time_minmax TimeUnix TYPE minmax GRANULARITY 1"""

_METRIC_PREFIX = """
    ResourceAttributes Map(LowCardinality(String), String) CODEC(ZSTD(1)),
    ResourceSchemaUrl String CODEC(ZSTD(1)),
    ScopeName String CODEC(ZSTD(1)),
    ScopeVersion String CODEC(ZSTD(1)),
    ScopeAttributes Map(LowCardinality(String), String) CODEC(ZSTD(1)),
    ScopeDroppedAttrCount UInt32 CODEC(ZSTD(1)),
    ScopeSchemaUrl String CODEC(ZSTD(1)),
    ServiceName LowCardinality(String) CODEC(ZSTD(1)),
    MetricName LowCardinality(String) CODEC(ZSTD(1)),
    MetricDescription String CODEC(ZSTD(1)),
    MetricUnit String CODEC(ZSTD(1)),
    Attributes Map(LowCardinality(String), String) CODEC(ZSTD(1)),
    StartTimeUnix DateTime64(9) CODEC(Delta, ZSTD(1)),
    TimeUnix DateTime64(9) CODEC(Delta, ZSTD(1)),"""

_EXEMPLARS = """
    Exemplars Nested (
        FilteredAttributes Map(LowCardinality(String), String),
        TimeUnix DateTime64(9),
        Value Float64,
        SpanId String,
        TraceId String
    ) CODEC(ZSTD(1)),"""

_METRIC_BODIES = {
    "otel_metrics_gauge": f"""
    Value Float64 CODEC(ZSTD(1)),
    Flags UInt32 CODEC(ZSTD(1)),{_EXEMPLARS}""",
    "otel_metrics_sum": f"""
    Value Float64 CODEC(ZSTD(1)),
    Flags UInt32 CODEC(ZSTD(1)),{_EXEMPLARS}
    AggregationTemporality Int32 CODEC(ZSTD(1)),
    IsMonotonic Boolean CODEC(Delta, ZSTD(1)),""",
    "otel_metrics_histogram": f"""
    Count UInt64 CODEC(Delta, ZSTD(1)),
    Sum Float64 CODEC(ZSTD(1)),
    BucketCounts Array(UInt64) CODEC(ZSTD(1)),
    ExplicitBounds Array(Float64) CODEC(ZSTD(1)),{_EXEMPLARS}
    Flags UInt32 CODEC(ZSTD(1)),
    Min Float64 CODEC(ZSTD(1)),
    Max Float64 CODEC(ZSTD(1)),
    AggregationTemporality Int32 CODEC(ZSTD(1)),""",
    "otel_metrics_exponential_histogram": f"""
    Count UInt64 CODEC(Delta, ZSTD(1)),
    Sum Float64 CODEC(ZSTD(1)),
    Scale Int32 CODEC(ZSTD(1)),
    ZeroCount UInt64 CODEC(ZSTD(1)),
    PositiveOffset Int32 CODEC(ZSTD(1)),
    PositiveBucketCounts Array(UInt64) CODEC(ZSTD(1)),
    NegativeOffset Int32 CODEC(ZSTD(1)),
    NegativeBucketCounts Array(UInt64) CODEC(ZSTD(1)),{_EXEMPLARS}
    Flags UInt32 CODEC(ZSTD(1)),
    Min Float64 CODEC(ZSTD(1)),
    Max Float64 CODEC(ZSTD(1)),
    AggregationTemporality Int32 CODEC(ZSTD(1)),""",
    "otel_metrics_summary": """
    Count UInt64 CODEC(Delta, ZSTD(1)),
    Sum Float64 CODEC(ZSTD(1)),
    ValueAtQuantiles Nested(
        Quantile Float64,
        Value Float64
    ) CODEC(ZSTD(1)),
    Flags UInt32 CODEC(ZSTD(1)),""",
}


def _traces(o: SchemaOptions) -> list[str]:
    db = f"`{o.database}`"
    return [
        f"""CREATE TABLE IF NOT EXISTS {db}.otel_traces {o.on_cluster} (
    Timestamp DateTime64(9) CODEC(Delta(8), ZSTD(1)),
    TraceId String CODEC(ZSTD(1)),
    SpanId String CODEC(ZSTD(1)),
    ParentSpanId String CODEC(ZSTD(1)),
    TraceState String CODEC(ZSTD(1)),
    SpanName LowCardinality(String) CODEC(ZSTD(1)),
    SpanKind LowCardinality(String) CODEC(ZSTD(1)),
    ServiceName LowCardinality(String) CODEC(ZSTD(1)),
    ResourceAttributes Map(LowCardinality(String), String) CODEC(ZSTD(1)),
    ScopeName String CODEC(ZSTD(1)),
    ScopeVersion String CODEC(ZSTD(1)),
    SpanAttributes Map(LowCardinality(String), String) CODEC(ZSTD(1)),
    Duration UInt64 CODEC(T64, ZSTD(1)),
    StatusCode LowCardinality(String) CODEC(ZSTD(1)),
    StatusMessage String CODEC(ZSTD(1)),
    Events Nested (
        Timestamp DateTime64(9),
        Name LowCardinality(String),
        Attributes Map(LowCardinality(String), String)
    ) CODEC(ZSTD(1)),
    Links Nested (
        TraceId String,
        SpanId String,
        TraceState String,
        Attributes Map(LowCardinality(String), String)
    ) CODEC(ZSTD(1)),
    INDEX idx_trace_id TraceId TYPE bloom_filter(0.001) GRANULARITY 1,
    INDEX idx_res_attr_key mapKeys(ResourceAttributes) TYPE bloom_filter(0.01) GRANULARITY 1,
    INDEX idx_res_attr_value mapValues(ResourceAttributes) TYPE bloom_filter(0.01) GRANULARITY 1,
    INDEX idx_span_attr_key mapKeys(SpanAttributes) TYPE bloom_filter(0.01) GRANULARITY 1,
    INDEX idx_span_attr_value mapValues(SpanAttributes) TYPE bloom_filter(0.01) GRANULARITY 1,
    INDEX idx_duration Duration TYPE minmax GRANULARITY 1,
    INDEX idx_lower_span_name lower(SpanName) TYPE tokenbf_v1(32768, 3, 0) GRANULARITY 8
) ENGINE = {o.engine()}
PARTITION BY toDate(Timestamp)
PRIMARY KEY (ServiceName, SpanName, toDateTime(Timestamp))
ORDER BY (ServiceName, SpanName, toDateTime(Timestamp), Timestamp)
{o.ttl("toDateTime(Timestamp)")}
SETTINGS index_granularity = 8192, ttl_only_drop_parts = 1{o.dedup_setting}""",
        f"""CREATE TABLE IF NOT EXISTS {db}.otel_traces_trace_id_ts {o.on_cluster} (
    TraceId String CODEC(ZSTD(1)),
    Start SimpleAggregateFunction(min, DateTime) CODEC(ZSTD(1)),
    End SimpleAggregateFunction(max, DateTime) CODEC(ZSTD(1))
) ENGINE = {o.engine("AggregatingMergeTree")}
PARTITION BY toStartOfWeek(Start)
ORDER BY (TraceId)
{o.ttl("toDateTime(Start)")}
SETTINGS index_granularity = 8192, ttl_only_drop_parts = 1{o.dedup_setting}""",
        f"""CREATE MATERIALIZED VIEW IF NOT EXISTS {db}.otel_traces_trace_id_ts_mv {o.on_cluster}
TO {db}.otel_traces_trace_id_ts
AS SELECT
    TraceId,
    min(Timestamp) AS Start,
    max(Timestamp) AS End
FROM {db}.otel_traces
WHERE TraceId != ''
GROUP BY TraceId""",
    ]


def _logs(o: SchemaOptions) -> list[str]:
    return [
        f"""CREATE TABLE IF NOT EXISTS `{o.database}`.otel_logs {o.on_cluster} (
    Timestamp DateTime64(9) CODEC(Delta(8), ZSTD(1)),
    TimestampTime DateTime DEFAULT toDateTime(Timestamp),
    TraceId String CODEC(ZSTD(1)),
    SpanId String CODEC(ZSTD(1)),
    TraceFlags UInt8,
    SeverityText LowCardinality(String) CODEC(ZSTD(1)),
    SeverityNumber UInt8,
    ServiceName LowCardinality(String) CODEC(ZSTD(1)),
    Body String CODEC(ZSTD(1)),
    ResourceSchemaUrl LowCardinality(String) CODEC(ZSTD(1)),
    ResourceAttributes Map(LowCardinality(String), String) CODEC(ZSTD(1)),
    ScopeSchemaUrl LowCardinality(String) CODEC(ZSTD(1)),
    ScopeName String CODEC(ZSTD(1)),
    ScopeVersion LowCardinality(String) CODEC(ZSTD(1)),
    ScopeAttributes Map(LowCardinality(String), String) CODEC(ZSTD(1)),
    LogAttributes Map(LowCardinality(String), String) CODEC(ZSTD(1)),
    EventName String CODEC(ZSTD(1)),
    INDEX idx_trace_id TraceId TYPE bloom_filter(0.001) GRANULARITY 1,
    INDEX idx_res_attr_key mapKeys(ResourceAttributes) TYPE bloom_filter(0.01) GRANULARITY 1,
    INDEX idx_res_attr_value mapValues(ResourceAttributes) TYPE bloom_filter(0.01) GRANULARITY 1,
    INDEX idx_scope_attr_key mapKeys(ScopeAttributes) TYPE bloom_filter(0.01) GRANULARITY 1,
    INDEX idx_scope_attr_value mapValues(ScopeAttributes) TYPE bloom_filter(0.01) GRANULARITY 1,
    INDEX idx_log_attr_key mapKeys(LogAttributes) TYPE bloom_filter(0.01) GRANULARITY 1,
    INDEX idx_log_attr_value mapValues(LogAttributes) TYPE bloom_filter(0.01) GRANULARITY 1,
    INDEX idx_body Body TYPE tokenbf_v1(32768, 3, 0) GRANULARITY 8
) ENGINE = {o.engine()}
PARTITION BY toDate(TimestampTime)
PRIMARY KEY (ServiceName, TimestampTime)
ORDER BY (ServiceName, TimestampTime, Timestamp)
{o.ttl("TimestampTime")}
SETTINGS index_granularity = 8192, ttl_only_drop_parts = 1{o.dedup_setting}"""
    ]


def _metrics(o: SchemaOptions) -> list[str]:
    return [
        f"""CREATE TABLE IF NOT EXISTS `{o.database}`.{table} {o.on_cluster} ({_METRIC_PREFIX}{body}{_ATTR_INDEXES}
) ENGINE = {o.engine()}
PARTITION BY toDate(TimeUnix)
ORDER BY (ServiceName, MetricName, toStartOfHour(TimeUnix), cityHash64(Attributes), TimeUnix)
{o.ttl("toDateTime(TimeUnix)")}
SETTINGS index_granularity = 8192, ttl_only_drop_parts = 1{o.dedup_setting}"""
        for table, body in _METRIC_BODIES.items()
    ]


def _faas_invocations(o: SchemaOptions) -> list[str]:
    from obsloop.pipelines.faas_invocations import faas_invocations_ddl

    return faas_invocations_ddl(o)


#: The storage layer's own tables, in dependency order. The layers above add theirs in
#: :mod:`obsloop.schema`, so this module depends on none of them.
DDL_BUILDERS: list[Callable[[SchemaOptions], Iterable[str]]] = [_traces, _logs, _metrics, _faas_invocations]


#: How a ``Distributed`` table spreads inserted rows over the shards. Rows that a view
#: folds with ``FINAL`` must land on one shard: a function's invocation reports from every
#: source (``faas_invocations``, fed from ``otel_logs``). A trace's spans stay together too.
#: (Aggregate-function states, as in ``otel_traces_trace_id_ts``, merge across shards.)
SHARDING_KEYS = {
    "otel_traces": "cityHash64(TraceId)",
    "otel_logs": "cityHash64(ServiceName)",
}
DEFAULT_SHARDING_KEY = "cityHash64(ServiceName)"
"""Metrics: a series' points stay together, which their order key compresses best."""

_CREATE_TABLE = re.compile(r"CREATE TABLE IF NOT EXISTS (`[^`]+`)\.(\w+) ")


def _sharding_key(table: str, statement: str) -> str:
    if table in SHARDING_KEYS:
        return SHARDING_KEYS[table]
    return DEFAULT_SHARDING_KEY if "ServiceName " in statement else "rand()"


def _clustered(statements: list[str], options: SchemaOptions) -> list[str]:
    """The cluster layout of single-node DDL (see the module docstring)."""
    tables = {m.group(2) for s in statements if (m := _CREATE_TABLE.match(s))}
    view_sources = re.compile(rf"\b(TO|FROM) (`{re.escape(options.database)}`)\.({'|'.join(sorted(tables))})\b")
    clustered = []
    for statement in statements:
        match = _CREATE_TABLE.match(statement)
        if match:
            db, table = match.groups()
            clustered.append(_CREATE_TABLE.sub(f"CREATE TABLE IF NOT EXISTS {db}.{table}_local ", statement, 1))
            clustered.append(
                f"CREATE TABLE IF NOT EXISTS {db}.{table} {options.on_cluster} AS {db}.{table}_local\n"
                f"ENGINE = Distributed(`{options.cluster}`, {db}, {table}_local, "
                f"{_sharding_key(table, statement)})"
            )
        elif statement.startswith("CREATE MATERIALIZED VIEW") and tables:
            clustered.append(view_sources.sub(r"\1 \2.\3_local", statement))
        else:
            clustered.append(statement)
    return clustered


def ddl(
    options: SchemaOptions, builders: Iterable[Callable[[SchemaOptions], Iterable[str]]] = DDL_BUILDERS
) -> list[str]:
    """Every statement of ``builders`` (this module's tables unless told; the whole schema is
    :func:`obsloop.schema.ddl`), idempotent (``IF NOT EXISTS``), in order. Applying them
    (:func:`obsloop.schema.apply`) adds :func:`window_alterations`."""
    statements = []
    if options.database != "default":
        statements.append(f"CREATE DATABASE IF NOT EXISTS `{options.database}` {options.on_cluster}")
    for build in builders:
        statements.extend(build(options))
    return _clustered(statements, options) if options.cluster else statements


def window_alterations(statements: Iterable[str], definitions: Mapping[str, str]) -> list[str]:
    """The ``ALTER``s that set the deduplication window on the tables ``statements`` create
    with one but that exist without it (``definitions``: each existing table's
    ``create_table_query`` by name): an older obsloop created them so, and ``CREATE … IF NOT
    EXISTS`` leaves them as they are. A table that has the setting, whatever its value, is
    left alone."""
    alterations = []
    for statement in statements:
        match = _CREATE_TABLE.match(statement)
        if match and DEDUPLICATION_SETTING in statement:
            db, table = match.groups()
            if table in definitions and DEDUPLICATION_SETTING not in definitions[table]:
                alterations.append(
                    f"ALTER TABLE {db}.{table} MODIFY SETTING {DEDUPLICATION_SETTING} = {DEDUPLICATION_WINDOW}")
    return alterations
