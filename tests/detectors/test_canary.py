"""Canary (green) against baseline (blue) in the same windows."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from obsloop.detectors.canary import CanaryWatch
from obsloop.detectors.detection import VARIANT
from obsloop.detectors.windows import SeriesKey, Window

START = datetime(2026, 11, 27, 12, 0, tzinfo=UTC)


def window(version: str, invocations: int, errors: int, p95: float, minute: int = 0) -> Window:
    key = SeriesKey("aws_lambda", "fraud-scorer", "fraud-detection-model", version)
    return Window(START + timedelta(minutes=minute), 60, key, "spans", invocations, errors, 0,
                  p95 / 2, p95, p95 * 1.5, 0.0, 0.0)


def test_a_slow_canary_opens_one_episode_then_clears() -> None:
    watch = CanaryWatch(min_invocations=20, clear_after=2)
    opened = watch.compare(START, [window("2.1.0", 900, 9, 80.0), window("2.2.0", 100, 1, 400.0)])
    assert len(opened) == 1
    detection = opened[0]
    assert detection.kind == "latency" and not detection.cleared
    assert detection.series[VARIANT] == "green"
    assert detection.series["model.version"] == "2.2.0" and detection.series["faas.name"] == "fraud-scorer"
    assert detection.observed == {"p95_ms": 400.0}
    assert detection.expected["p95_ms"][1] == 120.0  # blue's p95 plus 50 %
    # still slow: no second detection for the same episode
    assert watch.compare(START, [window("2.1.0", 900, 9, 80.0, 1), window("2.2.0", 100, 1, 390.0, 1)]) == []
    healthy = [window("2.1.0", 900, 9, 80.0, 2), window("2.2.0", 100, 1, 82.0, 2)]
    assert watch.compare(START, healthy) == []
    cleared = watch.compare(START, healthy)
    assert [(d.id, d.cleared) for d in cleared] == [(detection.id, True)]


def test_errors_count_and_small_canaries_are_not_judged() -> None:
    watch = CanaryWatch(min_invocations=50)
    assert watch.compare(START, [window("2.1.0", 900, 9, 80.0), window("2.2.0", 30, 20, 80.0)]) == []
    failing = watch.compare(START, [window("2.1.0", 900, 9, 80.0), window("2.2.0", 100, 20, 80.0)])
    assert [d.kind for d in failing] == ["error_rate"]
    assert watch.compare(START, [window("2.1.0", 900, 9, 80.0)])[0].cleared  # the canary is gone


def test_state_round_trip() -> None:
    watch = CanaryWatch()
    watch.compare(START, [window("2.1.0", 900, 9, 80.0), window("2.2.0", 100, 1, 400.0)])
    restored = CanaryWatch()
    restored.restore(watch.to_state())
    assert restored.compare(START, [window("2.1.0", 900, 9, 80.0), window("2.2.0", 100, 1, 400.0)]) == []
    assert restored.open.keys() == watch.open.keys()


def test_one_stray_error_or_cold_start_in_a_small_canary_is_not_a_regression() -> None:
    watch = CanaryWatch(min_invocations=20)
    blue = window("2.1.0", 200, 2, 100.0)
    one_error = window("2.2.0", 40, 1, 100.0)  # 2.5 % against 1 %: within chance
    slow_tail_only = Window(START, 60, one_error.key, "spans", 40, 0, 1, 50.0, 900.0, 1200.0, 0.0, 0.0)
    assert watch.compare(START, [blue, one_error]) == []
    assert watch.compare(START, [blue, slow_tail_only]) == []
