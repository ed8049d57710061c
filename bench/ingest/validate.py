"""What a receiver's validation costs per item, and how much of it the canonical bytes take.

    taskset -c 0 .venv/bin/python bench/ingest/validate.py --signal traces
    taskset -c 0 .venv/bin/python bench/ingest/validate.py --signal logs

The receivers parse every request (``parse``), check the ids (spans and log records of
the wrong id length are dropped), and write the request serialized again with unknown and
mistyped fields dropped (``canonical``: ``DiscardUnknownFields`` + ``SerializeToString`` of
the parsed request) rather than the body as received. ``validate`` is all of it, what a
request costs before it is appended to the write-ahead log. Stages interleaved, best of
``--repeat`` (process CPU time).
"""

from __future__ import annotations

import argparse
import resource
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from obsloop.demo.loadgen import ServerlessTraffic  # noqa: E402
from obsloop.pipelines.otlp_decode import canonical, parse_protobuf, validate  # noqa: E402


def cpu_now() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--signal", choices=("traces", "logs"), default="traces")
    parser.add_argument("--items", type=int, default=1000, help="items per request")
    parser.add_argument("--requests", type=int, default=20)
    parser.add_argument("--repeat", type=int, default=15)
    args = parser.parse_args()

    traffic = ServerlessTraffic(seed=3)
    make = traffic.traces if args.signal == "traces" else traffic.logs
    bodies = [make(args.items).SerializeToString() for _ in range(args.requests)]
    items = sum(validate(args.signal, body).items for body in bodies)

    stages = {
        "parse": lambda: [parse_protobuf(args.signal, body) for body in bodies],
        "parse+canonical": lambda: [canonical(parse_protobuf(args.signal, body)) for body in bodies],
        "validate": lambda: [validate(args.signal, body) for body in bodies],
    }
    best = dict.fromkeys(stages, float("inf"))
    for _ in range(args.repeat):
        for name, action in stages.items():
            started = cpu_now()
            action()
            best[name] = min(best[name], cpu_now() - started)
    print(f"{args.signal}: {args.requests} requests, {items} items, "
          f"{sum(map(len, bodies)) / 1e6:.1f} MB, best of {args.repeat}")
    for name, seconds in best.items():
        print(f"{name:16s} {1e6 * seconds / items:6.3f} us/item  {items / seconds / 1e6:5.2f}M items/s")
    share = (best["parse+canonical"] - best["parse"]) / best["validate"]
    print(f"canonical bytes: {1e6 * (best['parse+canonical'] - best['parse']) / items:.3f} us/item, "
          f"{share:.0%} of validate")


if __name__ == "__main__":
    main()
