"""Where a detector loses NAB points: per window (first detection, its worth) and per false
positive (row, cost, score), at the corpus-optimal standard threshold.

    .venv/bin/python bench/nab/analyse.py [--shape] [module:factory] [key=value ...]

``--shape`` adds, for each missed window and each one detected late (worth < 0.8), what the
series does in the quarter window after its labelled point against the stretch before it
(see :func:`shape`): the kind of change
(level, variance, roughness, a flat stretch, a daily shape, drift) that the views missed.
"""

from __future__ import annotations

import importlib
import math
import sys
from datetime import datetime

from harness import DATA, load, run

from obsloop.detectors import nab


def _stats(xs: list[float]) -> dict[str, float]:
    """Summary of a stretch of values: level, spread, roughness (std of the first
    difference), lag-1 autocorrelation and the share of repeated values (flat-lining)."""
    n = len(xs)
    m = sum(xs) / n
    var = sum((x - m) ** 2 for x in xs) / n
    d = [b - a for a, b in zip(xs, xs[1:], strict=False)]
    dv = sum(v * v for v in d) / max(len(d), 1)
    c1 = sum((a - m) * (b - m) for a, b in zip(xs, xs[1:], strict=False)) / max(n - 1, 1)
    return {"mean": m, "std": math.sqrt(var), "min": min(xs), "max": max(xs),
            "dstd": math.sqrt(dv), "ac1": c1 / var if var > 0 else 1.0,
            "flat": sum(1 for v in d if v == 0.0) / max(len(d), 1)}


def shape(ts: list[datetime], xs: list[float], a: int, w: int) -> str:
    """What the series does in the ``w`` rows from ``a`` (a window's labelled point, its
    centre) against the ``4 w`` rows before it (``pre``), and how far each is from the same
    rows one day earlier (mean absolute difference; ``vs yesterday`` > 1: a changed daily
    shape or level)."""
    step = max((ts[-1] - ts[0]).total_seconds() / max(len(ts) - 1, 1), 1.0)
    day = max(int(round(86_400 / step)), 1)
    w = max(w, 5)
    pre = _stats(xs[max(a - 4 * w, 0):a])
    ins = _stats(xs[a:a + w])

    def dayd(lo: int, hi: int) -> float:
        pairs = [(xs[i], xs[i - day]) for i in range(max(lo, day), hi)]
        return sum(abs(u - v) for u, v in pairs) / len(pairs) if pairs else math.nan

    dd_pre, dd_in = dayd(max(a - 4 * w, 0), a), dayd(a, a + w)
    sd = pre["std"] or 1e-12
    out = ["    pre  " + " ".join(f"{k} {v:.4g}" for k, v in pre.items()),
           "    in   " + " ".join(f"{k} {v:.4g}" for k, v in ins.items()),
           f"    -> level {(ins['mean'] - pre['mean']) / sd:+.2f} pre-sd, std x"
           f"{ins['std'] / sd:.2f}, roughness x{ins['dstd'] / (pre['dstd'] or 1e-12):.2f},"
           f" ac1 {pre['ac1']:.2f}->{ins['ac1']:.2f}, flat {pre['flat']:.2f}->{ins['flat']:.2f},"
           f" vs yesterday x{dd_in / dd_pre if dd_pre else math.nan:.2f}, new range "
           f"{'yes' if ins['max'] > max(xs[:a]) or ins['min'] < min(xs[:a]) else 'no'}"]
    return "\n".join(out)


def main(argv: list[str]) -> None:
    want_shape = "--shape" in argv
    argv = [a for a in argv if a != "--shape"]
    spec = argv[0] if argv and ":" in argv[0] else "obsloop.detectors.series:SeriesAnomalyDetector"
    params = argv[1:] if argv and ":" in argv[0] else argv
    mod, _, attr = spec.partition(":")
    cls = getattr(importlib.import_module(mod), attr)
    kwargs = {k: eval(v) for k, _, v in (a.partition("=") for a in params)}
    series = load()
    windows = nab.load_windows(DATA / "windows.json")
    res, pps = run(lambda: cls(**kwargs), series)
    rows_by_file = {n: nab.sweep_file(n, *res[n], windows.get(n, ())) for n in sorted(res)}
    all_rows = [r for rows in rows_by_file.values() for r in rows]
    for profile in ("standard",):
        cr = nab.score_corpus(all_rows, profile)
        thr = cr.threshold
        w = nab.PROFILES[profile]
        print(f"{profile}: {cr.normalized:.1f} at threshold {thr:.4f}  ({pps:,.0f} pts/s)")
        lost_fp = lost_fn = lost_late = 0.0
        for name, rows in rows_by_file.items():
            n = len(res[name][0])
            prob = n - len(rows)
            short = name.split("/", 1)[1]
            wins: dict[str, list[int]] = {}
            for k, r in enumerate(rows):
                if r.window is not None:
                    wins.setdefault(r.window, []).append(k)
            out = []
            for ks in wins.values():
                det = [k for k in ks if rows[k].score >= thr]
                best = max((rows[k].score for k in ks), default=0.0)
                if det:
                    v = rows[det[0]].value
                    lost_late += w.tp_weight * (1 - v)
                    out.append(f"  window@{ks[0] + prob}-{ks[-1] + prob}: hit at +{det[0] - ks[0]}"
                               f" worth {v:.3f} (max score in window {best:.3f})")
                    if want_shape and v < 0.8:
                        out.append(shape(*series[name], (ks[0] + ks[-1]) // 2 + prob, (ks[-1] - ks[0]) // 4))
                else:
                    lost_fn += w.fn_weight + w.tp_weight
                    out.append(f"  window@{ks[0] + prob}-{ks[-1] + prob}: MISSED"
                               f" (max score in window {best:.3f})")
                    if want_shape:
                        out.append(shape(*series[name], (ks[0] + ks[-1]) // 2 + prob, (ks[-1] - ks[0]) // 4))
            fps = [(k + prob, r.value, r.score) for k, r in enumerate(rows)
                   if r.window is None and r.score >= thr]
            cost = sum(-w.fp_weight * v for _, v, _ in fps)
            lost_fp += cost
            print(f"{short:<45} n={n} windows={len(wins)} FP={len(fps)} cost {cost:.3f}")
            print("\n".join(out))
            if fps:
                print("  FPs: " + ", ".join(f"{i}({-v:.2f},{s:.2f})" for i, v, s in fps))
        print(f"points lost: FP {lost_fp:.2f}, missed {lost_fn:.2f}, late {lost_late:.2f} "
              f"(x {100 / (cr.perfect - cr.null):.2f} normalised points each)")


if __name__ == "__main__":
    main(sys.argv[1:])
