"""Real OpenTelemetry SDK exporters (OTLP/HTTP and OTLP/gRPC) → ``obsloop serve`` → ClickHouse,
checked field by field against what the SDK sent."""

from __future__ import annotations

import json
import logging

import pytest
from opentelemetry import trace
from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter as GrpcSpanExporter
from opentelemetry.exporter.otlp.proto.http._log_exporter import OTLPLogExporter
from opentelemetry.exporter.otlp.proto.http.metric_exporter import OTLPMetricExporter
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter as HttpSpanExporter
from opentelemetry.sdk._logs import LoggerProvider, LoggingHandler
from opentelemetry.sdk._logs.export import SimpleLogRecordProcessor
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import PeriodicExportingMetricReader
from opentelemetry.sdk.metrics.view import ExponentialBucketHistogramAggregation, View
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.trace import Link, SpanKind, Status, StatusCode, TraceState

RESOURCE = Resource.create({"service.name": "fraud-scorer", "cloud.platform": "aws_lambda",
                            "faas.max_memory": 4294967296})


def _tracer(exporter) -> tuple[TracerProvider, trace.Tracer]:
    provider = TracerProvider(resource=RESOURCE)
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    return provider, provider.get_tracer("tests.sdk", "1.2.3")


def _send_spans(tracer: trace.Tracer) -> dict[str, trace.Span]:
    with tracer.start_as_current_span("upstream") as upstream:
        pass
    linked = upstream.get_span_context()
    linked_with_state = trace.SpanContext(linked.trace_id, linked.span_id, True, linked.trace_flags,
                                          TraceState([("vendor", "v1")]))
    with tracer.start_as_current_span(
        "fraud-scorer invoke", kind=SpanKind.SERVER,
        links=[Link(linked_with_state, {"link.kind": "batch"})],
        attributes={
            "faas.coldstart": True, "faas.trigger": "http", "http.response.status_code": 200,
            "model.score": 0.25, "zero": 0, "false": False, "empty": "",
            "tags": ["a", "b"], "sizes": [1, 2, 3], "flags": [True, False],
        },
    ) as root:
        root.add_event("cache.miss", {"key": "user:1", "attempt": 2})
        with tracer.start_as_current_span("model.predict") as child:
            child.set_status(Status(StatusCode.ERROR, "inference failed"))
    return {"upstream": upstream, "root": root, "child": child}


@pytest.mark.parametrize("transport", ["http", "grpc"])
def test_sdk_spans_are_stored_field_by_field(obsloop, transport: str) -> None:
    if transport == "http":
        exporter = HttpSpanExporter(endpoint=f"{obsloop.http}/v1/traces")
    else:
        exporter = GrpcSpanExporter(endpoint=obsloop.grpc, insecure=True)
    provider, tracer = _tracer(exporter)
    spans = _send_spans(tracer)
    provider.shutdown()

    obsloop.wait_for("SELECT count() FROM otel_traces", 3)
    root, child = spans["root"], spans["child"]
    row = obsloop.query(
        "SELECT TraceId, SpanId, ParentSpanId, SpanName, SpanKind, ServiceName, ScopeName, ScopeVersion, "
        "Duration, StatusCode, StatusMessage, SpanAttributes, ResourceAttributes, toUnixTimestamp64Nano(Timestamp) AS start, "
        "Events.Name AS event_names, Events.Attributes AS event_attrs, toUnixTimestamp64Nano(Events.Timestamp[1]) AS event_time, "
        "Links.TraceId AS link_trace, Links.SpanId AS link_span, Links.TraceState AS link_state, Links.Attributes AS link_attrs "
        f"FROM otel_traces WHERE SpanId = '{root.get_span_context().span_id:016x}'"
    )[0]
    assert row["TraceId"] == f"{root.get_span_context().trace_id:032x}"
    assert row["ParentSpanId"] == ""
    assert row["SpanName"] == "fraud-scorer invoke"
    assert row["SpanKind"] == "Server"
    assert row["ServiceName"] == "fraud-scorer"
    assert (row["ScopeName"], row["ScopeVersion"]) == ("tests.sdk", "1.2.3")
    assert row["start"] == root.start_time
    assert row["Duration"] == root.end_time - root.start_time
    assert row["StatusCode"] == "Unset"
    assert row["SpanAttributes"] == {
        "faas.coldstart": "true", "faas.trigger": "http", "http.response.status_code": "200",
        "model.score": "0.25", "zero": "0", "false": "false", "empty": "",
        "tags": '["a","b"]', "sizes": "[1,2,3]", "flags": "[true,false]",
    }
    assert row["ResourceAttributes"]["faas.max_memory"] == "4294967296"
    assert row["ResourceAttributes"]["service.name"] == "fraud-scorer"
    assert row["event_names"] == ["cache.miss"]
    assert row["event_attrs"] == [{"key": "user:1", "attempt": "2"}]
    assert row["event_time"] == root.events[0].timestamp
    upstream = spans["upstream"].get_span_context()
    assert row["link_trace"] == [f"{upstream.trace_id:032x}"]
    assert row["link_span"] == [f"{upstream.span_id:016x}"]
    assert row["link_state"] == [""]  # the Python SDK does not export a link's trace state
    assert row["link_attrs"] == [{"link.kind": "batch"}]

    child_row = obsloop.query(
        "SELECT ParentSpanId, SpanKind, StatusCode, StatusMessage FROM otel_traces "
        f"WHERE SpanId = '{child.get_span_context().span_id:016x}'"
    )[0]
    assert child_row == {"ParentSpanId": f"{root.get_span_context().span_id:016x}",
                         "SpanKind": "Internal", "StatusCode": "Error", "StatusMessage": "inference failed"}
    # The trace-id lookup table of the exporter layout is filled by its materialized view,
    # whose part becomes visible after otel_traces' own (an INSERT is not atomic across views).
    obsloop.wait_for("SELECT count() FROM otel_traces_trace_id_ts", 2)


@pytest.mark.filterwarnings("ignore:.*LoggingHandler.*:DeprecationWarning")
def test_sdk_logs_are_stored(obsloop) -> None:
    provider = LoggerProvider(resource=RESOURCE)
    provider.add_log_record_processor(SimpleLogRecordProcessor(OTLPLogExporter(endpoint=f"{obsloop.http}/v1/logs")))
    logger = logging.getLogger("tests.sdk.logs")
    logger.propagate = False
    logger.addHandler(LoggingHandler(logger_provider=provider))
    logger.setLevel(logging.INFO)
    tracer_provider, tracer = _tracer(HttpSpanExporter(endpoint=f"{obsloop.http}/v1/traces"))
    with tracer.start_as_current_span("handler") as span:
        logger.warning("model %s degraded", "churn", extra={"model.version": "1.4.2", "retries": 3})
    provider.shutdown()
    tracer_provider.shutdown()

    obsloop.wait_for("SELECT count() FROM otel_logs", 1)
    row = obsloop.query(
        "SELECT Body, SeverityText, SeverityNumber, ServiceName, TraceId, SpanId, TraceFlags, LogAttributes, ScopeName "
        "FROM otel_logs"
    )[0]
    assert row["Body"] == "model churn degraded"
    assert (row["SeverityText"], row["SeverityNumber"]) == ("WARN", 13)
    assert row["ServiceName"] == "fraud-scorer"
    assert row["TraceId"] == f"{span.get_span_context().trace_id:032x}"
    assert row["SpanId"] == f"{span.get_span_context().span_id:016x}"
    assert row["TraceFlags"] == int(span.get_span_context().trace_flags)
    assert row["LogAttributes"]["model.version"] == "1.4.2"
    assert row["LogAttributes"]["retries"] == "3"
    assert row["ScopeName"] == "tests.sdk.logs"


def test_sdk_metrics_of_every_kind_are_stored(obsloop) -> None:
    reader = PeriodicExportingMetricReader(OTLPMetricExporter(endpoint=f"{obsloop.http}/v1/metrics"),
                                           export_interval_millis=3_600_000)
    provider = MeterProvider(
        resource=RESOURCE, metric_readers=[reader],
        views=[View(instrument_name="payload.size", aggregation=ExponentialBucketHistogramAggregation())],
    )
    meter = provider.get_meter("tests.sdk.metrics", "0.1")
    tracer_provider, tracer = _tracer(HttpSpanExporter(endpoint=f"{obsloop.http}/v1/traces"))
    invocations = meter.create_counter("faas.invocations", unit="{invocation}")
    in_flight = meter.create_up_down_counter("faas.in_flight")
    memory = meter.create_gauge("faas.mem_usage", unit="By")
    duration = meter.create_histogram("faas.invoke_duration", unit="ms")
    sizes = meter.create_histogram("payload.size", unit="By")
    attrs = {"faas.trigger": "http"}
    invocations.add(5, attrs)
    in_flight.add(-2, attrs)
    memory.set(123.5, attrs)
    with tracer.start_as_current_span("handler") as span:
        for value in (3.0, 30.0, 300.0):
            duration.record(value, attrs)
    for value in (1, 10, 100, 1000):
        sizes.record(value, attrs)
    provider.shutdown()
    tracer_provider.shutdown()

    for table in ("otel_metrics_sum", "otel_metrics_gauge", "otel_metrics_histogram", "otel_metrics_exponential_histogram"):
        obsloop.wait_for(f"SELECT count() > 0 FROM {table}", 1)  # each table is its own insert
    sums = {r["MetricName"]: r for r in obsloop.query(
        "SELECT MetricName, Value, IsMonotonic, AggregationTemporality, Attributes, MetricUnit FROM otel_metrics_sum")}
    assert sums["faas.invocations"]["Value"] == 5
    assert sums["faas.invocations"]["IsMonotonic"] is True
    assert sums["faas.invocations"]["AggregationTemporality"] == 2
    assert sums["faas.invocations"]["MetricUnit"] == "{invocation}"
    assert sums["faas.invocations"]["Attributes"] == attrs
    assert sums["faas.in_flight"]["Value"] == -2
    assert sums["faas.in_flight"]["IsMonotonic"] is False
    assert obsloop.scalar("SELECT Value FROM otel_metrics_gauge WHERE MetricName = 'faas.mem_usage'") == 123.5

    histogram = obsloop.query(
        "SELECT Count, Sum, Min, Max, ExplicitBounds, BucketCounts, Exemplars.TraceId AS ex_trace, "
        "Exemplars.SpanId AS ex_span, Exemplars.Value AS ex_value FROM otel_metrics_histogram")[0]
    assert (histogram["Count"], histogram["Sum"], histogram["Min"], histogram["Max"]) == (3, 333.0, 3.0, 300.0)
    bounds = histogram["ExplicitBounds"]
    assert bounds[:4] == [0.0, 5.0, 10.0, 25.0]
    assert sum(histogram["BucketCounts"]) == 3
    assert histogram["BucketCounts"][bounds.index(5.0)] == 1  # 3 ms falls in (0, 5]
    assert f"{span.get_span_context().trace_id:032x}" in histogram["ex_trace"]
    assert f"{span.get_span_context().span_id:016x}" in histogram["ex_span"]
    assert set(histogram["ex_value"]) <= {3.0, 30.0, 300.0} and histogram["ex_value"]

    exp = obsloop.query("SELECT Count, Sum, Scale, ZeroCount, PositiveBucketCounts, Min, Max "
                        "FROM otel_metrics_exponential_histogram")[0]
    assert (exp["Count"], exp["Sum"], exp["Min"], exp["Max"]) == (4, 1111.0, 1.0, 1000.0)
    assert sum(exp["PositiveBucketCounts"]) == 4 and exp["ZeroCount"] == 0
    assert isinstance(exp["Scale"], int)


def test_summary_points_sent_as_raw_otlp_are_stored(obsloop) -> None:
    """The SDK has no summary instrument; send one the way a Prometheus bridge would."""
    import urllib.request

    from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import ExportMetricsServiceRequest

    request = ExportMetricsServiceRequest()
    metric = request.resource_metrics.add().scope_metrics.add().metrics.add(name="gateway_latency", unit="s")
    point = metric.summary.data_points.add(time_unix_nano=1_700_000_000_000_000_000, count=10, sum=4.5)
    point.quantile_values.add(quantile=0.5, value=0.3)
    point.quantile_values.add(quantile=0.99, value=1.2)
    urllib.request.urlopen(urllib.request.Request(
        f"{obsloop.http}/v1/metrics", data=request.SerializeToString(),
        headers={"Content-Type": "application/x-protobuf"}), timeout=10).read()
    obsloop.wait_for("SELECT count() FROM otel_metrics_summary", 1)
    row = obsloop.query("SELECT Count, Sum, ValueAtQuantiles.Quantile AS q, ValueAtQuantiles.Value AS v "
                        "FROM otel_metrics_summary")[0]
    assert row == {"Count": 10, "Sum": 4.5, "q": [0.5, 0.99], "v": [0.3, 1.2]}


def test_json_encoded_request_with_hex_ids(obsloop) -> None:
    import urllib.request

    document = {"resourceSpans": [{"resource": {"attributes": [
        {"key": "service.name", "value": {"stringValue": "json-fn"}}]},
        "scopeSpans": [{"spans": [{
            "traceId": "5b8efff798038103d269b633813fc60c", "spanId": "eee19b7ec3c1b174",
            "parentSpanId": "eee19b7ec3c1b173", "name": "json span", "kind": 3, "traceState": "vendor=v1",
            "links": [{"traceId": "0af7651916cd43dd8448eb211c80319c", "spanId": "b7ad6b7169203331",
                       "traceState": "other=2"}],
            "startTimeUnixNano": "1700000000000000000", "endTimeUnixNano": "1700000000500000000",
            "attributes": [{"key": "n", "value": {"intValue": "42"}},
                           {"key": "kv", "value": {"kvlistValue": {"values": [
                               {"key": "z", "value": {"boolValue": True}},
                               {"key": "a", "value": {"doubleValue": 1.5}}]}}}],
        }]}]}]}
    response = urllib.request.urlopen(urllib.request.Request(
        f"{obsloop.http}/v1/traces", data=json.dumps(document).encode(),
        headers={"Content-Type": "application/json"}), timeout=10)
    assert response.headers["Content-Type"].startswith("application/json")
    assert json.loads(response.read()) == {}
    obsloop.wait_for("SELECT count() FROM otel_traces", 1)
    row = obsloop.query("SELECT TraceId, SpanId, ParentSpanId, SpanKind, Duration, SpanAttributes, TraceState, "
                        "Links.TraceId AS lt, Links.SpanId AS ls, Links.TraceState AS lstate FROM otel_traces")[0]
    assert row == {"TraceId": "5b8efff798038103d269b633813fc60c", "SpanId": "eee19b7ec3c1b174",
                   "ParentSpanId": "eee19b7ec3c1b173", "SpanKind": "Client", "Duration": 500_000_000,
                   "SpanAttributes": {"n": "42", "kv": '{"a":1.5,"z":true}'}, "TraceState": "vendor=v1",
                   "lt": ["0af7651916cd43dd8448eb211c80319c"], "ls": ["b7ad6b7169203331"], "lstate": ["other=2"]}
