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


FIREHOSE_KEY = "a-firehose-access-key"


def _firehose(obsloop, request_id: str, message: dict) -> int:
    envelope = {"requestId": request_id, "timestamp": 1764217000000,
                "records": [{"data": base64.b64encode(gzip.compress(json.dumps(message).encode())).decode()}]}
    request = urllib.request.Request(f"{obsloop.http}/aws/firehose", data=json.dumps(envelope).encode(),
                                     headers={"Content-Type": "application/json",
                                              "X-Amz-Firehose-Request-Id": request_id,
                                              "X-Amz-Firehose-Access-Key": FIREHOSE_KEY})
    with urllib.request.urlopen(request, timeout=10) as response:
        assert json.load(response)["requestId"] == request_id
        return response.status


def test_a_replayed_firehose_delivery_is_stored_once(obsloop_factory) -> None:
    """Firehose retries a requestId whose acknowledgement it lost: the log records and the
    invocation are stored once, its cost counted once."""
    obsloop = obsloop_factory(collectors={"aws": {"firehose_access_key": FIREHOSE_KEY}})
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
    # An INSERT is not atomic across its materialized views: otel_logs' part is visible some
    # milliseconds before the view's part in faas_invocations, so wait for the view too.
    obsloop.wait_for("SELECT groupArray(function) FROM (SELECT function FROM faas_invocations_merged "
                     "ORDER BY function)", ["after", "replayed"])
    rows = obsloop.query("SELECT function, cost_usd FROM faas_invocations_merged ORDER BY function")
    assert [row["function"] for row in rows] == ["after", "replayed"]
    assert rows[0]["cost_usd"] == rows[1]["cost_usd"] > 0
    assert 'obsloop_collector_duplicate_deliveries_total{collector="aws.firehose"} 1.0' in obsloop.get("/metrics")[1]


KNATIVE_EXPOSITION = """\
# TYPE revision_request_count counter
revision_request_count{namespace_name="ml",response_code="200",revision_name="scorer-00001",service_name="scorer"} 12
# TYPE revision_request_latencies histogram
revision_request_latencies_bucket{namespace_name="ml",revision_name="scorer-00001",service_name="scorer",le="5"} 2
revision_request_latencies_bucket{namespace_name="ml",revision_name="scorer-00001",service_name="scorer",le="50"} 9
revision_request_latencies_bucket{namespace_name="ml",revision_name="scorer-00001",service_name="scorer",le="+Inf"} 12
revision_request_latencies_sum{namespace_name="ml",revision_name="scorer-00001",service_name="scorer"} 310.5
revision_request_latencies_count{namespace_name="ml",revision_name="scorer-00001",service_name="scorer"} 12
"""


def test_prometheus_scrape_configured_in_serve_runs_and_stores(obsloop_factory) -> None:
    """The scrape collector enabled in the configuration runs inside ``obsloop serve`` on its
    interval and its metrics land in the OTLP metric tables, histograms as histograms."""
    import http.server
    import threading

    scrapes = []

    class Exposition(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 - http.server's naming
            scrapes.append(self.path)
            body = KNATIVE_EXPOSITION.encode()
            self.send_response(200)
            self.send_header("Content-Type", "text/plain; version=0.0.4")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args) -> None:
            pass

    target = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Exposition)
    threading.Thread(target=target.serve_forever, daemon=True).start()
    try:
        obsloop = obsloop_factory(collectors={"prometheus": {
            "enabled": True, "targets": [f"http://127.0.0.1:{target.server_address[1]}/metrics"],
            "poll_interval_seconds": 0.5}})
        obsloop.wait_for("SELECT count() > 0 FROM otel_metrics_histogram "
                         "WHERE MetricName = 'revision_request_latencies' AND ServiceName = 'scorer'", 1)
        row = obsloop.query("SELECT BucketCounts, ExplicitBounds, ResourceAttributes['faas.version'] AS version "
                            "FROM otel_metrics_histogram WHERE MetricName = 'revision_request_latencies' LIMIT 1")[0]
        assert (row["BucketCounts"], row["ExplicitBounds"], row["version"]) == ([2, 7, 3], [5.0, 50.0], "scorer-00001")
        obsloop.wait_for("SELECT count() > 0 FROM otel_metrics_sum WHERE MetricName = 'revision_request_count'", 1)
        first = len(scrapes)
        obsloop.wait_for(f"SELECT count() >= {first + 1} FROM otel_metrics_sum "
                         "WHERE MetricName = 'revision_request_count'", 1)  # it keeps scraping
        assert 'obsloop_collector_pages_total{collector="prometheus"}' in obsloop.get("/metrics")[1]
    finally:
        target.shutdown()
        target.server_close()


def test_aws_logs_pull_configured_in_serve_stores_priced_invocations_once_across_a_restart(
    obsloop_factory, monkeypatch
) -> None:
    """CloudWatch Logs pulled by the AWS collector inside ``obsloop serve`` (boto3 against a
    moto server): the REPORT line becomes a priced invocation, and after a restart the
    checkpoint keeps the same events from being stored again."""
    import socket
    import time

    import boto3
    from moto.server import ThreadedMotoServer

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    moto = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    moto.start()
    try:
        endpoint = f"http://127.0.0.1:{port}"
        for key in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"):
            monkeypatch.setenv(key, "testing")
        logs = boto3.client("logs", region_name="us-east-1", endpoint_url=endpoint)
        group, stream = "/aws/lambda/pulled", "2026/11/27/[$LATEST]0a1b2c3d"
        logs.create_log_group(logGroupName=group)
        logs.create_log_stream(logGroupName=group, logStreamName=stream)
        now_ms = int(time.time() * 1000) - 60_000
        rid = "9c1d2e3f-1111-2222-3333-444455556666"
        logs.put_log_events(logGroupName=group, logStreamName=stream, logEvents=[
            {"timestamp": now_ms, "message": f"START RequestId: {rid} Version: $LATEST"},
            {"timestamp": now_ms + 1, "message": f"{rid}\thello from the function"},
            {"timestamp": now_ms + 2, "message": f"REPORT RequestId: {rid}\tDuration: 250.00 ms\t"
                                                 "Billed Duration: 250 ms\tMemory Size: 2048 MB\t"
                                                 "Max Memory Used: 90 MB\t"},
        ])
        collectors = {"aws": {"enabled": True, "region": "us-east-1", "account_id": "123456789012",
                              "endpoint_url": endpoint, "log_groups": [group], "read_tags": False,
                              "settle_seconds": 0, "poll_interval_seconds": 0.5}}
        obsloop = obsloop_factory("pull", collectors=collectors)
        obsloop.wait_for("SELECT count() FROM faas_invocations_merged WHERE function = 'pulled'", 1)
        row = obsloop.query("SELECT invocation_id, billed_duration_ms, memory_mb, cost_usd, sources "
                            "FROM faas_invocations_merged WHERE function = 'pulled'")[0]
        # 0.25 s x 2 GB x 0.0000166667 (first tier, x86) + 0.0000002 per request
        assert (row["invocation_id"], row["billed_duration_ms"], row["memory_mb"]) == (rid, 250, 2048)
        assert abs(row["cost_usd"] - 8.53335e-6) < 1e-12 and row["sources"] == ["aws.logs"]
        obsloop.wait_for("SELECT count() FROM otel_logs WHERE ServiceName = 'pulled'", 3)
        assert obsloop.stop() == 0

        restarted = obsloop_factory("pull", collectors=collectors)  # same data directory
        logs.put_log_events(logGroupName=group, logStreamName=stream, logEvents=[
            {"timestamp": now_ms + 3, "message": "a later line"}])
        restarted.wait_for("SELECT count() FROM otel_logs WHERE ServiceName = 'pulled'", 4)
        time.sleep(1.5)  # a few more polls: nothing pulled twice
        assert restarted.scalar("SELECT count() FROM otel_logs WHERE ServiceName = 'pulled'") == 4
    finally:
        moto.stop()
