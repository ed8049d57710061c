"""Count-aware evidence: is a window's statistic outside what its baseline allows, given how
many invocations the window holds?

A p95 of six invocations, or an error rate of two errors, says little; the series models
score values, not counts, so they cannot tell. Each test here knows the counts:

* **rates** (errors, cold starts): the window's count against a binomial of its invocations
  at the baseline rate (plus a tolerance for deploys' small steps);
* **latency percentiles**: an order-statistic lower confidence bound of the window's
  percentile (the ``k``-th smallest of ``n`` with ``P(Bin(n, p) >= k) >= 1 - alpha``), which
  must exceed the baseline percentile; a window too small to bound a percentile has none;
* **latency levels**: the calls above the baseline's p50 against a binomial at the share
  that normally lies above it (learnt like a rate);
* **latency tail shape** (:class:`Shape`): the warm calls above the window's median, in bins
  the baseline's p95 and p99 set relative to the median, against the shares the bins
  normally hold (a likelihood-ratio test of the multinomial): a tail regression that slows
  a tenth of the calls fills the top bins long before a window's p95 bound moves, while a
  daily rhythm or a deploy that slows every call alike moves the bins with the median;
* **throughput**: the count against a Poisson at the forecast rate;
* **spend**: against the invocations times the baseline cost per invocation.

The count statistics are :class:`Tally` (and :class:`Shape`) objects, which add up: the
tallies of the last few windows, summed, are a stronger test than any one of them (a 3x
error rate at 1 % of 150 calls is 4.5 errors, noise in one window and significant in the
sum of two). That is how an anomaly lasting ``confirm_after`` windows is confirmed.

Every test yields an :class:`Evidence` with the range the baseline allows for *this* window's
counts, so what an alert shows is what the decision was made on (see docs/design/paging.md).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, TypeVar

from scipy.special import bdtr, bdtrik, betainc, chdtri, ndtri, pdtr, pdtrc, pdtrik

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
ABOVE = {"above_p50": "p50_ms"}
"""Level tests (calls above a duration the baseline sets, :meth:`Baseline.threshold`) -> the
percentile they watch."""
TAIL = "tail_shape"
"""The tail-shape test (:class:`Shape`), about the window's p95."""
SHAPE = frozenset({TAIL})
"""Tests whose bins scale with the window's own median: a daily rhythm or a deploy that
slows every call alike leaves them where they were; a tail regression does not."""
SHAPE_ALPHA = 0.1
"""Their significance, as a share of the others': the window's median moves their bins, so
their counts vary more than a multinomial's (the first median-relative test, a binomial
above p95, paged falsely three times in the bench at the same significance as the others)."""
SHAPE_TOLERANCE = 0.1
"""The tail's bins may hold a tenth more calls than their baseline share before they are
tested: less than a rate's quarter, since a deploy that slows every call alike leaves the
shape as it was (in the bench a quarter missed a regression that a tenth pages, and neither
paged normal traffic)."""
TAIL_LEVELS = (0.95, 0.99)
"""Levels of the baseline's warm calls, relative to their median, that bound the tail
test's bins (median..p95, p95..p99, above p99). Lower levels (p80, p90) add bins whose
counts the median's noise moves more than a tail regression does: in the bench they paged
normal windows at the significance that finds the regressions."""


def source(test: str) -> str:
    """The window metric a test is about (``above_p50`` -> ``p50_ms``, ``tail_shape`` ->
    ``p95_ms``, else itself)."""
    return "p95_ms" if test == TAIL else ABOVE.get(test, test)


def is_tail(name: str) -> bool:
    """Whether an evidence name (a window's test or a sum's, ``tail_shape_2w``) is a tail
    test's: how far out it is says little of how much worse things got (a share cannot pass
    1; the shape's statistic grows with the calls, not the slowdown)."""
    return any(name == t or name.startswith(f"{t}_") for t in (*ABOVE, TAIL))


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

    def to_state(self) -> list[Any]:
        return [self.events, self.trials, self.expected, self.level, self.windows]

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


def warm(s: Sample) -> tuple[int, Callable[[float], float]] | None:
    """The warm calls of ``s`` and their quantile function (``None`` without any), taking its
    cold starts for its slowest calls: ``faas_windows`` keeps one digest of all calls, and a
    cold start (a runtime and a model loading) is slower than any warm call of most
    functions; where it is not, baseline and window are cut alike. Uncut, a fast function's
    3 % of cold starts fill the top of its distribution, and whether a window holds two or
    six of them moves its tail more than a tenth of its calls slowing 4x does.

    >>> from obsloop.detectors.windows import interpolate
    >>> n, at = warm(Sample({}, 100, cold_starts=4, at=interpolate((0.0, 1.0), (0.0, 100.0))))
    >>> n, at(1.0)
    (96, 96.0)
    """
    calls = s.n - min(s.cold_starts, s.n)
    if s.at is None or calls < 1:
        return None
    at, share = s.at, calls / s.n
    return calls, lambda q: at(q * share)


def tail_bins(at: Callable[[float], float], n: int, edges: tuple[float, ...]) -> tuple[float, ...]:
    """The calls of ``n`` (quantile function ``at``) above their median, per bin: from the
    median to the first of ``edges`` (ms, increasing), between them, above the last.

    >>> from obsloop.detectors.windows import interpolate
    >>> [round(c) for c in tail_bins(interpolate((0.0, 1.0), (0.0, 100.0)), 100, (90.0, 95.0))]
    [40, 5, 5]
    """
    above = [n * share_above(at, level) for level in (at(0.5), *edges)]
    return (*(max(a - b, 0.0) for a, b in zip(above, above[1:], strict=False)), above[-1])


@dataclass(frozen=True, slots=True)
class Shape:
    """The tail's shape in one window (or the sum of a few): its warm calls above its median
    per bin (the baseline's :data:`TAIL_LEVELS` as multiples of its median, times the
    window's median, :func:`tail_bins`) and how many the baseline's shares expect per bin.
    Sums add counts and expectations, each window judged against the baseline of its time.

    Its test is the likelihood ratio (G) of the counts against a multinomial at the expected
    shares, the tail bins' raised by :data:`SHAPE_TOLERANCE`, one-sided (out only when the bins
    above the first edge hold more than that): a tail regression puts calls where the
    baseline has almost none, which one binomial above one level sees only in part.
    """

    metric: str
    counts: tuple[float, ...]
    expected: tuple[float, ...]
    trials: float
    """Warm calls in the window(s)."""
    edges: tuple[float, ...] = ()
    """The bins' edges (ms) in the latest window, to show."""
    windows: int = 1

    def __add__(self, other: Shape) -> Shape:
        return Shape(self.metric, tuple(a + b for a, b in zip(self.counts, other.counts, strict=True)),
                     tuple(a + b for a, b in zip(self.expected, other.expected, strict=True)),
                     self.trials + other.trials, other.edges, self.windows + other.windows)

    @property
    def tail(self) -> Tally:
        """The calls above the first edge, of those above the median: what must be past its
        baseline (:attr:`elevated`) in every window of a sum, and in line with the sum."""
        return Tally(self.metric, sum(self.counts[1:]), sum(self.counts), sum(self.expected[1:]))

    @property
    def elevated(self) -> bool:
        return self.tail.elevated

    def consistent(self, total: Shape, alpha: float = CONSISTENT_ALPHA) -> bool:
        return self.tail.consistent(total.tail, alpha)

    def evidence(self, alpha: float) -> Evidence | None:
        """Its test at ``alpha`` times :data:`SHAPE_ALPHA` (``None`` without calls above the
        median); shown as the G statistic against its critical value, with the bins.

        >>> quiet = Shape("tail_shape", (45.0, 4.0, 1.0), (45.0, 4.0, 1.0), 100.0, (90.0, 160.0))
        >>> slow = Shape("tail_shape", (38.0, 5.0, 7.0), (45.0, 4.0, 1.0), 100.0, (90.0, 160.0))
        >>> quiet.evidence(1e-3).out, slow.evidence(1e-3).out, (slow + slow).evidence(1e-3).out
        (False, False, True)
        """
        m = sum(self.counts)
        if m < 1 or sum(self.expected) <= 0:
            return None
        scale = m / sum(self.expected)
        tail = [e * scale * (1.0 + SHAPE_TOLERANCE) for e in self.expected[1:]]
        null = (max(m - sum(tail), 1e-9), *tail)
        g = 2.0 * sum(c * math.log(c / e) for c, e in zip(self.counts, null, strict=True) if c > 0)
        heavier = sum(self.counts[1:]) > sum(tail)
        high = float(chdtri(len(self.counts) - 1, alpha * SHAPE_ALPHA))
        name = self.metric if self.windows == 1 else f"{self.metric}_{self.windows}w"
        over = "" if self.windows == 1 else f" over {self.windows} windows"
        edges = "/".join(f"{e:.4g}" for e in self.edges)
        return Evidence(name, g, 0.0, high, UP, g if heavier else 0.0,
                        "G statistic of the warm invocations above the median in bins at "
                        f"{edges} ms (the baseline's p95 and p99 at this median): "
                        f"{'/'.join(f'{c:.0f}' for c in self.counts)} where "
                        f"{'/'.join(f'{e * scale:.3g}' for e in self.expected)} are expected, "
                        f"of {self.trials:.0f} warm invocations{over}")

    def to_state(self) -> list[Any]:
        return [list(self.counts), list(self.expected), self.trials, list(self.edges), self.windows]

    @classmethod
    def from_state(cls, metric: str, state: list[Any]) -> Shape:
        return cls(metric, tuple(float(x) for x in state[0]), tuple(float(x) for x in state[1]),
                   float(state[2]), tuple(float(x) for x in state[3]), int(state[4]))


Count = Tally | Shape
"""A window's count statistic: it adds up across windows and has a test."""


def count_from_state(test: str, state: list[Any]) -> Count:
    """A count statistic from its ``to_state`` list."""
    return Shape.from_state(test, state) if test in SHAPE else Tally(test, *state)


def summed(parts: list[Count]) -> Count | None:
    """One test's counts of consecutive windows added up, or ``None`` when one of them is
    not in line with the sum (:meth:`Tally.consistent`)."""
    tallies = [part for part in parts if isinstance(part, Tally)]
    shapes = [part for part in parts if isinstance(part, Shape)]
    if tallies and not shapes:
        return _summed(tallies)
    if shapes and not tallies:
        return _summed(shapes)
    return None


_C = TypeVar("_C", Tally, Shape)


def _summed(parts: list[_C]) -> _C | None:
    total = parts[0]
    for part in parts[1:]:
        total = total + part
    return total if all(part.consistent(total) for part in parts) else None


def judge(tallies: Mapping[str, Count], alpha: float) -> dict[str, Evidence]:
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

    >>> above("above_p50", 170, 200, 0.5, 412.0, 1e-3).out
    True
    >>> above("above_p50", 110, 200, 0.5, 412.0, 1e-3).out
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
    percentiles and throughput as Holt forecasts, spend per invocation, the tail's shape as
    levels relative to the median and decayed sums of the calls in its bins. Copied into an
    episode when it opens, so later windows are judged against the time before the anomaly."""

    __slots__ = ("errors", "cold_starts", "calls", "cost", "cost_calls", "percentiles",
                 "throughput", "windows", "above", "above_calls", "shape", "tail")

    def __init__(self) -> None:
        self.errors = self.cold_starts = self.calls = self.cost = self.cost_calls = 0.0
        self.percentiles: dict[str, Holt] = {}
        self.throughput = Holt()
        self.windows = 0
        self.above: dict[str, float] = {}
        """Level test -> decayed sum of the calls above its percentile's level at the time."""
        self.above_calls: dict[str, float] = {}
        self.shape: dict[str, Holt] = {}
        """``p95``, ``p99`` (:data:`TAIL_LEVELS`) -> level of the warm calls' percentile as a
        multiple of their median."""
        self.tail: list[float] = []
        """Decayed sums of the warm calls in each of the tail test's bins."""

    def tallies(self, s: Sample) -> dict[str, Count]:
        """The count statistics of ``s`` with what this baseline expects of them."""
        if self.windows < MIN_WINDOWS:
            return {}
        out: dict[str, Count] = {}
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
        if s.n and "p95_ms" in m:
            shape = self.shape_of(s)
            if shape is not None:
                out[TAIL] = shape
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
        """The duration a level test (:data:`ABOVE`) counts the calls of ``s`` above: the
        baseline's level of its percentile; ``None`` before it is learnt."""
        h = self.percentiles.get(ABOVE[test])
        if s.at is None or h is None or h.n < MIN_WINDOWS:
            return None
        return max(h.forecast(), 0.0)

    def ratios(self) -> tuple[float, ...] | None:
        """The tail test's edges as multiples of the median (``None`` before they are learnt)."""
        levels = [self.shape.get(_shape_key(q)) for q in TAIL_LEVELS]
        if any(h is None or h.n < MIN_WINDOWS for h in levels):
            return None
        return tuple(max(h.forecast(), 1.0) for h in levels if h is not None)

    def shape_of(self, s: Sample) -> Shape | None:
        """The tail test of ``s``: its warm calls above its median in the bins the baseline's
        ratios set at its own median, with the shares the baseline's bins normally hold."""
        found, ratios = warm(s), self.ratios()
        if found is None or ratios is None or not any(self.tail):
            return None
        n, at = found
        median = at(0.5)
        if median <= 0:
            return None
        edges = tuple(r * median for r in ratios)
        counts = tail_bins(at, n, edges)
        total = sum(self.tail) + 0.5 * len(self.tail)
        return Shape(TAIL, counts, tuple(sum(counts) * (x + 0.5) / total for x in self.tail),
                     float(n), edges)

    def evidence(self, s: Sample, alpha: float,
                 tallies: Mapping[str, Count] | None = None) -> dict[str, Evidence]:
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
            if "p95_ms" in s.metrics:
                self._learn_shape(s)
        if "invocations" in s.metrics:
            self.throughput.learn(float(s.n))
        self.windows += 1

    def _learn_shape(self, s: Sample) -> None:
        """The tail bins' sums, at the edges from before this window, then the edges' ratios
        (like the percentile levels: clipped, so a window whose p99 lands in a rare slow
        call barely moves them), from windows with enough warm calls for their p95."""
        found = warm(s)
        if found is None or found[1](0.5) <= 0:
            return
        n, at = found
        median, ratios = at(0.5), self.ratios()
        if ratios is not None:
            counts = tail_bins(at, n, tuple(r * median for r in ratios))
            self.tail = [DECAY * x + c for x, c in zip(self.tail or [0.0] * len(counts), counts,
                                                       strict=True)]
        if n >= 1.0 / (1.0 - TAIL_LEVELS[0]) - 1e-9:
            for q in TAIL_LEVELS:
                self.shape.setdefault(_shape_key(q), Holt()).learn(at(q) / median, alpha=0.05,
                                                                   beta=0.0, clip=1.5)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Baseline) and self.to_state() == other.to_state()

    __hash__ = None  # type: ignore[assignment]  # mutable

    def copy(self) -> Baseline:
        return Baseline.from_state(self.to_state())

    def to_state(self) -> list[Any]:
        return [self.errors, self.cold_starts, self.calls, self.cost, self.cost_calls,
                {m: h.to_state() for m, h in self.percentiles.items()},
                self.throughput.to_state(), self.windows, dict(self.above),
                dict(self.above_calls), {k: h.to_state() for k, h in self.shape.items()},
                list(self.tail)]

    @classmethod
    def from_state(cls, state: list[Any]) -> Baseline:
        """A baseline from :meth:`to_state`; an older state without the level tests' sums or
        the tail's shape starts them empty (they learn from the next windows), and drops the
        sums of a test that is gone (``above_p95``, replaced by the shape)."""
        b = cls()
        b.errors, b.cold_starts, b.calls, b.cost, b.cost_calls = (float(x) for x in state[:5])
        b.percentiles = {m: Holt.from_state(h) for m, h in state[5].items()}
        b.throughput = Holt.from_state(state[6])
        b.windows = int(state[7])
        if len(state) > 9:
            b.above = {t: float(x) for t, x in state[8].items() if t in ABOVE}
            b.above_calls = {t: float(x) for t, x in state[9].items() if t in ABOVE}
        if len(state) > 11:
            b.shape = {k: Holt.from_state(h) for k, h in state[10].items()}
            b.tail = [float(x) for x in state[11]]
        return b


def _shape_key(level: float) -> str:
    return f"p{level * 100:g}"
