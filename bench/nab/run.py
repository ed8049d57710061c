"""NAB benchmark for the series detector.

Runs ``obsloop score-series`` (the same code path, in-process) over the AWS CloudWatch NAB
series, reads the written scores back, scores them with :mod:`obsloop.detectors.nab` for the
three profiles, and reports throughput. Scoring runs in this one process on one core, so
points/s is points/s per core.

    .venv/bin/python bench/nab/run.py [--data ../shared/data/nab] [--out DIR] [--per-file]
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

from obsloop.detectors import nab
from obsloop.detectors.score_series import score_path

REPO = Path(__file__).resolve().parents[2]
CORPUS = "realAWSCloudwatch"


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
    ap.add_argument("--data", default=str(REPO / ".." / "shared" / "data" / "nab"),
                    help="NAB folder holding realAWSCloudwatch/ and windows.json")
    ap.add_argument("--out", help="where to keep the scored CSVs (default: a temp dir)")
    ap.add_argument("--per-file", action="store_true", help="per-file breakdown (standard)")
    args = ap.parse_args(argv)
    data = Path(args.data).resolve()
    windows = nab.load_windows(data / "windows.json")
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(args.out) if args.out else Path(tmp) / "scores"
        cpu0, t0 = time.process_time(), time.perf_counter()
        stats = score_path(data / CORPUS, out)
        wall, cpu = time.perf_counter() - t0, time.process_time() - cpu0
        results = {
            f"{CORPUS}/{p.relative_to(out).as_posix()}": read_scores(p)
            for p in sorted(out.rglob("*.csv"))
        }
    missing = sorted(set(windows) - set(results))
    if missing:
        print(f"warning: no scores for {missing}", file=sys.stderr)
    scored = nab.score_results(results, {k: windows.get(k, []) for k in results})
    n_windows = sum(len(windows.get(k, [])) for k in results)
    print(f"NAB {CORPUS}: {stats.files} files, {stats.rows} points, {n_windows} windows")
    head = ("profile", "score", "threshold", "raw", "TP", "FN", "FP")
    print("{:<20} {:>7} {:>10} {:>8} {:>4} {:>4} {:>5}".format(*head))
    for name, res in scored.items():
        tp = sum(f.tp for f in res.files.values())
        fn = sum(f.fn for f in res.files.values())
        fp = sum(f.fp for f in res.files.values())
        print(f"{name:<20} {res.normalized:7.1f} {res.threshold:10.4f} {res.raw:8.2f} "
              f"{tp:4d} {fn:4d} {fp:5d}")
    print(f"throughput: {stats.rows / wall:,.0f} points/s wall, {stats.rows / cpu:,.0f} points/s "
          f"per core (CPU time; includes CSV read and write), {os.cpu_count()} cores present")
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
    names = sorted(results)
    for tag, subset in (("dev (even files)", names[0::2]), ("hold-out (odd files)", names[1::2])):
        sub = nab.score_results({k: results[k] for k in subset},
                                {k: windows.get(k, []) for k in subset})
        print(f"{tag:<21}" + " / ".join(f"{r.normalized:.1f}" for r in sub.values())
              + "  (standard / low FP / low FN, threshold re-chosen on the subset)")
    if args.per_file:
        print("\nper file (standard profile):")
        for name, fr in sorted(scored["standard"].files.items()):
            print(f"  {name:<55} {fr.score:7.3f}  tp={fr.tp} fn={fr.fn} fp={fr.fp}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
