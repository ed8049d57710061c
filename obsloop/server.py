"""``obsloop serve``: the receivers, the ingest pipeline and the admin endpoints, wired.

One asyncio loop serves OTLP/HTTP, OTLP/gRPC and the admin app (``/metrics``,
``/healthz``, ``/readyz``, ``/query``); one thread inserts segments. The embedded engine
lets one process open its data directory, so the server writes ``serve.json`` there: the
``obsloop query`` command finds the running server through it and asks over HTTP instead
of failing on the lock.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, generate_latest

from obsloop import clickhouse, clickhouse_http
from obsloop.admin import admin_app
from obsloop.collectors.otlp_grpc import OtlpGrpcReceiver
from obsloop.collectors.otlp_http import OtlpHttpReceiver
from obsloop.collectors.push_auth import PortGuard
from obsloop.collectors.request_budget import Limits
from obsloop.config import Config
from obsloop.core.files import private_dir, write_private
from obsloop.core.secret import reveal
from obsloop.core.selfmetrics import SelfMetrics
from obsloop.pipelines.clickhouse_sink import ClickHouseSink
from obsloop.pipelines.ingest import IngestPipeline
from obsloop.pipelines.intake import Intake
from obsloop.pipelines.otlp_decode import SIGNALS
from obsloop.pipelines.wal import WriteAheadLog
from obsloop.runtime import SERVE_STATE_FILE, apply_schema, listen, storage_client

if TYPE_CHECKING:
    import grpc
    from clickhouse_connect.driver.client import Client

    from obsloop.detectors.host import DetectorHost
    from obsloop.feedback.stage import FeedbackStage


log = logging.getLogger(__name__)


def otlp_http_app(config: Config, intake: Intake, metrics: SelfMetrics) -> web.Application:
    """The OTLP/HTTP port's application as ``serve`` runs it: OTLP and the AWS pushes, every
    route behind one :class:`PortGuard`."""
    receiver = config.receiver
    guard = PortGuard(reveal(receiver.bearer_token))
    http = OtlpHttpReceiver(intake, metrics, limits=Limits.of(receiver), guard=guard,
                            retry_after_seconds=receiver.retry_after_seconds)
    app = http.app()
    _mount_push_collectors(app, guard, config, intake)
    return app


def _mount_push_collectors(app: web.Application, guard: PortGuard, config: Config, intake: Intake) -> None:
    """Every collector kind's push routes (:mod:`obsloop.collectors.registry`) on the OTLP/HTTP
    port, behind its ``guard``, into the same intake as OTLP."""
    from obsloop.collectors import registry, scheduler
    from obsloop.collectors.forward import intake_submit_async
    from obsloop.collectors.registry import PushContext

    context = PushContext(
        app, guard, config.collectors, Limits.of(config.receiver),
        intake_submit_async(intake),  # Kafka's acknowledgement is awaited, not waited for
        scheduler.build_enricher(config.collectors).enrich)
    for kind in registry.kinds():
        if kind.mount is not None:
            kind.mount(context)


@dataclass
class Endpoints:
    http: str
    grpc: str | None
    admin: str
    clickhouse_http: str | None = None


class ObsloopServer:
    def __init__(self, config: Config) -> None:
        self.config = config
        self.metrics = SelfMetrics()
        private_dir(config.data_dir)
        embedded = clickhouse.is_embedded(config.storage_dsn)
        self.wal = WriteAheadLog(
            config.wal_directory,
            SIGNALS,
            max_bytes=config.wal.segment_max_bytes,
            max_age=config.wal.segment_max_age_seconds,
            fsync=config.wal.fsync,
            min_free_bytes=config.wal.free_space_reserve,
            watch=(Path(clickhouse.embedded_path(config.storage_dsn)),) if embedded else (),
        )
        self.sink = ClickHouseSink(
            lambda: storage_client(config), database=config.storage.database,
            embedded=embedded,
            ensure_schema=lambda: apply_schema(config),
            schema_directory=config.data_dir / "format_schemas", cluster=config.storage.cluster,
        )
        self.intake: Intake
        if config.kafka is None:
            self.intake = IngestPipeline(
                self.wal, self.sink, self.metrics, max_pending_bytes=config.wal.max_pending_bytes
            )
        else:  # scale-out: receivers publish, `obsloop ingest-worker` processes store
            from obsloop.pipelines.kafka_intake import KafkaIntake  # kafka-python is an extra

            self.intake = KafkaIntake(
                config.kafka, self.wal, self.metrics, max_pending_bytes=config.wal.max_pending_bytes
            )
        self._runners: list[web.AppRunner] = []
        self._grpc: grpc.aio.Server | None = None
        self._collectors_stop = threading.Event()
        self._collector_threads: list[threading.Thread] = []
        self.endpoints: Endpoints | None = None
        self.feedback: FeedbackStage | None = None
        """The feedback stage when enabled."""
        self.detectors: DetectorHost | None = None
        """The detector host once started; the feedback stage subscribes to its detections
        with ``self.detectors.subscribe``."""
        self._stopped = asyncio.Event()

    @property
    def client(self) -> Client:
        """The storage client (connects on first use: the server starts while ClickHouse is down)."""
        return storage_client(self.config)

    @property
    def state_file(self) -> Path:
        return self.config.data_dir / SERVE_STATE_FILE

    async def start(self, *, feedback: bool = True) -> Endpoints:
        """Start everything; with ``feedback=False`` the feedback loop waits for an explicit
        :meth:`start_feedback` (the demo first lets the detectors learn from history)."""
        clickhouse_http.refuse_unprotected(self.config)
        try:
            if self.config.kafka is None:  # with Kafka, the ingest workers apply the schema
                apply_schema(self.config)
        except Exception as exc:  # noqa: BLE001 - receive anyway; the inserter retries the schema
            self.intake.storage_healthy = False
            log.warning("ClickHouse unreachable at start; data is kept in the write-ahead log",
                        extra={"error": str(exc).splitlines()[0][:300]})
        self.intake.start()
        receiver = self.config.receiver
        if not receiver.bearer_token and receiver.host not in ("127.0.0.1", "::1", "localhost"):
            log.warning("the OTLP ports listen beyond loopback without receiver.bearer_token: "
                        "anyone who reaches them can write telemetry", extra={"host": receiver.host})
        # The receiver decompresses itself, to bound the inflated size and answer in OTLP terms.
        otlp_app = otlp_http_app(self.config, self.intake, self.metrics)
        http_port = await self._serve(otlp_app, receiver.host, receiver.http_port, auto_decompress=False)
        grpc_address = None
        if receiver.grpc_enabled:
            grpc_receiver = OtlpGrpcReceiver(
                self.intake, self.metrics, max_request_bytes=receiver.max_request_bytes,
                bearer_token=reveal(receiver.bearer_token),
            )
            self._grpc, grpc_port = grpc_receiver.server(f"{receiver.host}:{receiver.grpc_port}")
            await self._grpc.start()
            grpc_address = f"{receiver.host}:{grpc_port}"
        admin = self.config.admin
        admin_port = await self._serve(self._admin_app(), admin.host, admin.port)
        clickhouse_http_url = await self._serve_clickhouse_http()
        self.endpoints = Endpoints(
            http=f"http://{receiver.host}:{http_port}",
            grpc=grpc_address,
            admin=f"http://{admin.host}:{admin_port}",
            clickhouse_http=clickhouse_http_url,
        )
        self._start_pull_collectors()
        self._start_detectors()
        if feedback:
            self.start_feedback()
        write_private(self.state_file, json.dumps({"pid": os.getpid(), **vars(self.endpoints)}))
        log.info("obsloop serving", extra={"otlp_http": self.endpoints.http,
                                           "otlp_grpc": grpc_address, "admin": self.endpoints.admin,
                                           "storage": self.config.storage_dsn})  # holds no credentials
        return self.endpoints

    async def _serve(self, app: web.Application, host: str, port: int, auto_decompress: bool = True) -> int:
        runner, bound = await listen(app, host, port, auto_decompress=auto_decompress)
        self._runners.append(runner)
        return bound

    async def _serve_clickhouse_http(self) -> str | None:
        """The ClickHouse HTTP interface on its own port, and its URL (``None`` when not served)."""
        app = await clickhouse_http.interface_app(self.config)
        if app is None:
            return None
        section = self.config.clickhouse_http
        # Bodies may be lz4 or zstd, which aiohttp cannot inflate: the handler does it.
        port = await self._serve(app, section.host, section.port, auto_decompress=False)
        return f"http://{section.host}:{port}"

    # -- detectors -------------------------------------------------------------------------
    def _start_detectors(self) -> None:
        """Window models, drift and budget forecasts in a thread (``detectors.enabled``)."""
        from obsloop.detectors.cost import load_budgets
        from obsloop.detectors.host import DetectorHost

        settings = self.config.detectors
        if not settings.enabled:
            return
        manifests = self.config.collectors.manifests_dir
        detectors = DetectorHost(
            settings, lambda: self.client, self.config.data_dir, database=self.config.storage.database,
            budgets=load_budgets(manifests) if manifests else None, registry=self.metrics.registry,
        )
        detectors.start()
        self.detectors = detectors

    # -- feedback --------------------------------------------------------------------------
    def start_feedback(self) -> None:
        """Detections → alerts, retraining triggers, GitOps commits (``feedback.enabled``).

        Detections arrive on the detector thread; the stage queues them onto this event loop
        and handles them one at a time, so two detections never edit the GitOps checkout at once.
        """
        if not self.config.feedback.enabled:
            return
        if self.detectors is None:
            log.warning("feedback is enabled but detectors are not: no detection will reach it")
            return
        from obsloop.feedback.stage import FeedbackStage

        detectors = self.detectors
        self.feedback = FeedbackStage.build(
            self.config.feedback, lambda: self.client, self.config.data_dir, self.config.storage.database,
            forecast=lambda detection: detectors.forecast_monthly_usd(detection.function or ""))
        self.feedback.start(detectors.subscribe)

    async def _stop_feedback(self) -> None:
        if self.feedback is not None:
            await self.feedback.stop()

    # -- platform collectors ---------------------------------------------------------------
    def _start_pull_collectors(self) -> None:
        """The pullers of every enabled collector kind, a thread per kind."""
        from obsloop.collectors import registry, scheduler
        from obsloop.collectors.forward import intake_submit

        collectors = self.config.collectors
        checkpoints = collectors.checkpoint_dir or self.config.data_dir / "checkpoints"
        submit = intake_submit(self.intake)
        for kind in registry.names():
            section = registry.section(collectors, kind)
            if section is None or not section.enabled:
                continue
            scheduled = scheduler.build(kind, collectors, submit, checkpoints)
            thread = threading.Thread(
                target=scheduler.run, args=(scheduled,), kwargs={"once": False, "stop": self._collectors_stop},
                name=f"obsloop-collector-{kind}", daemon=True,
            )
            thread.start()
            self._collector_threads.append(thread)

    async def stop(self) -> None:
        """Stop receiving, then drain the write-ahead log until ``wal.drain_timeout_seconds``
        after the call (the rest is inserted at the next start)."""
        deadline = asyncio.get_running_loop().time() + self.config.wal.drain_timeout_seconds
        self._collectors_stop.set()
        if self.detectors is not None:
            await asyncio.to_thread(self.detectors.stop)
        await self._stop_feedback()
        for thread in self._collector_threads:
            await asyncio.to_thread(thread.join, 10)
        if self._grpc is not None:
            await self._grpc.stop(grace=2)
        for runner in reversed(self._runners):
            await runner.cleanup()
        remaining = max(0.0, deadline - asyncio.get_running_loop().time())
        await asyncio.to_thread(self.intake.stop, drain_timeout=remaining)
        self.state_file.unlink(missing_ok=True)
        self._stopped.set()

    # -- admin endpoints -------------------------------------------------------------------
    def _admin_app(self) -> web.Application:
        app = admin_app(self.config, lambda: self.client)
        app.router.add_get("/metrics", self._metrics)
        app.router.add_get("/healthz", self._healthz)
        app.router.add_get("/readyz", self._readyz)
        return app

    async def _metrics(self, request: web.Request) -> web.Response:
        self.intake.refresh_gauges()
        # The server's own registry, plus the process-wide one where collectors, feedback
        # and the Python runtime register theirs.
        body = generate_latest(self.metrics.registry) + generate_latest(REGISTRY)
        return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})

    async def _healthz(self, request: web.Request) -> web.Response:
        return web.json_response({"status": "ok"})

    async def _readyz(self, request: web.Request) -> web.Response:
        """503 whenever ``submit`` refuses requests (the same predicate) or the last insert failed."""
        refused = self.intake.refusal()
        healthy = self.intake.storage_healthy
        body = {"storage": "ok" if healthy else "failing", "pipeline": "ok" if refused is None else refused.reason}
        if refused is not None:
            body["refusing"] = str(refused)
        return web.json_response(body, status=200 if healthy and refused is None else 503)
