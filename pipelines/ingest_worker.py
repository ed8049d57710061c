"""The ingest worker: one member of the consumer group that stores the OTLP topics.

Receivers in scale-out mode publish to Kafka; every ``obsloop ingest-worker`` in the group
``kafka.ingest_group`` gets a share of the partitions, inserts each consumed batch with
:meth:`ClickHouseSink.insert_payloads` (ClickHouse parses the OTLP itself, as for local
segments) and commits the offsets after the insert returned, with the batch's deduplication
token (:mod:`obsloop.pipelines.kafka_consumer`). Adding workers adds insert throughput up to
one worker per partition.

The worker also serves the admin endpoints: ``/healthz``, ``/readyz`` (ClickHouse answered
the last insert, and the group member exists), ``/metrics`` and ``/query``. With the
embedded engine the worker owns its data directory, so it writes ``serve.json`` there, as
``serve`` does, and ``obsloop query`` with the worker's configuration goes through it.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import signal
import threading
import time
from collections.abc import Iterable

from aiohttp import web
from kafka.errors import KafkaError
from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, CollectorRegistry, Counter, Histogram, generate_latest

from obsloop import clickhouse
from obsloop.config import Config
from obsloop.pipelines.clickhouse_sink import ClickHouseSink
from obsloop.pipelines.kafka_config import SIGNALS, Signal
from obsloop.pipelines.kafka_consumer import IngestConsumer
from obsloop.server import SERVE_STATE_FILE, apply_schema, bound_port, query_response, storage_client

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
        self.insert_duration = Histogram(
            "obsloop_ingest_worker_insert_duration_seconds", "Time to insert one consumed batch.",
            ["signal"], registry=self.registry, buckets=(0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
        )


class IngestWorker:
    def __init__(self, config: Config, *, group_id: str | None = None, signals: Iterable[Signal] = SIGNALS) -> None:
        if config.kafka is None:
            raise ValueError("ingest-worker needs a kafka: section in the configuration")
        self.config = config
        self.kafka = config.kafka
        self.group_id = group_id or config.kafka.ingest_group
        self.signals = tuple(signals)
        self.metrics = WorkerMetrics()
        self.storage_healthy = True
        self.consumer: IngestConsumer | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._runner: web.AppRunner | None = None
        config.data_dir.mkdir(parents=True, exist_ok=True)
        ensure_schema = None
        try:
            apply_schema(config)
        except Exception as exc:  # noqa: BLE001 - start anyway; the first insert applies it
            self.storage_healthy = False
            ensure_schema = self._apply_schema
            log.warning("ClickHouse unreachable at start", extra={"error": str(exc).splitlines()[0][:300]})
        self.sink = ClickHouseSink(
            lambda: storage_client(config), database=config.storage.database,
            embedded=clickhouse.is_embedded(config.storage_dsn), ensure_schema=ensure_schema,
            schema_directory=config.data_dir / "format_schemas",
        )

    def _apply_schema(self) -> None:
        apply_schema(self.config)

    @property
    def state_file(self):
        return self.config.data_dir / SERVE_STATE_FILE

    # -- consuming -----------------------------------------------------------------------
    def insert(self, signal: str, payloads: list[bytes], token: str) -> None:
        started = time.perf_counter()
        try:
            self.sink.insert_payloads(signal, payloads, token)
        except Exception:
            self.metrics.insert_errors.labels(signal).inc()
            self.storage_healthy = self.sink.ping()
            raise
        self.storage_healthy = True
        self.metrics.insert_duration.labels(signal).observe(time.perf_counter() - started)
        self.metrics.batches.labels(signal).inc()
        self.metrics.requests.labels(signal).inc(len(payloads))

    def _consume(self) -> None:
        while self.consumer is None and not self._stop.is_set():
            try:
                self.consumer = IngestConsumer(self.kafka, self.group_id, self.insert, signals=self.signals)
            except KafkaError as exc:
                log.warning("Kafka unreachable; retrying", extra={"error": repr(exc)[:300]})
                self._stop.wait(1.0)
        if self.consumer is None:
            return
        try:
            self.consumer.run(self._stop)
        finally:
            self.consumer.close()  # leave the group now: the partitions move without a timeout

    # -- admin endpoints -----------------------------------------------------------------
    def _admin_app(self) -> web.Application:
        app = web.Application()
        app.router.add_get("/healthz", self._healthz)
        app.router.add_get("/readyz", self._readyz)
        app.router.add_get("/metrics", self._metrics)
        app.router.add_post("/query", lambda request: query_response(request, lambda: storage_client(self.config)))
        return app

    async def _healthz(self, request: web.Request) -> web.Response:
        return web.json_response({"status": "ok"})

    async def _readyz(self, request: web.Request) -> web.Response:
        joined = self.consumer is not None
        body = {"storage": "ok" if self.storage_healthy else "unreachable",
                "kafka": "ok" if joined else "connecting"}
        return web.json_response(body, status=200 if self.storage_healthy and joined else 503)

    async def _metrics(self, request: web.Request) -> web.Response:
        body = generate_latest(self.metrics.registry) + generate_latest(REGISTRY)
        return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})

    # -- lifecycle -----------------------------------------------------------------------
    async def start(self) -> str:
        self._runner = web.AppRunner(self._admin_app(), access_log=None)
        await self._runner.setup()
        admin = self.config.admin
        site = web.TCPSite(self._runner, admin.host, admin.port, reuse_address=True)
        await site.start()
        admin_url = f"http://{admin.host}:{bound_port(site)}"
        self._thread = threading.Thread(target=self._consume, name="obsloop-ingest-worker")
        self._thread.start()
        self.state_file.write_text(json.dumps({"pid": os.getpid(), "admin": admin_url}))
        log.info("obsloop ingest worker consuming", extra={
            "group": self.group_id, "topics": [self.kafka.topic(s) for s in self.signals], "admin": admin_url})
        return admin_url

    async def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            await asyncio.to_thread(self._thread.join)
        if self._runner is not None:
            await self._runner.cleanup()
        self.state_file.unlink(missing_ok=True)

    async def run(self, duration: float | None = None) -> None:
        """Consume until SIGINT / SIGTERM (or ``duration`` seconds); the batch being
        inserted finishes and is committed before the worker leaves the group."""
        await self.start()
        stopped = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stopped.set)
        try:
            await asyncio.wait_for(stopped.wait(), timeout=duration)
        except TimeoutError:
            pass
        finally:
            await self.stop()
