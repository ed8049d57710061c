"""Ingest benchmark: a separate load process posts OTLP/HTTP protobuf requests to
``obsloop serve`` (pinned to one core) for a fixed time; reports accepted and stored
items/s, p99 request latency, the server's peak RSS, and the protobuf-parse-only ceiling
for the same payloads, measured in the same run.

    .venv/bin/python bench/ingest/run.py --seconds 20 --signal traces

Not a test: its figures go into notes, not assertions.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from obsloop.demo.loadgen import ServerlessTraffic  # noqa: E402
from obsloop.pipelines.otlp_decode import REQUEST_TYPES, validate  # noqa: E402


def payloads(signal: str, items: int, count: int = 16) -> list[tuple[bytes, int]]:
    traffic = ServerlessTraffic(seed=11)
    made = []
    for _ in range(count):
        if signal == "traces":
            message = traffic.traces(items)
        elif signal == "logs":
            message = traffic.logs(items)
        else:
            message = traffic.metrics()
            while sum(len(getattr(m, m.WhichOneof("data")).data_points)
                      for rm in message.resource_metrics for sm in rm.scope_metrics for m in sm.metrics) < items:
                message.MergeFrom(traffic.metrics())
        body = message.SerializeToString()
        made.append((body, validate(signal, body).items))
    return made


def parse_ceiling(signal: str, bodies: list[tuple[bytes, int]], seconds: float = 2.0) -> float:
    parse = REQUEST_TYPES[signal].FromString
    items = 0
    started = time.process_time()
    while time.process_time() - started < seconds:
        for body, n in bodies:
            parse(body)
            items += n
    return items / (time.process_time() - started)


async def load(url: str, bodies: list[tuple[bytes, int]], seconds: float, connections: int) -> dict:
    import aiohttp

    latencies: list[float] = []
    accepted = refused = 0
    deadline = time.monotonic() + seconds

    async def worker(offset: int) -> None:
        nonlocal accepted, refused
        index = offset
        async with aiohttp.ClientSession(headers={"Content-Type": "application/x-protobuf"}) as session:
            while time.monotonic() < deadline:
                body, n = bodies[index % len(bodies)]
                index += 1
                started = time.perf_counter()
                async with session.post(url, data=body) as response:
                    await response.read()
                    latencies.append(time.perf_counter() - started)
                    if response.status == 200:
                        accepted += n
                    else:
                        refused += 1
                        await asyncio.sleep(0.05)

    started = time.monotonic()
    await asyncio.gather(*(worker(i) for i in range(connections)))
    elapsed = time.monotonic() - started
    latencies.sort()
    return {"accepted": accepted, "refused_requests": refused, "elapsed": elapsed,
            "p99_ms": 1000 * latencies[int(0.99 * (len(latencies) - 1))] if latencies else None,
            "requests": len(latencies)}


def _rss_peak_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


ADMIN_TOKEN = "obsloop-bench"
"""The benchmark server's admin token (its /query needs one); the server is on loopback."""


def _query(admin: str, sql: str):
    request = urllib.request.Request(f"{admin}/query?format=json", data=sql.encode(), method="POST",
                                     headers={"Authorization": f"Bearer {ADMIN_TOKEN}"})
    with urllib.request.urlopen(request, timeout=600) as response:
        return json.load(response)["data"][0][0]


def _insert_seconds(admin: str) -> float:
    """Total time the server spent inside segment inserts, from its own /metrics."""
    from prometheus_client.parser import text_string_to_metric_families

    with urllib.request.urlopen(f"{admin}/metrics", timeout=30) as response:
        text = response.read().decode()
    return sum(
        sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
        if sample.name == "obsloop_storage_insert_duration_seconds_sum"
    )


@contextmanager
def running_server(wal: dict, server_cpu: int | None, load_cpu: int | None,
                   **sections: dict) -> Iterator[tuple[subprocess.Popen, dict, Path]]:
    """``obsloop serve`` on a fresh data directory, pinned to ``server_cpu`` (HTTP receiver
    and admin on free ports, no gRPC, the write-ahead log as ``wal`` says, ``sections``
    added to its configuration) and this process pinned to ``load_cpu``; yields the server
    process, its endpoints (``serve.json``) and its data directory, stops it and removes the
    directory after."""
    workdir = Path(tempfile.mkdtemp(prefix="obsloop-bench-"))
    config = {
        "data_dir": str(workdir / "data"),
        "receiver": {"http_port": 0, "grpc_enabled": False, "max_request_bytes": 64 << 20},
        "admin": {"port": 0, "token": ADMIN_TOKEN},
        "clickhouse_http": {"enabled": False},
        "wal": {"max_pending_bytes": 2 << 30, "fsync": "never", **wal},
        "logging": {"level": "WARNING"},
        **sections,
    }
    (workdir / "obsloop.yaml").write_text(yaml.safe_dump(config))
    command = [sys.executable, "-m", "obsloop", "--config", str(workdir / "obsloop.yaml"), "serve"]
    if server_cpu is not None and shutil.which("taskset"):
        command = ["taskset", "-c", str(server_cpu), *command]
    server = subprocess.Popen(command, cwd=workdir)
    try:
        state = workdir / "data" / "serve.json"
        while not state.exists():
            if server.poll() is not None:
                raise SystemExit("obsloop serve exited")
            time.sleep(0.05)
        if load_cpu is not None:
            os.sched_setaffinity(0, {load_cpu})
        yield server, json.loads(state.read_text()), workdir / "data"
    finally:
        server.terminate()
        server.wait(120)
        shutil.rmtree(workdir, ignore_errors=True)


def run(args: argparse.Namespace) -> dict:
    wal = {"segment_max_bytes": args.segment_mb << 20, "segment_max_age_seconds": args.segment_age}
    with running_server(wal, args.server_cpu, args.load_cpu) as (server, endpoints, _):
        table = {"traces": "otel_traces", "logs": "otel_logs", "metrics": None}[args.signal]
        bodies = payloads(args.signal, args.items)
        ceiling = parse_ceiling(args.signal, bodies)
        result = asyncio.run(load(f"{endpoints['http']}/v1/{args.signal}", bodies, args.seconds, args.connections))
        load_end = time.monotonic()
        if table is None:
            count_sql = ("SELECT (SELECT count() FROM otel_metrics_sum) + (SELECT count() FROM otel_metrics_histogram)"
                         " + (SELECT count() FROM otel_metrics_gauge)")
        else:
            count_sql = f"SELECT count() FROM {table}"
        landed = 0
        while time.monotonic() - load_end < 600:
            landed = int(_query(endpoints["admin"], count_sql))
            if landed >= result["accepted"]:
                break
            time.sleep(0.2)
        drained = time.monotonic() - load_end
        insert_seconds = _insert_seconds(endpoints["admin"])
        return {
            "signal": args.signal,
            "items_per_request": bodies[0][1],
            "seconds": round(result["elapsed"], 1),
            "accepted_per_s": round(result["accepted"] / result["elapsed"]),
            "accepted": result["accepted"],
            "landed": landed,
            "stored_per_s": round(landed / (result["elapsed"] + drained)),
            "drain_after_load_s": round(drained, 1),
            "insert_seconds": round(insert_seconds, 1),
            "stored_per_insert_second": round(landed / insert_seconds) if insert_seconds else None,
            "p99_request_ms": round(result["p99_ms"], 1) if result["p99_ms"] else None,
            "refused_requests": result["refused_requests"],
            "server_peak_rss_mb": round(_rss_peak_mb(server.pid)),
            "parse_only_ceiling_per_s": round(ceiling),
        }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--signal", choices=["traces", "logs", "metrics"], default="traces")
    parser.add_argument("--seconds", type=float, default=20)
    parser.add_argument("--items", type=int, default=1000, help="items per request")
    parser.add_argument("--connections", type=int, default=8)
    parser.add_argument("--segment-mb", type=int, default=64)
    parser.add_argument("--segment-age", type=float, default=2.0)
    parser.add_argument("--server-cpu", type=int, default=0, help="core the server is pinned to")
    parser.add_argument("--load-cpu", type=int, default=1, help="core the load process is pinned to")
    args = parser.parse_args()
    print(json.dumps(run(args), indent=2))


if __name__ == "__main__":
    main()
