"""Shared test helpers: a sink that keeps what collectors submit, and OTLP flattening."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import AnyValue

from obsloop.collectors.enrich import Enricher
from obsloop.collectors.pricing import Pricing


def any_value(value: AnyValue):
    kind = value.WhichOneof("value")
    return getattr(value, kind) if kind else None


def log_rows(payload: bytes) -> list[dict]:
    """One dict per log record, resource and record attributes resolved."""
    request = ExportLogsServiceRequest.FromString(payload)
    rows = []
    for resource_logs in request.resource_logs:
        resource = {kv.key: any_value(kv.value) for kv in resource_logs.resource.attributes}
        for scope_logs in resource_logs.scope_logs:
            for record in scope_logs.log_records:
                rows.append({
                    "time_ns": record.time_unix_nano,
                    "body": any_value(record.body),
                    "event_name": record.event_name,
                    "severity": record.severity_text,
                    "trace_id": record.trace_id.hex(),
                    "span_id": record.span_id.hex(),
                    "attributes": {kv.key: any_value(kv.value) for kv in record.attributes},
                    "resource": resource,
                })
    return rows


class Sink:
    """The ``submit`` callable; ``fail`` makes the next N calls raise like a full pipeline."""

    def __init__(self) -> None:
        self.payloads: list[tuple[str, bytes]] = []
        self.fail = 0

    def __call__(self, signal: str, payload: bytes) -> None:
        if self.fail:
            self.fail -= 1
            raise RuntimeError("pipeline full")
        self.payloads.append((signal, payload))

    def logs(self) -> list[dict]:
        return [row for signal, p in self.payloads if signal == "logs" for row in log_rows(p)]


@pytest.fixture
def sink() -> Sink:
    return Sink()


@pytest.fixture
def enrich() -> Callable:
    return Enricher(Pricing.load()).enrich


@pytest.fixture
def rows() -> Callable[[bytes], list[dict]]:
    return log_rows


@pytest.fixture
def post() -> Callable:
    """POST to one aiohttp handler mounted on a throwaway app; returns (status, json)."""

    def call(handler, body: bytes, headers: dict | None = None, path: str = "/"):
        async def run():
            app = web.Application()
            app.router.add_post("/", handler)
            async with TestClient(TestServer(app, host="127.0.0.1")) as client:
                response = await client.post(path, data=body, headers=headers or {})
                return response.status, await response.json()

        return asyncio.run(run())

    return call
