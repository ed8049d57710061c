"""Quality detections from labels joined in chDB: a concept drift pages and is confirmed, a
window with few labels is weak evidence, a worse canary is a green detection, and the
detector host runs it and keeps its state across a checkpoint."""

from __future__ import annotations

import json
import random
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry
from quality_events import insert_labels, insert_predictions

from obsloop.detectors.builtin import ModelQuality
from obsloop.detectors.config import DetectorsConfig, DriftConfig, QualityConfig
from obsloop.detectors.detection import VARIANT
from obsloop.detectors.host import DetectorHost
from obsloop.detectors.quality import QualityWindow
from obsloop.detectors.quality_watch import QualityWatch, binomial_cdf

T0 = datetime(2026, 3, 2, 12, 0, tzinfo=UTC)
CONFIG = QualityConfig(window_seconds=300, min_labels=100, baseline_labels=500, settle_seconds=600)


def stream(client, db: str, minutes: int, *, version: str = "1", per_minute: int = 60,
           wrong_after: int | None = None, accuracy_after: float = 0.6, coverage: float = 1.0,
           delay: timedelta = timedelta(seconds=30), seed: int = 3) -> None:
    """A calibrated binary classifier; from minute ``wrong_after`` the labels follow another
    concept (the scores, hence the inputs, do not change) and it is right ``accuracy_after``."""
    rng = random.Random(seed)
    preds, labels = [], []
    for i in range(minutes * per_minute):
        t = T0 + timedelta(seconds=i * 60 / per_minute)
        p = rng.choice((0.05, 0.95)) if rng.random() < 0.8 else rng.random()
        y = int(rng.random() < p)
        if wrong_after is not None and i >= wrong_after * per_minute:
            y = int(p >= 0.5) if rng.random() < accuracy_after else 1 - int(p >= 0.5)
        pid = f"{version}-{i}"
        preds.append((t, "fraud", version, pid, p, None))
        if rng.random() < coverage:
            labels.append((t + delay, pid, y))
    insert_predictions(client, db, preds)
    insert_labels(client, db, labels)


def test_binomial_tail_is_exact() -> None:
    assert binomial_cdf(0, 3, 0.5) == pytest.approx(0.125)
    assert binomial_cdf(1, 3, 0.5) == pytest.approx(0.5)
    assert binomial_cdf(3, 3, 0.5) == 1.0


def test_concept_drift_pages_then_confirms_and_stable_model_is_quiet(chdb_client, db) -> None:
    stream(chdb_client, db, 60, wrong_after=30)
    watch = QualityWatch(CONFIG)

    found = watch.poll(chdb_client, db, T0 + timedelta(minutes=61))

    realized = [d for d in found if d.observed["estimated"] == 0.0]
    assert [d.severity for d in realized] == ["error", "critical"]
    assert [d.pending for d in realized] == [True, False]  # one low window pages nobody
    first = realized[0]
    assert first.kind == "quality" and first.time == T0 + timedelta(minutes=35)  # the first drifted window
    assert first.observed["accuracy"] < 0.7 and first.observed["label_coverage"] == 1.0
    assert first.expected["accuracy"][0] > 0.85
    assert first.observed["input_drift"] == 0.0 and "no input drift" in first.summary
    assert f"(estimated {first.observed['accuracy']:.3f})" not in first.summary
    assert "(estimated 0.9" in first.summary  # the estimate did not move: a concept drift
    # the scores did not move: the estimate sees nothing, as it should for a concept drift
    assert not [d for d in found if d.observed["estimated"] == 1.0]
    # nothing is tested twice
    assert watch.poll(chdb_client, db, T0 + timedelta(minutes=61)) == []


def test_a_window_with_few_labels_is_weak_evidence(chdb_client, db) -> None:
    # 2% coverage after the baseline: ~6 labels per window, drifted to 60% right.
    stream(chdb_client, db, 10, coverage=1.0)
    stream(chdb_client, db, 50, coverage=0.0, seed=4)  # only their predictions...
    watch = QualityWatch(CONFIG.model_copy(update={"settle_seconds": 60}))
    baseline = watch.poll(chdb_client, db, T0 + timedelta(minutes=11))
    assert baseline == [] and watch.versions[("fraud", "1")].base_labelled >= 500

    rng = random.Random(5)
    labels = [(T0 + timedelta(minutes=40), f"1-{i}", rng.random() < 0.3)  # 70% wrong...
              for i in range(600, 3000) if rng.random() < 0.02]
    insert_labels(chdb_client, db, [(t, pid, int(y)) for t, pid, y in labels])

    found = watch.poll(chdb_client, db, T0 + timedelta(minutes=61))
    # ...each window holds a handful of labels (4 right out of 6 is no evidence against 0.9):
    # the settled windows are pooled, and ~50 labels in all are still too few to test.
    assert watch.tested_until[("fraud", "1")] >= (T0 + timedelta(minutes=45)).timestamp()
    carry = watch.versions[("fraud", "1")].carry
    assert carry is not None and 20 < carry.labelled < CONFIG.min_labels
    assert found == []


def test_worse_canary_is_a_green_quality_detection(chdb_client, db) -> None:
    stream(chdb_client, db, 30, version="1", per_minute=60)
    stream(chdb_client, db, 30, version="2", per_minute=30, wrong_after=0, accuracy_after=0.7, seed=9)

    found = QualityWatch(CONFIG).poll(chdb_client, db, T0 + timedelta(minutes=31))

    canary = [d for d in found if d.series.get(VARIANT) == "green"]
    assert canary and canary[0].series["model.version"] == "2" and canary[0].severity == "critical"
    assert canary[0].observed["accuracy"] < canary[0].expected["accuracy"][0]


def test_detector_host_reports_quality_and_restores_its_baselines(chdb_client, db, tmp_path: Path) -> None:
    stream(chdb_client, db, 60, wrong_after=30)
    # the loop's event time comes from the function windows: one span per minute
    chdb_client.command(f"""
INSERT INTO {db}.otel_traces (Timestamp, TraceId, SpanId, SpanName, SpanKind, ServiceName,
    ResourceAttributes, SpanAttributes, Duration, StatusCode)
SELECT toDateTime64('{T0:%Y-%m-%d %H:%M:%S}', 9, 'UTC') + number * 60, hex(number), '1', 'invoke',
    'Server', 'fraud', map('faas.name', 'fraud'), map('faas.trigger', 'http'), 1000000, 'Unset'
FROM numbers(62)""")
    config = DetectorsConfig(window_seconds=60, drift=DriftConfig(enabled=False), quality=CONFIG)

    registry = CollectorRegistry()

    def loop(registry: CollectorRegistry | None = None) -> DetectorHost:
        return DetectorHost(config, lambda: chdb_client, tmp_path, database=db, registry=registry,
                            wall_clock=lambda: (T0 + timedelta(days=1)).timestamp(), monotonic=lambda: 0.0)

    first = loop(registry)
    found = []
    while True:
        step = first.run_once()
        if not step and not first._behind():
            break
        found += step
    quality = [d for d in found if d.kind == "quality"]
    assert [d.severity for d in quality] == ["error", "critical"]
    # the labels it joined are on /metrics: every prediction was labelled once, none late
    def labels(state: str) -> float | None:
        return registry.get_sample_value("obsloop_quality_labels_total", {"state": state})

    assert (labels("joined"), labels("late")) == (60 * 60, 0)
    # the evidence a retraining run gets: Evidently's classification report, window vs baseline
    html, summary = (Path(url.removeprefix("file://")) for url in quality[-1].evidence)
    assert html.suffix == ".html" and html.stat().st_size > 10_000
    accuracy = json.loads(summary.read_text())["metrics"][0]
    assert accuracy["metric"].startswith("Accuracy") and accuracy["value"] < 0.75
    stored = chdb_client.command(f"SELECT count() FROM {db}.detections WHERE kind = 'quality'")
    assert int(stored) == 2
    first.checkpoint()
    second = loop()
    assert second.restored
    quality = second.detector(ModelQuality)
    assert quality is not None
    assert quality.watch.versions[("fraud", "1")].base_labelled >= 500
    assert quality.watch.versions[("fraud", "1")].open


def test_low_coverage_windows_are_pooled_until_they_have_enough_labels(chdb_client, db) -> None:
    # 5% labelled: ~15 labels per 5-minute window, 40 needed; the drift starts at minute 90.
    stream(chdb_client, db, 150, coverage=0.05, wrong_after=90, accuracy_after=0.5)
    config = CONFIG.model_copy(update={"min_labels": 40, "baseline_labels": 200, "settle_seconds": 60})
    watch = QualityWatch(config)

    found = []
    for minute in range(5, 155, 5):  # event time moves on; each poll sees what has settled
        found += watch.poll(chdb_client, db, T0 + timedelta(minutes=minute))
        carry = watch.versions[("fraud", "1")].carry
        if carry is not None:  # the pooled windows survive a checkpoint
            again = QualityWatch(config)
            again.restore(watch.to_state())
            assert again.versions[("fraud", "1")].carry == carry

    realized = [d for d in found if d.observed["estimated"] == 0.0]
    assert realized and all(d.time > T0 + timedelta(minutes=90) for d in realized)
    first = realized[0]
    assert first.observed["labelled"] >= 40 and first.time <= T0 + timedelta(minutes=90 + 30)


def _window(start: datetime, labelled: int, correct: int) -> QualityWindow:
    return QualityWindow(start, 300, ("fraud", "1"), 1000, labelled, correct, labelled, 0, 0, 0, None, None,
                         0.0, 0.0, 0, None, 1000, 900.0, 90.0, 0, 0, (30.0, 60.0, 90.0))


def test_a_quality_drop_names_the_input_drift_of_the_same_model() -> None:
    from obsloop.detectors.detection import Detection

    watch = QualityWatch(CONFIG)
    windows = [_window(T0 + timedelta(minutes=5 * i), 200, 180) for i in range(3)]
    windows.append(_window(T0 + timedelta(minutes=15), 200, 120))
    watch.note_drift(Detection(id="drift-1", time=T0 + timedelta(minutes=14), kind="drift", score=1.0,
                               series={"model.name": "fraud", "model.version": "1"},
                               summary="drift of fraud 1 in amount after 900 predictions"))

    [drop] = watch.observe(windows, T0 + timedelta(hours=1))

    assert drop.observed["input_drift"] == 1.0
    assert drop.summary.endswith("input drift: drift of fraud 1 in amount after 900 predictions")
