"""Ground truth end to end: obsloop-instrument exports predictions and, later, their labels
to a running ``obsloop serve``; ``obsloop labels load`` adds labels from a CSV file through
the same server; the quality tables join them in its ClickHouse."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import obsloop_instrument
import pytest
from conftest import _reset_library
from obsloop_instrument import log_ground_truth, log_prediction


@pytest.fixture
def exporting_to_obsloop(obsloop_factory, monkeypatch: pytest.MonkeyPatch):
    # `labels load` writes through the running server's /query: writes must be allowed there
    obsloop = obsloop_factory(admin={"allow_write_queries": True})
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", obsloop.http)
    monkeypatch.setenv("OTEL_SERVICE_NAME", "fraud-scorer")
    monkeypatch.setenv("OBSLOOP_MODEL_NAME", "fraud")
    monkeypatch.setenv("OBSLOOP_MODEL_VERSION", "3")
    for name in ("OBSLOOP_FEATURE_ALLOWLIST", "OBSLOOP_SENSITIVE_FEATURES", "OBSLOOP_PREDICTION_SAMPLE_RATE",
                 "OTEL_RESOURCE_ATTRIBUTES"):
        monkeypatch.delenv(name, raising=False)
    _reset_library(monkeypatch)
    return obsloop


def labels_load(server, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "obsloop", "--config", str(server.config_path), "labels",
                           "load", *args], cwd=server.workdir, capture_output=True, text=True, timeout=120)


def test_labels_by_otlp_and_by_file_join_their_predictions(exporting_to_obsloop, tmp_path: Path) -> None:
    obsloop = exporting_to_obsloop
    ids = [log_prediction({"amount": float(i)}, int(i % 2 == 0), score=0.9 if i % 2 == 0 else 0.1)
           for i in range(6)]
    obsloop_instrument.flush()
    for pid in ids[:3]:
        log_ground_truth(pid, 1)  # right for 0 and 2, wrong for 1
    log_ground_truth("never-predicted", 0)
    obsloop_instrument.flush()
    csv_file = tmp_path / "labels.csv"
    csv_file.write_text("prediction_id,label,time\n"
                        f"{ids[3]},0,2026-12-01T10:00:00Z\n{ids[4]},true,\n{ids[4]},1,\n")

    loaded = labels_load(obsloop, str(csv_file))
    assert loaded.returncode == 0, loaded.stderr
    assert "3 labels" in loaded.stdout

    obsloop.wait_for("SELECT count() FROM quality_labels", 7)
    rows = obsloop.query(f"""
SELECT count() AS labelled, countIf(p.predicted = l.label) AS correct, uniq(l.source) AS sources
FROM quality_predictions AS p INNER JOIN quality_labels AS l USING prediction_id
WHERE p.model_name = 'fraud' AND p.model_version = '3' AND l.prediction_id IN {tuple(ids)}""")
    # five predictions labelled (ids[4] twice), wrong only for ids[1]
    assert rows[0] == {"labelled": 6, "correct": 5, "sources": 2}


def test_a_bad_label_file_is_refused_whole(obsloop, tmp_path: Path) -> None:
    csv_file = tmp_path / "labels.csv"
    csv_file.write_text("prediction_id,label,time\np1,1,\n,0,\np3,1,yesterday\n")

    result = labels_load(obsloop, str(csv_file))

    assert result.returncode == 2
    assert "line 3: no prediction_id" in result.stderr and "line 4: time 'yesterday'" in result.stderr
    assert obsloop.scalar("SELECT count() FROM quality_labels") == 0
