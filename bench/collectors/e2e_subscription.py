"""CloudWatch Logs subscription payloads end to end, through a running ``obsloop serve``
(pinned to one core): HTTP push → decode → normalize → write-ahead log → ClickHouse.
Reports Lambda log events/s accepted and stored (wall clock), stored records per CPU-second
of the server process (the per-core figure on a shared machine), and that CPU per record by
thread: ``python`` (the event loop: HTTP, decode, normalize, write-ahead log),
``obsloop-insert`` (query analysis, on the inserter thread), ``ThreadPool`` (ClickHouse
parsing, projecting and writing parts, skip indexes, materialized views) and
``MergeMutate`` (background merges started within the run).

    .venv/bin/python bench/collectors/e2e_subscription.py --seconds 15
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import gzip
import json
import os
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "bench" / "collectors"))
sys.path.insert(0, str(ROOT / "bench" / "ingest"))

from bench_subscription import make_payload  # noqa: E402
from run import _insert_seconds, _query, _rss_peak_mb, running_server  # noqa: E402


def unique_body(message_json: bytes, index: int) -> bytes:
    """base64(gzip(DATA_MESSAGE + a CONTROL_MESSAGE numbered ``index``)): every delivery's
    bytes differ, as real ones do (their event ids differ), so the server's replay check
    (a re-posted body is acknowledged, not stored again) does not turn the load into
    duplicates; the control message is acknowledged and ignored."""
    control = b'{"messageType":"CONTROL_MESSAGE","logEvents":[],"n":%d}' % index
    return base64.b64encode(gzip.compress(message_json + control, compresslevel=1))


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process and all its threads (chDB's included): the
    machine is shared, so events per CPU-second of the server is the per-core figure that
    other load cannot distort; the per-second rates are wall-clock and can."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def thread_cpu_seconds(pid: int) -> dict[str, float]:
    """CPU seconds per thread name (``comm``) of a process: the Python threads (the event
    loop answering HTTP, ``obsloop-inserter``) and ClickHouse's own pools (query pipeline,
    background merges), summed per name. A thread that exited is missing."""
    totals: dict[str, float] = {}
    for stat in Path(f"/proc/{pid}/task").glob("*/stat"):
        try:
            text = stat.read_text()
        except OSError:
            continue
        name = text[text.index("(") + 1 : text.rindex(")")]
        fields = text.rsplit(")", 1)[1].split()
        totals[name] = totals.get(name, 0.0) + (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    return totals


async def post(url: str, messages: list[bytes], seconds: float, connections: int) -> tuple[int, float]:
    import aiohttp

    accepted = 0
    deadline = time.monotonic() + seconds

    async def worker(offset: int) -> None:
        nonlocal accepted
        index = offset
        async with aiohttp.ClientSession() as session:
            while time.monotonic() < deadline:
                body = unique_body(messages[index % len(messages)], index)
                async with session.post(url, data=body) as response:
                    document = await response.json()
                    if response.status == 200:
                        accepted += document["accepted"]
                    else:
                        await asyncio.sleep(0.05)
                index += connections

    started = time.monotonic()
    await asyncio.gather(*(worker(i) for i in range(connections)))
    return accepted, time.monotonic() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=15)
    parser.add_argument("--events", type=int, default=2000, help="log events per payload")
    parser.add_argument("--connections", type=int, default=4)
    parser.add_argument("--segment-mb", type=float, default=64,
                        help="wal.segment_max_bytes in MiB (default: the server's)")
    parser.add_argument("--server-cpu", type=int, default=0)
    parser.add_argument("--load-cpu", type=int, default=1)
    args = parser.parse_args()

    wal = {"segment_max_bytes": int(args.segment_mb * (1 << 20))}
    serving = running_server(wal, args.server_cpu, args.load_cpu, detectors={"enabled": False})
    with serving as (server, endpoints, data_dir):
        cpu_before = cpu_seconds(server.pid)
        threads_before = thread_cpu_seconds(server.pid)
        messages = [gzip.decompress(base64.b64decode(make_payload(args.events, seed))) for seed in range(8)]
        accepted, elapsed = asyncio.run(post(f"{endpoints['http']}/aws/cloudwatch-logs?region=us-east-1",
                                             messages, args.seconds, args.connections))
        load_end = time.monotonic()
        stored, previous = 0, -1
        while time.monotonic() - load_end < 300:
            stored = int(_query(endpoints["admin"], "SELECT count() FROM otel_logs"))
            if stored == previous and _query(endpoints["admin"], "SELECT 1") == 1:
                wal = list((data_dir / "wal" / "logs").glob("*"))
                if not wal:
                    break
            previous = stored
            time.sleep(0.5)
        drained = time.monotonic() - load_end
        server_cpu = cpu_seconds(server.pid) - cpu_before
        threads = thread_cpu_seconds(server.pid)
        by_thread = {name: round(1e6 * (seconds - threads_before.get(name, 0.0)) / max(stored, 1), 2)
                     for name, seconds in sorted(threads.items(), key=lambda kv: -kv[1])
                     if seconds - threads_before.get(name, 0.0) >= 0.05}
        print(json.dumps({
            "events_accepted": accepted,
            "accepted_events_per_s": round(accepted / elapsed),
            "log_records_stored": stored,
            "stored_records_per_s": round(stored / (elapsed + drained)),
            "server_cpu_seconds": round(server_cpu, 1),
            "stored_records_per_cpu_second": round(stored / server_cpu),
            "insert_seconds": round(_insert_seconds(endpoints["admin"]), 1),
            "server_peak_rss_mb": round(_rss_peak_mb(server.pid)),
            "server_cpu_us_per_record_by_thread": by_thread,
        }, indent=2))


if __name__ == "__main__":
    main()
