"""In-memory NAB harness for detector development: all 45 files of every category, per
category, and a fixed dev/hold-out split.

    .venv/bin/python bench/nab/harness.py [module:factory] [key=value ...]

The split is fixed (alternate files in name order), not chosen by score: dev = even indices,
hold-out = odd indices. Thresholds are re-optimised on each subset (NAB's one-threshold rule
applied to that subset); the second line is ``bench/nab/run.py``'s threshold checks (each
half at the other half's threshold, each category at the other categories').
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
    return f"{label:<30} " + "  ".join(line)


def held_out(rows: dict[str, list[nab.ScoredRow]], part: list[str],
             profile: str) -> tuple[float, float]:
    """Normalised score of the files ``part`` at the threshold chosen on every other file of
    ``rows`` (NAB's one-threshold rule applied without them), and that threshold."""
    other = [r for name, rs in rows.items() if name not in part for r in rs]
    thr = nab.score_corpus(other, profile).threshold
    return nab.score_corpus([r for name in part for r in rows[name]], profile, thr).normalized, thr


def checks(res, windows) -> str:
    """The threshold checks of ``bench/nab/run.py`` in one line: each split half scored at
    the threshold chosen on the other half (standard / low FP / low FN), then each category
    with windows scored (standard) at the threshold chosen on the other categories."""
    names = sorted(res)
    rows = {n: nab.sweep_file(n, *res[n], windows.get(n, ())) for n in names}
    halves = ["/".join(f"{held_out(rows, part, p)[0]:.1f}" for p in nab.PROFILES)
              for part in (names[0::2], names[1::2])]
    loco = []
    for cat in sorted({n.split("/", 1)[0] for n in names}):
        part = [n for n in names if n.startswith(cat + "/")]
        if any(windows.get(n) for n in part):
            loco.append(f"{held_out(rows, part, 'standard')[0]:.1f}")
    return f"{'':<30} halves {halves[0]}  {halves[1]}  | loco " + " ".join(loco)


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
    print(checks(res, windows))


if __name__ == "__main__":
    main(sys.argv[1:])
