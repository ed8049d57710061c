"""In-memory NAB harness for detector development: all 45 files of every category, per
category, and a fixed dev/hold-out split.

    .venv/bin/python bench/nab/harness.py [module:factory] [key=value ...]

The split is fixed (alternate files in name order), not chosen by score: dev = even indices,
hold-out = odd indices. Thresholds are re-optimised on each subset (NAB's one-threshold rule
applied to that subset); the second line scores each half at the other half's threshold
and each category at the threshold chosen without it (standard), as ``run.py`` does.
"""

from __future__ import annotations

import csv
import importlib
import sys
import time
from datetime import datetime
from pathlib import Path

from obsloop.detectors import nab

REPO = Path(__file__).resolve().parents[2]
# ../shared/data/nab beside the checkout (a worktree sits one level deeper than the main one).
DATA = next((d / "shared" / "data" / "nab" for d in REPO.parents
             if (d / "shared" / "data" / "nab").is_dir()), REPO.parent / "shared" / "data" / "nab")


def load(data: Path = DATA) -> dict[str, tuple[list[datetime], list[float]]]:
    """Every ``category/file.csv`` under ``data``, as (timestamps, values)."""
    out = {}
    for p in sorted(data.glob("*/*.csv")):
        ts, xs = [], []
        with p.open() as fh:
            for row in csv.DictReader(fh):
                ts.append(datetime.fromisoformat(row["timestamp"]))
                xs.append(float(row["value"]))
        out[p.relative_to(data).as_posix()] = (ts, xs)
    return out


def run(factory, series):
    res = {}
    n = 0
    t0 = time.process_time()
    for name, (ts, xs) in series.items():
        det = factory()
        step = det.score_learn_one
        res[name] = (ts, [step(x, t) for x, t in zip(xs, ts, strict=True)])
        n += len(xs)
    return res, n / (time.process_time() - t0)


def evaluate(res, windows, names=None):
    names = names or sorted(res)
    rows = []
    for name in names:
        ts, sc = res[name]
        rows.extend(nab.sweep_file(name, ts, sc, windows.get(name, ())))
    return {p: nab.score_corpus(rows, p) for p in nab.PROFILES}


def report(res, windows, label=""):
    names = sorted(res)
    dev, hold = names[0::2], names[1::2]
    line = []
    for tag, sub in (("all", names), ("dev", dev), ("hold", hold)):
        r = evaluate(res, windows, sub)
        line.append(f"{tag} {r['standard'].normalized:5.1f}/{r['reward_low_FP_rate'].normalized:5.1f}"
                    f"/{r['reward_low_FN_rate'].normalized:5.1f}")
    std = evaluate(res, windows)["standard"]
    cats = nab.by_category(std, "standard")
    line.append("| " + " ".join(f"{c[:9]} {v:.1f}" for c, v in cats.items()))
    line.append("\n  split-half at the other half's threshold: " + "  ".join(
        " / ".join(f"{_at_others(res, windows, names, part, p):.1f}" for p in nab.PROFILES)
        for part in (dev, hold)))
    loco = []
    for cat in cats:
        part = [k for k in names if k.startswith(cat + "/")]
        if any(windows.get(k) for k in part):
            loco.append(f"{_at_others(res, windows, names, part, 'standard'):.1f}")
    line.append("| left out: " + " ".join(loco))
    return f"{label:<30} " + "  ".join(line)


def _rows(res, windows, names):
    return [r for name in names for r in nab.sweep_file(name, *res[name], windows.get(name, ()))]


def _at_others(res, windows, names, part, profile):
    """``part``'s score at the threshold chosen on the other files (``bench/nab/run.py``'s
    split-half and leave-one-category-out checks)."""
    thr = nab.score_corpus(_rows(res, windows, [k for k in names if k not in part]), profile).threshold
    return nab.score_corpus(_rows(res, windows, part), profile, thr).normalized


def main(argv):
    spec = argv[0] if argv else "obsloop.detectors.series:SeriesAnomalyDetector"
    mod, _, attr = spec.partition(":")
    cls = getattr(importlib.import_module(mod), attr)
    kwargs = {}
    for a in argv[1:]:
        k, _, v = a.partition("=")
        kwargs[k] = eval(v)
    series = load()
    windows = nab.load_windows(DATA / "windows.json")
    res, pps = run(lambda: cls(**kwargs), series)
    print(report(res, windows, " ".join(argv[1:]) or "default"), f"{pps:,.0f} pts/s")


if __name__ == "__main__":
    main(sys.argv[1:])
