"""The whole ClickHouse schema obsloop applies: every layer's tables, in dependency order.

:mod:`obsloop.pipelines.schema` owns the exporter tables and the cluster layout; the
detectors' and the feedback layer's tables join here, in the wiring, so that no layer
depends on one above it. Everything that creates tables for a user (``obsloop schema
apply|show``, ``obsloop serve``, the ingest workers) asks this module.
"""

from __future__ import annotations

from clickhouse_connect.driver.client import Client

from obsloop.core.sql import quote
from obsloop.detectors.schema import detectors_ddl
from obsloop.feedback.schema import feedback_ddl
from obsloop.pipelines import schema as pipelines_schema
from obsloop.pipelines.schema import SchemaOptions

BUILDERS = [*pipelines_schema.DDL_BUILDERS, detectors_ddl, feedback_ddl]


def ddl(options: SchemaOptions) -> list[str]:
    """Every statement, idempotent (``IF NOT EXISTS``), in order."""
    return pipelines_schema.ddl(options, BUILDERS)


def apply(client: Client, options: SchemaOptions) -> int:
    """Run :func:`ddl`, then set the deduplication window on the tables an older obsloop
    created without it (:func:`obsloop.pipelines.schema.window_alterations`; only those, so a
    ClickHouse-compatible surface that refuses ``ALTER … MODIFY SETTING`` is asked none on a
    schema this version created). The number of statements run."""
    statements = ddl(options)
    for statement in statements:
        client.command(statement)
    rows = client.query("SELECT name, create_table_query FROM system.tables WHERE database = "
                        + quote(options.database)).result_rows
    definitions: dict[str, str] = {str(name): str(query) for name, query in rows}
    alterations = pipelines_schema.window_alterations(statements, definitions)
    for statement in alterations:
        client.command(statement)
    return len(statements) + len(alterations)
