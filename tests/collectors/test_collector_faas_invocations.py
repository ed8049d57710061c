"""faas_invocations: several sources of one invocation merge into one row, in ClickHouse,
through the real sink (OTLP bytes parsed by ClickHouse's Protobuf format)."""

from __future__ import annotations

import pytest

from obsloop.collectors.aws_lambda_logs import LambdaLogDecoder, LambdaSource
from obsloop.collectors.aws_subscription import SubscriptionEncoder
from obsloop.collectors.aws_telemetry import encode_events
from obsloop.collectors.request_budget import Budget, Limits

RID = "11111111-2222-3333-4444-555555555555"
TRACE = "Root=1-5759e988-bd862e3fe1be46a994272793;Parent=53995c3f42cd8ad8;Sampled=1"


def _subscription_payload(enrich) -> bytes:
    message = {
        "messageType": "DATA_MESSAGE", "owner": "123456789012", "logGroup": "/aws/lambda/fraud",
        "logStream": "2024/05/01/[$LATEST]abcdef", "subscriptionFilters": ["f"],
        "logEvents": [
            {"id": "1", "timestamp": 1714557600000, "message": f"START RequestId: {RID}"},
            {"id": "2", "timestamp": 1714557600310,
             "message": f"REPORT RequestId: {RID}\tDuration: 99.00 ms\tBilled Duration: 100 ms\t"
                        "Memory Size: 128 MB\tMax Memory Used: 60 MB\tInit Duration: 180.00 ms\t"},
        ],
    }
    encoded = SubscriptionEncoder(enrich, "aws.subscription").encode([message], "us-east-1", Budget(Limits.of()))
    return encoded.payload


def _telemetry_payload(enrich) -> bytes:
    events = [
        {"time": "2024-05-01T10:00:00.050Z", "type": "platform.start",
         "record": {"requestId": RID, "version": "$LATEST",
                    "tracing": {"type": "X-Amzn-Trace-Id", "value": TRACE}}},
        {"time": "2024-05-01T10:00:00.310Z", "type": "platform.report",
         "record": {"requestId": RID, "status": "success",
                    "metrics": {"durationMs": 99.0, "billedDurationMs": 100, "memorySizeMB": 128,
                                "maxMemoryUsedMB": 60, "initDurationMs": 180.0}}},
    ]
    source = LambdaSource("fraud", "123456789012", "us-east-1")
    return encode_events(events, source, LambdaLogDecoder(enrich, "aws.telemetry")) \
        .serialize()


@pytest.mark.slow
def test_sources_merge_into_one_row(store, enrich):
    subscription = _subscription_payload(enrich)
    # the same subscription payload delivered twice (a Firehose retry) plus the telemetry view
    store([("logs", subscription)])
    store([("logs", subscription), ("logs", _telemetry_payload(enrich))])
    assert store.query("SELECT count() FROM {db}.otel_logs "
                       "WHERE EventName = 'obsloop.faas.invocation'") == [(4,)]
    rows = store.query(
        "SELECT platform, function, invocation_id, duration_ms, billed_duration_ms, memory_mb, "
        "memory_used_mb, init_duration_ms, coldstart, status, region, account_id, version, "
        "trace_id, round(cost_usd, 12), arraySort(sources), toUnixTimestamp64Milli(time) "
        "FROM {db}.faas_invocations_merged")
    expected_cost = round(0.1 * 0.125 * 0.0000166667 + 0.0000002, 12)
    assert rows == [(
        "aws_lambda", "fraud", RID, 99.0, 100.0, 128, 60.0, 180.0, 1, "success", "us-east-1",
        "123456789012", "$LATEST", "5759e988bd862e3fe1be46a994272793", expected_cost,
        ["aws.subscription", "aws.telemetry"], 1714557600050,
    )]
    # a GROUP BY over the raw table gives the same single row before any merge happened
    assert store.query("SELECT count() FROM (SELECT invocation_id FROM {db}.faas_invocations "
                       "GROUP BY platform, function, invocation_id)") == [(1,)]
