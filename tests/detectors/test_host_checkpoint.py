"""The detector host's checkpoint across an upgrade: a checkpoint written by the code before
the window detectors had a registry (format 1, ``data/checkpoint-v1.json``) is restored
whole, and the host goes on exactly as one that never stopped; a checkpoint a detector cannot
read starts every detector afresh.

The checkpoint was first written by the detector loop of commit 39683c8 (checkpoint format 1)
over :func:`insert_history` with :func:`settings` and :data:`BUDGETS`, stopped after
:data:`SPLIT_MINUTE` minutes (``max_catchup_windows``), wall clock :data:`WALL_CLOCK`. When a
detector's own state grew (the scorer's baselines learnt the shares of calls past each level,
its series models an AR(1) term, then a scale per hour of the day and a spread view, its
baselines the tail's shape), the file was written again in format 1's layout from the same
run, so that it tests the host's format, not the scorer's: the scorer's own upgrade is tested
with the scorer.
"""

from __future__ import annotations

import json
import shutil
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from obsloop.detectors.builtin import SeriesScoring
from obsloop.detectors.config import DetectorsConfig, DriftConfig
from obsloop.detectors.cost import Budget
from obsloop.detectors.host import CHECKPOINT_VERSION, DetectorHost

T0 = datetime(2026, 3, 2, 12, 0, tzinfo=UTC)
FUNCTION = "fraud-scorer"
MINUTES = 55
SPLIT_MINUTE = 32
SETTINGS: dict[str, Any] = dict(
    window_seconds=60, allowed_lateness_seconds=30, idle_flush_seconds=60, warmup_windows=20,
    forecast_check_seconds=600, drift=DriftConfig(reference_size=300, post_change=200))
BUDGETS = {FUNCTION: Budget(FUNCTION, monthly_usd=50.0, alert_fraction=0.5, cost_center="FraudDetection")}
WALL_CLOCK = datetime(2026, 4, 1, tzinfo=UTC).timestamp()


def settings(**overrides: Any) -> DetectorsConfig:
    return DetectorsConfig(**{**SETTINGS, **overrides})


def insert_history(client: Any, db: str) -> None:
    """The history behind the checkpoint: invocation reports of blue (2.1.0) 30 a minute,
    green (2.2.0) 20 a minute and 6x slower from minute 30, each $0.002 in cost center
    FraudDetection; 3,000 prediction events of 2.1.0 in minute 0 and 1,500 shifted ones in
    minute 1. After the checkpoint, blue is 8x slower from minute 40 (the checkpoint was
    written with minutes 0 to 39 stored; its first 32 do not change)."""
    client.command(f"""
INSERT INTO {db}.otel_logs (Timestamp, ServiceName, ResourceAttributes, LogAttributes, EventName)
SELECT toDateTime64('{T0:%Y-%m-%d %H:%M:%S}', 9, 'UTC') + toIntervalMinute(m) + toIntervalSecond(5 + number % 30),
    '{FUNCTION}', map('cloud.platform', 'aws_lambda'),
    map('faas.name', '{FUNCTION}', 'faas.invocation_id', concat(v, '-', toString(m), '-', toString(number)),
        'model.name', 'fraud', 'model.version', v, 'obsloop.cost.usd', '0.002',
        'obsloop.cost_center', 'FraudDetection',
        'faas.duration_ms', toString((40 + cityHash64(v, m, number) % 21) * if(v = '2.2.0' AND m >= 30, 6, if(v = '2.1.0' AND m >= 40, 8, 1)))),
    'obsloop.faas.invocation'
FROM (SELECT intDiv(number, 50) AS m, number % 50 < 30 ? '2.1.0' : '2.2.0' AS v, number
      FROM numbers({MINUTES * 50}))""")
    client.command(f"""
INSERT INTO {db}.otel_logs (Timestamp, ServiceName, ResourceAttributes, LogAttributes, EventName)
SELECT toDateTime64('{T0:%Y-%m-%d %H:%M:%S}', 9, 'UTC') + if(n < 3000, n / 100, 60 + (n - 3000) / 100),
    '{FUNCTION}', map('faas.name', '{FUNCTION}'),
    map('model.name', 'fraud', 'model.version', '2.1.0', 'prediction', toString((cityHash64(n, 7) % 100) / 100.0),
        'feature.amount', toString(if(n < 3000, 10, 13) + (cityHash64(n, 3) % 1000) / 500.0)),
    'obsloop.model.prediction'
FROM (SELECT number AS n FROM numbers(4500))""")


V1 = Path(__file__).parent / "data" / "checkpoint-v1.json"


def host(client: Any, db: str, data_dir: Path, **overrides: Any) -> DetectorHost:
    return DetectorHost(settings(**overrides), lambda: client, data_dir, database=db, budgets=BUDGETS,
                        wall_clock=lambda: WALL_CLOCK, monotonic=lambda: 0.0)


def run_to_the_end(h: DetectorHost) -> list[tuple[str, str, bool]]:
    found = []
    while h.closed_until is None or h.closed_until < T0.replace(minute=MINUTES - 1):
        before = h.closed_until
        found += [(d.id, d.severity, d.cleared) for d in h.run_once()]
        assert h.closed_until != before, f"stuck at {before}"
    return found


def test_a_checkpoint_of_the_old_format_restores_every_detector_and_resumes_as_if_never_stopped(
        chdb_client, db, tmp_path: Path) -> None:
    insert_history(chdb_client, db)
    old = json.loads(V1.read_text())
    assert old["version"] == 1 and {"scorer", "canary", "budgets", "drift", "quality"} <= set(old)
    checkpoint = tmp_path / "upgraded" / "detectors" / "checkpoint.json"
    checkpoint.parent.mkdir(parents=True)
    shutil.copy(V1, checkpoint)

    upgraded = host(chdb_client, db, tmp_path / "upgraded")

    assert upgraded.restored
    assert upgraded.closed_until == T0.replace(minute=SPLIT_MINUTE)
    assert [d.name for d in upgraded.detectors] == ["scorer", "canary", "budgets", "drift", "quality"]
    for detector in upgraded.detectors:  # what each learned before the upgrade, all of it
        assert json.loads(json.dumps(detector.state())) == old[detector.name], detector.name
    rest = run_to_the_end(upgraded)

    # Today's code, never stopped, and stopped where the old one was, finds the same.
    whole = run_to_the_end(host(chdb_client, db, tmp_path / "whole"))
    first_part = host(chdb_client, db, tmp_path / "split", max_catchup_windows=SPLIT_MINUTE).run_once()
    assert rest and rest == whole[len(first_part):]
    # The canary episode opened before the upgrade is still open after it: it does not open
    # twice, and it clears once blue is as slow as green.
    canary = "canary-fraud-scorer-2.2.0-latency"
    assert (canary, "critical", False) in whole[:len(first_part)] and (canary, "critical", False) not in rest
    assert any(d[0] == canary and d[2] for d in rest)

    upgraded.checkpoint()  # written in today's format, the states under their names
    state = json.loads(checkpoint.read_text())
    assert state["version"] == CHECKPOINT_VERSION == 2
    assert set(state["detectors"]) == {"scorer", "canary", "budgets", "drift", "quality"}


def test_a_checkpoint_a_detector_cannot_read_starts_every_detector_afresh(chdb_client, db, tmp_path: Path) -> None:
    insert_history(chdb_client, db)
    state = json.loads(V1.read_text())
    state["budgets"] = {"fraud-scorer": {"history": "not a list"}}  # scorer and canary come first
    checkpoint = tmp_path / "detectors" / "checkpoint.json"
    checkpoint.parent.mkdir(parents=True)
    checkpoint.write_text(json.dumps(state))

    fresh = host(chdb_client, db, tmp_path)

    assert not fresh.restored and fresh.closed_until is None
    scoring = fresh.detector(SeriesScoring)
    assert scoring is not None and scoring.series_count() == 0, "half a restored state"


@pytest.mark.parametrize("damage", ["held", "recent", "top-level list", "short episode"])
def test_a_damaged_checkpoint_of_any_shape_starts_afresh_instead_of_failing_to_start(
        chdb_client, db, tmp_path: Path, damage: str) -> None:
    # A string where the scorer keeps a dict (its held baselines, its recent counts) raised
    # AttributeError, and a short list IndexError: neither was caught, so serve and the
    # detector worker could not start until the file was deleted by hand.
    state: Any = json.loads(V1.read_text())
    if damage == "top-level list":
        state = [state]
    elif damage == "short episode":
        key = next(iter(state["scorer"]["episodes"]))
        state["scorer"]["episodes"][key] = []
    else:
        state["scorer"][damage] = "not a mapping"
    checkpoint = tmp_path / "detectors" / "checkpoint.json"
    checkpoint.parent.mkdir(parents=True)
    checkpoint.write_text(json.dumps(state))

    fresh = host(chdb_client, db, tmp_path)

    assert not fresh.restored and fresh.closed_until is None
    scoring = fresh.detector(SeriesScoring)
    assert scoring is not None and scoring.series_count() == 0


def test_forgetting_open_episodes_drops_those_of_every_detector(chdb_client, db, tmp_path: Path) -> None:
    old = json.loads(V1.read_text())
    opened = len(old["scorer"]["episodes"]) + len(old["canary"]["open"])
    assert len(old["canary"]["open"]) == 1 and opened > 1
    checkpoint = tmp_path / "detectors" / "checkpoint.json"
    checkpoint.parent.mkdir(parents=True)
    shutil.copy(V1, checkpoint)
    restored = host(chdb_client, db, tmp_path)

    assert restored.forget_open_episodes() == opened

    state = restored.to_state()["detectors"]
    assert state["scorer"]["episodes"] == {} and state["canary"]["open"] == {}
