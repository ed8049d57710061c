"""Streaming anomaly detector for one numeric series (latency percentile, error rate,
cold-start rate, throughput, cost per window): one point at a time, no look-ahead, O(1)
time and bounded memory per point, checkpointed as plain JSON.

Three views score each point -- the surprise of its residual against an EW level with
daily / weekly seasonal offsets (over that hour of the day's noise; a burst moves the level
by a bounded step), or of that residual's AR(1) innovation if larger (minus a time-of-day
envelope, so a nightly cron spike is expected), a short-vs-long mean shift, and a
short-vs-long spread (mean square of the innovation: the noise growing or going quiet)
-- each as a Gaussian tail of its averaged surprise (Numenta's
anomaly likelihood) corrected by how often this series' own recent history reached it (a
decayed histogram: bursts a series keeps making are its normal). The point view's surprise
is averaged with the novelty of the sequence of value levels ending at the point (CAD OSE's
contextual idea, in a bounded two-generation bitset). A value far outside the
range seen so far scores 1; a refractory period turns an incident into one alarm for callers
that score every point. Why each part is there, with its NAB figures, is in
``docs/design/series-detector.md``.

The arithmetic is the recurrences of ``river.stats.EWMean`` / ``EWVar`` written out on plain
floats: a checkpoint must survive river upgrades and be safe to load (see :meth:`to_state`).
"""

from __future__ import annotations

import inspect
import math
from array import array
from datetime import datetime
from typing import Any

from obsloop.detectors import series_state

__all__ = ["SeriesAnomalyDetector", "to_epoch"]

_DAY = 86_400.0
_WEEK = 7 * _DAY
_DAY_SLOTS = 24
_WEEK_SLOTS = 7 * 24
_LOG_1E10 = math.log(1e-10)
_M64 = (1 << 64) - 1
_E_INF = math.log1p(1e12)  # surprise of a change after a perfectly constant stretch
_TAIL_BINS = 64
_TAIL_RES = 16.0  # bins per unit of log1p(statistic)
_ENV_CAP_FACTOR = 4.0  # the envelope remembers spikes up to 4 x cap standard deviations
_AR_MAX = 0.99  # the residual's AR(1) coefficient stays below 1 (a random walk is not learnt)
_AR_WARMUP = 30  # points the AR(1) term learns before its surprise counts (and is clipped)
_SPREAD_LOG = math.log(100.0)  # a spread ratio of 100 (either way) is the spread view's 1
_SPREAD_WARMUP = 30  # points the spread view learns before its input is clipped


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

    # Slots: 50,000 live series each save a dict, and attribute access is faster.
    __slots__ = (
        "_ctx_log2", "_ctx_shift", "_env_cap", "_log_cap", "alarm_level", "alpha", "ar",
        "ar_c0", "ar_c1", "ar_n", "ar_prev", "ar_var", "cap", "ctx_bits", "ctx_fill",
        "ctx_hi", "ctx_hist", "ctx_levels", "ctx_lo", "ctx_n", "ctx_new", "ctx_order",
        "ctx_seen", "daily", "damping", "env", "env_day", "env_decay", "env_slots",
        "env_start", "env_today", "env_width", "err", "hi", "hour_var",
        "hour_var_alpha", "l2_mean", "l2_var", "l3_mean", "l3_var", "last_t", "level",
        "level_clip", "lik_mean", "lik_var", "likelihood_alpha", "lm", "lo", "lv",
        "min_likelihood_std", "n", "refractory", "sconf", "sdes", "seasonal_alpha",
        "seasonality", "shift_alpha", "shift_clip", "shift_deseason",
        "shift_long_alpha", "shift_reset", "shift_season_after", "shift_season_off",
        "shift_season_on", "short", "short_alpha", "since_alarm", "sm", "sn",
        "spatial_direct", "spatial_tolerance", "spread_alpha", "spread_long_alpha",
        "t0", "tail", "tail_alpha", "tail_gain", "tail_total", "var", "var_alpha",
        "var_clip", "vl", "vn", "vs", "warm_start", "warmup", "weekly",
    )

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
        ctx_levels: int = 8,
        ctx_order: int = 5,
        ctx_bits: int = 4096,
        ctx_fill: int = 8,
        ar: bool = True,
        hour_var_alpha: float = 0.03,
        level_clip: float = 5.0,
        spread_alpha: float = 0.02,
        spread_long_alpha: float = 0.001,
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
        self.ctx_levels = ctx_levels
        self.ctx_order = ctx_order
        self.ctx_bits = ctx_bits
        self.ctx_fill = ctx_fill
        self.ar = ar
        self.hour_var_alpha = hour_var_alpha
        self.level_clip = level_clip
        self.spread_alpha = spread_alpha
        self.spread_long_alpha = spread_long_alpha
        self._ctx_log2 = ctx_bits.bit_length() - 1
        if ctx_levels and (ctx_bits < 8 or ctx_bits & (ctx_bits - 1)):
            raise ValueError(f"ctx_bits must be a power of two >= 8, got {ctx_bits}")
        self._ctx_shift = max(ctx_levels - 1, 1).bit_length()
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
        # Bins 0-63 for the point view, 64-127 for the mean-shift view, 128-191 for the
        # spread view.
        self.tail = array("f", [0.0]) * (3 * _TAIL_BINS) if self.tail_alpha > 0.0 else array("f")
        # Context view: the last ctx_order levels (packed), a set of the level sequences seen
        # (a bitset indexed by a hash: bounded, a collision only makes a sequence look known).
        self.ctx_hist = 0
        self.ctx_n = 0
        # Two generations of ctx_bits each (current, then previous): when the current one has
        # ctx_bits / ctx_fill new bits it becomes the previous one, so the table never fills up
        # (a full table calls every sequence known) and sequences unseen for long are forgotten.
        self.ctx_seen = bytearray(self.ctx_bits // 4 if self.ctx_levels else 0)
        self.ctx_new = 0  # bits set in the current generation
        # The range the levels are cut from: the range seen so far, redrawn only when that
        # has grown by its own width on either side (levels keep their meaning, or the
        # sequences learnt would all turn new at every new extreme).
        self.ctx_lo = 0.0
        self.ctx_hi = 0.0
        self.tail_total = 0.0
        self.tail_gain = 1.0
        # AR(1) on the residual (``ar``): the last residual (clipped), EW means of
        # r_t * r_(t-1) and r_(t-1)^2 (their ratio is the coefficient), the EW variance of
        # the innovation and the points it has learnt (it may start after a restore).
        self.ar_prev = 0.0
        self.ar_c1 = 0.0
        self.ar_c0 = 0.0
        self.ar_var = 0.0
        self.ar_n = 0
        # The residual's EW variance per hour of the day (``hour_var_alpha``; NaN = slot not
        # seen yet, it then starts from the series-wide variance).
        self.hour_var = (array("f", [math.nan]) * _DAY_SLOTS
                         if self.seasonality and self.hour_var_alpha > 0.0 else array("f"))
        # Spread view (``spread_alpha``): short and long EW means of the squared innovation
        # (clipped), the likelihood history of their log ratio, the points it has learnt
        # (it may start after a restore).
        self.vs = 0.0
        self.vl = 0.0
        self.l3_mean = 0.0
        self.l3_var = 0.0
        self.vn = 0

    def to_state(self) -> dict[str, Any]:
        """A JSON-serialisable checkpoint (see :mod:`obsloop.detectors.series_state`)."""
        return series_state.to_state(self)

    @classmethod
    def from_state(cls, state: dict[str, Any]) -> SeriesAnomalyDetector:
        """Rebuild a detector from :meth:`to_state` output (raises ``ValueError`` if unknown)."""
        return series_state.from_state(cls, state)

    def _params(self) -> dict[str, Any]:
        """Every constructor argument (each is kept under its own name)."""
        return {name: getattr(self, name) for name in _PARAMS}

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self._params().items())
        return f"SeriesAnomalyDetector({args})"

    # ------------------------------------------------------------- scoring
    def _evaluate(self, x: float, ts: float) -> tuple[Any, ...]:
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
            return 0.0, 0.0, 0.0, choice, d_slot, w_slot, 0.0, 0, -1, -1, (
                self._context(x) if self.ctx_levels else None), 0.0, 0.0, -1, None, 0.0
        resid = x - self.level - offset
        sd = math.sqrt(self._resid_var(d_slot))
        e = math.log1p(abs(resid) / sd) if sd > 0.0 else (0.0 if resid == 0.0 else _E_INF)
        innov = resid - self._ar_phi() * self.ar_prev if self.ar else resid
        if self.ar and self.ar_n > _AR_WARMUP:
            # Two time scales: how far the value is from the level, and how far from where
            # the last residual said it would be (its AR(1) innovation, over its own scale).
            # The more surprised of the two counts: a wandering series' sudden step within
            # its range is news, and so is a value far from a level it crept away from.
            sd_ar = math.sqrt(self.ar_var)
            e_ar = (math.log1p(abs(innov) / sd_ar) if sd_ar > 0.0
                    else (0.0 if innov == 0.0 else _E_INF))
            if e_ar > e:
                e = e_ar
        e_slot = 0
        if self.seasonality:
            slots = self.env_slots
            env = self.env
            e_slot = int((ts % _DAY) * slots / _DAY) % slots
            width = self.env_width
            ev = env[e_slot]
            for j in range(1, width + 1):
                a, b = env[(e_slot + j) % slots], env[e_slot - j]  # negative index wraps
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
        ctx = self._context(x) if self.ctx_levels else None
        if ctx is not None and not spatial and self.ctx_n >= self.warmup:
            # Two raw anomaly scores, averaged before the likelihood: how far the value is
            # from its prediction, and how new the sequence of levels ending at it is.
            raw = 0.5 * (raw + ctx[2])
        # The spread view's input: the squared innovation, clipped to var_clip of the long
        # spread's standard deviations (a lone spike barely moves the spread).
        q = innov * innov
        vl = self.vl
        r3 = 0.0
        if self.spread_alpha > 0.0 and self.vn >= _SPREAD_WARMUP and vl > 0.0:
            lim = self.var_clip * self.var_clip * vl
            if self.var_clip > 0.0 and q > lim:
                q = lim
            r3 = self._spread_raw(self.vs + self.spread_alpha * (q - self.vs))
        if self.n < self.warmup:
            return 0.0, raw, resid, choice, d_slot, w_slot, e, e_slot, -1, -1, ctx, q, r3, -1, None, innov
        lik_sd = max(math.sqrt(self.lik_var), self.min_likelihood_std)
        short = self.short + self.short_alpha * (raw - self.short)
        u = (short - self.lik_mean) / lik_sd
        u2 = -math.inf
        r2 = None  # the mean-shift statistic, passed on to ``_learn`` when computed here
        if self.shift_alpha > 0.0 and self.sn >= self.warmup:
            r2 = self._shift_raw(self._shift_input(x, d_slot))
            l2_sd = max(math.sqrt(self.l2_var), self.min_likelihood_std)
            u2 = (r2 - self.l2_mean) / l2_sd
        u3 = -math.inf
        if self.spread_alpha > 0.0 and self.vn >= self.warmup:
            l3_sd = max(math.sqrt(self.l3_var), self.min_likelihood_std)
            u3 = (r3 - self.l3_mean) / l3_sd
        direct = spatial and self.spatial_direct
        b = _TAIL_BINS - 1 if direct else _tail_bin(u)
        b2 = _tail_bin(u2) + _TAIL_BINS
        b3 = _tail_bin(u3) + 2 * _TAIL_BINS
        if direct:
            score = 1.0
        elif self.tail_alpha > 0.0:
            # Each view's statistic against how often this series' own recent history
            # reached it, with the Gaussian tail as a prior worth one horizon
            # (1 / tail_alpha points) of history; the more surprising view counts.
            k = 1.0 / self.tail_alpha
            tail, gain, norm = self.tail, self.tail_gain, self.tail_total + k
            p = (sum(tail[b:_TAIL_BINS]) / gain + k * _tail(u)) / norm
            # A view's p is at least its prior's share: the history is summed only when
            # that share is below the smallest p so far (the same result, faster).
            for uv, bv in ((u2, b2), (u3, b3)):
                prior = k * _tail(uv) / norm
                if prior < p:
                    pv = prior + sum(tail[bv:bv - bv % _TAIL_BINS + _TAIL_BINS]) / gain / norm
                    if pv < p:
                        p = pv
            score = math.log(p) / _LOG_1E10 if p > 0.0 else 1.0
        else:
            score = math.log(1.0000000001 - (1.0 - _tail(max(u, u2, u3)))) / _LOG_1E10
        score = min(max(score, 0.0), 1.0)
        # Undamped: the refractory period is applied by the public methods (``damped``).
        return score, raw, resid, choice, d_slot, w_slot, e, e_slot, b, b2, ctx, q, r3, b3, r2, innov

    def _resid_var(self, d_slot: int) -> float:
        """The residual's variance at this hour of the day where known, else series-wide: a
        series noisy by day and quiet at night (request volume) is judged by each hour's
        noise."""
        hv = self.hour_var[d_slot] if self.hour_var else math.nan
        return hv if hv == hv else self.var

    def _learn_hour_var(self, d_slot: int, resid: float) -> None:
        """Learn ``resid`` into its hour of the day's variance (at ``hour_var_alpha`` per
        point of that hour, clipped to ``var_clip`` of its standard deviations like the
        series-wide one); an hour seen for the first time starts from the series-wide
        variance, once that has 30 points."""
        hv = self.hour_var[d_slot]
        if hv == hv:
            r2 = resid * resid
            if self.var_clip > 0.0:
                lim = self.var_clip * self.var_clip * hv
                r2 = lim if 0.0 < lim < r2 else r2  # a zero scale clips nothing: it must grow
            b = self.hour_var_alpha
            self.hour_var[d_slot] = (1.0 - b) * (hv + b * r2)
        elif self.n >= 30:
            self.hour_var[d_slot] = self.var

    def _ar_phi(self) -> float:
        """The residual's lag-1 autocorrelation, in ``[0, _AR_MAX]``."""
        c0 = self.ar_c0
        if c0 <= 0.0:
            return 0.0
        phi = self.ar_c1 / c0
        return 0.0 if phi < 0.0 else (_AR_MAX if phi > _AR_MAX else phi)

    def _learn_ar(self, r: float, innov: float, a: float, va: float) -> None:
        """Learn from the residual ``r`` and its AR(1) innovation (as ``_evaluate`` found it,
        before the level moves): the innovation's variance at the residual variance's rate
        ``va``, the AR(1) coefficient at the level's rate ``a``. Innovation and ``r`` are
        clipped to ``var_clip`` of the innovation's standard deviations, in the statistics
        and as the next prediction's input: a spike must neither teach the series that it
        wanders nor make the next point a second spike."""
        prev = self.ar_prev
        q = innov * innov
        sd = math.sqrt(self.ar_var)
        if self.var_clip > 0.0 and self.ar_n >= _AR_WARMUP and sd > 0.0:
            lim = self.var_clip * sd
            q = q if q < lim * lim else lim * lim
            r = lim if r > lim else (-lim if r < -lim else r)
        b = max(va, 1.0 / (self.ar_n + 1))
        self.ar_var = (1.0 - b) * (self.ar_var + b * q)
        self.ar_c1 += a * (r * prev - self.ar_c1)
        self.ar_c0 += a * (prev * prev - self.ar_c0)
        self.ar_prev = r
        self.ar_n += 1

    def _ctx_range(self) -> tuple[float, float]:
        lo, hi = self.ctx_lo, self.ctx_hi
        span = hi - lo
        if span <= 0.0 or self.lo < lo - span or self.hi > hi + span:
            return (self.lo, self.hi) if self.hi > self.lo else (0.0, 0.0)
        return lo, hi

    def _context(self, x: float) -> tuple[int, list[int], float]:
        """The context view of ``x``: its level (one of ``ctx_levels`` over the range seen
        so far, see ``ctx_lo``), the table slots of the level sequences of orders
        1..``ctx_order`` ending at it, and the fraction of those sequences never seen."""
        levels = self.ctx_levels
        lo, hi = self._ctx_range()
        span = hi - lo
        q = int((x - lo) / span * levels) if span > 0.0 else 0
        q = 0 if q < 0 else (levels - 1 if q >= levels else q)
        s = self._ctx_shift
        h = (self.ctx_hist << s) | q
        order = self.ctx_order if self.ctx_order < self.ctx_n else self.ctx_n
        shift = 64 - self._ctx_log2
        half = self.ctx_bits >> 3
        seen = self.ctx_seen
        slots = []
        new = 0
        for k in range(1, order + 1):
            key = (h & ((1 << (s * (k + 1))) - 1)) | (k << 32)
            idx = ((key * 0x9E3779B97F4A7C15) & _M64) >> shift  # Fibonacci hashing
            slots.append(idx)
            byte, bit = idx >> 3, 1 << (idx & 7)
            if not (seen[byte] & bit or seen[byte + half] & bit):
                new += 1
        return q, slots, new / order if order else 0.0

    def _learn(
        self,
        x: float,
        ts: float,
        evaluated: tuple[Any, ...],
    ) -> None:
        (score, raw, resid, choice, d_slot, w_slot, e, e_slot, b, b2, ctx, sq, r3, b3, shift_r,
         innov) = evaluated
        if b >= 0 and self.tail_alpha > 0.0:
            g = self.tail_gain / (1.0 - self.tail_alpha)
            if g > 1e30:  # renormalise the stored counts
                tail = self.tail
                for k in range(len(tail)):
                    tail[k] = tail[k] / g
                g = 1.0
            self.tail[b] += g
            self.tail[b2] += g
            self.tail[b3] += g
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
            va = self.var_alpha if self.var_alpha > a else a
            if self.ar:
                self._learn_ar(resid, innov, a, va)
            r2 = resid * resid
            if self.var_clip > 0.0 and self.n >= 30:
                lim = self.var_clip * self.var_clip * self.var
                if 0.0 < lim < r2:  # a zero scale (a constant stretch) clips nothing
                    r2 = lim
            self.var = (1.0 - va) * (self.var + va * r2)
            if self.hour_var:
                self._learn_hour_var(d_slot, resid)
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
            step = deseason - self.level
            if self.level_clip > 0.0 and self.n >= 30:
                # A spike or a burst moves the level by at most level_clip standard
                # deviations' worth (of this hour's): the points after it are not judged
                # against a level it dragged away (a tweet-volume burst pulled it its full size).
                lim = self.level_clip * math.sqrt(self._resid_var(d_slot))
                if lim > 0.0:  # after a constant stretch the level must still follow a step
                    step = lim if step > lim else (-lim if step < -lim else step)
            self.level += a * step
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
                r2 = shift_r if shift_r is not None else self._shift_raw(sx)
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
        if self.spread_alpha > 0.0 and self.n > 0:
            if self.vn == 0:
                self.vs = self.vl = sq
            else:
                la = max(self.likelihood_alpha, 1.0 / (self.vn + 1))
                delta = r3 - self.l3_mean
                self.l3_mean += la * delta
                self.l3_var = (1.0 - la) * (self.l3_var + la * delta * delta)
                self.vs += self.spread_alpha * (sq - self.vs)
                b = max(self.spread_long_alpha, 1.0 / (self.vn + 1))
                self.vl += b * (sq - self.vl)
            self.vn += 1
        if ctx is not None:
            q, slots, _ = ctx
            self.ctx_lo, self.ctx_hi = self._ctx_range()
            seen = self.ctx_seen
            for idx in slots:
                byte, bit = idx >> 3, 1 << (idx & 7)
                if not seen[byte] & bit:
                    seen[byte] |= bit
                    self.ctx_new += 1
            if self.ctx_new * self.ctx_fill >= self.ctx_bits:
                half = self.ctx_bits >> 3
                seen[half:] = seen[:half]
                seen[:half] = bytes(half)
                self.ctx_new = 0
            self.ctx_hist = ((self.ctx_hist << self._ctx_shift) | q) & (
                (1 << (self._ctx_shift * self.ctx_order)) - 1)
            self.ctx_n += 1
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

    def _spread_raw(self, vs: float) -> float:
        """How far the short spread ``vs`` (mean square of the innovation over about
        1/``spread_alpha`` points) is from the long one, either way (a burst of noise, a
        stuck sensor), on a log scale in ``[0, 1]``."""
        r = math.log(vs / self.vl + 1e-12) / _SPREAD_LOG
        r = -r if r < 0.0 else r
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


_PARAMS = tuple(inspect.signature(SeriesAnomalyDetector.__init__).parameters)[1:]
