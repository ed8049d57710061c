"""Receivers publish, an ingest worker group consumes: exactly-once hand-over, replays."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

from clickhouse_connect.driver.exceptions import OperationalError
from kafka import TopicPartition
from scale_out import traces_request

from obsloop.config import AdminConfig, Config, StorageConfig
from obsloop.pipelines.kafka_config import SIGNALS, KafkaConfig
from obsloop.pipelines.kafka_consumer import IngestConsumer, dedup_token
from obsloop.pipelines.kafka_publisher import OtlpPublisher
from obsloop.workers.ingest import IngestWorker

Call = tuple[str, list[bytes], str]


class Recorder:
    """The insert callable of the tests: remembers every call; can fail on demand."""

    def __init__(self, fail_first: int = 0) -> None:
        self.calls: list[Call] = []
        self.failures_left = fail_first

    def __call__(self, signal: str, payloads: list[bytes], token: str) -> None:
        self.calls.append((signal, list(payloads), token))
        if self.failures_left:
            self.failures_left -= 1
            raise ConnectionError("ClickHouse is down")

    def payloads(self) -> list[bytes]:
        return [payload for _, payloads, _ in self.calls for payload in payloads]


def partition_of(token: str) -> int:
    return int(token.split(":")[1])


def publish_all(config: KafkaConfig, items: list[tuple[str, str, bytes]]) -> None:
    publisher = OtlpPublisher(config)
    try:
        for future in [publisher.publish(*item) for item in items]:
            future.result(timeout=10)
    finally:
        publisher.close()


def consume_until(
    consumer: IngestConsumer, done: Callable[[], bool], timeout_s: float = 20
) -> None:
    deadline = time.monotonic() + timeout_s
    while not done():
        assert time.monotonic() < deadline, "timed out consuming"
        consumer.poll_once(timeout_ms=200)


def test_every_published_payload_reaches_insert_exactly_once(kafka_config: KafkaConfig) -> None:
    items = [
        (signal, f"svc-{n % 4}", f"{signal}-{n}".encode()) for signal in SIGNALS for n in range(40)
    ]
    publish_all(kafka_config, items)
    recorder = Recorder()
    consumer = IngestConsumer(kafka_config, "ingest", recorder)
    try:
        consume_until(consumer, lambda: len(recorder.payloads()) >= len(items))
        consumer.poll_once(timeout_ms=500)  # nothing further may arrive
        committed = [consumer.consumer.committed(tp) or 0 for tp in consumer.consumer.assignment()]
    finally:
        consumer.close()

    assert sorted(recorder.payloads()) == sorted(payload for _, _, payload in items)
    for signal, payloads, _ in recorder.calls:
        assert all(payload.startswith(signal.encode()) for payload in payloads)
    tokens = [token for _, _, token in recorder.calls]
    assert len(set(tokens)) == len(tokens)
    assert sum(committed) == len(items)  # offsets are dense from 0: all committed


def test_one_service_stays_in_order(kafka_config: KafkaConfig) -> None:
    items = [("logs", "checkout", f"{n:03d}".encode()) for n in range(60)]
    publish_all(kafka_config, items)
    recorder = Recorder()
    consumer = IngestConsumer(kafka_config, "ingest", recorder, signals=["logs"])
    try:
        consume_until(consumer, lambda: len(recorder.payloads()) >= 60)
    finally:
        consumer.close()
    assert recorder.payloads() == [payload for _, _, payload in items]
    assert len({tuple(token.split(":")[:2]) for _, _, token in recorder.calls}) == 1


def test_failed_insert_is_redelivered_with_the_same_token(kafka_config: KafkaConfig) -> None:
    items = [("traces", "svc", f"span-{n}".encode()) for n in range(10)]
    publish_all(kafka_config, items)
    recorder = Recorder(fail_first=2)
    consumer = IngestConsumer(kafka_config, "ingest", recorder, signals=["traces"])
    try:
        consume_until(consumer, lambda: recorder.failures_left == 0 and len(recorder.calls) >= 3)
        publish_all(kafka_config, [("traces", "svc", b"late")])
        consume_until(consumer, lambda: b"late" in recorder.payloads())
    finally:
        consumer.close()

    first, second, third = recorder.calls[:3]
    assert first == second == third
    assert first[1] == [payload for _, _, payload in items]
    partition = partition_of(first[2])
    assert first[2] == dedup_token("otlp_traces", partition, 0, 9, first[1])
    assert recorder.calls[3] == ("traces", [b"late"], dedup_token("otlp_traces", partition, 10, 10, [b"late"]))


CRASHING_WORKER = """
import json, os, sys
from obsloop.pipelines.kafka_config import KafkaConfig
from obsloop.pipelines.kafka_consumer import IngestConsumer

config = KafkaConfig.model_validate_json(sys.argv[1])

def insert(signal, payloads, token):
    print(json.dumps([signal, [p.decode() for p in payloads], token]), flush=True)
    os._exit(17)  # killed after the insert, before the offset commit

consumer = IngestConsumer(config, "ingest", insert, signals=["metrics"])
while True:
    consumer.poll_once(timeout_ms=200)
"""


def test_worker_killed_before_commit_replays_the_exact_batch(
    kafka_config: KafkaConfig, tmp_path: Path
) -> None:
    first_items = [("metrics", "svc", f"m-{n}".encode()) for n in range(8)]
    publish_all(kafka_config, first_items)
    script = tmp_path / "worker.py"
    script.write_text(CRASHING_WORKER)
    crashed = subprocess.run(
        [sys.executable, str(script), kafka_config.model_dump_json()],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert crashed.returncode == 17, crashed.stderr[-2000:]
    signal, payloads, token = json.loads(crashed.stdout.strip().splitlines()[-1])
    assert payloads == [f"m-{n}" for n in range(8)]

    # More data arrives while no worker runs: a naive replay would now read a longer batch.
    publish_all(kafka_config, [("metrics", "svc", f"m-{n}".encode()) for n in range(8, 20)])
    recorder = Recorder()
    consumer = IngestConsumer(kafka_config, "ingest", recorder, signals=["metrics"])
    try:
        consume_until(consumer, lambda: len(recorder.payloads()) >= 20, timeout_s=30)
    finally:
        consumer.close()

    assert recorder.calls[0] == (signal, [p.encode() for p in payloads], token)
    assert recorder.payloads() == [f"m-{n}".encode() for n in range(20)]


def test_offsets_are_committed_only_after_insert(kafka_config: KafkaConfig) -> None:
    publish_all(kafka_config, [("logs", "svc", b"x")])
    recorder = Recorder(fail_first=1)
    consumer = IngestConsumer(kafka_config, "ingest", recorder, signals=["logs"])
    try:
        consume_until(consumer, lambda: len(recorder.calls) >= 1)
        tp = TopicPartition("otlp_logs", partition_of(recorder.calls[0][2]))
        before = consumer.consumer.committed(tp)
        consume_until(consumer, lambda: len(recorder.calls) >= 2)
        after = consumer.consumer.committed(tp)
    finally:
        consumer.close()
    assert before is None
    assert after == 1


class Outage:
    """A worker's storage client factory while ClickHouse is down, until :meth:`end`."""

    def __init__(self, client: Any) -> None:
        self.client = client
        self.down = True

    def __call__(self) -> Any:
        if self.down:
            raise OperationalError("Error HTTPConnectionPool(host='127.0.0.1', port=9): Connection refused")
        return self.client

    def end(self) -> None:
        self.down = False


def readyz(admin: str) -> tuple[int, dict[str, str]]:
    try:
        with urllib.request.urlopen(f"{admin}/readyz", timeout=10) as response:
            return response.status, json.load(response)
    except urllib.error.HTTPError as exc:
        return exc.code, json.load(exc)


def test_ingest_worker_stores_what_it_consumed_once_clickhouse_answers(
    kafka_config: KafkaConfig, chdb_client: Any, db: str, tmp_path: Path
) -> None:
    """The real worker (admin endpoints, consumer, sink) started while ClickHouse is down:
    not ready, nothing stored; once ClickHouse answers, everything consumed meanwhile is
    stored, once, and the worker is ready."""
    publish_all(kafka_config, [("traces", f"svc-{n % 3}", traces_request(f"svc-{n % 3}", n * 100, 5))
                               for n in range(12)])
    outage = Outage(chdb_client)
    config = Config(data_dir=tmp_path / "worker", storage=StorageConfig(database=db), kafka=kafka_config,
                    admin=AdminConfig(port=0))

    def stored() -> int:
        return chdb_client.query(f"SELECT count() FROM {db}.otel_traces").result_rows[0][0]

    async def scenario() -> None:
        worker = IngestWorker(config, client=outage)
        admin = await worker.start()
        try:
            deadline = time.monotonic() + 30
            while worker.metrics.registry.get_sample_value(
                    "obsloop_ingest_worker_insert_errors_total", {"signal": "traces"}) is None:
                assert time.monotonic() < deadline, "no batch consumed"
                await asyncio.sleep(0.1)
            await asyncio.sleep(4)
            assert await asyncio.to_thread(readyz, admin) == (503, {"storage": "unreachable", "kafka": "ok"})
            assert stored() == 0

            outage.end()
            deadline = time.monotonic() + 30
            while stored() < 60:
                assert time.monotonic() < deadline, f"stored {stored()} of 60 spans"
                await asyncio.sleep(0.1)
            assert await asyncio.to_thread(readyz, admin) == (200, {"storage": "ok", "kafka": "ok"})
        finally:
            await worker.stop()

    asyncio.run(scenario())
    assert stored() == 60
    assert chdb_client.query(f"SELECT uniqExact(SpanId) FROM {db}.otel_traces").result_rows[0][0] == 60


def test_ingest_worker_becomes_ready_when_clickhouse_answers_though_no_batch_arrives(
    kafka_config: KafkaConfig, chdb_client: Any, db: str, tmp_path: Path
) -> None:
    """Readiness follows ClickHouse, not the last insert: with nothing to consume, the
    worker still retries (creating the tables) until ClickHouse answers."""
    outage = Outage(chdb_client)
    config = Config(data_dir=tmp_path / "worker", storage=StorageConfig(database=db), kafka=kafka_config,
                    admin=AdminConfig(port=0))

    async def scenario() -> None:
        worker = IngestWorker(config, client=outage)
        admin = await worker.start()
        try:
            deadline = time.monotonic() + 30
            while await asyncio.to_thread(readyz, admin) != (503, {"storage": "unreachable", "kafka": "ok"}):
                assert time.monotonic() < deadline, "not joined, or ClickHouse not tried"
                await asyncio.sleep(0.1)
            outage.end()
            deadline = time.monotonic() + 30
            while await asyncio.to_thread(readyz, admin) != (200, {"storage": "ok", "kafka": "ok"}):
                assert time.monotonic() < deadline, "not ready after ClickHouse came back"
                await asyncio.sleep(0.1)
        finally:
            await worker.stop()

    asyncio.run(scenario())
