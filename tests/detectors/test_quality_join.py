"""The prediction/label join in chDB: metrics per window, late, duplicate and unknown labels,
labels before their prediction, and the CBPE estimate next to the realized accuracy."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta

import pytest
from quality_events import insert_labels, insert_predictions

from obsloop.detectors.quality import QualityReader

T0 = datetime(2026, 3, 2, 12, 0, tzinfo=UTC)


def test_binary_metrics_coverage_delay_late_and_duplicates(chdb_client, db) -> None:
    # 10 predictions at T0+i s: scores 0.9 for the first five (class 1), 0.2 for the rest.
    preds = [(T0 + timedelta(seconds=i), "fraud", "2", f"p{i}", 0, 0.9 if i < 5 else 0.2)
             for i in range(10)]
    insert_predictions(chdb_client, db, [(t, m, v, pid, int(s >= 0.5), s) for t, m, v, pid, _, s in preds])
    # labels: p0..p3 right (1), p4 wrong (0), p5..p6 right (0), p7 wrong (1); p8 late; p9 none.
    labels = [(T0 + timedelta(seconds=60 + i), f"p{i}", lab)
              for i, lab in enumerate(["1", "1", "true", "1.0", "0", "0", "false", "1"])]
    labels.append((T0 + timedelta(days=2), "p8", "0"))  # beyond a one-day horizon
    labels.append((T0 + timedelta(seconds=30), "p4", "1"))  # earlier label of p4, superseded
    labels.append((T0 + timedelta(seconds=90), "nobody", "1"))  # unknown prediction id
    insert_labels(chdb_client, db, labels)

    [w] = QualityReader(chdb_client, db, window_seconds=300, horizon_seconds=86_400).read(
        T0, T0 + timedelta(minutes=5))

    assert (w.model, w.predictions, w.labelled, w.correct) == (("fraud", "2"), 10, 8, 6)
    assert (w.late, w.duplicates) == (1, 1)
    m = w.metrics
    assert m["accuracy"] == pytest.approx(6 / 8)
    assert m["label_coverage"] == pytest.approx(0.8)
    # predicted 1: p0..p4 (4 right, 1 wrong); actual 1 among labelled: p0..p3, p7
    assert (m["precision"], m["recall"]) == (pytest.approx(4 / 5), pytest.approx(4 / 5))
    assert m["f1"] == pytest.approx(0.8)
    assert m["brier"] == pytest.approx((4 * 0.01 + 0.81 + 2 * 0.04 + 0.64) / 8)
    assert 0 < m["roc_auc"] < 1
    assert m["estimated_accuracy"] == pytest.approx(0.85)  # mean of max(p, 1 - p)
    assert m["estimation_error"] == pytest.approx(0.85 - 0.75)
    assert m["label_delay_p50_s"] == pytest.approx(60, abs=5)
    reader = QualityReader(chdb_client, db, window_seconds=300, horizon_seconds=86_400)
    assert reader.unmatched_labels(T0) == 1


def test_label_before_its_prediction_and_regression_metrics(chdb_client, db) -> None:
    insert_labels(chdb_client, db, [(T0 + timedelta(seconds=5), "r1", "10"),
                                    (T0 + timedelta(seconds=6), "r2", "20")])
    reader = QualityReader(chdb_client, db, window_seconds=60)
    assert reader.unmatched_labels(T0) == 2
    insert_predictions(chdb_client, db, [(T0, "demand", "1", "r1", 12.0, None),
                                         (T0 + timedelta(seconds=1), "demand", "1", "r2", 15.0, None)])
    assert reader.unmatched_labels(T0) == 0
    [w] = reader.read(T0, T0 + timedelta(minutes=1))
    assert w.labelled == 2 and w.binary == 0
    assert w.metrics["mae"] == pytest.approx(3.5)
    assert w.metrics["rmse"] == pytest.approx(((4 + 25) / 2) ** 0.5)
    assert w.metrics["mape"] == pytest.approx((0.2 + 0.25) / 2)
    assert "estimated_accuracy" not in w.metrics and "precision" not in w.metrics


def test_cbpe_estimate_tracks_realized_accuracy_of_a_calibrated_model(chdb_client, db) -> None:
    rng = random.Random(7)
    preds, labels = [], []
    for i in range(4000):
        p = rng.random()
        y = int(rng.random() < p)  # calibrated: P(y = 1) = p
        preds.append((T0 + timedelta(milliseconds=50 * i), "churn", "5", f"c{i}", p, None))
        labels.append((T0 + timedelta(hours=1, milliseconds=50 * i), f"c{i}", y))
    insert_predictions(chdb_client, db, preds)
    insert_labels(chdb_client, db, labels)

    windows = QualityReader(chdb_client, db, window_seconds=100).read(T0, T0 + timedelta(minutes=4))

    assert [w.predictions for w in windows] == [2000, 2000]
    for w in windows:
        assert abs(w.metrics["estimation_error"]) < 0.03
        assert w.metrics["label_delay_p50_s"] == pytest.approx(3600, abs=1)
