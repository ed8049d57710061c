"""What ``obsloop serve`` and the workers share at run time: the storage connection, the
schema, the listening ports and the one lifecycle (start, run until a signal, stop)."""

from __future__ import annotations

import asyncio
import logging
import signal
from typing import Any, Protocol

from aiohttp import web
from clickhouse_connect.driver.client import Client

from obsloop import clickhouse
from obsloop.config import Config
from obsloop.core.secret import reveal
from obsloop.pipelines.schema import SchemaOptions
from obsloop.schema import apply

log = logging.getLogger(__name__)

SERVE_STATE_FILE = "serve.json"
"""In the data directory: the running process's pid and URLs, so ``obsloop query`` asks it
over HTTP instead of failing on the embedded engine's lock."""


def schema_options(config: Config) -> SchemaOptions:
    return SchemaOptions(
        database=config.storage.database, cluster=config.storage.cluster, ttl_days=config.storage.ttl_days
    )


def storage_client(config: Config) -> Client:
    return clickhouse.connect(
        config.storage_dsn,
        database=config.storage.database,
        username=config.storage.username,
        password=reveal(config.storage.password),
    )


def apply_schema(config: Config) -> int:
    return apply(storage_client(config), schema_options(config))


def bound_port(site: web.TCPSite) -> int:
    """The port a started site listens on (port 0 in the configuration picks a free one)."""
    server = site._server  # aiohttp keeps the asyncio server here; no public accessor
    assert isinstance(server, asyncio.Server) and server.sockets
    return server.sockets[0].getsockname()[1]


async def listen(app: web.Application, host: str, port: int,
                 auto_decompress: bool = True) -> tuple[web.AppRunner, int]:
    """Serve ``app`` on ``host:port``; the runner (to clean up) and the bound port.
    ``auto_decompress=False`` leaves bodies compressed, for handlers that bound the inflated size."""
    runner = web.AppRunner(app, access_log=None, auto_decompress=auto_decompress)
    await runner.setup()
    site = web.TCPSite(runner, host, port, reuse_address=True)
    await site.start()
    return runner, bound_port(site)


class Service(Protocol):
    async def start(self) -> Any: ...

    async def stop(self) -> None: ...


async def run_until_signal(service: Service, *, duration: float | None = None, stopping: str = "") -> None:
    """Start ``service``, run until SIGINT / SIGTERM (or ``duration`` seconds), then stop it
    cleanly (``stopping`` is logged first); the one lifecycle of ``serve`` and the workers."""
    # The handlers go in before start: a SIGTERM while starting (Kubernetes stopping a pod
    # that is still coming up) must stop the service cleanly, not kill the process.
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    await service.start()
    try:
        await asyncio.wait_for(stop.wait(), timeout=duration)
    except TimeoutError:
        pass
    finally:
        if stopping:
            log.info(stopping)
        await service.stop()
