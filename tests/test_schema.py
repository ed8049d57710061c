"""The tables match the OpenTelemetry Collector clickhouseexporter layout; the whole schema
(:func:`obsloop.schema.ddl`, what ``obsloop schema apply`` and ``serve`` create) holds every
layer's tables, the feedback loop's included, single-node and clustered."""

from __future__ import annotations

import re

from obsloop.pipelines.schema import SchemaOptions
from obsloop.schema import ddl

EXPORTER_TRACE_COLUMNS = [
    ("Timestamp", "DateTime64(9)"), ("TraceId", "String"), ("SpanId", "String"), ("ParentSpanId", "String"),
    ("TraceState", "String"), ("SpanName", "LowCardinality(String)"), ("SpanKind", "LowCardinality(String)"),
    ("ServiceName", "LowCardinality(String)"), ("ResourceAttributes", "Map(LowCardinality(String), String)"),
    ("ScopeName", "String"), ("ScopeVersion", "String"), ("SpanAttributes", "Map(LowCardinality(String), String)"),
    ("Duration", "UInt64"), ("StatusCode", "LowCardinality(String)"), ("StatusMessage", "String"),
    ("Events.Timestamp", "Array(DateTime64(9))"), ("Events.Name", "Array(LowCardinality(String))"),
    ("Events.Attributes", "Array(Map(LowCardinality(String), String))"),
    ("Links.TraceId", "Array(String)"), ("Links.SpanId", "Array(String)"), ("Links.TraceState", "Array(String)"),
    ("Links.Attributes", "Array(Map(LowCardinality(String), String))"),
]


def test_schema_applies_idempotently_with_exporter_columns(chdb_client, chdb_database: str) -> None:
    client, db = chdb_client, chdb_database
    for _ in range(2):
        for statement in ddl(SchemaOptions(database=db, ttl_days=3)):
            client.command(statement)
    columns = client.query(
        f"SELECT name, type FROM system.columns WHERE database = '{db}' AND table = 'otel_traces' "
        "ORDER BY position").result_rows
    assert [tuple(c) for c in columns] == EXPORTER_TRACE_COLUMNS
    sorting = client.command(f"SELECT sorting_key FROM system.tables WHERE database = '{db}' AND name = 'otel_traces'")
    assert sorting == "ServiceName, SpanName, toDateTime(Timestamp), Timestamp"
    tables = {row[0] for row in client.query(f"SELECT name FROM system.tables WHERE database = '{db}'").result_rows}
    assert {"otel_traces", "otel_traces_trace_id_ts", "otel_traces_trace_id_ts_mv", "otel_logs",
            "otel_metrics_gauge", "otel_metrics_sum", "otel_metrics_histogram",
            "otel_metrics_exponential_histogram", "otel_metrics_summary", "detections",
            "feedback_audit", "feedback_dead_letters"} <= tables
    ttl = client.command(f"SELECT create_table_query FROM system.tables WHERE database = '{db}' AND name = 'otel_logs'")
    assert "TTL TimestampTime + toIntervalDay(3)" in ttl
    assert "non_replicated_deduplication_window = 10000" in ttl


def test_cluster_ddl_uses_on_cluster_replicated_local_tables_and_distributed_tables() -> None:
    statements = ddl(SchemaOptions(database="otel", cluster="prod"))
    assert statements[0] == "CREATE DATABASE IF NOT EXISTS `otel` ON CLUSTER `prod`"
    assert all("ON CLUSTER `prod`" in s for s in statements)
    tables = [s for s in statements if s.startswith("CREATE TABLE")]
    local = {s.split()[5].split(".")[1]: s for s in tables if "ENGINE = Replicated" in s}
    distributed = {s.split()[5].split(".")[1]: s for s in tables if "ENGINE = Distributed(" in s}
    assert len(local) + len(distributed) == len(tables)
    assert {"otel_traces_local", "otel_logs_local", "otel_metrics_sum_local", "faas_invocations_local",
            "feedback_audit_local", "feedback_dead_letters_local"} <= set(local)
    assert set(distributed) == {name.removesuffix("_local") for name in local}
    assert all(name.endswith("_local") for name in local)
    assert "Distributed(`prod`, `otel`, otel_logs_local, cityHash64(ServiceName))" in distributed["otel_logs"]
    assert all("non_replicated_deduplication_window" not in s for s in tables)
    views = [s for s in statements if s.startswith("CREATE MATERIALIZED VIEW")]
    assert views
    for view in views:  # a view fires where its rows land: local tables on both sides
        sources = re.findall(r"\b(?:TO|FROM) `otel`\.(\w+)", view)
        assert sources and all(name in local for name in sources), sources
    merged = next(s for s in statements if "faas_invocations_merged" in s)
    assert "FROM `otel`.faas_invocations FINAL" in merged  # plain views read the whole cluster


def test_single_node_ddl_has_no_local_or_distributed_tables() -> None:
    statements = ddl(SchemaOptions(database="otel"))
    assert not any("_local" in s or "Distributed(" in s or "ON CLUSTER" in s for s in statements)
