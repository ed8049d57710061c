"""``obsloop score-series FILE.csv|DIR --out OUT``: anomaly scores for NAB-format series."""

from __future__ import annotations

import argparse
import sys
import time


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "score-series",
        help="score timestamp,value CSV series with the service's series detector",
        description=(
            "Read a NAB-format series (timestamp,value) or a folder of them and write "
            "timestamp,value,anomaly_score, one row at a time (no look-ahead)."
        ),
    )
    p.add_argument("input", help="a CSV file or a folder of CSV files")
    p.add_argument("--out", required=True, help="output CSV file (or folder for a folder input)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from obsloop.detectors.score_series import SeriesInputError, score_path

    start = time.perf_counter()
    try:
        stats = score_path(args.input, args.out)
    except SeriesInputError as exc:
        print(f"obsloop score-series: {exc}", file=sys.stderr)
        return 2
    elapsed = time.perf_counter() - start
    rate = stats.rows / elapsed if elapsed > 0 else float("inf")
    print(
        f"scored {stats.rows} rows in {stats.files} file(s) in {elapsed:.2f} s "
        f"({rate:,.0f} points/s) -> {args.out}",
        file=sys.stderr,
    )
    return 0
