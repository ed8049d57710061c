"""What every scale-out worker process shares: ``obsloop ingest-worker`` and
``obsloop detector-worker``.

A worker is one consumer-group member doing its work in a thread, plus the admin endpoints
every obsloop process has, so Kubernetes and compose probe them the same way:
``/healthz`` (the process runs), ``/readyz`` (ClickHouse answered last time, and the group
member exists; 503 with the part that is not, while either is down or not yet reached),
``/metrics`` (the worker's own registry and the process's) and ``/query``.
With the embedded engine the worker owns its data directory, so it writes ``serve.json``
there, as ``serve`` does, and ``obsloop query`` with the worker's configuration goes
through it. SIGINT / SIGTERM stop the thread first (its step in flight finishes, the group
is left at once so partitions move without waiting for a session timeout), then the
endpoints.

A worker starts while ClickHouse is down: it creates the tables when ClickHouse first
answers, retrying with backoff, and logs when ClickHouse goes away and comes back, not each
failed attempt (:class:`~obsloop.core.retry.Retry`).
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

from aiohttp import web
from kafka.errors import KafkaError
from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, CollectorRegistry, generate_latest

from obsloop import clickhouse
from obsloop.admin import admin_app
from obsloop.config import Config
from obsloop.core.files import private_dir, write_private
from obsloop.core.retry import Retry
from obsloop.pipelines.kafka_config import KafkaConfig
from obsloop.runtime import SERVE_STATE_FILE, listen, run_until_signal, schema_options, storage_client
from obsloop.schema import apply

log = logging.getLogger(__name__)

Member = TypeVar("Member")


class KafkaWorker:
    """Base of the worker processes; subclasses implement :meth:`_work` and :meth:`_joined`."""

    command = "worker"
    """The ``obsloop`` command this worker is, for messages and the thread's name."""

    def __init__(
        self, config: Config, registry: CollectorRegistry, *, client: Callable[[], Any] | None = None
    ) -> None:
        """``client``: the storage client factory; by default the configuration's (tests
        pass the session's embedded engine, which a process can open only once)."""
        if config.kafka is None:
            raise ValueError(f"{self.command} needs a kafka: section in the configuration")
        self.config = config
        self.kafka: KafkaConfig = config.kafka
        self.registry = registry
        self.storage = Retry(log, "ClickHouse not answering; retrying with backoff", "ClickHouse answering again")
        """Whether ClickHouse answered last time (``/readyz``), and when to try again."""
        self.client: Callable[[], Any] = client or (lambda: storage_client(config))
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._runner: web.AppRunner | None = None
        private_dir(config.data_dir)

    @property
    def state_file(self) -> Path:
        return self.config.data_dir / SERVE_STATE_FILE

    def create_tables(self) -> None:
        """Create the tables if needed (:func:`obsloop.schema.apply`), through this worker's
        client; raises while ClickHouse is down."""
        apply(self.client(), schema_options(self.config))

    def apply_schema(self) -> bool:
        """:meth:`create_tables`; False (unhealthy, logged once per outage) while ClickHouse
        is down."""
        try:
            self.create_tables()
        except Exception as exc:  # noqa: BLE001 - start anyway; the caller retries
            self.storage.failed(exc)
            return False
        self.storage.succeeded()
        return True

    # -- the work ------------------------------------------------------------------------
    def _work(self) -> None:
        """Run in the worker thread until ``self._stop`` is set."""
        raise NotImplementedError

    def _joined(self) -> bool:
        """Whether the group member exists (part of readiness)."""
        raise NotImplementedError

    def _describe(self) -> dict[str, Any]:
        """What the start-up log line says besides the admin address."""
        return {}

    def _member(self, create: Callable[[], Member]) -> Member | None:
        """``create()`` the group member, retrying every second while Kafka is unreachable;
        None when the worker was stopped first."""
        while not self._stop.is_set():
            try:
                return create()
            except KafkaError as exc:
                log.warning("Kafka unreachable; retrying", extra={"error": repr(exc)[:300]})
                self._stop.wait(1.0)
        return None

    # -- admin endpoints -----------------------------------------------------------------
    def _admin_app(self) -> web.Application:
        app = admin_app(self.config, self.client)
        app.router.add_get("/healthz", self._healthz)
        app.router.add_get("/readyz", self._readyz)
        app.router.add_get("/metrics", self._metrics)
        return app

    async def _healthz(self, request: web.Request) -> web.Response:
        return web.json_response({"status": "ok"})

    def _readiness(self) -> dict[str, str]:
        """Each part of readiness: ``ok``, or what it is doing instead."""
        storage = {True: "ok", False: "unreachable", None: "connecting"}[self.storage.ok]
        return {"storage": storage, "kafka": "ok" if self._joined() else "connecting"}

    async def _readyz(self, request: web.Request) -> web.Response:
        body = self._readiness()
        ready = all(state == "ok" for state in body.values())
        return web.json_response(body, status=200 if ready else 503)

    async def _metrics(self, request: web.Request) -> web.Response:
        body = generate_latest(self.registry) + generate_latest(REGISTRY)
        return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})

    # -- lifecycle -----------------------------------------------------------------------
    async def start(self) -> str:
        """Serve the admin endpoints, start the work thread; returns the admin URL."""
        admin = self.config.admin
        self._runner, port = await listen(self._admin_app(), admin.host, admin.port)
        admin_url = f"http://{admin.host}:{port}"
        self._thread = threading.Thread(target=self._work, name=f"obsloop-{self.command}")
        self._thread.start()
        write_private(self.state_file, json.dumps({"pid": os.getpid(), "admin": admin_url}))
        log.info(f"obsloop {self.command} running", extra={**self._describe(), "admin": admin_url})
        return admin_url

    async def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            await asyncio.to_thread(self._thread.join)
        if self._runner is not None:
            await self._runner.cleanup()
        self.state_file.unlink(missing_ok=True)


def run_worker(build: Callable[[], KafkaWorker], duration: float | None) -> int:
    """The body of a worker command: build the worker, run it until a signal (or
    ``duration``), and always shut the embedded engine down before the process exits."""
    try:
        asyncio.run(run_until_signal(build(), duration=duration))
    finally:
        clickhouse.close_all()
    return 0
