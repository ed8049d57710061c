"""The whole ClickHouse schema obsloop applies: every layer's tables, in dependency order.

:mod:`obsloop.pipelines.schema` owns the exporter tables and the cluster layout; the
detectors' and the feedback layer's tables join here, in the wiring, so that no layer
depends on one above it. Everything that creates tables for a user (``obsloop schema
apply|show``, ``obsloop serve``, the ingest workers) asks this module.
"""

from __future__ import annotations

from obsloop.detectors.schema import detectors_ddl
from obsloop.feedback.schema import feedback_ddl
from obsloop.pipelines import schema as pipelines_schema
from obsloop.pipelines.schema import SchemaOptions

BUILDERS = [*pipelines_schema.DDL_BUILDERS, detectors_ddl, feedback_ddl]


def ddl(options: SchemaOptions) -> list[str]:
    """Every statement, idempotent (``IF NOT EXISTS``), in order."""
    return pipelines_schema.ddl(options, BUILDERS)
