"""The whole ClickHouse schema obsloop applies: every layer's tables, in dependency order.

:mod:`obsloop.pipelines.schema` owns the exporter tables, the detectors' and the cluster
layout; the feedback layer's tables join here, in the wiring, so that the pipelines do not
depend on the feedback loop. Everything that creates tables for a user (``obsloop schema
apply|show``, ``obsloop serve``, the ingest workers) asks this module.
"""

from __future__ import annotations

from obsloop.feedback.schema import feedback_ddl
from obsloop.pipelines import schema as pipelines_schema
from obsloop.pipelines.schema import SchemaOptions

BUILDERS = [*pipelines_schema.DDL_BUILDERS, feedback_ddl]


def ddl(options: SchemaOptions) -> list[str]:
    """Every statement, idempotent (``IF NOT EXISTS``), in order."""
    return pipelines_schema.ddl(options, BUILDERS)
