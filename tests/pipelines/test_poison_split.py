"""A segment ClickHouse cannot read all of is split: the readable requests stored once, the
unreadable one set aside alone with its reason, and counted; storage failures are retried,
never set aside. Real write-ahead log, sink and chDB, in this process."""

from __future__ import annotations

import errno
import json
import time
import uuid
from datetime import datetime
from pathlib import Path

import pytest
from google.protobuf.internal.encoder import _VarintBytes
from prometheus_client import CollectorRegistry

from obsloop.core.selfmetrics import SelfMetrics
from obsloop.demo.loadgen import FLEET, ServerlessTraffic
from obsloop.pipelines.clickhouse_sink import ClickHouseSink
from obsloop.pipelines.ingest import IngestPipeline
from obsloop.pipelines.storage_errors import Cause, classify
from obsloop.pipelines.wal import WriteAheadLog


def _field(number: int, payload: bytes) -> bytes:
    return _VarintBytes(number << 3 | 2) + _VarintBytes(len(payload)) + payload


def _span_with_twice_set_attribute(name: bytes) -> bytes:
    """A request of one span whose attribute value sets its oneof twice (string, then int 5):
    protobuf keeps the int, ClickHouse refuses the request."""
    value = _field(1, b"first") + _VarintBytes(3 << 3) + _VarintBytes(5)
    span = _field(1, bytes(range(16))) + _field(2, bytes(range(8))) + _field(5, name)
    span += _field(9, _field(1, b"k") + _field(2, value))
    return _field(1, _field(2, _field(2, span)))


UNREADABLE = _field(1, b"\x12\x05ab")
"""A scope_spans field five bytes long inside a resource_spans of four: neither protobuf nor
ClickHouse can read it."""


def _segment_file(directory: Path, sequence: int, payloads: list[bytes]) -> Path:
    """A closed segment written as older versions did: bodies as received, unchecked."""
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / f"{sequence:012d}-{uuid.uuid4().hex}.seg"
    path.write_bytes(b"".join(_VarintBytes(len(p)) + p for p in payloads))
    return path


def _spans(body: bytes) -> int:
    from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

    request = ExportTraceServiceRequest.FromString(body)
    return sum(len(ss.spans) for rs in request.resource_spans for ss in rs.scope_spans)


def _drain(wal_dir: Path, sink: ClickHouseSink, metrics: SelfMetrics, until, timeout: float = 60) -> None:
    wal = WriteAheadLog(wal_dir, ("traces", "logs", "metrics"), max_bytes=1 << 20, max_age=0.1, fsync="never")
    pipeline = IngestPipeline(wal, sink, metrics, max_pending_bytes=1 << 30, rotate_interval=0.05)
    pipeline.start()
    try:
        deadline = time.monotonic() + timeout
        while not until(pipeline) and time.monotonic() < deadline:
            time.sleep(0.05)
    finally:
        pipeline.stop(drain_timeout=2)
    assert until(pipeline), "the pipeline did not get there in time"


def _sample(registry: CollectorRegistry, name: str, **labels: str) -> float | None:
    return registry.get_sample_value(name, labels)


@pytest.fixture
def sink(tmp_path: Path, chdb_client, db: str) -> ClickHouseSink:
    return ClickHouseSink(lambda: chdb_client, database=db, embedded=True, schema_directory=tmp_path / "schemas")


def test_a_segment_with_an_unreadable_request_is_split_and_the_rest_stored_once(
        tmp_path: Path, sink: ClickHouseSink, chdb_client, db: str) -> None:
    traffic = ServerlessTraffic(seed=21, fleet=FLEET[:2])
    good = [traffic.traces(8).SerializeToString() for _ in range(5)]
    salvageable = _span_with_twice_set_attribute(b"salvaged")
    payloads = [good[0], good[1], UNREADABLE, good[2], salvageable, good[3], good[4]]
    wal_dir = tmp_path / "wal"
    segment = _segment_file(wal_dir / "traces", 3, payloads)
    original = segment.read_bytes()
    expected = sum(_spans(body) for body in good) + 1
    count = f"SELECT count() FROM {db}.otel_traces"
    metrics = SelfMetrics()

    _drain(wal_dir, sink, metrics, lambda p: p.wal.pending_segments() == 0 and p.storage_healthy)

    assert chdb_client.command(count) == expected
    salvaged = chdb_client.query(f"SELECT SpanAttributes['k'] FROM {db}.otel_traces WHERE SpanName = 'salvaged'")
    assert salvaged.result_rows == [("5",)]  # the int protobuf kept, not the first string
    quarantine = wal_dir / "quarantine" / "traces"
    (aside,) = quarantine.glob("*.seg")
    assert aside.name == f"{segment.stem}-r000002.seg"
    assert aside.read_bytes() == _VarintBytes(len(UNREADABLE)) + UNREADABLE
    reason = json.loads((quarantine / f"{aside.name}.reason.json").read_text())
    assert reason["signal"] == "traces" and reason["request"] == 2 and reason["batch"] == segment.stem
    assert "Code: " in reason["error"] and classify(Exception(reason["error"])) is Cause.DATA
    assert datetime.fromisoformat(reason["time"])
    registry = metrics.registry
    assert _sample(registry, "obsloop_storage_requests_quarantined_total",
                   signal="traces", reason=reason["reason"]) == 1
    assert _sample(registry, "obsloop_storage_items_quarantined_total", signal="traces", reason=reason["reason"]) == 0
    assert _sample(registry, "obsloop_storage_segments_quarantined_total", signal="traces") == 1
    # written before the pipeline started, like a segment left by a crash: a replay
    assert _sample(registry, "obsloop_storage_items_replayed_total", signal="traces") == expected

    # A crash after the remainder was stored, before the segment was deleted: the replay
    # splits it the same way and stores nothing twice.
    segment.write_bytes(original)
    _drain(wal_dir, sink, SelfMetrics(), lambda p: p.wal.pending_segments() == 0 and p.storage_healthy)
    assert chdb_client.command(count) == expected
    assert [p.name for p in quarantine.glob("*.seg")] == [aside.name]


def test_the_bisection_finds_every_unreadable_request_wherever_it_lies(sink: ClickHouseSink) -> None:
    """First, last, side by side: each found (a right half is taken as refused when its left
    half reads, so the single request at the bottom is checked alone before it is set aside)."""
    from obsloop.pipelines.quarantine import split

    good = [ServerlessTraffic(seed=23, fleet=FLEET[:1]).traces(2).SerializeToString() for _ in range(4)]
    messages = [UNREADABLE, good[0], good[1], UNREADABLE, UNREADABLE, good[2], good[3], UNREADABLE]
    with pytest.raises(Exception) as refused:  # noqa: PT011 - whatever chDB raises
        sink.insert_payloads("traces", messages, "bisect")
    parts = split(sink, "traces", messages, refused.value)
    assert parts is not None
    assert [o.index for o in parts.offenders] == [0, 3, 4, 7]
    assert parts.keep == good and parts.salvaged == 0
    assert split(sink, "traces", good, refused.value) is None  # all readable: not the data


def test_a_file_moved_into_the_retry_folder_is_stored_without_a_restart(
        tmp_path: Path, sink: ClickHouseSink, chdb_client, db: str) -> None:
    """A whole segment an older version set aside, sent back while the pipeline runs."""
    good = [ServerlessTraffic(seed=22, fleet=FLEET[:1]).traces(4).SerializeToString() for _ in range(3)]
    wal_dir = tmp_path / "wal"
    retry = wal_dir / "quarantine" / "traces" / "retry"
    wal = WriteAheadLog(wal_dir, ("traces",), max_bytes=1 << 20, max_age=0.1, fsync="never")
    pipeline = IngestPipeline(wal, sink, SelfMetrics(), max_pending_bytes=1 << 30, rotate_interval=0.05)
    pipeline.start()
    try:
        time.sleep(0.3)
        _segment_file(retry, 0, good)
        deadline = time.monotonic() + 30
        while chdb_client.command(f"SELECT count() FROM {db}.otel_traces") == 0 and time.monotonic() < deadline:
            time.sleep(0.05)
    finally:
        pipeline.stop(drain_timeout=2)
    assert chdb_client.command(f"SELECT count() FROM {db}.otel_traces") == sum(_spans(b) for b in good)
    assert not list(retry.iterdir()) and not list((wal_dir / "traces").glob("*.seg"))


def test_only_errors_about_the_data_lead_to_a_split(tmp_path: Path, sink: ClickHouseSink, chdb_client,
                                                    db: str) -> None:
    """ClickHouse's own errors for unreadable input split; space, connection and schema
    errors are retried (a missing table is not the data's fault)."""
    errors = {}
    for name, payload in {"wrong_wire_type": b"\x08\x01", "unreadable": UNREADABLE,
                          "oneof_twice": _span_with_twice_set_attribute(b"x")}.items():
        with pytest.raises(Exception) as raised:  # noqa: PT011 - whatever chDB raises
            sink.insert_payloads("traces", [payload], f"classify-{name}")
        errors[name] = raised.value
    assert all(classify(error) is Cause.DATA for error in errors.values()), errors
    chdb_client.command(f"DROP TABLE {db}.otel_traces")
    with pytest.raises(Exception) as raised:  # noqa: PT011
        sink.insert_payloads("traces", [b""], "classify-missing-table")
    assert classify(raised.value) is Cause.STORAGE, raised.value
    space = Exception("Code: 243. DB::Exception: Cannot reserve 140.00 MiB, not enough space. (NOT_ENOUGH_SPACE)")
    for error in (space, OSError(errno.ENOSPC, "No space left on device"), ConnectionRefusedError(111, "refused")):
        assert classify(error) is Cause.STORAGE


def test_an_ingest_worker_splits_a_consumed_batch_it_cannot_store_whole(
        kafka_config, chdb_client, db: str, tmp_path: Path) -> None:
    """Kafka mode: a record ClickHouse cannot read (published past the receivers, as older
    versions let through) is set aside; the batch's other records are stored once and the
    partition goes on."""
    import asyncio

    from scale_out import traces_request
    from test_kafka_ingest import publish_all

    from obsloop.config import AdminConfig, Config, StorageConfig
    from obsloop.workers.ingest import IngestWorker

    records = [("traces", "svc", traces_request("svc", n * 100, 5)) for n in range(6)]
    records.insert(3, ("traces", "svc", UNREADABLE))
    publish_all(kafka_config, records)
    config = Config(data_dir=tmp_path / "worker", storage=StorageConfig(database=db), kafka=kafka_config,
                    admin=AdminConfig(port=0))

    def stored() -> int:
        return chdb_client.command(f"SELECT count() FROM {db}.otel_traces")

    async def scenario() -> IngestWorker:
        worker = IngestWorker(config, client=lambda: chdb_client)
        await worker.start()
        try:
            deadline = time.monotonic() + 60
            while stored() < 30:
                assert time.monotonic() < deadline, f"stored {stored()} of 30 spans"
                await asyncio.sleep(0.1)
        finally:
            await worker.stop()
        return worker

    worker = asyncio.run(scenario())
    assert stored() == 30
    assert chdb_client.command(f"SELECT uniqExact(SpanId) FROM {db}.otel_traces") == 30
    (aside,) = (tmp_path / "worker" / "quarantine" / "traces").glob("*.seg")
    assert aside.read_bytes() == _VarintBytes(len(UNREADABLE)) + UNREADABLE
    assert sum(sample.value for family in worker.metrics.registry.collect() for sample in family.samples
               if sample.name == "obsloop_storage_requests_quarantined_total") == 1
