"""The NAB scorer on hand-built cases whose scores are computed by hand in the comments."""

from __future__ import annotations

import math
from datetime import datetime, timedelta

import pytest

from obsloop.detectors import nab

T0 = datetime(2024, 1, 1)


def ts(n: int) -> list[datetime]:
    return [T0 + timedelta(minutes=5 * i) for i in range(n)]


def window(first: int, last: int) -> tuple[datetime, datetime]:
    return (T0 + timedelta(minutes=5 * first), T0 + timedelta(minutes=5 * last))


def scores(n: int, hits: dict[int, float]) -> list[float]:
    return [hits.get(i, 0.0) for i in range(n)]


# 20 rows -> probation floor(0.15 * 20) = 3 rows; one window over rows 10..13 (width 4).
N = 20
WIN = [window(10, 13)]


def corpus(hits: dict[int, float], profile: str = "standard", threshold: float | None = None):
    rows = nab.sweep_file("f.csv", ts(N), scores(N, hits), WIN)
    return nab.score_corpus(rows, profile, threshold)


def test_scaled_sigmoid_values() -> None:
    assert nab.scaled_sigmoid(-1.0) == pytest.approx(2 / (1 + math.exp(-5)) - 1)  # 0.98661
    assert nab.scaled_sigmoid(0.0) == pytest.approx(0.0)
    assert nab.scaled_sigmoid(3.0) == -1.0
    assert nab.probationary_length(20) == 3
    assert nab.probationary_length(10_000) == 750


def test_earliest_detection_is_perfect() -> None:
    # Row 10 is the left edge: σ(-4/4)/σ(-1) = 1 -> raw 1 = perfect -> 100.
    res = corpus({10: 1.0})
    assert res.raw == pytest.approx(1.0)
    assert res.null == -1.0 and res.perfect == 1.0
    assert res.normalized == pytest.approx(100.0)


def test_mid_window_detection() -> None:
    # Row 12: y = -(13 - 12 + 1) / 4 = -0.5; σ = 2/(1+e^-2.5) - 1 = 0.848284;
    # / 0.986614 = 0.859793; normalised 100 * (0.859793 + 1) / 2 = 92.99.
    res = corpus({12: 1.0})
    assert res.raw == pytest.approx(0.859793, abs=1e-5)
    assert res.normalized == pytest.approx(92.9897, abs=1e-3)


def test_only_first_detection_in_window_counts() -> None:
    # Rows 10..13 all detected: still one window, worth 1 (not 4).
    res = corpus({10: 1.0, 11: 1.0, 12: 1.0, 13: 1.0})
    assert res.raw == pytest.approx(1.0)
    assert res.files["f.csv"].tp == 1


def test_false_positive_after_window_is_discounted() -> None:
    # Row 15: y = (15 - 13) / (4 - 1) = 0.6667; e^3.3333 = 28.0316, σ = 2/29.0316 - 1
    # = -0.931110; cost 0.11 * 0.931110 = 0.102422; with the TP at row 10:
    # raw = 0.897578, normalised 100 * 1.897578 / 2 = 94.879.
    res = corpus({10: 1.0, 15: 1.0})
    assert res.raw == pytest.approx(1 - 0.11 * 0.931110, abs=1e-5)
    assert res.normalized == pytest.approx(94.879, abs=1e-3)
    assert res.files["f.csv"].fp == 1


def test_false_positive_before_any_window_costs_full_weight() -> None:
    # Row 5 (after probation, before the window): -0.11 (standard), -0.22 (low FP).
    assert corpus({10: 1.0, 5: 1.0}).raw == pytest.approx(1 - 0.11)
    assert corpus({10: 1.0, 5: 1.0}, "reward_low_FP_rate").raw == pytest.approx(1 - 0.22)


def test_probationary_rows_are_ignored() -> None:
    # Row 2 is inside the 3-row probation: no cost.
    assert corpus({10: 1.0, 2: 1.0}).raw == pytest.approx(1.0)


def test_missed_window_and_low_fn_profile() -> None:
    # No detection (all scores below the threshold): null score -> 0 for every profile.
    for profile in nab.PROFILES:
        assert corpus({}, profile, threshold=0.5).normalized == pytest.approx(0.0)
    res = corpus({}, "reward_low_FN_rate", threshold=0.5)
    assert res.null == -2.0 and res.raw == -2.0


def test_threshold_is_optimised() -> None:
    # Five FPs before the window at 0.9 and a TP at row 10 at 0.5.
    # threshold 0.9 -> -1 - 5 * 0.11 = -1.55; threshold 0.5 -> 1 - 0.55 = 0.45;
    # nothing (1.1) -> -1. Best: 0.5, raw 0.45.
    hits = {4: 0.9, 5: 0.9, 6: 0.9, 7: 0.9, 8: 0.9, 10: 0.5}
    res = corpus(hits)
    assert res.threshold == 0.5
    assert res.raw == pytest.approx(0.45)
    # With the low-FP profile: 1 - 5 * 0.22 = -0.1 > -1, still 0.5.
    assert corpus(hits, "reward_low_FP_rate").raw == pytest.approx(-0.1)
    # Ten such FPs make firing worse than the null detector (1 - 10 * 0.22 = -1.2 < -1).
    many = {i: 0.9 for i in range(3, 10)} | {14: 0.9, 15: 0.9, 16: 0.9, 10: 0.5}
    res = corpus(many, "reward_low_FP_rate")
    assert res.normalized == pytest.approx(0.0)


def test_one_threshold_for_the_whole_corpus() -> None:
    # File a: TP at 0.8. File b: TP at 0.4 and an FP at 0.6 (before its window).
    # thr 0.8: a=1, b=-1 -> 0. thr 0.6: a=1, b=-1-0.11 -> -0.11. thr 0.4: 1 + 1 - 0.11 = 1.89.
    rows = nab.sweep_file("a", ts(N), scores(N, {10: 0.8}), WIN)
    rows += nab.sweep_file("b", ts(N), scores(N, {10: 0.4, 5: 0.6}), WIN)
    res = nab.score_corpus(rows, "standard")
    assert res.threshold == 0.4
    assert res.raw == pytest.approx(1.89)
    assert res.normalized == pytest.approx(100 * (1.89 + 2) / 4)


def test_length_mismatch_is_an_error() -> None:
    with pytest.raises(ValueError, match="scores"):
        nab.sweep_file("x", ts(3), [0.0], [])


def _reference(files, threshold, prof):
    """The rules written out directly, one threshold at a time (no sweep, no sorting)."""
    total, n_windows = 0.0, 0
    for ts_, sc, wins in files:
        n = len(ts_)
        prob = nab.probationary_length(n)
        spans = [(ts_.index(a), ts_.index(b)) for a, b in sorted(wins)]
        for left, right in spans:
            if right < prob:
                continue
            n_windows += 1
            hits = [i for i in range(max(left, prob), right + 1) if sc[i] >= threshold]
            if hits:
                y = -(right - hits[0] + 1) / (right - left + 1)
                total += prof.tp_weight * nab.scaled_sigmoid(y) / nab.MAX_TP
            else:
                total -= prof.fn_weight
        for i in range(prob, n):
            if sc[i] < threshold or any(lo <= i <= hi for lo, hi in spans):
                continue
            before = [(lo, hi) for lo, hi in spans if hi < i]
            if not before:
                total -= prof.fp_weight
            else:
                lo, hi = before[-1]
                total += prof.fp_weight * nab.scaled_sigmoid((i - hi) / (hi - lo))
    return total, n_windows


def test_sweep_matches_the_rules_written_out_at_every_threshold() -> None:
    import random

    rng = random.Random(7)
    files = []
    for k in range(4):
        n = 120 + 40 * k
        t = ts(n)
        sc = [round(rng.random() ** 3, 2) for _ in range(n)]
        wins = [(t[30 + 5 * k], t[45 + 5 * k]), (t[80], t[95])]
        files.append((t, sc, wins))
    rows = []
    for k, (t, sc, wins) in enumerate(files):
        rows += nab.sweep_file(f"f{k}", t, sc, wins)
    for name, prof in nab.PROFILES.items():
        best = nab.score_corpus(rows, name)
        ref_best = -math.inf
        for thr in sorted({s for _, sc, _ in files for s in sc} | {2.0}):
            raw, n_windows = _reference(files, thr, prof)
            assert nab.score_corpus(rows, name, thr).raw == pytest.approx(raw, abs=1e-9)
            ref_best = max(ref_best, raw)
        assert best.raw == pytest.approx(ref_best, abs=1e-9)  # the sweep finds the optimum
        assert best.null == -prof.fn_weight * n_windows


def test_per_category_scores_at_the_corpus_threshold() -> None:
    # At the corpus threshold 0.4 (as above): cat1/a earns 1 of its window (100), cat2/b 1
    # and an FP of -0.11 ((0.89 + 1) / 2 = 94.5), and cat3/c (no windows) pays an FP at 0.5:
    # -0.11 on the corpus span of 2 windows x (1 + 1) = 4 -> -0.11 / 4 * 100 = -2.75.
    rows = nab.sweep_file("cat1/a", ts(N), scores(N, {10: 0.8}), WIN)
    rows += nab.sweep_file("cat2/b", ts(N), scores(N, {10: 0.4, 5: 0.6}), WIN)
    rows += nab.sweep_file("cat3/c", ts(N), scores(N, {5: 0.5}), [])
    res = nab.score_corpus(rows, "standard", threshold=0.4)
    cats = nab.by_category(res, "standard")
    assert cats == pytest.approx({"cat1": 100.0, "cat2": 94.5, "cat3": -2.75})
