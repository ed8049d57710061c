"""What the receivers acknowledge, ClickHouse stores, as protobuf parsed it; what they refuse
gets a message. Checked on wire-level variations of valid OTLP requests (see
``wire_variations``), through the real sink into chDB.

An example is a batch of variations of one signal's request, inserted as one segment (a
ClickHouse insert costs ~0.1 s whatever its size); the default 12 examples try some 300
variations. ``OBSLOOP_WIRE_EXAMPLES`` sets the number of examples and ``OBSLOOP_WIRE_SEED``
the seed (``bench/ingest/wire_variations.py`` runs many more).
"""

from __future__ import annotations

import os

import pytest
from hypothesis import HealthCheck, given, seed, settings
from hypothesis import strategies as st
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, ArrayValue, KeyValue, KeyValueList
from wire_variations import variations

from obsloop.demo.loadgen import FLEET, ServerlessTraffic
from obsloop.pipelines.clickhouse_sink import ClickHouseSink
from obsloop.pipelines.otlp_decode import REQUEST_TYPES, InvalidRequest, validate
from obsloop.pipelines.otlp_rows import MAPPINGS

EXAMPLES = int(os.environ.get("OBSLOOP_WIRE_EXAMPLES", "12"))
SEED = int(os.environ.get("OBSLOOP_WIRE_SEED", "20261204"))


def _base_requests() -> dict[str, bytes]:
    """Small valid requests, attribute values of every kind among them."""
    traffic = ServerlessTraffic(seed=11, fleet=FLEET[:1])
    traces = traffic.traces(2)
    span = traces.resource_spans[0].scope_spans[0].spans[0]
    span.attributes.extend([
        KeyValue(key="flag", value=AnyValue(bool_value=True)),
        KeyValue(key="blob", value=AnyValue(bytes_value=b"\x00\x01")),
        KeyValue(key="list", value=AnyValue(array_value=ArrayValue(values=[AnyValue(int_value=1)]))),
        KeyValue(key="map", value=AnyValue(kvlist_value=KeyValueList(
            values=[KeyValue(key="k", value=AnyValue(double_value=0.5))]))),
    ])
    return {"traces": traces.SerializeToString(), "logs": traffic.logs(2).SerializeToString(),
            "metrics": traffic.metrics().SerializeToString()}


BASE = _base_requests()


def _expected(signal: str, payload: bytes) -> list[str]:
    """What identifies each stored row, from protobuf's reading of ``payload``."""
    request = REQUEST_TYPES[signal].FromString(payload)
    if signal == "traces":
        return [f"{s.span_id.hex()} {s.name}" for rs in request.resource_spans for ss in rs.scope_spans
                for s in ss.spans]
    if signal == "logs":
        return [f"{r.trace_id.hex()} {r.severity_text}" for rl in request.resource_logs
                for sl in rl.scope_logs for r in sl.log_records]
    names = []
    for rm in request.resource_metrics:
        for sm in rm.scope_metrics:
            for metric in sm.metrics:
                kind = metric.WhichOneof("data")
                if kind is not None:
                    names += [metric.name] * len(getattr(metric, kind).data_points)
    return names


_STORED_SQL = {
    "traces": "SELECT concat(SpanId, ' ', SpanName) FROM {db}.otel_traces",
    "logs": "SELECT concat(TraceId, ' ', SeverityText) FROM {db}.otel_logs",
    "metrics": " UNION ALL ".join(f"SELECT MetricName FROM {{db}}.{m.table}" for m in MAPPINGS["metrics"]),
}


@pytest.fixture
def sink(tmp_path, chdb_client, db: str) -> ClickHouseSink:
    return ClickHouseSink(lambda: chdb_client, database=db, embedded=True, schema_directory=tmp_path)


@seed(SEED)
@settings(max_examples=EXAMPLES, deadline=None, derandomize=False,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(data=st.data())
def test_accepted_is_stored_as_parsed_and_refused_has_a_message(data, sink, chdb_client, db: str) -> None:
    signal = data.draw(st.sampled_from(sorted(BASE)))
    top = REQUEST_TYPES[signal].DESCRIPTOR
    bodies = data.draw(st.lists(st.one_of(st.just(BASE[signal]), variations(BASE[signal], top)),
                                min_size=15, max_size=40))
    accepted = []
    for body in bodies:
        try:
            accepted.append(validate(signal, body))
        except InvalidRequest as exc:
            assert str(exc).startswith(f"invalid OTLP/protobuf {signal} request: ")
    if not accepted:
        return
    for mapping in MAPPINGS[signal]:
        chdb_client.command(f"TRUNCATE TABLE {db}.{mapping.table}")
    sink.insert_payloads(signal, [valid.payload for valid in accepted], f"wire-{data.draw(st.uuids())}")
    stored = chdb_client.query(_STORED_SQL[signal].format(db=db)).result_rows
    expected = [row for valid in accepted for row in _expected(signal, valid.payload)]
    assert sorted(row for (row,) in stored) == sorted(expected)
    assert len(expected) == sum(valid.items for valid in accepted)
