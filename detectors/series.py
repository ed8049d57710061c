"""Streaming anomaly detector for one numeric series (latency percentile, error rate,
cold-start rate, throughput, cost per window).

The pipeline, per point, and why:

1. **Prediction** -- an exponentially weighted level, optionally plus a daily or weekly
   seasonal offset (one slot per hour of the day / of the week). Three predictors run side by
   side (none, daily, weekly) and the one with the lowest recent absolute error is used, so a
   series with a daily rhythm is compared with "this hour yesterday" and the rhythm itself
   never raises an alarm, while a flat series is not penalised by an empty seasonal model.
2. **Surprise** -- the residual divided by its exponentially weighted standard deviation,
   ``z``, on a log scale, ``e = log(1 + z)``. The first ``1/alpha`` points use a running
   mean (``warm_start``) so a series that starts far from zero does not spend hundreds of
   points converging. The scale is robust: a residual enters the variance clipped to
   ``var_clip`` standard deviations (one spike or the first points of a level shift must
   not blind the detector for days), and the variance forgets at ``var_alpha`` (faster than
   the level), so it recovers from a start-up transient within a few hundred points.
3. **Time-of-day envelope** -- for each ``env_slots``-th of the day (15 minutes by default)
   the largest surprise seen in that slot on *previous* days (today's maxima are kept
   apart and folded in when the day changes, decayed by ``env_decay`` per day, so it fades
   over a few weeks; a burst must not excuse its own later points). Only the excess of
   ``e`` over the envelope of its slot and its neighbours (``env_width`` slots either
   side, for jitter) counts, scaled so that ``z = cap`` over a quiet slot gives 1. A
   nightly backup or cron job spikes at the same minute every day; an hourly seasonal mean
   smears such a 5-minute spike away, so without this every one of them is a page (on
   NAB's AWS series they were the largest source of false positives: one per day per
   affected series). A spike larger than what this time of day usually does still scores.
   ``env_start`` (30) keeps the first points (whose surprise only says that the scale is not
   known yet) out of the envelope; without it the time of day a series started at ignores
   in-range spikes for weeks (its envelope slot holds the start-up surprise, about
   ``z = 14``). It costs 0.5 of the NAB standard score: on NAB the start-of-file slot
   happens to profit from that blindness (a few unlabelled spikes at that time of day).
4. **Anomaly likelihood** -- the surprise, averaged over a couple of points
   (``short_alpha``; Numenta's likelihood averages its raw scores the same way, so a
   sustained change outranks a lone blip of the same size, while a lone 15-sigma spike
   still scores above 0.9), is compared with the series' own history of such surprises (a
   Gaussian tail on their long-term mean and variance, as in Numenta's anomaly likelihood)
   and log-scaled, ``log(1 - L) / log(1e-10)``. This is what makes one threshold work
   across series: a noisy series has large surprises all the time and only its unusual
   ones score high. A value that leaves the whole range seen so far by more than
   ``spatial_tolerance`` of that range scores 1 outright (``spatial_direct``, Numenta's
   "spatial anomaly"): a new extreme is what an operator wants to hear about first.
5. **Mean-shift detector** (``shift_alpha > 0``) -- a second, independent view: a short EW
   mean of the value (about 20 points) against a long EW mean and standard deviation
   (about 200 points), both fed the value clipped to ``shift_clip`` (3) long standard
   deviations so that a lone spike barely moves them: large changes are the point
   detector's job, this one is for the small sustained ones. Its log-scaled distance has its own
   likelihood history, and the two likelihoods are combined by their maximum (each is
   calibrated on its own series, so the maximum is comparable). It catches a sustained
   shift of about one standard deviation within a few dozen points, which no single point
   reveals; it adds 6 scalars and a counter (``sn``: it re-warms after a restore from an
   older checkpoint).
   On a series with a strong rhythm the raw value's long standard deviation is mostly the
   rhythm, so a shift of several noise standard deviations stays invisible; with
   ``shift_deseason`` (on) the detector then watches the value minus this hour of the day's
   seasonal offset (yesterday's, the freshest) and sees a 3-sigma shift on a daily-seasonal
   series within about 10 points (``bench/nab/synthetic.py``). It switches to that view only
   once a seasonal predictor is *confidently* better than the flat one: the ratio of its
   error to the flat predictor's, averaged slowly (``shift_long_alpha``, ~200 points, so a
   shift, which also raises the seasonal error, does not switch the view away while it is
   being detected), below ``shift_season_on`` (0.3), back off above ``shift_season_off``
   (0.5), and never before ``shift_season_after`` (7) days of data (before a whole week the
   first weekend of a weekly rhythm would look like a shift). Each switch restarts the
   mean-shift detector (it re-warms on the new input). Series without a clear rhythm keep
   the raw value (14 of NAB's 17 series throughout; the view leaves NAB's score unchanged);
   feeding every series its chosen predictor's de-seasonalised value instead cost 0.9 of
   the NAB standard score (predictor switches on weakly seasonal series look like shifts)
   and raised false alarms on weekly rhythms.
6. **Refractory period** -- after a score reaches ``alarm_level`` the following
   ``refractory`` points are multiplied by ``damping`` (0: silenced), so a single incident
   yields one alarm and not a page per point. That is what ``obsloop score-series`` and NAB
   (scored per point) get. The service's window scorer asks for the undamped score
   (``score_learn_one(..., damped=False)``): its episodes already turn a run of anomalous
   windows into one detection, and a refractory period there would leave a series blind
   for 50 windows after any alarm, a false one included (see ``detectors/scoring.py``).
   The model learns the same either way.

On NAB's AWS CloudWatch series (``bench/nab/run.py``) these choices took the standard score
from 61.1 to 70.1 (66.1 without the mean-shift detector; 70.6 with ``env_start=0``, which
leaves the start-up blindness in); ``bench/nab/analyse.py`` shows, per window and per false
positive, where the remaining points are lost.

Everything is ``O(1)`` in time and memory per point (no windows of raw values): the state
is 384 float32 slots (24 daily, 168 weekly, 2 x 96 envelope) plus about 35 scalars, about
3.8 KB of Python objects per series (see ``bench/nab/memory.py``), so 50,000 live series
take about 188 MB, and the whole state is a small JSON-serialisable dict (about 4 KB).

The arithmetic is the recurrences of ``river.stats.EWMean`` / ``EWVar`` written out on plain
floats: river's implementations are Rust objects whose state can only be pickled, and a
checkpoint must survive river upgrades and be safe to load (see :meth:`to_state`).
"""

from __future__ import annotations

import math
from array import array
from datetime import datetime
from typing import Any

__all__ = ["SeriesAnomalyDetector", "to_epoch"]

_DAY = 86_400.0
_WEEK = 7 * _DAY
_DAY_SLOTS = 24
_WEEK_SLOTS = 7 * 24
_LOG_1E10 = math.log(1e-10)
_E_INF = math.log1p(1e12)  # surprise of a change after a perfectly constant stretch
_TAIL_BINS = 64
_TAIL_RES = 16.0  # bins per unit of log1p(statistic)
_ENV_CAP_FACTOR = 4.0  # the envelope remembers spikes up to 4 x cap standard deviations
STATE_VERSION = 6
_OLD_VERSIONS = (1, 2, 3, 4, 5)  # readable: the new parts start empty


def to_epoch(t: datetime | float | int) -> float:
    """Seconds since the epoch; naive datetimes are taken as UTC (as NAB timestamps are)."""
    if isinstance(t, datetime):
        if t.tzinfo is None:
            # Avoid local-time interpretation: naive means UTC here.
            return (t - _EPOCH_NAIVE).total_seconds()
        return t.timestamp()
    return float(t)


_EPOCH_NAIVE = datetime(1970, 1, 1)


def _tail_bin(u: float) -> int:
    """Histogram bin of a likelihood statistic: log-spaced, the last one open-ended."""
    if u <= 0.0:
        return 0
    b = int(math.log1p(u) * _TAIL_RES)
    return b if b < _TAIL_BINS else _TAIL_BINS - 1


def _tail(z: float) -> float:
    """Upper tail probability of the standard normal distribution."""
    return 0.5 * math.erfc(z / math.sqrt(2.0))


class SeriesAnomalyDetector:
    """Anomaly score in ``[0, 1]`` for each new point of one series.

    Parameters are in points (not seconds) because a series is one value per closed window.

    >>> from datetime import datetime, timedelta
    >>> det = SeriesAnomalyDetector()
    >>> t0 = datetime(2024, 1, 1)
    >>> for i in range(600):  # a steady series with a little noise
    ...     det.learn_one(10.0 + 0.1 * ((i * 7) % 5), t0 + timedelta(minutes=5 * i))
    >>> normal = det.score_one(10.2, t0 + timedelta(minutes=5 * 600))
    >>> spike = det.score_one(25.0, t0 + timedelta(minutes=5 * 600))
    >>> normal < 0.5 < spike <= 1.0
    True
    """

    def __init__(
        self,
        alpha: float = 0.01,
        seasonal_alpha: float = 0.1,
        cap: float = 8.0,
        likelihood_alpha: float = 0.0005,
        min_likelihood_std: float = 0.01,
        spatial_tolerance: float = 0.05,
        warmup: int = 300,
        alarm_level: float = 0.5,
        refractory: int = 50,
        damping: float = 0.0,
        seasonality: bool = True,
        env_slots: int = 96,
        env_decay: float = 0.97,
        env_width: int = 1,
        short_alpha: float = 0.8,
        warm_start: bool = True,
        var_clip: float = 4.0,
        spatial_direct: bool = True,
        var_alpha: float = 0.03,
        shift_alpha: float = 0.05,
        shift_long_alpha: float = 0.005,
        shift_clip: float = 3.0,
        env_start: int = 30,
        shift_deseason: bool = True,
        shift_season_on: float = 0.3,
        shift_season_off: float = 0.5,
        shift_season_after: float = 7.0,
        tail_alpha: float = 0.001,
        shift_reset: bool = True,
    ) -> None:
        self.alpha = alpha
        self.seasonal_alpha = seasonal_alpha
        self.cap = cap
        self.likelihood_alpha = likelihood_alpha
        self.min_likelihood_std = min_likelihood_std
        self.spatial_tolerance = spatial_tolerance
        self.warmup = warmup
        self.alarm_level = alarm_level
        self.refractory = refractory
        self.damping = damping
        self.seasonality = seasonality
        self.env_slots = env_slots
        self.env_decay = env_decay
        self.env_width = env_width
        self.short_alpha = short_alpha
        self.warm_start = warm_start
        self.var_clip = var_clip
        self.spatial_direct = spatial_direct
        self.var_alpha = var_alpha
        self.shift_alpha = shift_alpha
        self.shift_long_alpha = shift_long_alpha
        self.shift_clip = shift_clip
        self.env_start = env_start
        self.shift_deseason = shift_deseason
        self.shift_season_on = shift_season_on
        self.shift_season_off = shift_season_off
        self.shift_season_after = shift_season_after
        self.tail_alpha = tail_alpha
        self.shift_reset = shift_reset
        self._log_cap = math.log1p(cap)
        self._env_cap = math.log1p(_ENV_CAP_FACTOR * cap)
        self._reset()

    # ------------------------------------------------------------------ state
    def _reset(self) -> None:
        self.n = 0
        self.level = 0.0
        self.var = 0.0  # EW variance of the residual of the chosen predictor
        self.lo = math.inf
        self.hi = -math.inf
        # EW mean absolute error of the three predictors: none, daily, weekly.
        self.err = [0.0, 0.0, 0.0]
        # Seasonal offsets (NaN = slot never seen); float32 keeps 50k series small.
        self.daily = array("f", [math.nan]) * _DAY_SLOTS if self.seasonality else array("f")
        self.weekly = array("f", [math.nan]) * _WEEK_SLOTS if self.seasonality else array("f")
        # Time-of-day envelope of the log surprise (0 = nothing seen yet).
        self.env = array("f", [0.0]) * self.env_slots if self.seasonality else array("f")
        # Today's largest surprise per slot; folded into ``env`` when the day changes, so the
        # envelope holds previous days only (a burst must not excuse itself).
        self.env_today = array("f", [0.0]) * self.env_slots if self.seasonality else array("f")
        self.env_day = -(1 << 40)
        self.short = 0.0  # short EW mean of the raw surprise, fed to the likelihood
        self.lik_mean = 0.0
        self.lik_var = 0.0
        # Mean-shift detector: a short EW mean of the value against a long EW mean and
        # standard deviation, with its own likelihood history.
        self.sm = 0.0
        self.lm = 0.0
        self.lv = 0.0
        self.l2_mean = 0.0
        self.l2_var = 0.0
        self.sn = 0  # points seen by the mean-shift detector (it may start after a restore)
        # shift_deseason: slow EW means of (error of the daily / weekly predictor / error of
        # the flat one), whether the mean-shift detector watches the de-seasonalised value,
        # and the time of the first point (NaN: unknown, e.g. restored from an old checkpoint).
        self.sconf = [1.0, 1.0]  # daily, weekly
        self.sdes = False
        self.t0 = math.nan
        self.since_alarm = 1 << 30
        self.last_t = -math.inf
        # Empirical tail: decayed counts of the likelihood statistic per log-spaced bin,
        # stored scaled by ``tail_gain`` (grows instead of decaying every bin each point).
        # Bins 0-63 for the point view, 64-127 for the mean-shift view.
        self.tail = array("f", [0.0]) * (2 * _TAIL_BINS) if self.tail_alpha > 0.0 else array("f")
        self.tail_total = 0.0
        self.tail_gain = 1.0

    def to_state(self) -> dict[str, Any]:
        """A JSON-serialisable checkpoint.

        JSON rather than pickle: a checkpoint is read back by another process (maybe another
        version) after a restart, loading it must not execute code, and it must not depend on
        river's internal object layout. NaN slots are written as ``None``.
        """
        return {
            "version": STATE_VERSION,
            "params": self._params(),
            "n": self.n,
            "level": self.level,
            "var": self.var,
            "lo": _finite_or_none(self.lo),
            "hi": _finite_or_none(self.hi),
            "err": list(self.err),
            "daily": [_f32(v) if v == v else None for v in self.daily],
            "weekly": [_f32(v) if v == v else None for v in self.weekly],
            "env": [_f32(v) for v in self.env],
            "env_today": [_f32(v) for v in self.env_today],
            "env_day": self.env_day,
            "short": self.short,
            "lik_mean": self.lik_mean,
            "lik_var": self.lik_var,
            "shift": [self.sn, self.sm, self.lm, self.lv, self.l2_mean, self.l2_var],
            "season": [*self.sconf, int(self.sdes), _finite_or_none(self.t0)],
            "since_alarm": self.since_alarm,
            "last_t": _finite_or_none(self.last_t),
            "tail": [self.tail_total, self.tail_gain, *(_f32(v) for v in self.tail)],
        }

    @classmethod
    def from_state(cls, state: dict[str, Any]) -> SeriesAnomalyDetector:
        """Rebuild a detector from :meth:`to_state` output (raises ``ValueError`` if unknown)."""
        version = state.get("version")
        if version != STATE_VERSION and version not in _OLD_VERSIONS:
            raise ValueError(
                f"unsupported detector state version {version!r} (this version of obsloop "
                f"reads versions {sorted((*_OLD_VERSIONS, STATE_VERSION))}); delete the "
                "checkpoint to start learning afresh"
            )
        params = dict(state["params"])
        if version in (1, 2):
            # Before version 3 env_decay was per visit of a slot, now it is per day: the old
            # value would fade the envelope several times more slowly, so take the default.
            params.pop("env_decay", None)
        if version in (1, 2, 3, 4):
            # Before version 5 env_start and shift_deseason were off by default, and a
            # checkpoint records every parameter: take today's defaults, not the old ones.
            params.pop("env_start", None)
            params.pop("shift_deseason", None)
        det = cls(**params)
        det.n = int(state["n"])
        det.level = float(state["level"])
        det.var = float(state["var"])
        det.lo = _none_to(state["lo"], math.inf)
        det.hi = _none_to(state["hi"], -math.inf)
        det.err = [float(v) for v in state["err"]]
        det.daily = array("f", [_none_to(v, math.nan) for v in state["daily"]])
        det.weekly = array("f", [_none_to(v, math.nan) for v in state["weekly"]])
        if "env" in state:
            det.env = array("f", [float(v) for v in state["env"]])
            det.short = float(state["short"])
        if "env_today" in state:
            det.env_today = array("f", [float(v) for v in state["env_today"]])
            det.env_day = int(state["env_day"])
        det.lik_mean = float(state["lik_mean"])
        det.lik_var = float(state["lik_var"])
        if "shift" in state:  # before version 4 the mean-shift detector starts afresh
            sn, *rest = state["shift"]
            det.sn = int(sn)
            det.sm, det.lm, det.lv, det.l2_mean, det.l2_var = (float(v) for v in rest)
        if "season" in state:
            sd, sw, sdes, t0 = state["season"]
            det.sconf = [float(sd), float(sw)]
            det.sdes, det.t0 = bool(sdes), _none_to(t0, math.nan)
        elif det.err[0] > 0.0:  # before version 5: today's error ratios; t0 unknown, so the
            # de-seasonalised view waits shift_season_after days from the restore
            det.sconf = [min(det.err[k] / det.err[0], 1.0) for k in (1, 2)]
        det.since_alarm = int(state["since_alarm"])
        det.last_t = _none_to(state["last_t"], -math.inf)
        if "tail" in state and det.tail_alpha > 0.0:  # before version 6: an empty history
            total, gain, *bins = state["tail"]
            det.tail_total, det.tail_gain = float(total), float(gain)
            det.tail = array("f", [float(v) for v in bins])
        return det

    def _params(self) -> dict[str, Any]:
        return {
            "alpha": self.alpha,
            "seasonal_alpha": self.seasonal_alpha,
            "cap": self.cap,
            "likelihood_alpha": self.likelihood_alpha,
            "min_likelihood_std": self.min_likelihood_std,
            "spatial_tolerance": self.spatial_tolerance,
            "warmup": self.warmup,
            "alarm_level": self.alarm_level,
            "refractory": self.refractory,
            "damping": self.damping,
            "seasonality": self.seasonality,
            "env_slots": self.env_slots,
            "env_decay": self.env_decay,
            "env_width": self.env_width,
            "short_alpha": self.short_alpha,
            "warm_start": self.warm_start,
            "var_clip": self.var_clip,
            "spatial_direct": self.spatial_direct,
            "var_alpha": self.var_alpha,
            "shift_alpha": self.shift_alpha,
            "shift_long_alpha": self.shift_long_alpha,
            "shift_clip": self.shift_clip,
            "env_start": self.env_start,
            "shift_deseason": self.shift_deseason,
            "shift_season_on": self.shift_season_on,
            "shift_season_off": self.shift_season_off,
            "shift_season_after": self.shift_season_after,
            "tail_alpha": self.tail_alpha,
            "shift_reset": self.shift_reset,
        }

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self._params().items())
        return f"SeriesAnomalyDetector({args})"

    # ------------------------------------------------------------- scoring
    def _evaluate(
        self, x: float, ts: float
    ) -> tuple[float, float, float, int, int, int, float, int, int, int]:
        """Score ``x`` without changing state; also return what ``_learn`` needs.

        The score is *undamped* (the refractory period is not applied here): ``_learn`` only
        compares it with ``alarm_level`` once the refractory period is over, where damped and
        undamped are the same, so the model evolves identically either way."""
        d_slot = int((ts % _DAY) // 3600.0)
        w_slot = int(((ts + 3 * _DAY) % _WEEK) // 3600.0)  # epoch day 0 was a Thursday
        choice = 0
        offset = 0.0
        if self.seasonality:
            best = self.err[0]
            od = self.daily[d_slot]
            if od == od and self.err[1] < best:  # od == od: not NaN
                choice, offset, best = 1, od, self.err[1]
            ow = self.weekly[w_slot]
            if ow == ow and self.err[2] < best:
                choice, offset = 2, ow
        if self.n == 0:
            return 0.0, 0.0, 0.0, choice, d_slot, w_slot, 0.0, 0, -1, -1
        resid = x - self.level - offset
        sd = math.sqrt(self.var)
        e = math.log1p(abs(resid) / sd) if sd > 0.0 else (0.0 if resid == 0.0 else _E_INF)
        e_slot = 0
        if self.seasonality:
            slots = self.env_slots
            env = self.env
            e_slot = int((ts % _DAY) * slots / _DAY) % slots
            width = self.env_width
            ev = env[e_slot]
            for k in range(1, width + 1):
                a, b = env[(e_slot + k) % slots], env[e_slot - k]  # negative index wraps
                if a > ev:
                    ev = a
                if b > ev:
                    ev = b
            excess = e - ev if e > ev else 0.0
        else:
            excess = e
        raw = excess / self._log_cap
        if raw > 1.0:
            raw = 1.0
        span = self.hi - self.lo
        tol = self.spatial_tolerance * span
        spatial = span > 0.0 and (x > self.hi + tol or x < self.lo - tol)
        if spatial:
            raw = 1.0
        if self.n < self.warmup:
            return 0.0, raw, resid, choice, d_slot, w_slot, e, e_slot, -1, -1
        lik_sd = max(math.sqrt(self.lik_var), self.min_likelihood_std)
        short = self.short + self.short_alpha * (raw - self.short)
        u = (short - self.lik_mean) / lik_sd
        u2 = -math.inf
        if self.shift_alpha > 0.0 and self.sn >= self.warmup:
            r2 = self._shift_raw(self._shift_input(x, d_slot))
            l2_sd = max(math.sqrt(self.l2_var), self.min_likelihood_std)
            u2 = (r2 - self.l2_mean) / l2_sd
        direct = spatial and self.spatial_direct
        b = _TAIL_BINS - 1 if direct else _tail_bin(u)
        b2 = _tail_bin(u2) + _TAIL_BINS
        if direct:
            score = 1.0
        elif self.tail_alpha > 0.0:
            # Each view's statistic against how often this series' own recent history
            # reached it, with the Gaussian tail as a prior worth one horizon
            # (1 / tail_alpha points) of history; the more surprising view counts.
            k = 1.0 / self.tail_alpha
            tail, gain, norm = self.tail, self.tail_gain, self.tail_total + k
            p = (sum(tail[b:_TAIL_BINS]) / gain + k * _tail(u)) / norm
            p2 = (sum(tail[b2:]) / gain + k * _tail(u2)) / norm
            if p2 < p:
                p = p2
            score = math.log(p) / _LOG_1E10 if p > 0.0 else 1.0
        else:
            score = math.log(1.0000000001 - (1.0 - _tail(max(u, u2)))) / _LOG_1E10
        score = min(max(score, 0.0), 1.0)
        # Undamped: the refractory period is applied by the public methods (``damped``).
        return score, raw, resid, choice, d_slot, w_slot, e, e_slot, b, b2

    def _learn(
        self,
        x: float,
        ts: float,
        evaluated: tuple[float, float, float, int, int, int, float, int, int, int],
    ) -> None:
        score, raw, resid, choice, d_slot, w_slot, e, e_slot, b, b2 = evaluated
        if b >= 0 and self.tail_alpha > 0.0:
            g = self.tail_gain / (1.0 - self.tail_alpha)
            if g > 1e30:  # renormalise the stored counts
                tail = self.tail
                for k in range(2 * _TAIL_BINS):
                    tail[k] = tail[k] / g
                g = 1.0
            self.tail[b] += g
            self.tail[b2] += g
            self.tail_gain = g
            self.tail_total = (1.0 - self.tail_alpha) * self.tail_total + 1.0
        sx = self._shift_input(x, d_slot) if self.n > 0 else x
        if self.t0 != self.t0:  # NaN: first point, or first point after an old checkpoint
            self.t0 = ts
        if self.n == 0:
            self.level = x
        else:
            a = self.alpha
            # Level follows the de-seasonalised value so it does not chase the daily cycle.
            if choice == 0:
                deseason = x
            elif choice == 1:
                deseason = x - self.daily[d_slot]
            else:
                deseason = x - self.weekly[w_slot]
            if self.warm_start and self.n < 1.0 / a:
                a = 1.0 / (self.n + 1)
            r2 = resid * resid
            if self.var_clip > 0.0 and self.n >= 30:
                lim = self.var_clip * self.var_clip * self.var
                if r2 > lim:
                    r2 = lim
            va = self.var_alpha if self.var_alpha > a else a
            self.var = (1.0 - va) * (self.var + va * r2)
            if self.seasonality:
                dev = x - self.level
                err = self.err
                err[0] += a * (abs(dev) - err[0])
                sa = self.seasonal_alpha
                od = self.daily[d_slot]
                if od == od:
                    err[1] += a * (abs(dev - od) - err[1])
                    self.daily[d_slot] = od + sa * (dev - od)
                else:
                    err[1] += a * (abs(dev) - err[1])
                    self.daily[d_slot] = dev
                ow = self.weekly[w_slot]
                if ow == ow:
                    err[2] += a * (abs(dev - ow) - err[2])
                    self.weekly[w_slot] = ow + sa * (dev - ow)
                else:
                    err[2] += a * (abs(dev) - err[2])
                    self.weekly[w_slot] = dev
            self.level += a * (deseason - self.level)
            if self.seasonality:
                # The envelope learns at most env_cap: one huge incident at 02:00 must not
                # blind 02:00 for weeks (env_decay is ~3 % a day). With env_start it does not
                # learn from the first points either (their surprise only says that the scale
                # is not known yet).
                day = int(ts // _DAY)
                if day != self.env_day:
                    self._fold_envelope(day)
                e_env = e if e < self._env_cap else self._env_cap
                if e_env > self.env_today[e_slot] and self.n >= self.env_start:
                    self.env_today[e_slot] = e_env
            la = max(self.likelihood_alpha, 1.0 / (self.n + 1))
            self.short += self.short_alpha * (raw - self.short)
            delta = self.short - self.lik_mean
            self.lik_mean += la * delta
            self.lik_var = (1.0 - la) * (self.lik_var + la * delta * delta)
        if self.shift_deseason and self.seasonality and self.n > 0:
            # How much better the seasonal predictors are, averaged over ~1/shift_long_alpha
            # points (slow: a level shift also raises the seasonal error, and the view must
            # not switch away during the anomaly it is meant to see). On and off with
            # hysteresis, never before a whole week (before that the first weekend would look
            # like a shift); the mean-shift detector starts afresh on the new input.
            e0, err, sconf = self.err[0], self.err, self.sconf
            b = self.shift_long_alpha
            for k in (0, 1):
                ratio = err[k + 1] / e0 if e0 > 0.0 else 1.0
                sconf[k] += b * ((ratio if ratio < 1.0 else 1.0) - sconf[k])
            best = sconf[0] if sconf[0] < sconf[1] else sconf[1]
            if self.sdes:
                flip = best > self.shift_season_off
            else:
                flip = (best < self.shift_season_on
                        and ts - self.t0 >= self.shift_season_after * _DAY)
            if flip:
                self.sdes = not self.sdes
                self.sn = 0
                sx = self._shift_input(x, d_slot)
        if self.shift_alpha > 0.0:
            if self.sn == 0:
                self.sm = self.lm = sx
            else:
                r2 = self._shift_raw(sx)
                la = max(self.likelihood_alpha, 1.0 / (self.sn + 1))
                delta = r2 - self.l2_mean
                self.l2_mean += la * delta
                self.l2_var = (1.0 - la) * (self.l2_var + la * delta * delta)
                xc = self._shift_clip(sx)
                self.sm += self.shift_alpha * (xc - self.sm)
                b = max(self.shift_long_alpha, 1.0 / (self.sn + 1))
                d = xc - self.lm
                self.lm += b * d
                self.lv = (1.0 - b) * (self.lv + b * d * d)
            self.sn += 1
        if x < self.lo:
            self.lo = x
        if x > self.hi:
            self.hi = x
        if score >= self.alarm_level and self.since_alarm >= self.refractory:
            self.since_alarm = 0
            if self.shift_reset and self.sn > 0:
                self.lm = self.sm
        else:
            self.since_alarm += 1
        self.last_t = ts
        self.n += 1

    def _shift_input(self, x: float, d_slot: int) -> float:
        """The value the mean-shift detector sees: once a seasonal predictor is confidently
        better than the flat one (``sdes``, see ``shift_deseason``), the value minus this hour
        of the day's offset (the daily rhythm is not a shift); otherwise the value itself."""
        if self.sdes:
            off = self.daily[d_slot]
            if off == off:
                return x - off
        return x

    def _shift_clip(self, x: float) -> float:
        lim = self.shift_clip * math.sqrt(self.lv)
        if lim > 0.0 and self.sn >= 30:
            if x > self.lm + lim:
                return self.lm + lim
            if x < self.lm - lim:
                return self.lm - lim
        return x

    def _shift_raw(self, x: float) -> float:
        sd = math.sqrt(self.lv)
        if sd <= 0.0:
            return 0.0
        sm = self.sm + self.shift_alpha * (self._shift_clip(x) - self.sm)
        r = math.log1p(abs(sm - self.lm) / sd) / self._log_cap
        return r if r < 1.0 else 1.0

    def _fold_envelope(self, day: int) -> None:
        """A new day: yesterday's per-slot maxima join the (decayed) envelope."""
        env, today = self.env, self.env_today
        if self.env_day > -(1 << 39):
            decay = self.env_decay ** min(day - self.env_day, 1000)
            for k in range(len(env)):
                old = env[k] * decay
                t = today[k]
                env[k] = t if t > old else old
                today[k] = 0.0
        self.env_day = day

    def _clock(self, t: datetime | float) -> float:
        """``t`` in epoch seconds, never before the last point learnt.

        A real export's clock may step back (NAB's ``machine_temperature_system_failure``
        does once); the point is still scored, at its place in the stream, but the seasonal
        slots and the envelope's day see time as non-decreasing: a day folded twice would
        inflate the envelope (its decay is per elapsed day)."""
        ts = to_epoch(t)
        return ts if ts >= self.last_t else self.last_t

    @property
    def in_refractory(self) -> bool:
        """Whether the next score is damped (an alarm within the last ``refractory`` points)."""
        return self.since_alarm < self.refractory

    def score_one(self, x: float, t: datetime | float = 0.0, damped: bool = True) -> float:
        """Anomaly score of ``x`` at ``t`` in ``[0, 1]``; does not change the model.

        ``damped=False`` leaves out the refractory period (see :meth:`score_learn_one`)."""
        score = self._evaluate(_check_value(x), self._clock(t))[0]
        if damped and self.since_alarm < self.refractory:
            score *= self.damping
        return score

    def learn_one(self, x: float, t: datetime | float = 0.0) -> None:
        """Update the model with ``x`` observed at ``t``."""
        x = _check_value(x)
        ts = self._clock(t)
        self._learn(x, ts, self._evaluate(x, ts))

    def score_learn_one(self, x: float, t: datetime | float = 0.0, damped: bool = True) -> float:
        """Score ``x`` and then learn it, in one pass (what a stream processor calls).

        ``damped`` (the default, what ``obsloop score-series`` and NAB use) applies the
        refractory period: one alarm per incident when every point is scored on its own.
        ``damped=False`` returns the score as if there were no refractory period, for a
        caller that groups alarms itself: the service's window scorer
        (:class:`obsloop.detectors.scoring.WindowScorer`) turns runs of anomalous windows
        into episodes, which play the refractory's role there, and must not be blind for
        ``refractory`` windows after an alarm (a false one included). The model learns
        exactly the same either way (the refractory state is kept for the damped view).

        >>> det = SeriesAnomalyDetector(warmup=30)
        >>> for i in range(200):
        ...     _ = det.score_learn_one(10.0 + (i % 3), 60.0 * i)
        >>> det.score_learn_one(40.0, 60.0 * 200) > 0.9  # an alarm...
        True
        >>> det.in_refractory, det.score_one(80.0, 60.0 * 201)  # ...silences the next points
        (True, 0.0)
        >>> det.score_one(80.0, 60.0 * 201, damped=False) > 0.9
        True
        """
        x = _check_value(x)
        ts = self._clock(t)
        evaluated = self._evaluate(x, ts)
        score = evaluated[0]
        if damped and self.since_alarm < self.refractory:
            score *= self.damping
        self._learn(x, ts, evaluated)
        return score


def _check_value(x: float) -> float:
    x = float(x)
    if not math.isfinite(x):
        raise ValueError(f"series value must be finite, got {x!r}")
    return x


def _f32(v: float) -> float:
    """A float32 slot value in the shortest text that reads back to the same float32."""
    return float(f"{v:.9g}")


def _finite_or_none(v: float) -> float | None:
    return float(v) if math.isfinite(v) else None


def _none_to(v: float | None, default: float) -> float:
    return default if v is None else float(v)
