"""The ingest worker: one member of the consumer group that stores the OTLP topics.

Receivers in scale-out mode publish to Kafka; every ``obsloop ingest-worker`` in the group
``kafka.ingest_group`` gets a share of the partitions, inserts each consumed batch with
:meth:`ClickHouseSink.insert_payloads` (ClickHouse parses the OTLP itself, as for local
segments) and commits the offsets after the insert returned, with the batch's deduplication
token (:mod:`obsloop.pipelines.kafka_consumer`). A batch ClickHouse cannot read all of is
split as a write-ahead segment is (:mod:`obsloop.pipelines.quarantine`), the unreadable
requests set aside under ``<data_dir>/quarantine/<signal>/``. Adding workers adds insert throughput up to
one worker per partition. With ``storage.cluster`` set, inserts into the ``Distributed``
tables are synchronous, so a committed batch is stored on its shards, not queued.

The admin endpoints, ``serve.json`` and the lifecycle are every worker's
(:class:`~obsloop.workers.kafka_base.KafkaWorker`); ``/readyz`` means ClickHouse
answered the last insert and the group member exists.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Histogram

from obsloop import clickhouse
from obsloop.config import Config
from obsloop.pipelines.clickhouse_sink import ClickHouseSink
from obsloop.pipelines.kafka_config import SIGNALS, Signal
from obsloop.pipelines.kafka_consumer import IngestConsumer
from obsloop.pipelines.quarantine import Quarantine
from obsloop.pipelines.storage_errors import Cause, classify
from obsloop.workers.kafka_base import KafkaWorker

log = logging.getLogger(__name__)


class WorkerMetrics:
    """The worker's own series; a registry per worker, like :class:`SelfMetrics`."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.batches = Counter(
            "obsloop_ingest_worker_batches", "Consumed batches inserted into ClickHouse and committed.",
            ["signal"], registry=self.registry,
        )
        self.requests = Counter(
            "obsloop_ingest_worker_requests", "OTLP requests (Kafka records) inserted.",
            ["signal"], registry=self.registry,
        )
        self.insert_errors = Counter(
            "obsloop_ingest_worker_insert_errors", "Failed batch inserts (each replayed with its token).",
            ["signal"], registry=self.registry,
        )
        self.items_quarantined = Counter(
            "obsloop_storage_items_quarantined",
            "Items of requests set aside because ClickHouse cannot read them, by ClickHouse's error.",
            ["signal", "reason"], registry=self.registry,
        )
        self.requests_quarantined = Counter(
            "obsloop_storage_requests_quarantined", "Requests set aside because ClickHouse cannot read them.",
            ["signal", "reason"], registry=self.registry,
        )
        self.segments_quarantined = Counter(
            "obsloop_ingest_worker_batches_split",
            "Consumed batches ClickHouse refused as unreadable: split, the unreadable requests set aside.",
            ["signal"], registry=self.registry,
        )
        self.insert_duration = Histogram(
            "obsloop_ingest_worker_insert_duration_seconds", "Time to insert one consumed batch.",
            ["signal"], registry=self.registry, buckets=(0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
        )


class IngestWorker(KafkaWorker):
    command = "ingest-worker"

    def __init__(
        self, config: Config, *, group_id: str | None = None, signals: Iterable[Signal] = SIGNALS,
        client: Callable[[], Any] | None = None,
    ) -> None:
        self.metrics = WorkerMetrics()
        super().__init__(config, self.metrics.registry, client=client)
        self.group_id = group_id or self.kafka.ingest_group
        self.signals = tuple(signals)
        self.consumer: IngestConsumer | None = None
        self.quarantine = Quarantine(config.data_dir / "quarantine", self.metrics)
        self._next_storage_check = 0.0
        # Start anyway while ClickHouse is down: the work thread tries the tables again (with
        # backoff), and the sink creates them before its first insert in any case.
        self.check_storage()
        self.sink = ClickHouseSink(
            self.client, database=config.storage.database, embedded=clickhouse.is_embedded(config.storage_dsn),
            ensure_schema=None if self.storage.ok else self.create_tables,
            schema_directory=config.data_dir / "format_schemas", cluster=config.storage.cluster,
        )

    # -- consuming -----------------------------------------------------------------------
    def insert(self, signal: str, payloads: list[bytes], token: str) -> None:
        started = time.perf_counter()
        try:
            self._insert(signal, payloads, token)
        except Exception as exc:
            self.metrics.insert_errors.labels(signal).inc()
            if self.sink.ping():
                self.storage.succeeded()  # ClickHouse answers: the batch failed, not ClickHouse
            else:  # counts as the check_storage attempt
                self._next_storage_check = time.monotonic() + self.storage.failed(exc)
            raise
        self.storage.succeeded()
        self.metrics.insert_duration.labels(signal).observe(time.perf_counter() - started)
        self.metrics.batches.labels(signal).inc()
        self.metrics.requests.labels(signal).inc(len(payloads))

    def _insert(self, signal: str, payloads: list[bytes], token: str) -> None:
        """Insert the batch, or what ClickHouse can read of it (the rest set aside): a
        request ClickHouse cannot read must not stop the partition."""
        try:
            self.sink.insert_payloads(signal, payloads, token)
        except Exception as exc:
            if classify(exc) is not Cause.DATA:
                raise
            self.quarantine.store_readable(self.sink, signal, token, payloads, token, exc)

    def check_storage(self) -> None:
        """Until ClickHouse has answered, create the tables whenever the backoff allows, so
        ``/readyz`` follows ClickHouse even while no batch arrives to find out."""
        if self.storage.ok or time.monotonic() < self._next_storage_check:
            return
        if not self.apply_schema():
            self._next_storage_check = time.monotonic() + self.storage.delay

    def _work(self) -> None:
        self.consumer = self._member(
            lambda: IngestConsumer(self.kafka, self.group_id, self.insert, signals=self.signals))
        if self.consumer is None:
            return
        try:
            self.consumer.run(self._stop, between_polls=self.check_storage)
        finally:
            self.consumer.close()  # leave the group now: the partitions move without a timeout

    def _joined(self) -> bool:
        return self.consumer is not None

    def _describe(self) -> dict[str, Any]:
        return {"group": self.group_id, "topics": [self.kafka.topic(s) for s in self.signals]}
