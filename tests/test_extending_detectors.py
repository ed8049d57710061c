"""docs/extending.md, "A new window detector": its blocks run as written, and the detector
they define and register runs in the real detector host on windows chDB aggregated from
spans, its detection is stored and published, and its state survives a checkpoint."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from extending_doc import python_blocks
from prometheus_client import CollectorRegistry

from obsloop.detectors import registry
from obsloop.detectors.config import DetectorsConfig, DriftConfig
from obsloop.detectors.host import DetectorHost
from obsloop.detectors.metrics import DetectorMetrics
from obsloop.detectors.window_detector import Scope
from obsloop.pipelines.kafka_consumer import OwnedPartition
from obsloop.workers.detector import PartitionHost

T0 = datetime(2026, 3, 2, 12, 0, tzinfo=UTC)
SLOW_MINUTE = 15


@pytest.fixture
def doc() -> Iterator[dict[str, Any]]:
    """The namespace of the section's blocks, run in order; the registry as it was after."""
    before = dict(registry.KINDS)
    namespace: dict[str, Any] = {}
    for block in python_blocks("A new window detector"):
        exec(compile(block, "docs/extending.md", "exec"), namespace)  # noqa: S102 - the doc's own code
    yield namespace
    registry.KINDS.clear()
    registry.KINDS.update(before)


def insert_spans(client: Any, db: str) -> None:
    """30 SERVER spans a minute of one function, 40-60 ms, for 20 minutes; in minute
    ``SLOW_MINUTE`` three of them take two seconds (the median holds, the tail does not)."""
    client.command(f"""
INSERT INTO {db}.otel_traces (Timestamp, TraceId, SpanId, SpanName, SpanKind, ServiceName,
    ResourceAttributes, SpanAttributes, Duration, StatusCode)
SELECT toDateTime64('{T0:%Y-%m-%d %H:%M:%S}', 9, 'UTC') + toIntervalMinute(m) + toIntervalSecond(5 + n % 30),
    hex(cityHash64(m, n)), toString(n), 'invoke', 'Server', 'fraud-scorer',
    map('faas.name', 'fraud-scorer', 'cloud.platform', 'aws_lambda'),
    map('model.name', 'fraud', 'model.version', '2.1.0', 'faas.trigger', 'http'),
    toUInt64(if(m = {SLOW_MINUTE} AND n % 30 < 3, 2000, 40 + cityHash64(m, n) % 21) * 1e6), 'Unset'
FROM (SELECT intDiv(number, 30) AS m, number AS n FROM numbers(20 * 30))""")


def settings(**sections: dict[str, Any]) -> DetectorsConfig:
    return DetectorsConfig(window_seconds=60, allowed_lateness_seconds=30, warmup_windows=20,
                           drift=DriftConfig(enabled=False), sections=sections)


def host(client: Any, db: str, data_dir: Path, **sections: dict[str, Any]) -> DetectorHost:
    return DetectorHost(settings(**sections), lambda: client, data_dir, database=db,
                        wall_clock=lambda: (T0 + timedelta(days=1)).timestamp(), monotonic=lambda: 0.0)


def test_the_documented_detector_runs_in_the_host_and_its_state_survives_a_checkpoint(
        doc: dict[str, Any], chdb_client: Any, db: str, tmp_path: Path) -> None:
    tail_spread = doc["TailSpread"]
    assert registry.KINDS["tail_spread"] is tail_spread
    insert_spans(chdb_client, db)
    first = host(chdb_client, db, tmp_path, tail_spread={"factor": 4.0})
    published = []
    first.subscribe(published.append)

    found = [d for d in first.run_once() if d.id.startswith("tail_spread-")]

    [d] = found
    assert d.time == T0 + timedelta(minutes=SLOW_MINUTE + 1) and d.kind == "latency"
    assert d.series["faas.name"] == "fraud-scorer" and d.series["model.version"] == "2.1.0"
    assert d.observed["p99_over_p50"] > d.expected["p99_over_p50"][1]
    assert d in published
    stored = chdb_client.query(f"SELECT kind, observed['p99_over_p50'] FROM {db}.detections "
                               f"WHERE id = '{d.id}'").result_rows
    assert stored == [("latency", d.observed["p99_over_p50"])]

    detector = first.detector(tail_spread)
    assert detector is not None and detector.settings.factor == 4.0
    [(mean, learned)] = detector.usual.values()
    assert learned == 18 and 1.0 < mean < 2.0  # minutes 0-18 but the slow one
    first.checkpoint()
    checkpoint = json.loads((tmp_path / "detectors" / "checkpoint.json").read_text())
    assert checkpoint["detectors"]["tail_spread"] == detector.usual

    second = host(chdb_client, db, tmp_path, tail_spread={"factor": 4.0})
    restored = second.detector(tail_spread)
    assert second.restored and restored is not None and restored.usual == detector.usual


def test_the_worker_runs_it_per_partition_by_its_scope(doc: dict[str, Any], chdb_client: Any, db: str,
                                                       tmp_path: Path) -> None:
    tail_spread = doc["TailSpread"]
    config, client = settings(), (lambda: chdb_client)
    partition = PartitionHost(OwnedPartition("traces", 0), 1, config, client, tmp_path / "p",
                              database=db, budgets={}, metrics=DetectorMetrics(CollectorRegistry()))
    fleet = DetectorHost(config, client, tmp_path / "fleet", db, scope=Scope.FLEET)
    assert partition.detector(tail_spread) is not None
    assert fleet.detector(tail_spread) is None


def test_its_settings_are_checked_where_the_detectors_are_built(doc: dict[str, Any], chdb_client: Any, db: str,
                                                                tmp_path: Path) -> None:
    with pytest.raises(ValueError, match=r"^detectors\.sections\.tail_spread\.factor: Input should be greater than 1$"):
        host(chdb_client, db, tmp_path, tail_spread={"factor": 0.5})
    with pytest.raises(ValueError, match=r"no window detector named tail_sprad \(registered: scorer, .*tail_spread"):
        host(chdb_client, db, tmp_path, tail_sprad={"factor": 4.0})
    turned_off = host(chdb_client, db, tmp_path, tail_spread={"enabled": False})
    assert turned_off.detector(doc["TailSpread"]) is None
