"""Shared test helpers: a sink that keeps what collectors submit, and OTLP flattening."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import AnyValue
from stub_api import StubServer

from obsloop.collectors.enrich import Enricher
from obsloop.collectors.pricing import Pricing
from obsloop.pipelines.otlp_decode import parse_protobuf, validate


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

    def __call__(self, signal: str, payload: bytes, items: int | None = None) -> None:
        if self.fail:
            self.fail -= 1
            raise RuntimeError("pipeline full")
        if items is not None:
            # A trusted payload skips the receiver's validation in the pipeline: it must be
            # what validation would have accepted, count included (the encoder may write a
            # field validation's canonical bytes leave out, e.g. an explicit zero time).
            valid = validate(signal, payload)
            assert (valid.items, valid.rejected) == (items, 0)
            assert parse_protobuf(signal, valid.payload) == parse_protobuf(signal, payload)
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


@pytest.fixture
def store(chdb_client, request):
    """A fresh database with the full schema plus faas_invocations, and a function that
    stores collector payloads through the real ClickHouse sink (Protobuf parsed in SQL)."""
    from obsloop.pipelines.clickhouse_sink import ClickHouseSink
    from obsloop.pipelines.schema import SchemaOptions
    from obsloop.schema import ddl

    database = "t_" + request.node.name.replace("[", "_").replace("]", "").replace("-", "_")[:40]
    chdb_client.command(f"DROP DATABASE IF EXISTS {database}")
    for statement in ddl(SchemaOptions(database=database)):
        chdb_client.command(statement)
    sink = ClickHouseSink(lambda: chdb_client, database=database, embedded=True)
    counter = iter(range(1_000_000))

    def put(payloads: list[tuple[str, bytes]]) -> None:
        by_signal: dict[str, list[bytes]] = {}
        for signal, payload in payloads:
            by_signal.setdefault(signal, []).append(payload)
        for signal, items in by_signal.items():
            sink.insert_payloads(signal, items, f"{database}-{next(counter)}")

    put.database = database  # type: ignore[attr-defined]
    put.query = lambda sql: chdb_client.query(sql.format(db=database)).result_rows  # type: ignore[attr-defined]
    return put


@pytest.fixture
def stub():
    server = StubServer()
    yield server
    server.close()
