"""The ``faas_invocations`` table: one row per invocation, filled by ClickHouse itself.

Several sources report the same invocation (a Lambda ``REPORT`` line from CloudWatch, the
Telemetry API's ``platform.start`` and ``platform.report``, a pull that overlaps a push),
each knowing part of it. A materialized view turns every ``obsloop.faas.invocation`` log
record into a partial row; an ``AggregatingMergeTree`` keyed by platform, function and
invocation id folds the partial rows together with ``SimpleAggregateFunction`` columns:
``anyLast`` skips NULLs, so each field comes from whichever source knew it, and a
duplicate delivery folds into the same row instead of being counted twice. Read it with
``FINAL`` (or ``GROUP BY`` the key), or through the ``faas_invocations_merged`` view.

Requires ``otel_logs`` (the clickhouseexporter schema) to exist first.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from obsloop.core import semconv

if TYPE_CHECKING:
    from obsloop.pipelines.schema import SchemaOptions


def _attr(key: str) -> str:
    """A record attribute, falling back to the resource attribute, NULL when absent."""
    return (
        f"coalesce(nullIf(LogAttributes['{key}'], ''), nullIf(ResourceAttributes['{key}'], ''))"
    )


# (column, type, merge function, expression over otel_logs)
_COLUMNS: list[tuple[str, str, str, str]] = [
    ("time", "DateTime64(9)", "min", "Timestamp"),
    ("region", "Nullable(String)", "anyLast", _attr(semconv.CLOUD_REGION)),
    ("account_id", "Nullable(String)", "anyLast", _attr(semconv.CLOUD_ACCOUNT_ID)),
    ("version", "Nullable(String)", "anyLast", _attr(semconv.FAAS_VERSION)),
    ("model_name", "Nullable(String)", "anyLast", _attr(semconv.MODEL_NAME)),
    ("model_version", "Nullable(String)", "anyLast", _attr(semconv.MODEL_VERSION)),
    ("trigger", "Nullable(String)", "anyLast", _attr(semconv.FAAS_TRIGGER)),
    ("duration_ms", "Nullable(Float64)", "max",
     f"toFloat64OrNull({_attr(semconv.FAAS_DURATION_MS)})"),
    ("billed_duration_ms", "Nullable(Float64)", "max",
     f"toFloat64OrNull({_attr(semconv.FAAS_BILLED_DURATION_MS)})"),
    ("memory_mb", "Nullable(UInt32)", "max",
     f"toUInt32(intDiv(toUInt64OrNull({_attr(semconv.FAAS_MAX_MEMORY)}), 1048576))"),
    ("memory_used_mb", "Nullable(Float64)", "max",
     f"toFloat64OrNull({_attr(semconv.FAAS_MEMORY_USED_MB)})"),
    ("init_duration_ms", "Nullable(Float64)", "max",
     f"toFloat64OrNull({_attr(semconv.FAAS_INIT_DURATION_MS)})"),
    ("coldstart", "Nullable(UInt8)", "max",
     f"if({_attr(semconv.FAAS_COLDSTART)} IS NULL, NULL, "
     f"toUInt8(lower({_attr(semconv.FAAS_COLDSTART)}) IN ('true', '1')))"),
    ("status", "Nullable(String)", "anyLast", _attr(semconv.FAAS_STATUS)),
    ("error_type", "Nullable(String)", "anyLast", _attr(semconv.FAAS_ERROR_TYPE)),
    ("http_status", "Nullable(UInt16)", "anyLast",
     f"toUInt16OrNull({_attr(semconv.HTTP_RESPONSE_STATUS_CODE)})"),
    ("cost_usd", "Nullable(Float64)", "max", f"toFloat64OrNull({_attr(semconv.COST_USD)})"),
    ("cost_center", "Nullable(String)", "anyLast", _attr(semconv.COST_CENTER)),
    ("trace_id", "Nullable(String)", "anyLast", "nullIf(TraceId, '')"),
    ("sources", "Array(String)", "groupUniqArrayArray",
     f"arrayFilter(x -> x != '', [LogAttributes['{semconv.INVOCATION_SOURCE}']])"),
]

_KEY = [
    ("platform", "LowCardinality(String)", f"ifNull({_attr(semconv.CLOUD_PLATFORM)}, '')"),
    ("function", "String", f"ifNull({_attr(semconv.FAAS_NAME)}, ServiceName)"),
    ("invocation_id", "String", f"ifNull({_attr(semconv.FAAS_INVOCATION_ID)}, '')"),
]


def faas_invocations_ddl(options: SchemaOptions) -> list[str]:
    """``CREATE`` statements (idempotent) for the table, its feeding view and a merged view."""
    database, on_cluster = f"`{options.database}`", options.on_cluster
    columns = [f"    {name} {kind}" for name, kind, _ in _KEY]
    columns += [
        f"    {name} SimpleAggregateFunction({merge}, {kind})"
        for name, kind, merge, _ in _COLUMNS
    ]
    table = (
        f"CREATE TABLE IF NOT EXISTS {database}.faas_invocations {on_cluster} (\n"
        + ",\n".join(columns)
        + f"\n) ENGINE = {options.engine('AggregatingMergeTree')}\n"
        f"ORDER BY (platform, function, invocation_id)\n{options.dedup_settings_clause}"
    )
    select = ",\n".join(
        [f"    {expr} AS {name}" for name, _, expr in _KEY]
        + [f"    {expr} AS {name}" for name, _, _, expr in _COLUMNS]
    )
    view = (
        f"CREATE MATERIALIZED VIEW IF NOT EXISTS {database}.faas_invocations_mv {on_cluster} "
        f"TO {database}.faas_invocations AS\nSELECT\n{select}\n"
        f"FROM {database}.otel_logs\n"
        f"WHERE EventName = '{semconv.INVOCATION_REPORT_EVENT}'"
    )
    merged_columns = ", ".join(
        [name for name, _, _ in _KEY] + [name for name, _, _, _ in _COLUMNS]
    )
    merged = (
        f"CREATE VIEW IF NOT EXISTS {database}.faas_invocations_merged {on_cluster} AS\n"
        f"SELECT {merged_columns} FROM {database}.faas_invocations FINAL"
    )
    return [table, view, merged]
