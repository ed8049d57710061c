"""The most any test can page within two windows: for the error-rate and throughput faults
that ``run.py`` injects, the power of the most powerful test of the fault's first two
windows' count at a given false-alarm rate per window.

A fault's two windows hold a Poisson count (errors, or invocations) whose expectation the
bench's own traffic model gives (traffic, daily and weekend rhythm, error rate and deploys
at the fault's windows). For a rise against a baseline expectation ``lam``, the most powerful
test of a Poisson mean (Neyman-Pearson) pages when the count reaches the smallest ``k`` with
``P(X >= k | null) <= alpha``; its power is ``P(X >= k | fault)`` (a drop: the mirror). The
null is the baseline as the detectors judge it (a rate may rise 25 %, throughput fall 15 %,
before it is tested) or, as an upper bound no real test reaches, the baseline exactly
known. Summing two windows loses nothing: given the expectations, their sum is sufficient
for the fault's size, so a sequential test (CUSUM, SPRT) cannot do better by the second
window at the same false-alarm rate.

    .venv/bin/python bench/alerts/power.py [--seeds 40]
"""

from __future__ import annotations

import argparse
import math
import sys
from pathlib import Path

import numpy as np
from scipy.stats import poisson

sys.path.insert(0, str(Path(__file__).resolve().parent))
from run import fleet, plan_faults, seasonal  # noqa: E402

RATE_RISE, THROUGHPUT_DROP = 1.25, 0.85
"""The detectors' tolerances (``RATE_TOLERANCE``, ``THROUGHPUT_TOLERANCE``)."""


def rise_power(lam0: float, lam1: float, alpha: float) -> float:
    """Power of ``X >= k`` with ``P(X >= k | lam0) <= alpha`` against ``lam1``."""
    k = int(poisson.isf(alpha, lam0)) + 1
    while k > 0 and poisson.sf(k - 2, lam0) <= alpha:
        k -= 1
    return float(poisson.sf(k - 1, lam1))


def drop_power(lam0: float, lam1: float, alpha: float) -> float:
    """Power of ``X <= k`` with ``P(X <= k | lam0) <= alpha`` against ``lam1``."""
    k = int(poisson.ppf(alpha, lam0))
    while k >= 0 and poisson.cdf(k, lam0) > alpha:
        k -= 1
    return float(poisson.cdf(k, lam1)) if k >= 0 else 0.0


def expectations(seed: int) -> tuple[list[float], list[float]]:
    """Per error fault the baseline errors expected in its first two windows; per
    throughput fault the invocations expected there."""
    rng = np.random.default_rng(seed)
    functions = fleet(60, 530, rng)
    faults = plan_faults(functions, 330, 200, 8, rng)
    errors, calls = [], []
    for fault in faults:
        f = functions[fault.function]
        factor = math.prod(e for at, _, e in f.deploys if at <= fault.start)
        n = sum(f.traffic * seasonal(f, w) for w in (fault.start, fault.start + 1))
        if fault.kind == "errors_3x":
            errors.append(n * f.error_rate * factor)
        elif fault.kind == "throughput_half":
            calls.append(n)
    return errors, calls


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--seeds", type=int, default=40, help="fault plans (seeds 1..N)")
    args = ap.parse_args(argv)
    plans = {seed: expectations(seed) for seed in range(1, args.seeds + 1)}
    errors = [x for e, _ in plans.values() for x in e]
    calls = [x for _, c in plans.values() for x in c]
    print(f"{len(errors)} error faults and {len(calls)} throughput faults from seeds "
          f"1..{args.seeds}; errors expected in two windows: median {np.median(errors):.1f} "
          f"(10-90 %: {np.percentile(errors, 10):.1f}-{np.percentile(errors, 90):.1f})")
    print(f"{'alpha per window':>16} {'3x errors':>22} {'throughput -50 %':>22}")
    print(f"{'':>16} {'tolerance':>11} {'exact':>10} {'tolerance':>11} {'exact':>10}")
    for alpha in (1e-3, 1e-4, 1e-5):
        cells = [np.mean([rise_power(RATE_RISE * x, 3 * x, alpha) for x in errors]),
                 np.mean([rise_power(x, 3 * x, alpha) for x in errors]),
                 np.mean([drop_power(THROUGHPUT_DROP * x, x / 2, alpha) for x in calls]),
                 np.mean([drop_power(x, x / 2, alpha) for x in calls])]
        print(f"{alpha:>16g} " + " ".join(f"{c:>10.1%}" for c in cells))
    for seed in (1, 2):
        if seed in plans:
            e, c = plans[seed]
            print(f"seed {seed}: expected within 2 windows at alpha 1e-3 with the tolerance: "
                  f"3x errors {sum(rise_power(RATE_RISE * x, 3 * x, 1e-3) for x in e):.1f} of "
                  f"{len(e)}, throughput {sum(drop_power(THROUGHPUT_DROP * x, x / 2, 1e-3) for x in c):.1f}"
                  f" of {len(c)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
