"""Memory per live series of the default :class:`SeriesAnomalyDetector`.

Builds 5,000 detectors, feeds a few of them a day of points (so every slot is populated),
and reports the traced allocation per detector and the size of one JSON checkpoint.

    .venv/bin/python bench/nab/memory.py
"""

from __future__ import annotations

import json
import math
import tracemalloc

from obsloop.detectors.series import SeriesAnomalyDetector

N = 5_000


def bytes_per_detector(n: int = N) -> tuple[float, int]:
    """Traced bytes per live detector and bytes of one JSON checkpoint."""
    tracemalloc.start()
    before = tracemalloc.get_traced_memory()[0]
    dets = [SeriesAnomalyDetector() for _ in range(n)]
    for k, det in enumerate(dets[:50]):  # warm a few fully: values are floats in place
        for i in range(300):
            det.learn_one(10.0 + math.sin(i + k), 300.0 * i)
    after = tracemalloc.get_traced_memory()[0]
    tracemalloc.stop()
    state = json.dumps(dets[0].to_state(), separators=(",", ":"))
    return (after - before) / n, len(state)


def main() -> None:
    per, state = bytes_per_detector()
    print(f"{per:,.0f} bytes per detector in memory ({per * 50_000 / 1e6:,.0f} MB for 50,000); "
          f"checkpoint {state:,} bytes of JSON")


if __name__ == "__main__":
    main()
