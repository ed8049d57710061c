"""Episodes in the service: no blind spell after an alarm.

The series detector silences the ``refractory`` (50) points after an alarm, which is right for
``score-series`` / NAB; the window scorer uses its undamped score and its own episodes
instead, with relapses and escalations opening a new episode (a new detection id) while one
is open. These tests fail with the refractory period in the service.
"""

from __future__ import annotations

import json
import random
from datetime import UTC, datetime, timedelta

from obsloop.detectors.scoring import WindowScorer
from obsloop.detectors.series import SeriesAnomalyDetector
from obsloop.detectors.windows import SeriesKey, Window

T0 = datetime(2026, 11, 2, tzinfo=UTC)
KEY = SeriesKey("aws_lambda", "fraud-scorer", "fraud", "2.1.0")
WARM = 200  # windows of normal traffic before anything happens
SETTLED = 100  # detections before this are the model's start-up, not the test's


def window(i: int, factor: float, rng: random.Random) -> Window:
    """One minute of ``fraud-scorer``: 100 invocations, p50 about 40 ms (times ``factor``)."""
    p50 = 40.0 * factor * (1.0 + rng.gauss(0.0, 0.03))
    return Window(T0 + timedelta(minutes=i), 60, KEY, "spans", 100, 1, 2,
                  p50, p50 * 1.8, p50 * 2.2, 0.0, 0.0)


def run(factors: dict[int, float], windows: int, scorer: WindowScorer | None = None,
        seed: int = 5, start: int = 0) -> tuple[WindowScorer, list]:
    """Feed windows ``start``..``windows - 1`` (latency factor 1 unless given); returns the
    scorer and its latency detections from window ``SETTLED`` on, as (window, detection)."""
    rng = random.Random(seed)
    for _ in range(start):
        window(0, 1.0, rng)  # the same noise as an uninterrupted run
    scorer = scorer or WindowScorer(factory=lambda: SeriesAnomalyDetector(warmup=30))
    found = []
    for i in range(start, windows):
        for d in scorer.process(T0 + timedelta(minutes=i), [window(i, factors.get(i, 1.0), rng)]):
            if d.kind == "latency" and i >= SETTLED:
                found.append((i, d))
    return scorer, found


def openings(found: list) -> list:
    """The (window, detection) that opened each episode (a confirmation repeats its id)."""
    seen: set[str] = set()
    out = []
    for i, d in found:
        if not d.cleared and d.id not in seen:
            seen.add(d.id)
            out.append((i, d))
    return out


def test_a_regression_three_windows_after_a_false_spike_is_a_new_detection() -> None:
    spike, regression = WARM, WARM + 3
    factors = {spike: 2.0} | {i: 3.0 for i in range(regression, regression + 20)}
    _, found = run(factors, regression + 20)
    opened = openings(found)
    assert [i for i, _ in opened] == [spike, regression], [(i, d.describe()) for i, d in found]
    (_, first), (_, second) = opened
    assert second.id != first.id
    assert second.observed["p50_ms"] > 2.5 * 40.0  # the regression's values, not the spike's
    assert second.observed["p50_ms"] > second.expected["p50_ms"][1]
    assert "relapse after " + first.id in second.summary


def test_a_much_worse_regression_escalates_an_open_episode() -> None:
    # A 1.5x slowdown, then 8x three windows later while the first episode is still open.
    factors = {i: 1.5 for i in range(WARM, WARM + 3)} | {i: 8.0 for i in range(WARM + 3, WARM + 15)}
    _, found = run(factors, WARM + 15)
    opened = openings(found)
    assert [i for i, _ in opened] == [WARM, WARM + 3], [(i, d.describe()) for i, d in found]
    second = opened[1][1]
    assert second.observed["p50_ms"] > 6.0 * 40.0
    assert "escalation after " in second.summary
    # The baseline is the one from before the incident, not one that learnt the 1.5x.
    assert second.expected["p50_ms"] == opened[0][1].expected["p50_ms"]


def test_a_sustained_regression_is_one_detection() -> None:
    _, found = run({i: 2.0 for i in range(WARM, WARM + 40)}, WARM + 40)
    assert [(i, d.severity == "critical") for i, d in found if not d.cleared] == [(WARM, False), (WARM + 1, True)]
    assert len({d.id for _, d in found}) == 1


def test_a_one_window_blip_is_alerted_but_never_confirmed() -> None:
    _, found = run({WARM: 3.0}, WARM + 10)
    assert [(i, d.cleared) for i, d in found] == [(WARM, False), (WARM + 5, True)]
    blip = found[0][1]
    assert blip.score >= 0.99 and blip.severity == "error"  # however extreme: one window
    assert "critical" not in {d.severity for _, d in found}


def test_a_regression_confirms_in_its_second_window() -> None:
    _, found = run({i: 3.0 for i in range(WARM, WARM + 10)}, WARM + 10)
    [(i, opened), (j, confirmed)] = [(i, d) for i, d in found if not d.cleared]
    assert (i, opened.severity != "critical") == (WARM, True)
    assert (j, confirmed.severity, confirmed.id) == (WARM + 1, "critical", opened.id)
    assert confirmed.summary.endswith("(confirmed: 2 anomalous windows in a row)")
    # The ranges from before the regression (and the two windows' summed counts besides).
    assert {m: confirmed.expected[m] for m in opened.expected} == opened.expected


def test_a_regression_right_after_a_blip_confirms_the_open_episode() -> None:
    # The blip's episode is still open (one normal window is not a recovery) when the
    # regression starts: its windows in a row count from the regression's first one.
    blip, regression = WARM, WARM + 2
    factors = {blip: 2.0} | {i: 3.0 for i in range(regression, regression + 10)}
    _, found = run(factors, regression + 10)
    critical = [(i, d) for i, d in found if d.severity == "critical"]
    assert [i for i, _ in critical][:1] == [regression + 1], [(i, d.describe()) for i, d in found]
    assert critical[0][1].observed["p50_ms"] > 2.5 * 40.0


class Scripted(SeriesAnomalyDetector):
    """Learns as usual but answers the score the test scripted for the window (default 0)."""

    scores: dict[float, float] = {}

    def score_learn_one(self, x, t, *, damped=True):  # type: ignore[override]
        super().score_learn_one(x, t, damped=damped)
        return self.scores.get(t, 0.0)


def test_values_off_the_baseline_confirm_only_after_a_window_scoring_above_the_threshold() -> None:
    # Windows out of range by less than CLEAR_FACTOR while the model scores low keep an
    # anomaly going, but they do not start one.
    blip, off = 100, [102, 103]
    at = {i: T0.timestamp() + 60 * i for i in range(120)}
    Scripted.scores = {at[blip]: 1.0, at[104]: 1.0}
    scorer = WindowScorer(factory=Scripted)
    factors = {blip: 3.0} | {i: 1.6 for i in off} | {i: 3.0 for i in (104, 105)}
    rng = random.Random(5)
    found = []
    for i in range(106):
        found += [(i, d) for d in scorer.process(T0 + timedelta(minutes=i), [window(i, factors.get(i, 1.0), rng)])]
    # Nothing at 102 or 103; at 104, which scores, the summed counts of 103 and 104 (both
    # slower than the baseline) confirm it.
    assert [(i, d.severity) for i, d in found] == [(blip, "error"), (104, "critical")]


def test_the_first_full_window_of_a_regression_that_confirmed_a_blip_is_not_an_escalation() -> None:
    # A blip, then a regression whose first window is only partly slow: that window confirms
    # the blip's episode (the feedback loop acts on it, with the regression's values), and
    # the regression's first full window, much worse than the partial one, must not open a
    # second incident (a second scale-up) for the same regression.
    factors = {WARM: 2.0, WARM + 1: 3.5} | {i: 8.0 for i in range(WARM + 2, WARM + 12)}
    _, found = run(factors, WARM + 12)
    assert len({d.id for _, d in found}) == 1, [(i, d.describe()) for i, d in found]
    assert [(i, d.severity) for i, d in found if d.severity == "critical"] == [(WARM + 1, "critical")]


def test_confirming_after_one_window_confirms_when_the_episode_opens() -> None:
    scorer = WindowScorer(factory=lambda: SeriesAnomalyDetector(warmup=30), confirm_after=1)
    _, found = run({i: 3.0 for i in range(WARM, WARM + 10)}, WARM + 10, scorer=scorer)
    assert [(i, d.severity) for i, d in found if not d.cleared] == [(WARM, "critical")]


def test_a_regression_ten_windows_after_an_episode_cleared_is_detected() -> None:
    spike = WARM
    scorer, found = run({spike: 2.0}, spike + 12)
    cleared = [i for i, d in found if d.cleared]
    assert [i for i, _ in openings(found)] == [spike] and len(cleared) == 1
    regression = cleared[0] + 10  # well within the detector's 50-point refractory period
    assert regression < spike + scorer.pool.get(f"{KEY.id}#p50_ms").refractory
    factors = {i: 3.0 for i in range(regression, regression + 10)}
    _, later = run(factors, regression + 10, scorer=scorer, start=spike + 12)
    opened = [i for i, _ in openings(later)]
    assert opened == [regression], [(i, d.describe()) for i, d in later]
    assert later[0][1].observed["p50_ms"] > 2.5 * 40.0


def test_old_format_episode_state_restores() -> None:
    scorer, found = run({WARM: 3.0}, WARM + 2)
    [(_, opened)] = found
    state = json.loads(json.dumps(scorer.to_state()))
    [entry] = state["episodes"].values()
    assert len(entry) == 12 and entry[6] is False and entry[7:10] == [0, False, None]  # a normal window since
    assert entry[11] is False  # pending: never paged
    # The format before severities, peaks and relapses: [id, opened, normal_run, baseline].
    state["episodes"] = {k: e[:4] for k, e in state["episodes"].items()}
    restored = WindowScorer(factory=lambda: SeriesAnomalyDetector(warmup=30))
    restored.restore(state)
    [episode] = restored.episodes.values()
    assert episode.id == opened.id and episode.severity == "critical" and episode.peak is None
    _, after = run({}, WARM + 12, scorer=restored, start=WARM + 2)
    assert [(d.id, d.cleared) for _, d in after] == [(opened.id, True)]
    # And the new format round-trips.
    again = WindowScorer()
    again.restore(json.loads(json.dumps(scorer.to_state())))
    assert again.episodes == scorer.episodes
