"""Fault injection under load: acknowledged vs stored vs duplicated spans.

A real ``obsloop serve`` whose data directory is a small tmpfs takes numbered spans from a
few client threads (OTLP/HTTP and OTLP/gRPC on 127.0.0.1) while it is killed with SIGKILL
at random moments and restarted, its disk is filled up and freed again, and a share of the
requests are poison (bodies the Python parser accepts and ClickHouse refuses). At the end it
is stopped with SIGTERM, started once more to replay what is left, and the spans are
counted: every acknowledged id must be stored (lost: 0), and none twice (duplicated: 0).
Acknowledged spans not stored are told apart: set aside in a quarantined segment (lost), or
still in the write-ahead log when the bounded final replay ended (not stored yet).

    .venv/bin/python bench/fault/run.py --seconds 120 --poison-rate 0.01

Needs root for the tmpfs (``--no-tmpfs`` runs on the ordinary disk, without the disk phase).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import random
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "tests"))

from google.protobuf.message import DecodeError  # noqa: E402
from obsloop_process import ObsloopProcess  # noqa: E402
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest  # noqa: E402
from small_disk import fill, free_bytes, mounted_tmpfs  # noqa: E402
from span_load import SpanLoad  # noqa: E402

from obsloop.pipelines.wal import iter_messages  # noqa: E402

SERVICE = "span-load"


def _spans(server: ObsloopProcess) -> tuple[int, set[str]]:
    """Rows and the distinct span ids of the load's spans stored in ClickHouse."""
    sql = f"SELECT SpanId FROM otel_traces WHERE ServiceName = '{SERVICE}'"
    request = urllib.request.Request(f"{server.admin}/query?format=tsv", data=sql.encode(), method="POST",
                                     headers={"Authorization": f"Bearer {server.admin_token}"})
    with urllib.request.urlopen(request, timeout=300) as response:
        ids = response.read().decode().split()[1:]  # TSVWithNames: the header first
    return len(ids), set(ids)


def _wal_files(server: ObsloopProcess) -> list[Path]:
    wal = server.data_dir / "wal"
    return [path for path in wal.rglob("*") if path.suffix in (".seg", ".open") and "quarantine" not in path.parts]


def _quarantined(server: ObsloopProcess) -> list[Path]:
    return list((server.data_dir / "wal" / "quarantine").rglob("*.seg"))


def _span_ids(segments: list[Path]) -> set[str]:
    """The load's span ids in write-ahead segments (those not stored: quarantined or left)."""
    ids = set()
    for segment in segments:
        for message in iter_messages(segment.read_bytes()):
            with contextlib.suppress(DecodeError):  # a poison body
                request = ExportTraceServiceRequest.FromString(message)
                for resource in request.resource_spans:
                    ids.update(span.span_id.hex() for scope in resource.scope_spans for span in scope.spans)
    return ids


class Faults:
    """The schedule: kills at random moments, and one fill-and-free of the disk."""

    def __init__(self, server: ObsloopProcess, args: argparse.Namespace, disk: Path | None) -> None:
        self.server = server
        self.args = args
        self.disk = disk
        self.random = random.Random(args.seed)
        self.kills = 0
        self.fills = 0
        self.restart_seconds: list[float] = []
        self.events: list[str] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="faults", daemon=True)
        self._started = time.monotonic()

    def start(self) -> Faults:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()

    def _at(self) -> str:
        return f"{time.monotonic() - self._started:6.1f}s"

    def _run(self) -> None:
        seconds = self.args.seconds
        fill_at = seconds * 0.4 if self.disk is not None else None
        next_kill = self.random.uniform(*self.args.kill_every)
        while not self._stop.wait(0.1):
            elapsed = time.monotonic() - self._started
            if fill_at is not None and elapsed >= fill_at:
                fill_at = None
                self._fill_and_free()
            elif elapsed >= next_kill and elapsed < seconds - 5:
                self._kill_and_restart()
                next_kill = elapsed + self.random.uniform(*self.args.kill_every)

    def _kill_and_restart(self) -> None:
        self.server.kill()
        self.kills += 1
        self.events.append(f"{self._at()} kill -9")
        started = time.monotonic()
        self.server.start(timeout=120)
        self.restart_seconds.append(time.monotonic() - started)

    def _fill_and_free(self) -> None:
        assert self.disk is not None
        filler = fill(self.disk, leave_bytes=self.args.fill_leave_mb << 20)
        self.fills += 1
        self.events.append(f"{self._at()} disk filled ({free_bytes(self.disk) >> 20} MiB free)")
        self._stop.wait(self.args.full_seconds)
        filler.unlink()
        self.events.append(f"{self._at()} disk freed ({free_bytes(self.disk) >> 20} MiB free)")


def _kill_if_running(server: ObsloopProcess) -> None:
    if server.process is not None and server.process.poll() is None:
        server.kill()


def run(args: argparse.Namespace) -> dict:
    workdir = Path(tempfile.mkdtemp(prefix="obsloop-fault-"))
    with contextlib.ExitStack() as stack:
        disk = stack.enter_context(mounted_tmpfs(workdir / "disk", args.tmpfs_mb << 20)) if args.tmpfs else None
        server = ObsloopProcess(
            workdir, data_dir=str((disk or workdir) / "data"), detectors={"enabled": False},
            wal={"segment_max_bytes": args.segment_mb << 20, "segment_max_age_seconds": 0.5,
                 "min_free_bytes": args.min_free_mb << 20, "fsync": "segment"},
            # the count reads every stored span id back: millions of rows, past the default limits
            query_limits={"max_result_rows": 0, "max_result_bytes": 0},
        )
        stack.callback(_kill_if_running, server)
        server.start(timeout=120)
        load = SpanLoad(lambda: (server.http, server.grpc), threads=args.threads,
                        spans_per_request=args.spans, poison_rate=args.poison_rate, seed=args.seed).start()
        faults = Faults(server, args, disk).start()
        time.sleep(args.seconds)
        faults.stop()
        load.stop()
        started = time.monotonic()
        sigterm_exit = server.stop(timeout=120)
        sigterm_seconds = time.monotonic() - started
        server.start(timeout=120)  # replays what the drain left
        deadline = time.monotonic() + args.settle_seconds
        while _wal_files(server) and time.monotonic() < deadline:
            time.sleep(0.5)
        time.sleep(1)
        rows, stored = _spans(server)
        quarantined, left_in_wal = _quarantined(server), _wal_files(server)
        quarantined_ids, left_ids = _span_ids(quarantined), _span_ids(left_in_wal)
        final_exit = server.stop(timeout=120)
    acknowledged = load.acknowledged
    return {
        "seconds": args.seconds,
        "kills": faults.kills,
        "disk_fills": faults.fills,
        "restart_seconds_max": round(max(faults.restart_seconds, default=0.0), 1),
        "requests": {f"{transport} {status}": n for (transport, status), n in sorted(load.outcomes.items())},
        "acknowledged_spans": len(acknowledged),
        "stored_spans": len(stored),
        "lost_spans": len(acknowledged - stored - left_ids),
        "of_which_quarantined": len((acknowledged - stored) & quarantined_ids),
        "duplicated_spans": rows - len(stored),
        "stored_not_acknowledged": len(stored - acknowledged),
        "quarantined_segments": len(quarantined),
        "left_in_wal_segments": len(left_in_wal),
        "left_in_wal_spans": len((acknowledged - stored) & left_ids),
        "sigterm_exit": sigterm_exit,
        "sigterm_seconds": round(sigterm_seconds, 1),
        "final_exit": final_exit,
        "events": faults.events,
        "log": str(server.log_path),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=120, help="load duration (faults inside it)")
    parser.add_argument("--threads", type=int, default=3, help="client threads (every second one on gRPC)")
    parser.add_argument("--spans", type=int, default=200, help="spans per request")
    parser.add_argument("--poison-rate", type=float, default=0.01, help="share of requests that are poison")
    parser.add_argument("--kill-every", type=float, nargs=2, default=(10.0, 25.0), metavar=("MIN", "MAX"),
                        help="seconds between two kill -9 (uniform)")
    parser.add_argument("--tmpfs", action=argparse.BooleanOptionalAction, default=True,
                        help="data directory on a tmpfs that is filled and freed (needs root)")
    parser.add_argument("--tmpfs-mb", type=int, default=256)
    parser.add_argument("--segment-mb", type=int, default=4, help="wal.segment_max_bytes")
    parser.add_argument("--min-free-mb", type=int, default=24, help="wal.min_free_bytes")
    parser.add_argument("--fill-leave-mb", type=int, default=2,
                        help="free space left when filled (under wal.min_free_bytes: less than an insert needs)")
    parser.add_argument("--full-seconds", type=float, default=15, help="how long the disk stays full")
    parser.add_argument("--settle-seconds", type=float, default=180, help="bound on the final replay")
    parser.add_argument("--seed", type=int, default=12)
    args = parser.parse_args()
    summary = run(args)
    events = summary.pop("events")
    print(json.dumps(summary, indent=2))
    print("events: " + "; ".join(events))
    ok = summary["lost_spans"] == 0 and summary["duplicated_spans"] == 0 and summary["left_in_wal_spans"] == 0
    print(f"acknowledged {summary['acknowledged_spans']}, stored {summary['stored_spans']}, "
          f"lost {summary['lost_spans']}, duplicated {summary['duplicated_spans']}, "
          f"not stored yet {summary['left_in_wal_spans']}: {'OK' if ok else 'FAILED'}")
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
