"""In-memory NAB harness for detector development: all 45 files of every category, per
category, and a fixed dev/hold-out split.

    .venv/bin/python bench/nab/harness.py [module:factory] [key=value ...]

The split is fixed (alternate files in name order), not chosen by score: dev = even indices,
hold-out = odd indices. Thresholds are re-optimised on each subset (NAB's one-threshold rule
applied to that subset); the lines after it are ``bench/nab/run.py``'s threshold checks
(each half at the other half's threshold, each category at the others').
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


def corpus_rows(res, windows, names) -> list[nab.ScoredRow]:
    """The scorable rows of the files ``names`` (``res``: name -> (timestamps, scores))."""
    rows: list[nab.ScoredRow] = []
    for name in names:
        rows.extend(nab.sweep_file(name, *res[name], windows.get(name, ())))
    return rows


def evaluate(res, windows, names=None):
    rows = corpus_rows(res, windows, names or sorted(res))
    return {p: nab.score_corpus(rows, p) for p in nab.PROFILES}


def threshold_checks(res, windows) -> list[str]:
    """The checks that the corpus threshold is not fitted to a part: each split half (even /
    odd files) scored at the threshold chosen on the other half, and each category with
    windows scored (standard) at the threshold chosen on the other categories."""
    names = sorted(res)
    lines = []
    for tag, part in {"even files": names[0::2], "odd files": names[1::2]}.items():
        other = corpus_rows(res, windows, [k for k in names if k not in part])
        rows = corpus_rows(res, windows, part)
        line = [f"{nab.score_corpus(rows, p, nab.score_corpus(other, p).threshold).normalized:.1f}"
                for p in nab.PROFILES]
        own = [f"{nab.score_corpus(rows, p).normalized:.1f}" for p in nab.PROFILES]
        lines.append(f"  split-half, {tag:<18} " + " / ".join(line)
                     + f"   (own threshold {' / '.join(own)})")
    cats = nab.by_category(evaluate(res, windows)["standard"], "standard")
    for cat, at_corpus in cats.items():
        part = [k for k in names if k.startswith(cat + "/")]
        if not any(windows.get(k) for k in part):
            continue
        thr = nab.score_corpus(
            corpus_rows(res, windows, [k for k in names if k not in part]), "standard").threshold
        got = nab.score_corpus(corpus_rows(res, windows, part), "standard", thr).normalized
        lines.append(f"  leave-one-category-out {cat:<24} {got:6.1f} at threshold {thr:.4f} "
                     f"(corpus threshold: {at_corpus:.1f})")
    return lines


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
    return f"{label:<30} " + "  ".join(line)


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
    print("\n".join(threshold_checks(res, windows)))


if __name__ == "__main__":
    main(sys.argv[1:])
