"""The detectors' tables: window aggregates (with their feeding views) and detections."""

from __future__ import annotations

from typing import TYPE_CHECKING

from obsloop.detectors.detection_bus import detections_ddl
from obsloop.detectors.quality_schema import quality_ddl
from obsloop.detectors.windows import windows_ddl

if TYPE_CHECKING:
    from obsloop.pipelines.schema import SchemaOptions


def detectors_ddl(options: SchemaOptions) -> list[str]:
    """Needs ``otel_traces`` and ``otel_logs`` first (the views read them)."""
    return [*windows_ddl(options), *detections_ddl(options), *quality_ddl(options)]
