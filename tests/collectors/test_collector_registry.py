"""The collector kinds' registry: the shipped kinds, and what is derived from it."""

from __future__ import annotations

import argparse
from collections.abc import Iterator

import pytest
from collector_kinds import registrations_undone

from obsloop.collectors import registry, scheduler
from obsloop.collectors.config import CollectorsConfig, PullConfig
from obsloop.collectors.normalize import Invocation
from obsloop.collectors.pricing import Pricing, Resources
from obsloop.collectors.registry import CollectorKind


@pytest.fixture
def restored() -> Iterator[None]:
    with registrations_undone():
        yield


def test_each_shipped_kind_is_declared_by_its_module_with_its_section_model() -> None:
    assert registry.names() == ("aws", "gcp", "azure", "prometheus")
    for kind in registry.kinds():
        assert CollectorsConfig.model_fields[kind.name].annotation is kind.config
        assert kind.build is not None
    assert registry.kind("aws").mount is not None


def test_collect_offers_exactly_the_registered_kinds(restored) -> None:
    from obsloop.commands import collect

    class Quiet(PullConfig):
        pass

    registry.register(CollectorKind("quiet", Quiet))

    parser = argparse.ArgumentParser()
    collect.register(parser.add_subparsers())
    [action] = [a for a in parser._subparsers._group_actions[0].choices["collect"]._actions
                if a.dest == "platform"]
    assert tuple(action.choices) == ("aws", "gcp", "azure", "prometheus", "quiet")
    # a kind without pullers builds none: ``collect`` says nothing is configured
    assert scheduler.build("quiet", CollectorsConfig.model_validate({"quiet": {}}),
                           lambda *a: None, "/nonexistent") == []


def test_unknown_kinds_and_clashing_registrations_are_refused(restored) -> None:
    with pytest.raises(registry.UnknownCollector, match="unknown collector 'gpc'; expected one of aws, gcp"):
        registry.kind("gpc")
    with pytest.raises(ValueError, match="unknown key 'gpc'"):
        CollectorsConfig.model_validate({"gpc": {"enabled": True}})
    with pytest.raises(ValueError, match="already registered"):
        registry.register(CollectorKind("gcp", PullConfig))
    with pytest.raises(ValueError, match="aws_lambda already priced"):
        registry.register(CollectorKind("lambda2", PullConfig, pricing={"aws_lambda": lambda *args: 0.0}))
    assert "lambda2" not in registry.names()


def test_a_registered_platform_is_priced_through_the_same_table(restored) -> None:
    invocation = Invocation(platform="edge_functions", function="f", invocation_id="i", time_ns=1,
                            source="t", duration_ms=10.0)
    assert Pricing.load().cost(invocation, Resources()) is None
    registry.register(CollectorKind("edge", PullConfig, pricing={
        "edge_functions": lambda table, inv, spec: table.table.get("edge_functions", {}).get("request", 0.5)}))
    assert Pricing.load().cost(invocation, Resources()) == 0.5
    assert Pricing.load(overrides={"edge_functions": {"request": 0.25}}).cost(invocation, Resources()) == 0.25


def test_a_registered_kinds_push_route_is_served_behind_the_ports_guard_into_storage(
        restored, tmp_path, chdb_client, db) -> None:
    """``serve``'s OTLP/HTTP application mounts every kind's routes: a registered push kind's
    route answers behind the bearer token and its records reach chDB through the intake."""
    import asyncio
    import time

    from aiohttp import web
    from aiohttp.test_utils import TestClient, TestServer

    from obsloop.collectors.encode import LogsBuilder
    from obsloop.collectors.forward import deliver
    from obsloop.collectors.registry import PushContext
    from obsloop.config import Config
    from obsloop.core.selfmetrics import SelfMetrics
    from obsloop.pipelines.clickhouse_sink import ClickHouseSink
    from obsloop.pipelines.ingest import IngestPipeline
    from obsloop.pipelines.otlp_decode import SIGNALS
    from obsloop.pipelines.wal import WriteAheadLog
    from obsloop.server import otlp_http_app

    def mount(ctx: PushContext) -> None:
        async def beacon(request: web.Request) -> web.Response:
            builder = LogsBuilder()
            builder.add({"service.name": "beacon"}, time_ns=time.time_ns(), body=await request.text())
            await deliver(ctx.submit, "logs", builder.serialize(), builder.count)
            return web.json_response({"accepted": builder.count})

        ctx.app.router.add_post("/beacon", beacon)

    registry.register(CollectorKind("beacon", PullConfig, mount=mount))
    wal = WriteAheadLog(tmp_path / "wal", SIGNALS, max_bytes=1 << 20, max_age=0.05, fsync="never")
    sink = ClickHouseSink(lambda: chdb_client, database=db, embedded=True, schema_directory=tmp_path)
    intake = IngestPipeline(wal, sink, SelfMetrics(), max_pending_bytes=1 << 30, rotate_interval=0.05)
    config = Config(data_dir=tmp_path, receiver={"bearer_token": "s3cret"})

    async def post() -> list[tuple[int, str]]:
        async with TestClient(TestServer(otlp_http_app(config, intake, SelfMetrics()))) as client:
            refused = await client.post("/beacon", data="no token")
            accepted = await client.post("/beacon", data="ping", headers={"Authorization": "Bearer s3cret"})
            return [(refused.status, await refused.text()), (accepted.status, await accepted.text())]

    intake.start()
    try:
        [(refused, _), (status, body)] = asyncio.run(post())
        assert (refused, status, body) == (401, 200, '{"accepted": 1}')
        deadline = time.monotonic() + 30
        while chdb_client.command(f"SELECT count() FROM {db}.otel_logs WHERE ServiceName = 'beacon'") < 1:
            assert time.monotonic() < deadline, "the beacon's record did not reach chDB"
            time.sleep(0.05)
    finally:
        intake.stop(drain_timeout=5)
    assert chdb_client.command(f"SELECT Body FROM {db}.otel_logs WHERE ServiceName = 'beacon'") == "ping"
