"""The receivers' Kafka intake: keys by service, spills while Kafka is away, republishes."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest
from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import ExportMetricsServiceRequest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from tansu_broker import TansuBroker

from obsloop.core.selfmetrics import SelfMetrics
from obsloop.pipelines.ingest import PipelineFull
from obsloop.pipelines.kafka_config import KafkaConfig
from obsloop.pipelines.kafka_consumer import IngestConsumer
from obsloop.pipelines.kafka_intake import KafkaIntake, service_name
from obsloop.pipelines.wal import WriteAheadLog


@pytest.mark.parametrize(
    ("request_type", "field"),
    [(ExportTraceServiceRequest, "resource_spans"), (ExportLogsServiceRequest, "resource_logs"),
     (ExportMetricsServiceRequest, "resource_metrics")],
)
def test_service_name_comes_from_the_first_resource(request_type, field) -> None:
    request = request_type()
    first = getattr(request, field).add()
    first.resource.attributes.add(key="cloud.region").value.string_value = "eu-west-1"
    first.resource.attributes.add(key="faas.max_memory").value.int_value = 1024
    first.resource.attributes.add(key="service.name").value.string_value = "fraud-scorer"
    first.resource.dropped_attributes_count = 3
    getattr(request, field).add().resource.attributes.add(key="service.name").value.string_value = "other"
    assert service_name(request.SerializeToString()) == "fraud-scorer"

    nameless = request_type()
    getattr(nameless, field).add().resource.attributes.add(key="host.name").value.string_value = "h"
    assert service_name(nameless.SerializeToString()) == "unknown_service"


def _spill_config(broker: TansuBroker, kafka_config: KafkaConfig) -> KafkaConfig:
    return kafka_config.model_copy(update={"bootstrap_servers": [broker.bootstrap], "on_unavailable": "spill",
                                           "bootstrap_timeout_ms": 500})


def test_spilled_requests_are_acknowledged_then_republished_in_order(
    kafka_config: KafkaConfig, tmp_path: Path
) -> None:
    late = TansuBroker(tmp_path / "late-tansu.log")  # not listening yet: Kafka is down
    config = _spill_config(late, kafka_config)
    wal = WriteAheadLog(tmp_path / "wal", ("traces", "logs", "metrics"), max_bytes=1 << 20, max_age=60)
    intake = KafkaIntake(config, wal, SelfMetrics(), max_pending_bytes=1 << 20, probe_interval_s=0.1)
    intake.start()
    try:
        for n in range(5):
            assert intake.submit("logs", f"spilled-{n}".encode(), 1) is None  # durable in the log
        assert wal.pending_bytes() > 0
        assert intake.storage_healthy  # spilling: still able to acknowledge

        late.start()
        deadline = time.monotonic() + 20
        while wal.pending_bytes() or intake.submit("logs", b"direct", 1) is None:
            assert time.monotonic() < deadline, "the spilled requests were not republished"
            time.sleep(0.1)
        seen: list[bytes] = []
        consumer = IngestConsumer(config, "ingest", lambda _s, payloads, _t: seen.extend(payloads), signals=["logs"])
        try:
            deadline = time.monotonic() + 20
            while b"direct" not in seen:
                assert time.monotonic() < deadline, f"consumed only {seen}"
                consumer.poll_once(timeout_ms=200)
        finally:
            consumer.close()
    finally:
        intake.stop()
        late.stop()
    assert seen[:5] == [f"spilled-{n}".encode() for n in range(5)]
    assert not list((tmp_path / "wal" / "logs").glob("*.seg"))


def test_reject_mode_refuses_while_kafka_is_down(kafka_config: KafkaConfig, tmp_path: Path) -> None:
    absent = TansuBroker(tmp_path / "absent.log")
    config = kafka_config.model_copy(update={"bootstrap_servers": [absent.bootstrap], "bootstrap_timeout_ms": 500})
    wal = WriteAheadLog(tmp_path / "wal", ("traces", "logs", "metrics"), max_bytes=1 << 20, max_age=60)
    intake = KafkaIntake(config, wal, SelfMetrics(), max_pending_bytes=1 << 20, probe_interval_s=0.1)
    intake.start()
    try:
        with pytest.raises(PipelineFull):
            intake.submit("traces", b"x", 1)
        assert not intake.storage_healthy
        assert wal.pending_bytes() == 0
        absent.start()
        deadline = time.monotonic() + 20
        while not intake.storage_healthy:  # the probe notices without any request
            assert time.monotonic() < deadline, "the intake did not notice Kafka came up"
            time.sleep(0.1)
    finally:
        intake.stop()
        absent.stop()
