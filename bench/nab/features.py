"""What tells the plateau's first detections from its false positives: per-point features
(past and current points only) of the first detection of each window and of each false
positive row scored in ``[threshold, high)`` at the corpus-optimal standard threshold.

    .venv/bin/python bench/nab/features.py [high]   (default 0.6)

Each view's tail probability is recomputed from the detector's state before the point is
learnt, with the formula of ``SeriesAnomalyDetector._evaluate`` for the point and mean-shift views
(as version 8 had them; version 9's spread view and hour scale are not among the features):
a measurement aid, not a second implementation to keep in step.
"""

from __future__ import annotations

import math
import sys
from typing import Any

from harness import DATA, evaluate, load

from obsloop.detectors import nab
from obsloop.detectors.series import _TAIL_BINS, SeriesAnomalyDetector, _tail

HORIZONS = (1000, 3000, 10000)


class Recording(SeriesAnomalyDetector):
    """The detector, keeping per point what the features need (``rec``)."""

    def __init__(self) -> None:
        super().__init__()
        self.rec: list[dict[str, Any]] = []

    def _evaluate(self, x: float, ts: float) -> tuple[Any, ...]:
        ev = super()._evaluate(x, ts)
        score, raw, resid, _, d_slot, _, _, _, b, b2, ctx = ev[:11]  # the point and mean-shift views
        f = {"score": score, "resid": resid, "sd": math.sqrt(self.var), "p": 1.0, "p2": 1.0,
             "emp": 0.0, "emp2": 0.0, "nov": ctx[2] if ctx else 0.0}
        if b >= 0 and score < 1.0:
            lik_sd = max(math.sqrt(self.lik_var), self.min_likelihood_std)
            u = (self.short + self.short_alpha * (raw - self.short) - self.lik_mean) / lik_sd
            u2 = -math.inf
            if self.shift_alpha > 0.0 and self.sn >= self.warmup:
                r2 = self._shift_raw(self._shift_input(x, d_slot))
                u2 = (r2 - self.l2_mean) / max(math.sqrt(self.l2_var), self.min_likelihood_std)
            k = 1.0 / self.tail_alpha
            f["emp"] = sum(self.tail[b:_TAIL_BINS]) / self.tail_gain
            f["emp2"] = sum(self.tail[b2:]) / self.tail_gain
            f["p"] = (f["emp"] + k * _tail(u)) / (self.tail_total + k)
            f["p2"] = (f["emp2"] + k * _tail(u2)) / (self.tail_total + k)
        self.rec.append(f)
        return ev


def features(rec: list[dict[str, Any]], i: int) -> dict[str, float]:
    f = rec[i]
    up = f["resid"] > 0.0
    out = {"shift view": float(f["p2"] < f["p"]),
           "shift view alone (point p > 0.1)": float(f["p2"] < f["p"] and f["p"] > 0.1),
           "novelty > 0": float(f["nov"] > 0.0), "downward": float(not up),
           "tail count at the statistic": f["emp"] if f["p"] <= f["p2"] else f["emp2"],
           "points since a score 0.9 x as high": float(next(
               (i - j for j in range(i - 1, -1, -1) if rec[j]["score"] >= 0.9 * f["score"]),
               99999)),
           "score of the point before": rec[i - 1]["score"]}
    for h in HORIZONS:
        past = [r["resid"] for r in rec[max(0, i - h):i] if (r["resid"] > 0.0) == up]
        top = max((abs(v) for v in past), default=0.0)
        out[f"departure / largest same-direction, last {h}"] = abs(f["resid"]) / top if top else 99.0
    return out


def main(argv: list[str]) -> None:
    high = float(argv[0]) if argv else 0.6
    series = load()
    windows = nab.load_windows(DATA / "windows.json")
    res, recs = {}, {}
    for name, (ts, xs) in series.items():
        det = Recording()
        res[name] = (ts, [det.score_learn_one(x, t) for x, t in zip(xs, ts, strict=True)])
        recs[name] = det.rec
    thr = evaluate(res, windows)["standard"].threshold
    groups: dict[str, list[dict[str, float]]] = {"first detections": [], "false positives": []}
    for name in sorted(res):
        rows = nab.sweep_file(name, *res[name], windows.get(name, ()))
        prob = len(res[name][0]) - len(rows)
        seen: set[str] = set()
        for k, r in enumerate(rows):
            if r.score < thr or (r.window is not None and r.window in seen):
                continue
            if r.window is not None:
                seen.add(r.window)
            if r.score < high:
                tag = "first detections" if r.window is not None else "false positives"
                groups[tag].append(features(recs[name], k + prob))
    print(f"rows scored {thr:.4f}-{high} (standard threshold {thr:.4f}): "
          + ", ".join(f"{len(v)} {k}" for k, v in groups.items()))
    for key in groups["first detections"][0]:
        cells = []
        for rows_ in groups.values():
            vals = sorted(r[key] for r in rows_)
            if key[0].islower() and set(vals) <= {0.0, 1.0}:
                cells.append(f"{int(sum(vals)):>4d} of {len(vals)}")
            else:
                n = len(vals) - 1
                cells.append(" / ".join(f"{vals[int(q * n)]:.2f}" for q in (0.25, 0.5, 0.75)))
        print(f"  {key:<48} " + "   |   ".join(cells))


if __name__ == "__main__":
    main(sys.argv[1:])
