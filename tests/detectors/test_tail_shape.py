"""The latency tail-shape test: a tail regression on a fast function pages within two windows,
while cold-start wobble, a daily latency rhythm and deploy steps do not; its sums survive a
restart.

On a function whose median is 25 ms, 3 % cold starts (300-1200 ms extra) put the window's p95
in the cold-start mass: a tenth of the calls slowing 4x barely moves the share above p95,
which is all the earlier test (a binomial above p95) counted. The shape test cuts the cold
starts off the top and counts the warm calls above the median in bins at the baseline's p95
and p99 (relative to the median), where the slowed calls land and normal traffic has few.
"""

from __future__ import annotations

import json
import math
import random
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

sys.path.append(str(Path(__file__).resolve().parent))  # test_paging's helpers
import test_paging  # noqa: E402
from test_paging import detections, invocations, minute, paged  # noqa: E402

from obsloop.detectors.evidence import TAIL, Baseline, Sample, Shape  # noqa: E402
from obsloop.detectors.scoring import WindowScorer  # noqa: E402
from obsloop.detectors.windows import QUANTILE_GRID, QUANTILES, SeriesKey, Window  # noqa: E402

FAST = {"function": "embedder", "median_ms": 25.0}
receiver = test_paging.receiver  # the recording HTTP receiver, as a fixture here too


def test_a_tail_regression_on_a_fast_function_pages_within_two_windows(
        chdb_client, db, tmp_path, receiver) -> None:
    invocations(chdb_client, db, range(60), 100, **FAST)
    invocations(chdb_client, db, range(60, 66), 100, tail=0.1, **FAST)
    found = detections(chdb_client, db, tmp_path, 65)
    pages = [d for d in paged(found, receiver) if d.kind == "latency"]
    assert pages and minute(pages[0]) in (60, 61), [d.describe() for d in found]
    page = pages[0]
    assert "tail regression (median in range)" in page.summary
    shape = [m for m in page.observed if m.startswith(TAIL)]
    assert shape and page.observed[shape[0]] > page.expected[shape[0]][1], page.describe()
    assert "x its maximum" in page.summary and "G statistic" in page.summary


def test_cold_start_wobble_a_daily_rhythm_and_deploy_steps_do_not_page(
        chdb_client, db, tmp_path, receiver) -> None:
    # Every call slower alike through the "day" (0.7x to 1.3x), a 12 % deploy step, and
    # between 1 % and 6 % cold starts a window: the tail's shape relative to the median
    # stays, so nothing pages.
    for w in range(160):
        rhythm = 1.0 + 0.3 * math.sin(2 * math.pi * w / 80)
        step = 1.12 if w >= 110 else 1.0
        invocations(chdb_client, db, w, 100, function="embedder",
                    median_ms=25.0 * rhythm * step, cold=0.01 + 0.05 * ((w * 7) % 11) / 10)
    found = detections(chdb_client, db, tmp_path, 159)
    assert [d for d in paged(found, receiver) if d.kind == "latency"] == [], \
        [d.describe() for d in found if d.kind == "latency"]


KEY = SeriesKey("aws_lambda", "embedder", "embed", "1.0.0")
T0 = datetime(2026, 3, 2, tzinfo=UTC)


def window(i: int, rng: random.Random, tail: float = 0.0) -> Window:
    """One minute of a fast function as the view reads it: 300 calls, log-normal around
    25 ms, 3 % cold starts 300-1500 ms slower, a share ``tail`` of the calls 4x slower;
    durations at the reader's quantile grid."""
    durations, cold = [], 0
    for _ in range(300):
        d = 25.0 * math.exp(rng.gauss(0.0, 0.45)) * (4.0 if rng.random() < tail else 1.0)
        if rng.random() < 0.03:
            d, cold = d + rng.uniform(300.0, 1500.0), cold + 1
        durations.append(d)
    durations.sort()
    grid = tuple(durations[min(int(q * len(durations)), len(durations) - 1)] for q in QUANTILE_GRID)
    p50, p95, p99 = (grid[QUANTILE_GRID.index(q)] for q in QUANTILES)
    return Window(T0 + timedelta(minutes=i), 60, KEY, "spans", 300, 1, cold, p50, p95, p99,
                  0.0, 0.0, quantiles=grid)


def test_the_pooled_shape_survives_a_restart_between_the_two_windows_of_a_regression() -> None:
    def first(windows: list[Window], scorer: WindowScorer) -> list:
        return [d for i, w in enumerate(windows)
                for d in scorer.process(w.start, [w]) if d.kind == "latency"]

    rng = random.Random(3)
    normal = [window(i, rng) for i in range(120)]
    slow = [window(120 + i, rng, tail=0.15) for i in range(2)]
    straight = WindowScorer()
    through = first(normal + slow, straight)
    restarted = WindowScorer()
    first(normal + slow[:1], restarted)
    again = WindowScorer()
    again.restore(json.loads(json.dumps(restarted.to_state())))
    after = first(slow[1:], again)
    confirmed = [d for d in through if not d.pending]
    assert confirmed and any(m.startswith(f"{TAIL}_2w") for m in confirmed[-1].observed), \
        [d.describe() for d in through]
    assert [(d.id, d.observed) for d in after] == [(d.id, d.observed) for d in through[-len(after):]]
    assert after and not after[-1].pending


def test_the_shape_test_is_one_sided_and_a_sum_sees_what_each_window_cannot() -> None:
    expected = (45.0, 4.0, 1.0)
    normal = Shape(TAIL, (46.0, 3.0, 1.0), expected, 100.0, (60.0, 110.0))
    lighter = Shape(TAIL, (50.0, 0.0, 0.0), expected, 100.0, (60.0, 110.0))
    slower = Shape(TAIL, (38.0, 5.0, 7.0), expected, 100.0, (60.0, 110.0))
    alpha = 1e-3
    assert not normal.evidence(alpha).out
    # A lighter tail is far from its expectation too, but never out: one-sided.
    assert lighter.evidence(alpha).observed > 0 and not lighter.evidence(alpha).out
    assert not slower.evidence(alpha).out
    both = (slower + slower).evidence(alpha)
    assert both.out and both.metric == f"{TAIL}_2w" and both.observed > both.high
    assert "over 2 windows" in both.support and "76/10/14 where" in both.support
    assert slower.elevated and slower.consistent(slower + slower)
    assert not lighter.elevated


def test_an_older_baseline_learns_the_shape_and_drops_the_old_tail_test() -> None:
    rng = random.Random(8)
    current = Baseline()
    for i in range(30):
        w = window(i, rng)
        current.learn(Sample(w.metrics, w.invocations, w.errors, w.cold_starts,
                             w.quantile_function()))
    state = current.to_state()
    older = state[:10]  # before the shape: ..., above sums, with the test it replaced
    older[8] = {**older[8], "above_p95": 3.0}
    older[9] = {**older[9], "above_p95": 90.0}
    old = Baseline.from_state(json.loads(json.dumps(older)))
    assert "above_p95" not in old.above and not old.shape and not old.tail
    for i in range(30, 60):
        w = window(i, rng)
        sample = Sample(w.metrics, w.invocations, w.errors, w.cold_starts, w.quantile_function())
        old.learn(sample)
        current.learn(sample)
    assert TAIL in old.tallies(sample) and TAIL in current.tallies(sample)
    assert Baseline.from_state(json.loads(json.dumps(current.to_state()))) == current
