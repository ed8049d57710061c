"""Rates that page at once: an error or cold-start rate so far above its baseline that one
window is proof enough (``extreme_alpha``), judged by a test that counts the baseline's own
sampling error; and the 3x error rates that must still wait for their second window.

The end-to-end tests store invocations in chDB and run the real detector host and alerter
(the helpers of ``test_paging``)."""

from __future__ import annotations

import json
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from scipy.special import pdtrc

from obsloop.detectors.evidence import Baseline, Sample, ratio_pvalue
from obsloop.detectors.scoring import WindowScorer
from obsloop.detectors.series import SeriesAnomalyDetector
from obsloop.detectors.windows import SeriesKey, Window

sys.path.append(str(Path(__file__).resolve().parent))
from test_paging import detections, invocations, minute, paged, receiver  # noqa: E402, F401


def test_ratio_pvalue_tends_to_the_known_rate_test_and_is_lenient_on_a_small_baseline() -> None:
    # 12 errors in 200 calls against a 2 % baseline (4 expected, 5 tolerated).
    known = float(pdtrc(11, 200 * 0.02 * 1.25))
    learnt = ratio_pvalue(12, 200, 0.02 * 200_000, 200_000)
    assert learnt == pytest.approx(known, rel=0.05)
    # The same rate learnt from 500 calls (10 errors) could itself be a low draw.
    assert ratio_pvalue(12, 200, 10, 500) > 5 * learnt
    assert ratio_pvalue(0, 200, 10, 500) == 1.0


def test_only_overwhelming_evidence_in_one_window_counts_as_overwhelming() -> None:
    def baseline(calls: int, errors: float, colds: float) -> Baseline:
        b = Baseline()
        for _ in range(60):
            b.learn(Sample({"error_rate": 0.0, "cold_start_rate": 0.0}, calls,
                           round(errors * calls), round(colds * calls)))
        return b

    busy = baseline(200, 0.02, 0.03)
    storm = Sample({"error_rate": 0.0, "cold_start_rate": 0.0}, 200, 4, 50)
    three_fold = Sample({"error_rate": 0.0, "cold_start_rate": 0.0}, 200, 12, 6)
    assert busy.overwhelming(storm, 1e-6) == ["cold_start_rate"]
    # 12 errors where 4 are expected is significant (p ~ 1e-3), not overwhelming.
    assert busy.overwhelming(three_fold, 1e-6) == []
    assert busy.overwhelming(Sample({"error_rate": 0.0}, 200, 40, 0), 1e-6) == ["error_rate"]
    # Two calls a window: 60 windows are 120 calls, too few to be sure of any rate.
    quiet = baseline(2, 0.0, 0.0)
    assert quiet.overwhelming(Sample({"error_rate": 0.0}, 20, 3, 0), 1e-6) == []


def test_a_cold_start_storm_pages_in_its_first_window(chdb_client, db, tmp_path,
                                                      receiver) -> None:  # noqa: F811
    # 200 calls a window with 3 % cold starts, then a quarter of them cold (a scale-out
    # storm): about 50 where 6 are expected, beyond doubt in one window.
    invocations(chdb_client, db, range(60), 200)
    invocations(chdb_client, db, range(60, 63), 200, cold=0.25)
    found = detections(chdb_client, db, tmp_path, 62)
    pages = [d for d in paged(found, receiver) if d.kind == "cold_start"]
    assert [minute(d) for d in pages] == [60], [d.describe() for d in found]
    assert "extreme: paged at once" in pages[0].summary
    assert pages[0].severity == "error"  # paged, not yet acted on until confirmed


def test_a_three_fold_error_rate_is_confirmed_not_extreme(chdb_client, db, tmp_path,
                                                             receiver) -> None:  # noqa: F811
    # 200 calls at 2 %, then 6 %: about 12 errors where 4 are expected is not beyond doubt
    # in one window; paging it at once would page on noise as often.
    invocations(chdb_client, db, range(60), 200, errors=0.02)
    invocations(chdb_client, db, range(60, 66), 200, errors=0.06)
    found = detections(chdb_client, db, tmp_path, 65)
    pages = [d for d in paged(found, receiver) if d.kind == "error_rate"]
    assert pages and minute(pages[0]) in (60, 61), [d.describe() for d in found]
    assert not [d for d in found if "extreme" in d.summary], [d.describe() for d in found]


def test_extreme_alpha_zero_turns_it_off(chdb_client, db, tmp_path,
                                         receiver) -> None:  # noqa: F811
    invocations(chdb_client, db, range(60), 200)
    invocations(chdb_client, db, range(60, 63), 200, cold=0.25)
    found = detections(chdb_client, db, tmp_path, 62, extreme_alpha=0.0)
    pages = [d for d in paged(found, receiver) if d.kind == "cold_start"]
    assert [minute(d) for d in pages] == [61], [d.describe() for d in found]


@pytest.mark.parametrize("restart", [False, True])
def test_a_throughput_drop_whose_first_window_is_not_significant_pages_in_its_second(
        restart: bool) -> None:
    # 100 calls a window, then 64: 64 where at least 85 are tolerated is not significant in
    # one window (p ~ 0.01); the two windows' 128 against 170 are, as long as the forecast
    # has not learnt the first window before the second is judged (it drops by a tenth:
    # the old code never paged this drop).
    key = SeriesKey("aws_lambda", "fraud-scorer", "fraud", "2.1.0")
    t0 = datetime(2026, 1, 1, tzinfo=UTC)
    scorer = WindowScorer(factory=lambda: SeriesAnomalyDetector(warmup=30))
    found = []
    for i in range(80):
        if restart and i == 71:  # between the drop's two windows, through a JSON checkpoint
            state = json.loads(json.dumps(scorer.to_state()))
            scorer = WindowScorer(factory=lambda: SeriesAnomalyDetector(warmup=30))
            scorer.restore(state)
        w = Window(t0 + timedelta(minutes=5 * i), 300, key, "spans", 100 if i < 70 else 64,
                   1, 3, 40.0, 80.0, 90.0, 0.0, 0.0)
        found += [(i, d) for d in scorer.process(w.start, [w]) if d.kind == "throughput"]
    assert [(i, d.severity, d.pending) for i, d in found if not d.cleared][:1] == \
        [(71, "critical", False)], [d.describe() for _, d in found]
    assert "invocations_2w" in found[0][1].observed
