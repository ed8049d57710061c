"""Platform pushes reach ``obsloop serve`` on the OTLP/HTTP port and end in the same tables."""

from __future__ import annotations

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
