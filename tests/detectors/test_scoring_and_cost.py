"""Window scoring on synthetic series (seasonality, bounded memory), the spend forecast
against manifest budgets, and drift state round trips."""

from __future__ import annotations

import json
import math
import random
from datetime import UTC, datetime, timedelta

from obsloop.detectors.config import DriftConfig
from obsloop.detectors.cost import BudgetWatch, SpendForecaster, load_budgets
from obsloop.detectors.drift import DriftTracker
from obsloop.detectors.scoring import WindowScorer
from obsloop.detectors.series import SeriesAnomalyDetector
from obsloop.detectors.windows import SeriesKey, Window

T0 = datetime(2026, 11, 2, tzinfo=UTC)  # a Monday
KEY = SeriesKey("aws_lambda", "fraud-scorer", "fraud", "2.1.0")


def window(start: datetime, invocations: float, p95: float, rng: random.Random,
           key: SeriesKey = KEY, cost: float = 0.0) -> Window:
    n = max(0, round(invocations))
    return Window(start, 600, key, "invocations", n, round(n * 0.01), round(n * 0.02),
                  p95 * 0.5, p95, p95 * 1.3 + rng.random(), cost, 0.0, "FraudDetection")


def daily(i: int, per_day: int) -> float:
    return math.sin(2 * math.pi * i / per_day)


def test_daily_seasonality_alone_raises_nothing_but_a_jump_does() -> None:
    rng = random.Random(3)
    scorer = WindowScorer()  # the detector's own defaults, as in production
    per_day = 144  # 10-minute windows
    found = []
    for i in range(per_day * 10):
        start = T0 + timedelta(minutes=10 * i)
        traffic = 1000 + 800 * daily(i, per_day) + rng.gauss(0, 20)
        p95 = 120 + 60 * daily(i, per_day) + rng.gauss(0, 3)  # busy hours are slower
        found += scorer.process(start, [window(start, traffic, p95, rng)])
    assert [d for d in found if d.time > T0 + timedelta(days=3)] == []
    start = T0 + timedelta(days=10)
    jump = scorer.process(start, [window(start, 1000 + 800 * daily(0, per_day), 900.0, rng)])
    assert [d.kind for d in jump] == ["latency"]


def test_memory_is_bounded_and_idle_series_expire() -> None:
    rng = random.Random(0)
    scorer = WindowScorer(factory=lambda: SeriesAnomalyDetector(warmup=5), max_series=60,
                          idle_seconds=3600)
    for i in range(30):
        start = T0 + timedelta(minutes=10 * i)
        keys = [SeriesKey("knative", f"fn-{i}-{j}", "", "") for j in range(5)]
        scorer.process(start, [window(start, 100, 50, rng, key=k) for k in keys])
    assert len(scorer.pool) <= 60
    assert len(scorer.ranges) <= 2 * 60
    # Only functions seen within the last hour of event time are still filled with zeros.
    assert len(scorer.last_seen) <= 5 * 7 + 1
    assert all(T0.timestamp() + 10 * 60 * 29 - t <= 3600 for t in scorer.last_seen.values())


def test_cost_center_spend_jump_is_a_cost_detection() -> None:
    rng = random.Random(5)
    scorer = WindowScorer(factory=lambda: SeriesAnomalyDetector(warmup=50))
    others = [SeriesKey("aws_lambda", f"fn-{j}", "", "") for j in range(3)]
    found = []
    for i in range(200):
        start = T0 + timedelta(minutes=10 * i)
        spend = 40.0 if i == 190 else 1.0 + rng.random() * 0.1
        found += scorer.process(start, [window(start, 100, 50, rng, key=k, cost=spend)
                                        for k in others])
    opened = [d for d in found if d.kind == "cost" and not d.cleared]
    assert {d.series.get("obsloop.cost_center") or d.series["faas.name"] for d in opened} == {
        "FraudDetection", "fn-0", "fn-1", "fn-2"}
    assert all(d.time == T0 + timedelta(minutes=1910) for d in opened)
    # Spend back to normal for clear_after (5) windows: each episode is resolved, same id.
    cleared = [d for d in found if d.cleared]
    assert sorted(d.id for d in cleared) == sorted(d.id for d in opened)
    assert all(d.time == T0 + timedelta(minutes=1960) for d in cleared)


MANIFEST = """
apiVersion: ai.apexlogic.com/v1alpha1
kind: ServerlessModelDeployment
metadata: {name: fraud-scorer, namespace: ai-production}
spec:
  modelRef: {name: fraud-detection-model, version: "2.1.0"}
  runtime: {platform: aws-lambda, memory: 4096MB}
  finops: {costCenter: FraudDetection, budgetLimit: "$100/month", alertThreshold: "80%"}
---
apiVersion: ai.apexlogic.com/v1alpha1
kind: ServerlessModelDeployment
metadata: {name: unbudgeted}
spec:
  modelRef: {name: m, version: "1"}
  runtime: {platform: knative}
"""


def test_budget_forecast_raises_once_per_month(tmp_path) -> None:
    (tmp_path / "fraud.yaml").write_text(MANIFEST)
    budgets = load_budgets(tmp_path)
    assert list(budgets) == ["fraud-scorer"]
    assert budgets["fraud-scorer"].alert_usd == 80.0
    watch = BudgetWatch(budgets, bucket_seconds=3600)
    found = []
    # $0.10 per hour for a week, then $0.20: a month at $0.20/h is ~$140, past $80.
    for minute in range(0, 60 * 24 * 12, 10):
        start = T0 + timedelta(minutes=minute)
        rate = 0.1 if minute < 60 * 24 * 7 else 0.2
        found += watch.observe(start.timestamp(), [("fraud-scorer", rate / 6)])
    assert [d.kind for d in found] == ["budget_forecast"]
    [d] = found
    assert d.id == "budget_forecast-fraud-scorer-2026-11"
    assert d.series == {"faas.name": "fraud-scorer", "obsloop.cost_center": "FraudDetection"}
    assert d.observed["forecast_usd"] >= 80.0 > d.observed["month_to_date_usd"]
    assert d.time > T0 + timedelta(days=7)  # only once the spend rose


def test_budgets_come_from_the_manifests_the_feedback_loop_reads(tmp_path) -> None:
    """Git's own folder is not the repository's content, a second manifest for a function is
    the loop's duplicate (the first by path stands; the last used to win) and a manifest the
    loop refuses (no modelRef) has no budget either."""
    (tmp_path / "a.yaml").write_text(MANIFEST)
    (tmp_path / "b.yaml").write_text(MANIFEST.replace("namespace: ai-production", "namespace: other")
                                     .replace('"$100/month"', '"$999/month"'))
    (tmp_path / "c.yaml").write_text(MANIFEST.replace("fraud-scorer", "no-model")
                                     .replace('  modelRef: {name: fraud-detection-model, version: "2.1.0"}\n', ""))
    (tmp_path / ".git").mkdir()
    (tmp_path / ".git" / "stale.yaml").write_text(MANIFEST.replace("fraud-scorer", "stale"))
    budgets = load_budgets(tmp_path)
    assert list(budgets) == ["fraud-scorer"]
    assert budgets["fraud-scorer"].monthly_usd == 100.0


def test_forecaster_checkpoint_round_trip() -> None:
    f = SpendForecaster(3600)
    for hour in range(24 * 3 + 5):
        f.add((T0 + timedelta(hours=hour)).timestamp(), 0.5 + 0.4 * daily(hour, 24))
    restored = SpendForecaster.from_state(json.loads(json.dumps(f.to_state())))
    assert restored.forecast() == f.forecast()
    assert restored.month_to_date == f.month_to_date


def test_drift_state_round_trip_keeps_the_same_detection() -> None:
    config = DriftConfig(reference_size=200, post_change=100)
    rng = random.Random(9)
    events = [{"prediction": rng.random(), "x": rng.gauss(0, 1)} for _ in range(1500)]
    events += [{"prediction": rng.random(), "x": rng.gauss(2, 1)} for _ in range(600)]
    whole = DriftTracker(config)
    expected = [(i, d.streams) for i, e in enumerate(events) if (d := whole.update(("m", "1"), e))]
    assert len(expected) == 1 and expected[0][0] >= 1500

    first = DriftTracker(config)
    for e in events[:1510]:
        first.update(("m", "1"), e)
    second = DriftTracker(config)
    second.restore(json.loads(json.dumps(first.to_state())))
    resumed = [(i, d.streams) for i, e in enumerate(events[1510:], start=1510)
               if (d := second.update(("m", "1"), e))]
    # The detectors are rebuilt from the reference sample, not from every event: the same
    # drift, found at nearly the same point.
    assert [streams for _, streams in resumed] == [expected[0][1]]
    assert resumed[0][0] >= 1500 and abs(resumed[0][0] - expected[0][0]) <= 50


def test_a_fleet_wide_drop_is_not_a_throughput_page_per_function_but_one_function_is() -> None:
    rng = random.Random(2)
    scorer = WindowScorer(factory=lambda: SeriesAnomalyDetector(warmup=30))
    keys = [SeriesKey("knative", f"fn-{j}", "", "") for j in range(5)]

    def windows(i: int, counts: list[float]) -> list[Window]:
        start = T0 + timedelta(minutes=10 * i)
        return [window(start, c + rng.gauss(0, 5), 50, rng, key=k) for k, c in zip(keys, counts, strict=True)]

    for i in range(100):
        scorer.process(T0 + timedelta(minutes=10 * i), windows(i, [200] * 5))
    # The sender starved: every function at a sixth of its traffic, for three windows.
    found = []
    for i in range(100, 103):
        found += scorer.process(T0 + timedelta(minutes=10 * i), windows(i, [30] * 5))
    assert [d for d in found if d.kind == "throughput"] == []
    for i in range(103, 110):
        scorer.process(T0 + timedelta(minutes=10 * i), windows(i, [200] * 5))
    # One function alone at a sixth: its drop is judged (and confirmed in its second window).
    found = []
    for i in range(110, 113):
        found += scorer.process(T0 + timedelta(minutes=10 * i), windows(i, [30] + [200] * 4))
    throughput = [d for d in found if d.kind == "throughput"]
    assert {d.function for d in throughput} == {"fn-0"}
    assert [d.pending for d in throughput][:2] == [True, False]
