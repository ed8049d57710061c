"""Count-aware evidence: is a window's statistic outside what its baseline allows, given how
many invocations the window holds?

A p95 of six invocations, or an error rate of two errors, says little; the series models
score values, not counts, so they cannot tell. Each test here knows the counts:

* **rates** (errors, cold starts): the window's count against a binomial of its invocations
  at the baseline rate (plus a tolerance for deploys' small steps);
* **latency percentiles**: an order-statistic lower confidence bound of the window's
  percentile (the ``k``-th smallest of ``n`` with ``P(Bin(n, p) >= k) >= 1 - alpha``), which
  must exceed the baseline percentile; a window too small to bound a percentile has none;
* **latency tails**: the calls above the baseline's p50, and above its p95 relative to the
  window's own median, against a binomial at the share that normally lies above them
  (learnt like a rate): a tail regression that slows a tenth of the calls doubles the calls
  above p95 long before a window's p95 bound moves;
* **throughput**: the count against a Poisson at the forecast rate;
* **spend**: against the invocations times the baseline cost per invocation.

The count statistics are :class:`Tally` objects, which add up: the tallies of the last few
windows, summed, are a stronger test than any one of them (a 3x error rate at 1 % of 150
calls is 4.5 errors, noise in one window and significant in the sum of two). That is how
an anomaly lasting ``confirm_after`` windows is confirmed.

Every test yields an :class:`Evidence` with the range the baseline allows for *this* window's
counts, so what an alert shows is what the decision was made on (see docs/design/paging.md).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from scipy.special import bdtr, bdtrik, betainc, ndtri, pdtr, pdtrc, pdtrik

UP, DOWN = 1, -1
RATE_TOLERANCE = 0.25
"""A rate may rise by a quarter over its baseline before it is tested (a deploy steps it)."""
LATENCY_TOLERANCE = 0.25
"""A percentile may rise by a quarter over its baseline (deploys step latency by ~10 %)."""
THROUGHPUT_TOLERANCE = 0.15
COST_TOLERANCE = 0.5
MIN_EVENTS = 3
CONSISTENT_ALPHA = 0.01
"""Each window of a pooled test must be in line with the pooled rate at this level."""
"""Fewer errors (or cold starts) than this in a window are never evidence of a rate rise."""
PERCENTILES = {"p50_ms": 0.5, "p95_ms": 0.95, "p99_ms": 0.99}
ABOVE = {"above_p50": "p50_ms", "above_p95": "p95_ms"}
"""Tail tests (calls above a duration the baseline sets, :meth:`Baseline.threshold`) -> the
percentile they watch."""
SHAPE = frozenset({"above_p95"})
"""Tail tests whose threshold scales with the window's own median: a daily rhythm or a
deploy that slows every call alike leaves them where they were; a tail regression does not."""
SHAPE_ALPHA = 0.1
"""Their significance, as a share of the others': the window's median moves their threshold,
so their counts vary more than a binomial's (three false pages in the bench at the same
significance as the other tests)."""


def source(test: str) -> str:
    """The window metric a test is about (``above_p95`` -> ``p95_ms``, else itself)."""
    return ABOVE.get(test, test)
MIN_WINDOWS = 10
"""Windows a baseline (or one of its percentiles) needs before it is compared with."""
DECAY = 0.98
"""Per window, for the rates' and the cost's sums: about 50 windows of memory."""


def binomial_ppf(q: float, n: int, p: float) -> int:
    """The smallest ``k`` with ``P(Bin(n, p) <= k) >= q`` (``scipy.stats.binom.ppf``, from
    the special functions: a hundred times faster per call).

    >>> binomial_ppf(0.999, 200, 0.0125), binomial_ppf(0.001, 200, 0.5)
    (9, 78)
    """
    if p <= 0.0:
        return 0
    if p >= 1.0:
        return n
    k = max(0, min(n, math.ceil(float(bdtrik(q, n, p))) if q > 0 else 0))
    while k > 0 and bdtr(k - 1, n, p) >= q:
        k -= 1
    while k < n and bdtr(k, n, p) < q:
        k += 1
    return k


def poisson_ppf(q: float, lam: float) -> int:
    """The smallest ``k`` with ``P(Poisson(lam) <= k) >= q``.

    >>> poisson_ppf(0.001, 170.0), poisson_ppf(0.999, 10.0)
    (131, 21)
    """
    if lam <= 0.0:
        return 0
    k = max(0, math.ceil(float(pdtrik(q, lam))))
    while k > 0 and pdtr(k - 1, lam) >= q:
        k -= 1
    while pdtr(k, lam) < q:
        k += 1
    return k


@dataclass(frozen=True, slots=True)
class Evidence:
    """One statistic of one window against the range its baseline allows for its counts."""

    metric: str
    observed: float
    low: float
    high: float
    direction: int
    bound: float
    """The value judged: a confidence bound (a percentile's lower bound) or ``observed``."""
    support: str
    """What the statistic rests on, for humans: "7 of 212 invocations"."""

    @property
    def out(self) -> bool:
        return self.bound > self.high if self.direction == UP else self.bound < self.low

    @property
    def factor(self) -> float:
        """How far out, as a ratio past the range's edge (> 1 when out, harmful direction).

        >>> Evidence("p50_ms", 400.0, 0.0, 50.0, UP, 300.0, "").factor
        6.0
        >>> Evidence("invocations", 40.0, 160.0, 240.0, DOWN, 40.0, "").factor
        4.0
        """
        if self.direction == UP:
            return self.bound / self.high if self.high > 0 else math.inf if self.bound > 0 else 0.0
        return self.low / self.bound if self.bound > 0 else math.inf if self.low > 0 else 0.0

    def describe(self) -> str:
        """``p50_ms=412 (expected 0..52; 7.9x its maximum; at least 300 ...)``."""
        shown = f"{self.metric}={self.observed:.4g} (expected {max(self.low, 0.0):.4g}..{self.high:.4g}"
        if self.out:
            if self.direction == UP:
                shown += f"; {self.observed / self.high:.3g}x its maximum" if self.high > 0 \
                    else "; above its maximum 0"
            else:
                shown += f"; {1 - self.observed / self.low:.0%} below its minimum"
        return f"{shown}; {self.support})"


def rate(metric: str, events: int, n: int, baseline: float, alpha: float) -> Evidence:
    """``events`` of ``n`` invocations against a binomial at the baseline rate (plus the
    tolerance): out when so many events have probability below ``alpha``.

    >>> rate("error_rate", 12, 200, 0.01, 1e-3).out, rate("error_rate", 2, 20, 0.01, 1e-3).out
    (True, False)
    """
    r = min(1.0, baseline * (1.0 + RATE_TOLERANCE))
    upper = max(binomial_ppf(1.0 - alpha, n, r), MIN_EVENTS - 1) if r < 1.0 else n
    what = {"error_rate": "errors", "cold_start_rate": "cold starts"}.get(metric, "events")
    return Evidence(metric, events / n, 0.0, upper / n, UP, events / n,
                    f"{events} {what} in {n} invocations, baseline {baseline:.2%}")


def ratio_pvalue(events: float, n: float, baseline_events: float, baseline_calls: float,
                 tolerance: float = RATE_TOLERANCE) -> float:
    """P-value of ``events`` in ``n`` calls against a baseline of ``baseline_events`` in
    ``baseline_calls``, under the null that the window's rate is at most ``1 + tolerance``
    times the baseline's, the baseline's own sampling error included: given the total, the
    window's share of the events is binomial (the exact conditional test of a ratio of two
    Poisson rates). A baseline learnt from few calls is judged leniently, a well-learnt one
    as tightly as a known rate. Decayed sums vary less than counts of the same size, so
    taking them as counts errs on the safe side.

    >>> f"{ratio_pvalue(12, 100, 60, 6000):.1e}", f"{ratio_pvalue(12, 100, 1, 100):.4f}"
    ('2.6e-08', '0.0055')
    """
    if events <= 0:
        return 1.0
    r = n * (1.0 + tolerance)
    q = r / (r + baseline_calls) if r + baseline_calls > 0 else 1.0
    total = events + baseline_events
    return float(betainc(events, total - events + 1.0, q)) if q < 1.0 else 1.0


def lower_order_statistic(n: int, p: float, alpha: float) -> int:
    """The largest ``k`` with ``P(X_(k) <= Q_p) >= 1 - alpha`` for ``n`` samples (0: none).

    >>> lower_order_statistic(6, 0.95, 1e-3), lower_order_statistic(200, 0.5, 1e-3)
    (3, 78)
    """
    j = binomial_ppf(alpha, n, p)
    while j > 0 and bdtr(j - 1, n, p) > alpha:
        j -= 1
    return j


def quantile(metric: str, n: int, at: Callable[[float], float], baseline: float,
             alpha: float) -> Evidence | None:
    """The window's percentile against ``baseline`` (plus the tolerance), judged by its
    lower confidence bound; ``None`` when ``n`` invocations cannot bound it at all."""
    p = PERCENTILES[metric]
    k = lower_order_statistic(n, p, alpha)
    if k < 1:
        return None
    bound = at((k - 0.5) / n)
    return Evidence(metric, at(p), 0.0, baseline * (1.0 + LATENCY_TOLERANCE), UP, bound,
                    f"at least {bound:.4g} with {1 - alpha:.1%} confidence from {n} invocations")


def throughput(n: int, expected: float, alpha: float) -> Evidence:
    """``n`` invocations against a Poisson at the forecast (less the tolerance).

    >>> throughput(60, 200.0, 1e-3).out, throughput(140, 200.0, 1e-3).out
    (True, False)
    """
    lam = max(expected * (1.0 - THROUGHPUT_TOLERANCE), 0.0)
    low = poisson_ppf(alpha, lam)  # P(X < low) < alpha
    high = float(poisson_ppf(1.0 - alpha, expected * (1.0 + THROUGHPUT_TOLERANCE)))
    return Evidence("invocations", float(n), float(low), high, DOWN, float(n),
                    f"forecast {expected:.4g}")


def spend(cost: float, n: int, per_invocation: float, alpha: float) -> Evidence:
    """A window's spend against its invocations times the baseline cost per invocation
    (a coefficient of variation of 2 per invocation, cold starts being billed too, plus the
    tolerance)."""
    expected = n * per_invocation
    high = expected * (1.0 + COST_TOLERANCE) + 2.0 * float(ndtri(1.0 - alpha)) * math.sqrt(n) * per_invocation
    return Evidence("cost_usd", cost, 0.0, high, UP, cost,
                    f"{n} invocations at {per_invocation:.3g} USD each")


def share_above(at: Callable[[float], float], level: float) -> float:
    """The share of a window's calls above ``level``, from its quantile function (bisection
    on the level; 0 above the highest level it knows).

    >>> from obsloop.detectors.windows import interpolate
    >>> round(share_above(interpolate((0.5, 0.9, 0.99), (40.0, 80.0, 200.0)), 60.0), 3)
    0.3
    """
    lo, hi = 0.0, 1.0
    for _ in range(24):
        mid = (lo + hi) / 2
        if at(mid) > level:
            hi = mid
        else:
            lo = mid
    return 1.0 - hi if hi < 1.0 else 0.0


@dataclass(frozen=True, slots=True)
class Tally:
    """A count statistic of one window (or the sum of a few), with what its baseline expected:
    errors, cold starts or calls above a percentile level (``events`` of ``trials`` calls,
    ``expected`` = calls times the baseline share), invocations (``expected``: the forecast)
    or spend (``expected``: calls times the baseline cost per call). Tallies add up, each
    window judged against the baseline of its time."""

    metric: str
    events: float
    trials: float
    expected: float
    level: float = 0.0
    """For the tail tests, the percentile level the calls were counted above (ms)."""
    windows: int = 1

    def __add__(self, other: Tally) -> Tally:
        return Tally(self.metric, self.events + other.events, self.trials + other.trials,
                     self.expected + other.expected, other.level, self.windows + other.windows)

    @property
    def elevated(self) -> bool:
        """Whether it lies past what the baseline allows (with the tolerance) in the harmful
        direction, significant or not: each window of a pooled test must be."""
        if self.metric == "invocations":
            return self.events < self.expected * (1.0 - THROUGHPUT_TOLERANCE)
        tolerance = COST_TOLERANCE if self.metric == "cost_usd" else RATE_TOLERANCE
        return self.events > self.expected * (1.0 + tolerance)

    def consistent(self, total: Tally, alpha: float = CONSISTENT_ALPHA) -> bool:
        """Whether this window's count is in line with the rate of the ``total`` it is part
        of: not significantly (at ``alpha``) nearer to normal than the others. A sum carried
        by one window far out, with a merely elevated one beside it, is that one window, not
        an anomaly that lasted.

        >>> total = Tally("error_rate", 60, 200, 2.0)
        >>> [Tally("error_rate", k, 100, 1.0).consistent(total) for k in (5, 27)]
        [False, True]
        """
        if total.trials <= 0 or total.expected <= 0:
            return True
        if self.metric == "invocations":
            lam = self.expected * total.events / total.expected
            return self.events < 1 or float(pdtrc(self.events - 1, lam)) >= alpha
        if self.metric == "cost_usd":
            per_call = total.events / total.trials
            sd = 2.0 * math.sqrt(self.trials) * per_call
            return sd <= 0 or (self.trials * per_call - self.events) / sd <= float(ndtri(1 - alpha))
        n, p = int(round(self.trials)), min(total.events / total.trials, 1.0)
        return n < 1 or float(bdtr(int(round(self.events)), n, p)) >= alpha

    def evidence(self, alpha: float) -> Evidence | None:
        """Its test at ``alpha`` (``None`` without calls to judge); a sum of windows is shown
        under ``<metric>_<windows>w``."""
        name = self.metric if self.windows == 1 else f"{self.metric}_{self.windows}w"
        over = "" if self.windows == 1 else f" over {self.windows} windows"
        n = int(round(self.trials))
        if self.metric in SHAPE:
            alpha *= SHAPE_ALPHA
        if self.metric == "invocations":
            found = throughput(n, self.expected, alpha)
        elif n < 1:
            return None
        elif self.metric == "cost_usd":
            found = spend(self.events, n, self.expected / n, alpha)
        elif self.metric in ABOVE:
            found = above(self.metric, int(round(self.events)), n, self.expected / n,
                          self.level, alpha)
        else:
            found = rate(self.metric, int(round(self.events)), n, self.expected / n, alpha)
        return Evidence(name, found.observed, found.low, found.high, found.direction,
                        found.bound, found.support + over)


def judge(tallies: dict[str, Tally], alpha: float) -> dict[str, Evidence]:
    """The tests of ``tallies`` at ``alpha`` (those with something to judge)."""
    out = {}
    for test, tally in tallies.items():
        found = tally.evidence(alpha)
        if found is not None:
            out[test] = found
    return out


def above(metric: str, events: int, n: int, baseline: float, level: float,
          alpha: float) -> Evidence:
    """``events`` of ``n`` calls above the baseline's percentile ``level``, against a binomial
    at the share normally above it (plus the rate tolerance).

    >>> above("above_p95", 30, 200, 0.05, 412.0, 1e-3).out
    True
    >>> above("above_p95", 14, 200, 0.05, 412.0, 1e-3).out
    False
    """
    found = rate(metric, events, n, baseline, alpha)
    return Evidence(metric, found.observed, found.low, found.high, UP, found.bound,
                    f"{events} of {n} invocations above {level:.4g} ms, "
                    f"normally {baseline:.2%}")


class Holt:
    """Level and trend (Holt's linear smoothing): the forecast of a series that follows a
    daily rhythm without the lag of a plain moving average.

    >>> h = Holt()
    >>> for x in range(100):
    ...     h.learn(10.0 + x)
    >>> round(h.forecast())
    110
    """

    __slots__ = ("level", "trend", "n")

    def __init__(self) -> None:
        self.level, self.trend, self.n = 0.0, 0.0, 0

    def forecast(self) -> float:
        return self.level + self.trend

    def learn(self, x: float, alpha: float = 0.2, beta: float = 0.05, clip: float = 0.0) -> None:
        """Learn ``x``; with ``clip`` > 0, a mature forecast takes ``x`` clipped to within that
        factor of itself, so rare jumps (a window whose p95 lands in the cold-start mass)
        barely move it while a level shift still passes, slowly."""
        if self.n == 0:
            self.level = x
        else:
            if clip > 0.0 and self.n >= MIN_WINDOWS:
                f = self.forecast()
                x = min(max(x, f / clip), f * clip)
            a = max(alpha, 1.0 / (self.n + 1))
            previous = self.level
            self.level = a * x + (1 - a) * (self.level + self.trend)
            self.trend = beta * (self.level - previous) + (1 - beta) * self.trend
        self.n += 1

    def to_state(self) -> list[float]:
        return [self.level, self.trend, self.n]

    @classmethod
    def from_state(cls, state: list[Any]) -> Holt:
        h = cls()
        h.level, h.trend, h.n = float(state[0]), float(state[1]), int(state[2])
        return h


@dataclass(slots=True)
class Sample:
    """What one window of one entity (a function, or a cost center) counted."""

    metrics: dict[str, float]
    """The values the series models score (``Window.metrics``)."""
    n: int = 0
    errors: int = 0
    cold_starts: int = 0
    at: Callable[[float], float] | None = None
    """The window's quantile function of durations (``Window.quantile_function``)."""
    cost: float = 0.0


class Baseline:
    """What one entity's windows normally count, in the terms the tests need: rates (errors,
    cold starts, calls above a percentile level) as decayed sums of events and invocations,
    percentiles and throughput as Holt forecasts, spend per invocation. Copied into an
    episode when it opens, so later windows are judged against the time before the anomaly."""

    __slots__ = ("errors", "cold_starts", "calls", "cost", "cost_calls", "percentiles",
                 "throughput", "windows", "above", "above_calls")

    def __init__(self) -> None:
        self.errors = self.cold_starts = self.calls = self.cost = self.cost_calls = 0.0
        self.percentiles: dict[str, Holt] = {}
        self.throughput = Holt()
        self.windows = 0
        self.above: dict[str, float] = {}
        """Tail test -> decayed sum of the calls above its percentile's level at the time."""
        self.above_calls: dict[str, float] = {}

    def tallies(self, s: Sample) -> dict[str, Tally]:
        """The count statistics of ``s`` with what this baseline expects of them."""
        if self.windows < MIN_WINDOWS:
            return {}
        out: dict[str, Tally] = {}
        m = s.metrics
        if s.n and "error_rate" in m:
            out["error_rate"] = Tally("error_rate", s.errors, s.n, s.n * self.rate(self.errors))
        if s.n and "cold_start_rate" in m:
            out["cold_start_rate"] = Tally("cold_start_rate", s.cold_starts, s.n,
                                           s.n * self.rate(self.cold_starts))
        if s.n and s.at is not None:
            for test, percentile in ABOVE.items():
                level = self.threshold(test, s)
                if percentile in m and level is not None and self.above_calls.get(test, 0.0) > 0:
                    share = (self.above[test] + 1.0) / (self.above_calls[test] + 1.0)
                    out[test] = Tally(test, round(s.n * share_above(s.at, level)), s.n,
                                      s.n * share, level)
        if "invocations" in m:
            out["invocations"] = Tally("invocations", s.n, s.n,
                                       max(self.throughput.forecast(), 0.0))
        if "cost_usd" in m and s.n >= 5 and self.cost_calls > 0 and self.cost > 0:
            out["cost_usd"] = Tally("cost_usd", s.cost, s.n, s.n * self.cost / self.cost_calls)
        return out

    def overwhelming(self, s: Sample, alpha: float) -> list[str]:
        """The rates of ``s`` (errors, cold starts) above this baseline (plus the tolerance) at
        significance ``alpha`` by :func:`ratio_pvalue`, which counts the baseline's own
        sampling error: evidence strong enough that one window need not wait for a second."""
        if self.windows < MIN_WINDOWS or not s.n:
            return []
        rates = (("error_rate", s.errors, self.errors), ("cold_start_rate", s.cold_starts,
                                                          self.cold_starts))
        return [metric for metric, events, base in rates
                if metric in s.metrics and events >= MIN_EVENTS
                and ratio_pvalue(events, s.n, base, self.calls) < alpha]

    def threshold(self, test: str, s: Sample) -> float | None:
        """The duration a tail test counts the calls of ``s`` above: the baseline's p50 for
        ``above_p50``; for ``above_p95`` the baseline's p95 as a multiple of its p50 (plus
        the latency tolerance), times the window's own median (:data:`SHAPE`). The tolerance
        keeps the threshold off a narrow distribution's bulk, where the noise of a small
        window's median would move many calls across it. ``None`` before the levels are
        learnt."""
        h, median = self.percentiles.get(ABOVE[test]), self.percentiles.get("p50_ms")
        if s.at is None or h is None or h.n < MIN_WINDOWS:
            return None
        if test not in SHAPE:
            return max(h.forecast(), 0.0)
        if median is None or median.n < MIN_WINDOWS or median.forecast() <= 0:
            return None
        return (max(h.forecast(), 0.0) / median.forecast() * (1.0 + LATENCY_TOLERANCE)
                * s.at(0.5))

    def evidence(self, s: Sample, alpha: float,
                 tallies: dict[str, Tally] | None = None) -> dict[str, Evidence]:
        """The tests of ``s`` alone against this baseline, for the metrics ``s`` has
        (``tallies``: its :meth:`tallies`, when the caller has them already)."""
        out = judge(self.tallies(s) if tallies is None else tallies, alpha)
        if self.windows >= MIN_WINDOWS and s.n and s.at is not None:
            for metric, h in self.percentiles.items():
                if metric in s.metrics and h.n >= MIN_WINDOWS:
                    bounded = quantile(metric, s.n, s.at, max(h.forecast(), 0.0), alpha)
                    if bounded is not None:
                        out[metric] = bounded
        return out

    def rate(self, events: float) -> float:
        return (events + 1.0) / (self.calls + 1.0)

    def learn(self, s: Sample) -> None:
        d = DECAY
        if "error_rate" in s.metrics or "cold_start_rate" in s.metrics:
            self.errors = d * self.errors + s.errors
            self.cold_starts = d * self.cold_starts + s.cold_starts
            self.calls = d * self.calls + s.n
        if "cost_usd" in s.metrics and s.n:
            self.cost = d * self.cost + s.cost
            self.cost_calls = d * self.cost_calls + s.n
        if s.at is not None and s.n:
            for test, percentile in ABOVE.items():  # before the levels learn this window
                level = self.threshold(test, s)
                if percentile in s.metrics and level is not None:
                    share = share_above(s.at, level)
                    self.above[test] = d * self.above.get(test, 0.0) + s.n * share
                    self.above_calls[test] = d * self.above_calls.get(test, 0.0) + s.n
            for metric, p in PERCENTILES.items():
                if metric in s.metrics and s.n >= 1.0 / (1.0 - p) - 1e-9:
                    self.percentiles.setdefault(metric, Holt()).learn(s.at(p), alpha=0.05, beta=0.0,
                                                                     clip=1.5)
        if "invocations" in s.metrics:
            self.throughput.learn(float(s.n))
        self.windows += 1

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Baseline) and self.to_state() == other.to_state()

    __hash__ = None  # type: ignore[assignment]  # mutable

    def copy(self) -> Baseline:
        return Baseline.from_state(self.to_state())

    def to_state(self) -> list[Any]:
        return [self.errors, self.cold_starts, self.calls, self.cost, self.cost_calls,
                {m: h.to_state() for m, h in self.percentiles.items()},
                self.throughput.to_state(), self.windows, dict(self.above),
                dict(self.above_calls)]

    @classmethod
    def from_state(cls, state: list[Any]) -> Baseline:
        """A baseline from :meth:`to_state`; an older state without the tail sums starts them
        empty (they learn from the next windows)."""
        b = cls()
        b.errors, b.cold_starts, b.calls, b.cost, b.cost_calls = (float(x) for x in state[:5])
        b.percentiles = {m: Holt.from_state(h) for m, h in state[5].items()}
        b.throughput = Holt.from_state(state[6])
        b.windows = int(state[7])
        if len(state) > 9:
            b.above = {t: float(x) for t, x in state[8].items()}
            b.above_calls = {t: float(x) for t, x in state[9].items()}
        return b
