"""Where a detector loses NAB points: per window (first detection, its worth) and per false
positive (row, cost, score), at the corpus-optimal standard threshold.

    .venv/bin/python bench/nab/analyse.py [module:factory] [key=value ...]
"""

from __future__ import annotations

import importlib
import sys

from harness import DATA, load, run

from obsloop.detectors import nab


def main(argv: list[str]) -> None:
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
                else:
                    lost_fn += w.fn_weight + w.tp_weight
                    out.append(f"  window@{ks[0] + prob}-{ks[-1] + prob}: MISSED"
                               f" (max score in window {best:.3f})")
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
