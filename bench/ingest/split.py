"""What a segment with unreadable requests costs: its split against a clean insert.

    .venv/bin/python bench/ingest/split.py --requests 64 --bad 1

A segment of ``--requests`` traces requests (``--items`` spans each) is inserted clean,
then again (new tables) with ``--bad`` requests neither protobuf nor ClickHouse can read
spread among them, as a segment left by an older version holds them: the refused insert,
the bisection with checks into Null-engine tables and the insert of the rest
(:mod:`obsloop.pipelines.quarantine`). Embedded chDB, wall time, one run each.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from obsloop import clickhouse  # noqa: E402
from obsloop.core.selfmetrics import SelfMetrics  # noqa: E402
from obsloop.demo.loadgen import ServerlessTraffic  # noqa: E402
from obsloop.pipelines.clickhouse_sink import ClickHouseSink  # noqa: E402
from obsloop.pipelines.quarantine import Quarantine  # noqa: E402
from obsloop.pipelines.schema import SchemaOptions  # noqa: E402
from obsloop.schema import ddl  # noqa: E402

UNREADABLE = b"\x0a\x04\x12\x05ab"
"""A scope_spans field longer than the resource_spans holding it."""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=64)
    parser.add_argument("--items", type=int, default=1000)
    parser.add_argument("--bad", type=int, default=1)
    args = parser.parse_args()

    workdir = Path(tempfile.mkdtemp(prefix="obsloop-split-"))
    client = clickhouse.connect(f"chdb://{workdir / 'ch'}")
    traffic = ServerlessTraffic(seed=9)
    good = [traffic.traces(args.items).SerializeToString() for _ in range(args.requests)]
    poisoned = list(good)
    for n in range(args.bad):
        poisoned.insert((n + 1) * len(good) // (args.bad + 1) + n, UNREADABLE)

    timings = {}
    for name, payloads in (("clean", good), ("split", poisoned)):
        database = f"bench_{name}"
        client.command(f"CREATE DATABASE {database}")
        for statement in ddl(SchemaOptions(database=database)):
            client.command(statement)
        sink = ClickHouseSink(lambda: client, database=database, embedded=True, schema_directory=workdir)
        quarantine = Quarantine(workdir / "quarantine", SelfMetrics())
        started = time.perf_counter()
        try:
            sink.insert_payloads("traces", payloads, f"{name}-token")
        except Exception as exc:  # noqa: BLE001 - the poisoned segment is refused, then split
            quarantine.store_readable(sink, "traces", name, payloads, f"{name}-token", exc)
        timings[name] = time.perf_counter() - started
        stored = client.command(f"SELECT count() FROM {database}.otel_traces")
        print(f"{name:6s} {len(payloads):4d} requests  {stored:7d} spans stored  {timings[name]:6.2f} s")
    print(f"split / clean: {timings['split'] / timings['clean']:.1f}x")


if __name__ == "__main__":
    main()
