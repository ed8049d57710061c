"""Platform pushes reach ``obsloop serve`` on the OTLP/HTTP port and end in the same tables."""

from __future__ import annotations

import base64
import gzip
import json
import urllib.error
import urllib.request


def _post(url: str, body: bytes) -> tuple[int, dict]:
    request = urllib.request.Request(url, data=body, headers={"Content-Type": "application/octet-stream"})
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, json.load(response)
    except urllib.error.HTTPError as exc:
        return exc.code, json.load(exc)


def test_cloudwatch_subscription_push_becomes_a_priced_invocation(obsloop) -> None:
    message = {
        "messageType": "DATA_MESSAGE", "owner": "123456789012", "logGroup": "/aws/lambda/fraud-scorer",
        "logStream": "2026/11/27/[$LATEST]abc", "subscriptionFilters": ["obsloop"],
        "logEvents": [
            {"id": "1", "timestamp": 1764217000000,
             "message": "START RequestId: 6f2d4c1e-1111-2222-3333-444455556666 Version: $LATEST\n"},
            {"id": "2", "timestamp": 1764217000150,
             "message": "REPORT RequestId: 6f2d4c1e-1111-2222-3333-444455556666\tDuration: 102.25 ms\t"
                        "Billed Duration: 103 ms\tMemory Size: 1024 MB\tMax Memory Used: 80 MB\t"
                        "Init Duration: 200.10 ms\t\n"},
        ],
    }
    status, reply = _post(f"{obsloop.http}/aws/cloudwatch-logs?region=us-east-1",
                          gzip.compress(json.dumps(message).encode()))
    assert status == 200, reply
    obsloop.wait_for("SELECT count() FROM faas_invocations_merged", 1)
    row = obsloop.query("SELECT platform, function, invocation_id, duration_ms, billed_duration_ms, "
                        "memory_mb, cost_usd FROM faas_invocations_merged")[0]
    assert row["platform"] == "aws_lambda" and row["function"] == "fraud-scorer"
    assert row["invocation_id"] == "6f2d4c1e-1111-2222-3333-444455556666"
    assert row["billed_duration_ms"] == 103
    assert row["cost_usd"] > 0

    status, reply = _post(f"{obsloop.http}/aws/cloudwatch-logs", b"definitely not gzip or json")
    assert status == 400 and "error" in reply
    metrics = obsloop.get("/metrics")[1]
    assert "obsloop_collector_events_total" in metrics
    assert "obsloop_receiver_items_received_total" in metrics
    assert "obsloop_detector_windows_scored_total" in metrics and "obsloop_detector_series " in metrics


def _firehose(obsloop, request_id: str, message: dict) -> int:
    envelope = {"requestId": request_id, "timestamp": 1764217000000,
                "records": [{"data": base64.b64encode(gzip.compress(json.dumps(message).encode())).decode()}]}
    request = urllib.request.Request(f"{obsloop.http}/aws/firehose", data=json.dumps(envelope).encode(),
                                     headers={"Content-Type": "application/json",
                                              "X-Amz-Firehose-Request-Id": request_id})
    with urllib.request.urlopen(request, timeout=10) as response:
        assert json.load(response)["requestId"] == request_id
        return response.status


def test_a_replayed_firehose_delivery_is_stored_once(obsloop) -> None:
    """Firehose retries a requestId whose acknowledgement it lost: the log records and the
    invocation are stored once, its cost counted once."""
    rid = "7a1e0c2b-1111-2222-3333-444455556666"

    def message(group: str) -> dict:
        return {"messageType": "DATA_MESSAGE", "owner": "123456789012", "logGroup": group,
                "logStream": "2026/11/27/[$LATEST]abc", "subscriptionFilters": ["obsloop"],
                "logEvents": [
                    {"id": "1", "timestamp": 1764217000000, "message": f"START RequestId: {rid} Version: $LATEST\n"},
                    {"id": "2", "timestamp": 1764217000150,
                     "message": f"REPORT RequestId: {rid}\tDuration: 50.00 ms\tBilled Duration: 50 ms\t"
                                "Memory Size: 2048 MB\tMax Memory Used: 80 MB\t\n"}]}

    assert _firehose(obsloop, "delivery-1", message("/aws/lambda/replayed")) == 200
    assert _firehose(obsloop, "delivery-1", message("/aws/lambda/replayed")) == 200
    # a later, distinct delivery: once it is stored, anything appended before it is too
    assert _firehose(obsloop, "delivery-2", message("/aws/lambda/after")) == 200
    obsloop.wait_for("SELECT count() FROM otel_logs WHERE ServiceName = 'after'", 2)
    assert obsloop.scalar("SELECT count() FROM otel_logs WHERE ServiceName = 'replayed'") == 2
    rows = obsloop.query("SELECT function, cost_usd FROM faas_invocations_merged ORDER BY function")
    assert [row["function"] for row in rows] == ["after", "replayed"]
    assert rows[0]["cost_usd"] == rows[1]["cost_usd"] > 0
    assert 'obsloop_collector_duplicate_deliveries_total{collector="aws.firehose"} 1.0' in obsloop.get("/metrics")[1]
