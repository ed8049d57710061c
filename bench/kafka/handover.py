"""Detector state handover between ``obsloop detector-worker`` members, timed.

    .venv/bin/python bench/kafka/handover.py [--functions 500] [--minutes 60]

One process, a tansu broker and the embedded ClickHouse: ``--functions`` functions with
``--minutes`` minutes of spans each. Worker A joins alone and scores everything; then
worker B joins (A checkpoints the partitions it gives up, B restores them), then A leaves
(B restores the rest). It prints the checkpoint bytes and, for each handover, the time from
the membership change until the receiving worker had restored every partition it gained,
plus the pure save and load time of one partition's state. The group's own rebalance time
(tansu holds a JoinGroup for half the session timeout, 2 s here) is part of the handover.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import threading
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

from obsloop import clickhouse
from obsloop.config import Config, StorageConfig
from obsloop.detectors.config import DetectorsConfig, DriftConfig
from obsloop.pipelines.kafka_config import KafkaConfig
from obsloop.pipelines.kafka_publisher import OtlpPublisher
from obsloop.pipelines.schema import SchemaOptions
from obsloop.schema import ddl
from obsloop.workers.detector import DetectorWorker, PartitionHost

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "tests" / "pipelines"))
from tansu_broker import TansuBroker  # noqa: E402  (the test suite's broker)


def load_spans(client, functions: int, minutes: int) -> None:
    """20 server spans per function and minute from 2026-03-02 12:00 UTC, plus one minute
    more so every window of the range closes."""
    client.command(f"""
INSERT INTO otel_traces (Timestamp, TraceId, SpanId, SpanName, SpanKind, ServiceName,
    ResourceAttributes, SpanAttributes, Duration, StatusCode)
SELECT toDateTime64('2026-03-02 12:00:05', 9, 'UTC') + toIntervalMinute(intDiv(number, {functions * 20})),
    hex(cityHash64(number)), toString(number), 'invoke', 'Server', concat('fn-', toString(number % {functions})),
    map('faas.name', concat('fn-', toString(number % {functions})), 'cloud.platform', 'aws_lambda'),
    map('model.name', 'm', 'model.version', '1'),
    toUInt64((30 + cityHash64(number, 1) % 40) * 1e6), 'Unset'
FROM numbers({(minutes + 1) * functions * 20})""")


class Member:
    def __init__(self, name: str, kafka: KafkaConfig, client, root: Path) -> None:
        config = Config(data_dir=root / name, storage=StorageConfig(),
                        kafka=kafka.model_copy(update={"detector_checkpoint_dir": root / "checkpoints"}),
                        detectors=DetectorsConfig(poll_seconds=0.1, max_catchup_windows=100_000,
                                                  drift=DriftConfig(enabled=False)))
        self.worker = DetectorWorker(config, client=lambda: client)
        self.worker.join()
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self.worker.run_until, args=(self.stop,))
        self.thread.start()

    def leave(self) -> None:
        self.stop.set()
        self.thread.join()
        self.worker.close()


def wait(condition, timeout: float = 300) -> float:
    started = time.monotonic()
    while not condition():
        if time.monotonic() - started > timeout:
            raise TimeoutError("condition not reached")
        time.sleep(0.01)
    return time.monotonic() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--functions", type=int, default=500)
    parser.add_argument("--minutes", type=int, default=60)
    args = parser.parse_args()
    if args.functions < 1 or args.minutes < 2:
        parser.error("--functions must be at least 1 and --minutes at least 2")
    root = Path(tempfile.mkdtemp(prefix="obsloop-handover-"))
    tansu = TansuBroker(root / "tansu.log")
    tansu.start()
    client = clickhouse.connect(f"chdb://{root / 'clickhouse'}")
    try:
        kafka = KafkaConfig(bootstrap_servers=[tansu.bootstrap], session_timeout_ms=2_000,
                            heartbeat_interval_ms=500, request_timeout_ms=1_500, publish_timeout_ms=2_000)
        OtlpPublisher(kafka).close()  # creates the topics
        for statement in ddl(SchemaOptions()):
            client.command(statement)
        load_spans(client, args.functions, args.minutes)

        a = Member("a", kafka, client, root)
        started = time.monotonic()
        end = datetime(2026, 3, 2, 12, 0, tzinfo=UTC) + timedelta(minutes=args.minutes - 1)  # watermark
        wait(lambda: a.worker.owned() and all(
            host.closed_until == end for host in a.worker.hosts.states.values()))
        series = sum(host.series_count() for host in a.worker.hosts.states.values())
        partitions = len(a.worker.owned())
        print(f"{args.functions} functions x {args.minutes} windows: {series} series in {partitions} "
              f"partitions, scored by one worker in {time.monotonic() - started:.1f} s")

        b = Member("b", kafka, client, root)
        joined = wait(lambda: a.worker.owned() and b.worker.owned()
                      and len(a.worker.owned() | b.worker.owned()) == partitions)
        print(f"B joins: A saves, B restores {len(b.worker.owned())} partitions; {joined:.2f} s until both own")
        gained = partitions - len(b.worker.owned())
        started = time.monotonic()
        a.leave()
        left = time.monotonic() - started
        taken = wait(lambda: len(b.worker.owned()) == partitions)
        print(f"A leaves ({left:.2f} s to checkpoint and leave): B restores {gained} more partitions; "
              f"{taken:.2f} s until B owns every partition")
        sizes = sorted(p.stat().st_size for p in (root / "checkpoints").glob("traces-*.json"))
        print(f"checkpoints: {sum(sizes) / 1e6:.1f} MB in {len(sizes)} files "
              f"({sum(sizes) / max(series, 1):.0f} bytes a series)")

        owned, host = next(iter(b.worker.hosts.states.items()))
        t = time.perf_counter()
        host.checkpoint()
        saved = time.perf_counter() - t
        t = time.perf_counter()
        restored = PartitionHost(owned, partitions, host.config, lambda: client, root / "probe",
                                 database="default", budgets={}, metrics=b.worker.metrics.detector)
        loaded = time.perf_counter() - t
        assert restored.restored and restored.series_count() == host.series_count()
        print(f"one partition ({host.series_count()} series): save {saved * 1000:.0f} ms, "
              f"load {loaded * 1000:.0f} ms")
        b.leave()
    finally:
        clickhouse.close_all()
        tansu.stop()


if __name__ == "__main__":
    main()
