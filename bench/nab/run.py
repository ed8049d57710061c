"""NAB benchmark for the series detector, on all 45 development series of every category.

Runs ``obsloop score-series`` (the same code path, in-process) over the NAB folder, reads
the written scores back, scores them with :mod:`obsloop.detectors.nab` for the three
profiles with one threshold per profile for the whole corpus (NAB's rule), and prints the
per-category scores at that threshold, a split-half and a leave-one-category-out check of
the threshold, throughput and memory per series. Scoring runs in this one process on one
core, so points/s is points/s per core.

    .venv/bin/python bench/nab/run.py [--data NAB_FOLDER] [--out DIR] [--per-file]
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import sys
import tempfile
import time
from datetime import datetime
from pathlib import Path

from harness import DATA, corpus_rows, threshold_checks
from memory import bytes_per_detector

from obsloop.detectors import nab
from obsloop.detectors.score_series import score_path

SHORT = {p: s for p, s in zip(nab.PROFILES, ("standard", "low FP", "low FN"), strict=True)}


def read_scores(path: Path) -> tuple[list[datetime], list[float]]:
    ts: list[datetime] = []
    scores: list[float] = []
    with path.open(newline="") as fh:
        reader = csv.DictReader(fh)
        for row in reader:
            ts.append(datetime.fromisoformat(row["timestamp"]))
            scores.append(float(row["anomaly_score"]))
    return ts, scores


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", default=str(DATA),
                    help="NAB folder holding the category folders and windows.json")
    ap.add_argument("--out", help="where to keep the scored CSVs (default: a temp dir)")
    ap.add_argument("--per-file", action="store_true", help="per-file breakdown (standard)")
    args = ap.parse_args(argv)
    data = Path(args.data).resolve()
    windows = nab.load_windows(data / "windows.json")
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(args.out) if args.out else Path(tmp) / "scores"
        cpu0, t0 = time.process_time(), time.perf_counter()
        stats = score_path(data, out)
        wall, cpu = time.perf_counter() - t0, time.process_time() - cpu0
        results = {p.relative_to(out).as_posix(): read_scores(p)
                   for p in sorted(out.rglob("*.csv"))}
    missing = sorted(set(windows) - set(results))
    if missing:
        print(f"warning: no scores for {missing}", file=sys.stderr)
    names = sorted(results)
    rows = corpus_rows(results, windows, names)
    scored = {p: nab.score_corpus(rows, p) for p in nab.PROFILES}
    n_windows = sum(len(windows.get(k, [])) for k in results)
    print(f"NAB development corpus: {stats.files} files, {stats.rows} points, {n_windows} windows"
          f" ({stats.clock_steps} rows stepping the clock back)")
    head = ("profile", "score", "threshold", "raw", "TP", "FN", "FP")
    print("{:<20} {:>7} {:>10} {:>8} {:>4} {:>4} {:>5}".format(*head))
    for name, res in scored.items():
        tp = sum(f.tp for f in res.files.values())
        fn = sum(f.fn for f in res.files.values())
        fp = sum(f.fp for f in res.files.values())
        print(f"{name:<20} {res.normalized:7.1f} {res.threshold:10.4f} {res.raw:8.2f} "
              f"{tp:4d} {fn:4d} {fp:5d}")
    cats = {p: nab.by_category(r, p) for p, r in scored.items()}
    print("\nper category at the corpus threshold (standard / low FP / low FN; "
          "artificialNoAnomaly: what its FPs cost the corpus)")
    for cat in cats["standard"]:
        n = sum(1 for k in names if k.startswith(cat + "/"))
        fp = sum(f.fp for k, f in scored["standard"].files.items() if k.startswith(cat + "/"))
        print(f"  {cat:<24} {n:2d} files " + " / ".join(f"{cats[p][cat]:6.1f}" for p in cats)
              + f"   FP rows (standard) {fp}")
    print("\nthreshold check (parameters fixed; the threshold is chosen without the part scored):")
    print("\n".join(threshold_checks(results, windows)))
    per, state = bytes_per_detector()
    print(f"\nthroughput: {stats.rows / wall:,.0f} points/s wall, {stats.rows / cpu:,.0f} points/s "
          f"per core (CPU time; includes CSV read and write), {os.cpu_count()} cores present")
    print(f"memory: {per:,.0f} bytes per series in memory, checkpoint {state:,} bytes of JSON")
    labels_path = data / "labels.json"
    if labels_path.exists():
        n_labels = sum(len(v) for k, v in json.loads(labels_path.read_text()).items()
                       if k in results)
        if n_labels != n_windows:
            # NAB's own runner takes S_perfect = tp_weight x (number of labels), not windows;
            # labels sharing a merged window make that perfect score unreachable.
            alt = " / ".join(
                f"{100 * (r.raw - r.null) / (n_labels * nab.PROFILES[p].tp_weight - r.null):.1f}"
                for p, r in scored.items())
            print(f"as NAB's runner normalises (S_perfect from {n_labels} labels, not "
                  f"{n_windows} windows): {alt}")
    if args.per_file:
        print("\nper file (standard profile):")
        for name, fr in sorted(scored["standard"].files.items()):
            print(f"  {name:<60} {fr.score:7.3f}  tp={fr.tp} fn={fr.fn} fp={fr.fp}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
