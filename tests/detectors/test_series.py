"""The series detector on synthetic series with known anomalies, and its checkpoints."""

from __future__ import annotations

import doctest
import json
import math
import random
from array import array

import pytest

from obsloop.detectors import series, series_pool, series_state
from obsloop.detectors.series import SeriesAnomalyDetector
from obsloop.detectors.series_pool import SeriesDetectorPool

STEP = 300.0  # 5-minute windows, as in NAB


def run(xs: list[float], **kwargs: object) -> list[float]:
    det = SeriesAnomalyDetector(**kwargs)  # type: ignore[arg-type]
    return [det.score_learn_one(x, STEP * i) for i, x in enumerate(xs)]


def noise(n: int, seed: int = 0) -> list[float]:
    rng = random.Random(seed)
    return [10.0 + rng.gauss(0.0, 1.0) for _ in range(n)]


def test_doctests() -> None:
    for module in (series, series_pool):
        result = doctest.testmod(module)
        assert result.attempted > 0 and result.failed == 0


def test_scores_are_in_unit_interval() -> None:
    xs = noise(800) + [1e6, -1e6, 0.0]
    assert all(0.0 <= s <= 1.0 for s in run(xs))


def test_spike() -> None:
    xs = noise(1500)
    xs[1000] += 12.0
    s = run(xs)
    assert s[1000] > 0.9
    assert max(s[400:1000]) < 0.5
    assert max(s[1001:]) < 0.5  # one alarm, not a storm


def test_level_shift() -> None:
    xs = noise(1500)
    xs[1000:] = [x + 6.0 for x in xs[1000:]]
    s = run(xs)
    assert max(s[1000:1010]) > 0.9
    assert max(s[400:1000]) < 0.5


def test_slow_drift_leaving_the_range_is_flagged() -> None:
    xs = [x + (0.05 * (i - 1000) if i > 1000 else 0.0) for i, x in enumerate(noise(1500))]
    s = run(xs)
    assert max(s[400:1000]) < 0.5
    assert max(s[1000:]) > 0.9


def _seasonal(n_days: int, seed: int = 1) -> list[float]:
    rng = random.Random(seed)
    n = 288 * n_days
    return [50 + 20 * math.sin(2 * math.pi * i / 288) + rng.gauss(0, 1) for i in range(n)]


def test_daily_seasonality_is_not_an_anomaly() -> None:
    s = run(_seasonal(10))
    assert max(s[288 * 3 :]) < 0.5


def test_off_season_value_is_an_anomaly_only_with_the_seasonal_model() -> None:
    xs = _seasonal(12)
    k = 288 * 10 + 216  # the daily trough (~30); 70 is normal only at the daily peak
    xs[k : k + 6] = [70.0] * 6
    with_season = run(xs)
    # Without the AR(1) term too: it predicts a smooth wave from its last residual, so the
    # step from the trough to 70 is a surprise to it even without a seasonal model.
    without = run(xs, seasonality=False, ar=False)
    assert max(with_season[k : k + 6]) > 0.9
    assert max(with_season[288 * 3 : k]) < 0.5
    assert max(without[k : k + 6]) < 0.5  # the value is inside the overall range


def test_score_one_does_not_learn() -> None:
    det = SeriesAnomalyDetector()
    for i, x in enumerate(noise(500)):
        det.learn_one(x, STEP * i)
    before = json.dumps(det.to_state())
    first = det.score_one(40.0, STEP * 500)
    assert det.score_one(40.0, STEP * 500) == first
    assert json.dumps(det.to_state()) == before


def test_checkpoint_round_trip_continues_identically() -> None:
    xs = _seasonal(4)
    xs[1000] += 50
    det = SeriesAnomalyDetector()
    for i, x in enumerate(xs[:700]):
        det.learn_one(x, STEP * i)
    restored = SeriesAnomalyDetector.from_state(json.loads(json.dumps(det.to_state())))
    a = [det.score_learn_one(x, STEP * (700 + i)) for i, x in enumerate(xs[700:])]
    b = [restored.score_learn_one(x, STEP * (700 + i)) for i, x in enumerate(xs[700:])]
    assert a == b
    assert max(a) > 0.5  # the restored model still knows what normal is
    fresh = SeriesAnomalyDetector()
    c = [fresh.score_learn_one(x, STEP * (700 + i)) for i, x in enumerate(xs[700:])]
    assert c != a  # a restart without the checkpoint would start from zero


def test_unknown_state_version_is_rejected() -> None:
    state = SeriesAnomalyDetector().to_state()
    state["version"] = 99
    with pytest.raises(ValueError, match="version"):
        SeriesAnomalyDetector.from_state(state)


def test_non_finite_value_is_rejected() -> None:
    with pytest.raises(ValueError, match="finite"):
        SeriesAnomalyDetector().learn_one(math.nan, 0.0)


def test_pool_bounds_memory_and_expires_idle_series() -> None:
    pool = SeriesDetectorPool(max_series=3, idle_seconds=3600)
    for sid, t in (("a", 0.0), ("b", 100.0), ("c", 200.0)):
        pool.score_learn_one(sid, 1.0, t)
    pool.score_learn_one("a", 1.0, 5000.0)  # a is now most recent
    pool.score_learn_one("d", 1.0, 5000.0)  # evicts b, the least recently updated
    assert sorted(pool) == ["a", "c", "d"] and pool.evicted == 1
    assert pool.expire(now=5000.0) == ["c"]  # c last seen at 200 s, > 1 h ago
    assert sorted(pool) == ["a", "d"]


def test_pool_checkpoint_round_trip(tmp_path) -> None:
    pool = SeriesDetectorPool()
    xs = noise(600)
    for i, x in enumerate(xs):
        pool.learn_one("lat", x, STEP * i)
        pool.learn_one("err", x / 100, STEP * i)
    path = tmp_path / "pool.json"
    pool.save(path)
    restored = SeriesDetectorPool.load(path)
    assert sorted(restored) == ["err", "lat"]
    for sid, x in (("lat", 30.0), ("err", 0.1), ("lat", 10.0)):
        assert restored.score_one(sid, x, STEP * 600) == pool.score_one(sid, x, STEP * 600)
    assert restored.score_one("lat", 30.0, STEP * 600) > 0.9
    assert restored.score_one("unknown", 30.0, 0.0) == 0.0


def _daily_spike(n_days: int, seed: int = 2) -> list[float]:
    """Noise with a 5-minute spike at 02:00 every day (a nightly backup or cron job)."""
    xs = noise(288 * n_days, seed)
    for d in range(n_days):
        xs[288 * d + 24] += 15.0
    return xs


def test_daily_recurring_spike_is_not_an_anomaly_but_a_bigger_one_is() -> None:
    xs = _daily_spike(12)
    s = run(xs)
    assert max(s[288 * 4 :]) < 0.5  # after a few days the nightly spike is expected
    k = 288 * 11 + 24
    xs[k] += 40.0  # this night's spike is much larger than usual
    assert run(xs)[k] > 0.9
    xs = _daily_spike(12)
    xs[288 * 11 + 150] += 15.0  # the usual size, at an unusual time of day
    s = run(xs)
    # The highest score after the first nights; not above 0.85 as before version 6: the
    # first nights' spikes (before the envelope knew them) are in the series' tail history
    # (tail_alpha), so a spike that size is no longer unheard of. Since version 7 the noise's
    # new level sequences (the context view) raise the other scores: ~1.2 x the highest of
    # them (1.9 x without the context view).
    assert s[288 * 11 + 150] == max(s[288 * 4 :]) > 1.15 * max(s[288 * 4 : 288 * 11 + 150])
    assert run(xs, tail_alpha=0.0, ctx_levels=0)[288 * 11 + 150] > 0.85


def test_version_1_checkpoint_is_still_readable() -> None:
    det = SeriesAnomalyDetector()
    for i, x in enumerate(noise(500)):
        det.learn_one(x, STEP * i)
    state = json.loads(json.dumps(det.to_state()))
    state["version"] = 1
    for key in ("env", "short"):
        del state[key]
    for key in ("env_slots", "env_decay", "env_width", "short_alpha"):
        del state["params"][key]
    old = SeriesAnomalyDetector.from_state(state)
    assert old.score_one(40.0, STEP * 500) > 0.9
    assert old.score_one(10.0, STEP * 500) < 0.5


def test_state_is_small() -> None:
    det = SeriesAnomalyDetector()
    for i, x in enumerate(_seasonal(8)):
        det.learn_one(x, STEP * i)
    assert len(json.dumps(det.to_state())) < 11_000  # 2,048 of them the context table


def test_after_a_constant_stretch_the_scales_and_the_level_still_learn_a_step() -> None:
    # A constant stretch teaches a zero scale; clipping to a zero scale kept it at zero for
    # good (every later residual clipped to nothing), and the level step bounded by it kept
    # the level where the stretch left it.
    det = SeriesAnomalyDetector(seasonality=False)
    for i in range(400):
        det.learn_one(5.0, STEP * i)
    assert det.var == 0.0
    for i in range(400, 1400):
        det.learn_one(6.0 + 0.01 * (i % 3), STEP * i)
    assert det.var > 0.0
    assert det.level == pytest.approx(6.01, abs=0.05)


def test_change_after_a_constant_stretch_keeps_the_checkpoint_finite() -> None:
    det = SeriesAnomalyDetector()
    for i in range(400):
        det.learn_one(5.0, STEP * i)
    assert det.score_learn_one(6.0, STEP * 400) > 0.9
    json.dumps(det.to_state(), allow_nan=False)  # no Infinity in the envelope


def test_the_envelope_holds_previous_days_only() -> None:
    # A burst on its first day must not excuse its own later points: today's surprise per
    # slot is kept apart and joins the envelope when the day changes.
    det = SeriesAnomalyDetector()
    xs = noise(600)
    xs[400] += 15.0  # 400 x 5 min = day 1, 09:20
    slot = int((STEP * 400 % 86_400) * det.env_slots / 86_400)
    for i, x in enumerate(xs[:401]):
        det.learn_one(x, STEP * i)
    assert det.env[slot] < 1.0 < det.env_today[slot]
    for i, x in enumerate(xs[401:], start=401):  # past midnight (row 576)
        det.learn_one(x, STEP * i)
    assert det.env[slot] > 1.0 and det.env_today[slot] == 0.0


def test_seasonal_pattern_with_noise_bursts_is_quiet_after_a_few_days() -> None:
    # A daily rhythm plus a 15-minute burst every evening at the same time: both expected.
    xs = _seasonal(10)
    for d in range(10):
        for j in range(3):
            xs[288 * d + 230 + j] += 25.0
    s = run(xs)
    assert max(s[288 * 4 :]) < 0.5


def test_version_2_checkpoint_is_still_readable() -> None:
    det = SeriesAnomalyDetector()
    for i, x in enumerate(noise(500)):
        det.learn_one(x, STEP * i)
    state = json.loads(json.dumps(det.to_state()))
    state["version"] = 2
    for key in ("env_today", "env_day", "shift"):
        del state[key]
    for key in ("warm_start", "var_clip", "spatial_direct", "var_alpha", "shift_alpha",
                "shift_long_alpha"):
        del state["params"][key]
    state["params"]["env_decay"] = 0.99  # per visit in version 2: replaced by the default
    old = SeriesAnomalyDetector.from_state(state)
    assert old.env_decay == SeriesAnomalyDetector().env_decay
    assert old.score_one(40.0, STEP * 500) > 0.9
    assert old.score_one(10.0, STEP * 500) < 0.5
    json.dumps(old.to_state(), allow_nan=False)


def test_checkpoint_round_trip_across_a_day_boundary_keeps_the_envelope() -> None:
    xs = _daily_spike(3)
    det = SeriesAnomalyDetector()
    for i, x in enumerate(xs[:400]):
        det.learn_one(x, STEP * i)
    restored = SeriesAnomalyDetector.from_state(json.loads(json.dumps(det.to_state())))
    assert list(restored.env_today) == list(det.env_today)
    assert restored.env_day == det.env_day
    a = [det.score_learn_one(x, STEP * (400 + i)) for i, x in enumerate(xs[400:])]
    b = [restored.score_learn_one(x, STEP * (400 + i)) for i, x in enumerate(xs[400:])]
    assert a == b


def test_small_sustained_level_shift_is_flagged_by_the_mean_shift_detector() -> None:
    # A shift of one noise standard deviation: no single point is surprising, the short
    # mean against the long mean is.
    xs = noise(2000)
    xs[1200:] = [x + 1.0 for x in xs[1200:]]
    s = run(xs)
    assert max(s[300:1200]) < 0.5
    assert max(s[1200:1230]) > 0.5
    assert max(run(xs, shift_alpha=0.0)[1200:1230]) < 0.5  # the point detector alone misses it


def test_version_3_checkpoint_is_still_readable_and_rewarms_the_mean_shift_detector() -> None:
    det = SeriesAnomalyDetector()
    xs = noise(900)
    for i, x in enumerate(xs[:500]):
        det.learn_one(x, STEP * i)
    state = json.loads(json.dumps(det.to_state()))
    state["version"] = 3
    del state["shift"]
    for key in ("shift_alpha", "shift_long_alpha"):
        del state["params"][key]
    old = SeriesAnomalyDetector.from_state(state)
    assert old.sn == 0 and old.n == 500
    s = [old.score_learn_one(x, STEP * (500 + i)) for i, x in enumerate(xs[500:])]
    assert max(s) < 0.5  # the fresh mean-shift detector does not alarm while it warms up
    assert old.score_one(40.0, STEP * 900) > 0.9


def test_env_start_keeps_the_first_points_out_of_the_envelope() -> None:
    # The first points' surprise only says the scale is unknown; learnt into the envelope it
    # would blind the time of day the series started at for weeks.
    xs = noise(288 * 3)
    default, blind = SeriesAnomalyDetector(), SeriesAnomalyDetector(env_start=0)
    for i, x in enumerate(xs):
        default.learn_one(x, STEP * i)
        blind.learn_one(x, STEP * i)
    assert blind.env[0] > 2.5  # slot of 00:00, where the series began
    assert default.env[0] < 2.0


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_an_in_range_spike_at_the_start_time_of_day_is_not_ignored(seed: int) -> None:
    # Ten days of a daily rhythm, then the same in-range spike at 00:00 (the time of day the
    # series started at) and at 12:00: the point detector sees both (raw excess over the
    # time-of-day envelope); with the start-up surprise in the envelope, 00:00 is blind.
    xs = _seasonal(11, seed)
    raw = {}
    for env_start in (30, 0):  # the raw surprise alone: no context view averaged in
        det = SeriesAnomalyDetector(env_start=env_start, ctx_levels=0)
        for i, x in enumerate(xs[: 288 * 10]):
            det.learn_one(x, STEP * i)
        at_start = det._evaluate(xs[288 * 10] + 15.0, STEP * 288 * 10)[1]
        midday = det._evaluate(xs[288 * 10 + 144] + 15.0, STEP * (288 * 10 + 144))[1]
        raw[env_start] = (at_start, midday)
    assert SeriesAnomalyDetector().env_start == 30
    at_start, midday = raw[30]
    assert at_start > 0.25 and at_start > 0.5 * midday
    assert raw[0][0] < 0.05 < raw[0][1]  # the old default: blind at the start slot only


@pytest.mark.parametrize("seed", [1, 2, 3, 4, 5])
def test_a_level_shift_on_a_daily_seasonal_series_is_caught(seed: int) -> None:
    xs = _seasonal(12, seed)
    k = 288 * 10 + 100
    xs[k:] = [x + 3.0 for x in xs[k:]]  # three noise standard deviations, daily rhythm kept
    det = SeriesAnomalyDetector()
    s = [det.score_learn_one(x, STEP * i) for i, x in enumerate(xs)]
    assert det.sdes  # the mean-shift detector watches the de-seasonalised value
    assert max(s[288 * 3 : k]) < 0.5
    assert max(s[k : k + 30]) > 0.5
    # On the raw value the rhythm dominates the long standard deviation: missed.
    assert max(run(xs, shift_deseason=False)[k : k + 60]) < 0.5


def test_a_series_without_a_rhythm_keeps_the_raw_value_for_the_mean_shift_detector() -> None:
    xs = noise(288 * 10)
    xs[288 * 8 :] = [x + 1.0 for x in xs[288 * 8 :]]
    det = SeriesAnomalyDetector()
    s = [det.score_learn_one(x, STEP * i) for i, x in enumerate(xs)]
    assert not det.sdes and min(det.sconf) > 0.8
    assert s == run(xs, shift_deseason=False)


def _weekly(n_days: int, seed: int) -> list[float]:
    """A daily rhythm whose amplitude drops to 30 % on days 5 and 6 of each week."""
    rng = random.Random(seed)
    return [50 + 20 * math.sin(2 * math.pi * i / 288) * (0.3 if (i // 288) % 7 >= 5 else 1.0)
            + rng.gauss(0, 2) for i in range(288 * n_days)]


@pytest.mark.parametrize("seed", [1, 3])
def test_the_first_weekend_of_a_weekly_rhythm_is_not_a_shift(seed: int) -> None:
    # Before a whole week the daily offsets do not know the weekend: watching the value minus
    # them, the first weekend looks like a level shift. The view waits for a week of data.
    xs = _weekly(7, seed)
    assert max(run(xs)[300:]) < 0.5
    assert max(run(xs, shift_season_after=0.0)[300:]) > 0.5


def test_checkpoint_round_trip_keeps_the_de_seasonalised_view() -> None:
    xs = _seasonal(10)
    det = SeriesAnomalyDetector()
    for i, x in enumerate(xs[: 288 * 9]):
        det.learn_one(x, STEP * i)
    assert det.sdes
    restored = SeriesAnomalyDetector.from_state(json.loads(json.dumps(det.to_state())))
    assert (restored.sconf, restored.sdes, restored.t0) == (det.sconf, det.sdes, det.t0)
    rest = list(enumerate(xs[288 * 9 :], start=288 * 9))
    a = [det.score_learn_one(x + 3.0, STEP * i) for i, x in rest]
    b = [restored.score_learn_one(x + 3.0, STEP * i) for i, x in rest]
    assert a == b and max(a[:30]) > 0.5


def test_version_4_checkpoint_takes_the_new_defaults() -> None:
    det = SeriesAnomalyDetector()
    for i, x in enumerate(_seasonal(3)):
        det.learn_one(x, STEP * i)
    state = json.loads(json.dumps(det.to_state()))
    state["version"] = 4
    del state["season"]
    for key in ("shift_season_on", "shift_season_off", "shift_season_after"):
        del state["params"][key]
    state["params"].update(env_start=0, shift_deseason=False)  # version 4's defaults
    old = SeriesAnomalyDetector.from_state(state)
    assert old.env_start == 30 and old.shift_deseason
    assert not old.sdes and old.sconf[0] < 0.5  # today's error ratio; t0 from the restore
    old.learn_one(50.0, STEP * 288 * 3)
    assert old.t0 == STEP * 288 * 3
    json.dumps(old.to_state(), allow_nan=False)


def test_version_5_checkpoint_starts_an_empty_tail_history() -> None:
    """A version 5 checkpoint (no tail history, no tail_alpha / shift_reset parameters) is
    restored with today's defaults and an empty history, and scores on from there."""
    xs, _ = _bursty(3000)
    det = SeriesAnomalyDetector()
    for i, x in enumerate(xs):
        det.learn_one(x, STEP * i)
    state = json.loads(json.dumps(det.to_state()))
    state["version"] = 5
    del state["tail"], state["ctx"]
    for key in ("tail_alpha", "shift_reset", "ctx_levels", "ctx_order", "ctx_bits", "ctx_fill"):
        del state["params"][key]
    old = SeriesAnomalyDetector.from_state(state)
    assert old.tail_alpha == 0.001 and old.shift_reset and old.tail_total == 0.0
    assert 0.0 <= old.score_learn_one(10.0, STEP * 3000) < 0.5
    restored = SeriesAnomalyDetector.from_state(json.loads(json.dumps(old.to_state())))
    assert restored.to_state() == old.to_state()


def _bursty(n: int, seed: int = 5) -> tuple[list[float], list[int]]:  # values, burst rows
    """Noise with a short burst every 100-200 points, 8-15 noise standard deviations high
    (Twitter mention counts do this all day): bursts are this series' normal."""
    rng = random.Random(seed)
    xs = noise(n, seed)
    bursts, k = [], 150
    while k < n - 3:
        bursts.append(k)
        xs[k] += rng.uniform(8.0, 15.0)
        k += rng.randint(100, 200)
    return xs, bursts


def test_bursts_a_series_keeps_making_are_not_anomalies() -> None:
    """The tail history (tail_alpha, version 6): a burst as large as the ones this series
    made in the last ~1/tail_alpha points is not an alarm; a Gaussian tail over the average
    surprise alone scores many of them near 1 (NAB's Twitter series' false positives)."""
    xs, _ = _bursty(6000)
    alarms = sum(v >= 0.5 for v in run(xs)[2000:])
    alarms_gaussian = sum(v >= 0.5 for v in run(xs, tail_alpha=0.0)[2000:])
    assert alarms <= 1 and alarms_gaussian >= 6  # 1 and 8 of 27 bursts
    xs[5500] += 60.0  # four times the largest burst so far: still an alarm
    assert run(xs)[5500] > 0.9


def test_a_level_shift_is_adapted_to_after_its_alarm() -> None:
    """shift_reset: at an alarm the mean-shift view takes the new level as its reference, so
    a regime change is reported when it starts and then learnt, not re-alarmed while the
    slow long mean catches up (undamped scores, as the service's window scorer sees them)."""
    xs = [x + (2.0 if i >= 3000 else 0.0) for i, x in enumerate(noise(4000, 3))]

    def alarms(**kwargs: object) -> list[int]:
        det = SeriesAnomalyDetector(**kwargs)
        scores = [det.score_learn_one(x, 300.0 * i, damped=False) for i, x in enumerate(xs)]
        return [i for i, s in enumerate(scores) if i >= 3000 and s >= 0.5]

    adapted, kept = alarms(), alarms(shift_reset=False)
    assert adapted[0] == kept[0] < 3010  # detected as early
    assert len(adapted) < len(kept)  # 4 and 7


def _sawtooth(n: int, seed: int = 7) -> list[float]:
    """A ramp from 0 to 19 every 20 points, with a little noise."""
    rng = random.Random(seed)
    return [float(i % 20) + rng.gauss(0.0, 0.2) for i in range(n)]


def test_a_changed_pattern_is_flagged_by_the_context_view() -> None:
    """The context view (version 7): two ramps become a triangle (every value in range, no
    jump larger than the ramp's drop, so the level predictor sees little new) -- a sequence
    of levels this series has never made; without the context view it is not an alarm
    (0.51 and 0.40; the highest score before it, 0.27). The spread view (version 9) is off
    in the comparison: it sees the triangle too (0.51 without the context view), as a
    change in the size of the innovations."""
    xs = _sawtooth(4000)
    k = 3500
    xs[k : k + 40] = [float(abs(19 - 2 * (i % 20))) for i in range(40)]

    def peak(**kwargs: object) -> float:
        return max(run(xs, **kwargs)[k : k + 40])

    assert max(run(xs)[1000:k]) < 0.4
    assert peak() > 0.5 > peak(ctx_levels=0, spread_alpha=0.0)


def test_the_context_table_never_fills_up() -> None:
    """Two generations: on noise (a new sequence at most points) the current generation is
    replaced once it holds 1/ctx_fill of its bits, so a new sequence still reads as new."""
    det = SeriesAnomalyDetector()
    half = det.ctx_bits // 8
    for i, x in enumerate(noise(20_000, 4)):
        det.learn_one(x, STEP * i)
        if i % 1000 == 999:
            for part in (det.ctx_seen[:half], det.ctx_seen[half:]):
                ones = sum(bin(b).count("1") for b in part)
                assert ones <= det.ctx_bits // det.ctx_fill + det.ctx_order  # the last point's
    assert det._context(15.0)[2] > 0.0


def test_version_6_checkpoint_starts_an_empty_context_table() -> None:
    """A version 6 checkpoint (no context view) restores with the context view on and an
    empty table; the novelty of an empty table is not averaged into the surprise until the
    table has seen ``warmup`` points, so an upgrade does not raise the scores."""
    xs = noise(3000, 2)
    det = SeriesAnomalyDetector()
    for i, x in enumerate(xs):
        det.learn_one(x, STEP * i)
    state = json.loads(json.dumps(det.to_state()))
    assert state["version"] == series_state.STATE_VERSION and any(bytes.fromhex(state["ctx"][-1]))
    state["version"] = 6
    del state["ctx"], state["ar"]
    for key in ("ctx_levels", "ctx_order", "ctx_bits", "ctx_fill", "ar"):
        del state["params"][key]
    old = SeriesAnomalyDetector.from_state(state)
    assert old.ctx_levels == 8 and old.ctx_n == 0 and not any(old.ctx_seen)
    base = SeriesAnomalyDetector.from_state(state)
    base.ctx_levels = 0  # the same model without the context view
    for i, x in enumerate(noise(200, 9)):
        t = STEP * (3000 + i)
        assert old._evaluate(x, t)[1] == base._evaluate(x, t)[1]
        old.learn_one(x, t)
        base.learn_one(x, t)
    restored = SeriesAnomalyDetector.from_state(json.loads(json.dumps(old.to_state())))
    assert restored.to_state() == old.to_state()


def test_the_levels_keep_their_meaning_until_the_range_doubles() -> None:
    """The context view cuts its levels from the range seen so far, redrawn only once that
    has grown by its own width: a new extreme a little outside does not turn every learnt
    sequence into a new one."""
    det = SeriesAnomalyDetector()
    for i in range(500):
        det.learn_one(10.0 + 9.0 * (i % 2), STEP * i)  # 10, 19, 10, ...
    assert (det.ctx_lo, det.ctx_hi) == (10.0, 19.0)
    for i, x in enumerate((25.0, 12.0, 40.0)):  # 25: within one width above, kept
        det.learn_one(x, STEP * (500 + i))
    assert (det.ctx_lo, det.ctx_hi) == (10.0, 19.0)
    det.learn_one(12.0, STEP * 503)  # 40 is beyond 19 + 9: redrawn from the point after
    assert (det.ctx_lo, det.ctx_hi) == (10.0, 40.0)


def _wander(n: int, seed: int) -> list[float]:
    """An AR(1) series: each point 0.97 of the last one's deviation plus unit noise (it
    wanders about four units around 50, slowly)."""
    rng = random.Random(seed)
    x, xs = 0.0, []
    for _ in range(n):
        x = 0.97 * x + rng.gauss(0.0, 1.0)
        xs.append(50.0 + x)
    return xs


@pytest.mark.parametrize("seed", [1, 2, 3, 4])
def test_a_wandering_series_is_judged_by_its_innovation_too(seed: int) -> None:
    """The AR(1) term (``ar``, version 8): a series that wanders learns a coefficient near
    its own (white noise one near 0), and a sudden return to the middle of its range from
    far out -- an ordinary value, an extraordinary step -- scores well above what the
    level predictor alone gives it (seasonality off: its hourly slots follow a wander too)."""
    xs = _wander(3000, seed)
    k = next(i for i in range(2000, 3000) if abs(xs[i] - 50.0) > 8.0)
    xs[k] = 50.0
    det = SeriesAnomalyDetector(seasonality=False)
    scores = [det.score_learn_one(x, STEP * i) for i, x in enumerate(xs)]
    plain = run(xs, seasonality=False, ar=False)
    assert det._ar_phi() > 0.8
    assert scores[k] > 1.5 * plain[k]
    white = SeriesAnomalyDetector(seasonality=False)
    for i, x in enumerate(noise(3000, seed)):
        white.learn_one(x, STEP * i)
    assert white._ar_phi() < 0.1


def test_version_7_checkpoint_starts_the_ar_term_afresh() -> None:
    """A version 7 checkpoint (no AR(1) term) restores with the term on and empty; its
    surprise counts only once it has learnt 30 points, so until then the scores are the
    version 7 model's (an upgrade does not raise them); then it has learnt the coefficient,
    and the new state round-trips."""
    det = SeriesAnomalyDetector(seasonality=False)
    for i, x in enumerate(_wander(2000, 5)):
        det.learn_one(x, STEP * i)
    state = json.loads(json.dumps(det.to_state()))
    assert det._ar_phi() > 0.8 and state["ar"][0] == 1999  # every point but the first
    state["version"] = 7
    del state["ar"], state["params"]["ar"], state["spread"]
    del state["params"]["spread_alpha"], state["params"]["spread_long_alpha"]
    old = SeriesAnomalyDetector.from_state(state)
    assert old.ar and old.ar_n == 0 and old._ar_phi() == 0.0
    base = SeriesAnomalyDetector.from_state(state)
    base.ar = False  # the same model without the AR(1) term
    for i, x in enumerate(_wander(1000, 6)):
        t = STEP * (2000 + i)
        if i <= 30:
            assert old._evaluate(x, t)[0] == base._evaluate(x, t)[0]
        old.learn_one(x, t)
        base.learn_one(x, t)
    assert old._ar_phi() > 0.8
    restored = SeriesAnomalyDetector.from_state(json.loads(json.dumps(old.to_state())))
    assert restored.to_state() == old.to_state()
    t = STEP * 3000
    assert restored.score_one(60.0, t) == old.score_one(60.0, t)


def _day_and_night(days: int, seed: int) -> list[float]:
    """A flat series (100) with noise of 3 by day (08:00-20:00) and 0.3 at night."""
    rng = random.Random(seed)
    out = []
    for i in range(int(days * 86_400 / STEP)):
        hour = (STEP * i % 86_400) // 3600
        out.append(100.0 + rng.gauss(0.0, 3.0 if 8 <= hour < 20 else 0.3))
    return out


@pytest.mark.parametrize("seed", [1, 2, 3, 4])
def test_an_hour_of_the_day_is_judged_by_its_own_noise(seed: int) -> None:
    """The residual's scale per hour of the day (``hour_var_alpha``, version 9): a series
    noisy by day and quiet at night learns each hour's noise, and a spike of 15 night-time
    standard deviations at 03:00 (1.5 daytime ones) scores well above what the series-wide
    scale gives it."""
    xs = _day_and_night(14, seed)
    k = int((12 * 86_400 + 3 * 3600) / STEP)
    xs[k] += 4.5
    det = SeriesAnomalyDetector()
    scores = [det.score_learn_one(x, STEP * i, damped=False) for i, x in enumerate(xs)]
    plain = SeriesAnomalyDetector(hour_var_alpha=0.0)
    flat = [plain.score_learn_one(x, STEP * i, damped=False) for i, x in enumerate(xs)]
    assert det.hour_var[2] < 0.3**2 * 1.5 and det.hour_var[12] > 3.0**2 / 1.5  # 02:00, noon
    assert not plain.hour_var
    assert scores[k] > 1.3 * flat[k]


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_a_burst_moves_the_level_by_a_bounded_step(seed: int) -> None:
    """``level_clip`` (version 9): twenty points 40 standard deviations up move the level
    by at most 5 standard deviations' worth each (at the level's rate 0.01: at most 1 unit
    in all here), not by the burst's full size (about 3.4 units)."""
    xs = noise(3000, seed)
    for j in range(2000, 2020):
        xs[j] += 40.0
    levels = []
    for kwargs in ({}, {"level_clip": 0.0}):
        det = SeriesAnomalyDetector(**kwargs)  # type: ignore[arg-type]
        for i, x in enumerate(xs[:2020]):
            det.learn_one(x, STEP * i)
        levels.append(det.level)
    assert abs(levels[0] - 10.0) < 1.1 < 3.0 < abs(levels[1] - 10.0)


def test_version_8_checkpoint_starts_the_hour_scales_afresh() -> None:
    """A version 8 checkpoint (no per-hour scale) restores with every hour unknown: an hour
    is judged by the series-wide scale until its first point, which starts it from that
    scale, so an upgrade does not change the first scores; the new state round-trips."""
    det = SeriesAnomalyDetector()
    xs = _day_and_night(4, 7)
    for i, x in enumerate(xs):
        det.learn_one(x, STEP * i)
    state = json.loads(json.dumps(det.to_state()))
    assert all(v is not None for v in state["hour_var"])
    state["version"] = 8
    del state["hour_var"], state["params"]["hour_var_alpha"], state["params"]["level_clip"]
    old = SeriesAnomalyDetector.from_state(state)
    assert len(old.hour_var) == 24 and all(v != v for v in old.hour_var)  # NaN: unknown
    base = SeriesAnomalyDetector.from_state(state)
    base.hour_var = array("f")  # the same model without the per-hour scale
    t = STEP * len(xs)
    assert old._evaluate(130.0, t)[0] == base._evaluate(130.0, t)[0]
    for i, x in enumerate(_day_and_night(2, 8)):
        old.learn_one(x, t + STEP * i)
    assert all(v == v for v in old.hour_var)
    restored = SeriesAnomalyDetector.from_state(json.loads(json.dumps(old.to_state())))
    assert restored.to_state() == old.to_state()
@pytest.mark.parametrize("seed", [0, 1, 2, 3])
@pytest.mark.parametrize("factor", [0.3, 0.0])
def test_a_series_going_quiet_is_flagged_by_the_spread_view(seed: int, factor: float) -> None:
    """The spread view (``spread_alpha``, version 9): the noise drops to 0.3 of its size, or
    stops (a stuck sensor: the value freezes at the level), with no level change -- every
    value is ordinary, so the point and mean-shift views stay quiet (below 0.25); the ratio
    of the short to the long mean square of the innovation scores it within 60 points."""
    xs = noise(4000, seed)
    xs[3000:] = [10.0 + factor * (x - 10.0) for x in xs[3000:]]
    assert max(run(xs)[3000:3060]) > 0.45
    assert max(run(xs, spread_alpha=0.0)[3000:3300]) < 0.25


def test_version_8_checkpoint_starts_the_spread_view_afresh() -> None:
    """A version 8 checkpoint (no spread view, 128 bins of tail history) restores with the
    view on and empty: until it has learnt ``warmup`` points the scores are the version 8
    model's (an upgrade does not raise them); then it scores, and the new state round-trips."""
    det = SeriesAnomalyDetector()
    for i, x in enumerate(noise(2000, 7)):
        det.learn_one(x, STEP * i)
    state = json.loads(json.dumps(det.to_state()))
    assert state["spread"][0] == 1999 and len(state["tail"]) == 2 + 3 * 64
    state["version"] = 8
    del state["spread"], state["params"]["spread_alpha"], state["params"]["spread_long_alpha"]
    state["tail"] = state["tail"][: 2 + 2 * 64]
    old = SeriesAnomalyDetector.from_state(state)
    assert old.spread_alpha > 0.0 and old.vn == 0 and len(old.tail) == 3 * 64
    base = SeriesAnomalyDetector.from_state(state)
    base.spread_alpha = 0.0  # the same model without the spread view
    quiet = [10.0 + 0.1 * (x - 10.0) for x in noise(600, 8)]
    for i, x in enumerate(quiet):
        t = STEP * (2000 + i)
        if i < old.warmup:
            assert old._evaluate(x, t)[0] == base._evaluate(x, t)[0]
        old.learn_one(x, t)
        base.learn_one(x, t)
    assert old.vn == 600
    restored = SeriesAnomalyDetector.from_state(json.loads(json.dumps(old.to_state())))
    assert restored.to_state() == old.to_state()
    t = STEP * 2600
    assert restored.score_one(10.0, t) == old.score_one(10.0, t)
