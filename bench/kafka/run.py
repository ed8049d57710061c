"""Spans/s through Kafka: OTLP/HTTP → receiver → Kafka (tansu) → 1 or 2 ingest workers → ClickHouse.

    .venv/bin/python bench/kafka/run.py [--requests 400] [--spans 100]

For 1 and then 2 ``obsloop ingest-worker`` processes (their own topics and group each run),
it starts the workers and an ``obsloop serve`` in Kafka mode, lets the group settle, posts
every request (8 in flight) and times from the first post until every span is stored.
Each worker has its own embedded ClickHouse (one process per data directory), so stored
counts are summed over workers; with a ClickHouse server they would share one.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

TESTS = Path(__file__).resolve().parents[2] / "tests"
sys.path[:0] = [str(TESTS), str(TESTS / "pipelines")]
# The test suite's process runners, OTLP requests and broker.
from obsloop_process import ObsloopProcess  # noqa: E402
from scale_out import WorkerProcess, traces_request  # noqa: E402
from tansu_broker import TansuBroker  # noqa: E402

QUIET = {"logging": {"level": "WARNING", "format": "text"}}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--requests", type=int, default=400)
    parser.add_argument("--spans", type=int, default=100)
    args = parser.parse_args()
    base = Path(tempfile.mkdtemp(prefix="obsloop-bench-kafka-"))
    tansu = TansuBroker(base / "tansu.log")
    tansu.start()
    kafka = {"bootstrap_servers": [tansu.bootstrap], "session_timeout_ms": 2000, "heartbeat_interval_ms": 500}
    processes: list[ObsloopProcess] = []
    total = args.requests * args.spans
    bodies = [traces_request(f"svc-{n % 16}", n * args.spans, args.spans,
                             attributes={"model.name": "fraud-detection-model"}, duration_ns=42_000_000)
              for n in range(args.requests)]
    print(f"{total} spans in {args.requests} requests of {args.spans}, {os.cpu_count()} CPUs")
    try:
        rates = {}
        for workers in (1, 2):
            run = {**kafka, "topic_prefix": f"run{workers}.", "ingest_group": f"bench-{workers}"}
            group: list[ObsloopProcess] = []
            for n in range(workers):
                workdir = base / f"run{workers}-worker{n}"
                workdir.mkdir()
                group.append(WorkerProcess(workdir, kafka=run, **QUIET).start())
            workdir = base / f"run{workers}-receiver"
            workdir.mkdir()
            receiver = ObsloopProcess(workdir, kafka=run, receiver={"grpc_enabled": False},
                                      clickhouse_http={"enabled": False}, **QUIET).start()
            processes.extend([*group, receiver])
            time.sleep(4)  # the group settles (tansu holds a join for half the session timeout)

            def post(body: bytes, http: str = receiver.http) -> int:
                request = urllib.request.Request(f"{http}/v1/traces", data=body,
                                                 headers={"Content-Type": "application/x-protobuf"})
                with urllib.request.urlopen(request, timeout=30) as response:
                    return response.status

            started = time.perf_counter()
            with ThreadPoolExecutor(8) as pool:
                statuses = list(pool.map(post, bodies))
            acknowledged_s = time.perf_counter() - started
            assert statuses == [200] * len(bodies), "not every request was acknowledged"
            deadline = time.monotonic() + 300
            while (count := sum(worker.scalar("SELECT count() FROM otel_traces") for worker in group)) < total:
                if time.monotonic() > deadline:
                    raise RuntimeError(f"stored {count} of {total}")
                time.sleep(0.05)
            elapsed = time.perf_counter() - started
            rates[workers] = total / elapsed
            print(f"{workers} ingest worker(s): {rates[workers]:,.0f} spans/s end to end ({elapsed:.2f} s; "
                  f"all acknowledged after {acknowledged_s:.2f} s)")
            for process in [*group, receiver]:
                process.stop(30)
        print(f"scaling ratio (2 workers / 1): {rates[2] / rates[1]:.2f}")
    finally:
        for process in reversed(processes):
            process.stop(30)
        tansu.stop()


if __name__ == "__main__":
    main()
