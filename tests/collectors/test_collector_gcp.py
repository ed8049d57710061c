"""google-cloud-logging's real client against a local server shaped like entries.list."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from obsloop.collectors.checkpoint import CheckpointStore
from obsloop.collectors.gcp import CloudLoggingPuller, make_client
from obsloop.core import semconv

TRACE = "5759e988bd862e3fe1be46a994272793"
START = datetime(2024, 5, 1, 10, 0, tzinfo=UTC)


def run_entry(i: int, status: int = 200) -> dict:
    return {
        "logName": "projects/demo/logs/run.googleapis.com%2Frequests",
        "resource": {"type": "cloud_run_revision", "labels": {
            "service_name": "fraud-run", "revision_name": "fraud-run-00007-abc",
            "location": "europe-west1", "configuration_name": "fraud-run", "project_id": "demo"}},
        "timestamp": (START + timedelta(seconds=i)).isoformat().replace("+00:00", "Z"),
        "receiveTimestamp": (START + timedelta(seconds=i + 1)).isoformat().replace("+00:00", "Z"),
        "severity": "INFO" if status < 500 else "ERROR",
        "insertId": f"id{i}",
        "httpRequest": {"requestMethod": "POST", "requestUrl": "https://fraud-run/predict",
                        "status": status, "latency": "0.123456s", "responseSize": "42"},
        "trace": f"projects/demo/traces/{TRACE}",
        "spanId": "53995c3f42cd8ad8",
        "traceSampled": True,
    }


FUNCTION_ENTRY = {
    "logName": "projects/demo/logs/cloudfunctions.googleapis.com%2Fcloud-functions",
    "resource": {"type": "cloud_function", "labels": {
        "function_name": "score", "region": "us-central1", "project_id": "demo"}},
    "timestamp": "2024-05-01T10:00:10Z", "severity": "INFO", "insertId": "fn1",
    "textPayload": "Function execution started", "labels": {"execution_id": "exec-1"},
}


def test_pages_checkpoint_retry_and_normalization(stub, tmp_path, sink, enrich):
    pages = {None: ([run_entry(0), run_entry(1)], "p2"),
             "p2": ([run_entry(2, status=503), FUNCTION_ENTRY], None)}
    fail_once = {"p2"}

    def respond(method, path, body):
        assert (method, path.split("?")[0]) == ("POST", "/v2/entries:list")
        token = body.get("pageToken")
        if token in fail_once:
            fail_once.discard(token)
            return 503, {"error": {"code": 503, "message": "unavailable",
                                   "status": "UNAVAILABLE"}}
        entries, next_token = pages[token]
        answer = {"entries": entries}
        if next_token:
            answer["nextPageToken"] = next_token
        return 200, answer

    stub.respond = respond
    checkpoints = CheckpointStore(tmp_path, "gcp.logging")
    clock = lambda: START.timestamp() + 3600  # noqa: E731
    puller = CloudLoggingPuller(make_client("demo", stub.url), checkpoints, sink, enrich,
                                project="demo", initial_start=START, sleep=lambda s: None,
                                clock=clock, page_size=3)
    assert puller.poll_once() == 7  # 4 log records + 3 request reports
    request_body = stub.requests[0][2]
    assert request_body["resourceNames"] == ["projects/demo"]
    assert 'timestamp >= "2024-05-01T10:00:00+00:00"' in request_body["filter"]
    assert request_body["orderBy"] == "timestamp asc"
    rows = sink.logs()
    reports = [r for r in rows if r["event_name"] == semconv.INVOCATION_REPORT_EVENT]
    assert len(reports) == 3
    first = reports[0]
    assert first["attributes"][semconv.FAAS_DURATION_MS] == 123.456
    assert first["attributes"][semconv.HTTP_RESPONSE_STATUS_CODE] == 200
    assert first["trace_id"] == TRACE and first["span_id"] == "53995c3f42cd8ad8"
    assert first["resource"][semconv.CLOUD_PLATFORM] == semconv.PLATFORM_GCP_CLOUD_RUN
    assert first["resource"][semconv.FAAS_VERSION] == "fraud-run-00007-abc"
    assert first["resource"][semconv.CLOUD_REGION] == "europe-west1"
    # 123.456 ms -> 200 ms x (1 vCPU x 0.000024 + 0.5 GiB x 0.0000025) + 0.0000004
    assert abs(first["attributes"][semconv.COST_USD] - 5.45e-6) < 1e-12
    assert reports[2]["attributes"][semconv.FAAS_STATUS] == "error"
    function = next(r for r in rows if r["body"] == "Function execution started")
    assert function["resource"][semconv.CLOUD_PLATFORM] == semconv.PLATFORM_GCP_CLOUD_FUNCTIONS
    assert function["attributes"][semconv.FAAS_INVOCATION_ID] == "exec-1"
    assert checkpoints.get("demo") == {"timestamp": "2024-05-01T10:00:10+00:00", "ids": ["fn1"]}

    # restart: the server returns the boundary entry again plus a new one; only the new one
    pages.clear()
    new_entry = dict(FUNCTION_ENTRY, insertId="fn2", textPayload="second")
    pages[None] = ([FUNCTION_ENTRY, new_entry], None)
    restarted = CloudLoggingPuller(make_client("demo", stub.url),
                                   CheckpointStore(tmp_path, "gcp.logging"), sink, enrich,
                                   project="demo", initial_start=START, clock=clock)
    assert restarted.poll_once() == 1
    assert 'timestamp >= "2024-05-01T10:00:10+00:00"' in stub.requests[-1][2]["filter"]
    assert sorted(CheckpointStore(tmp_path, "gcp.logging").get("demo")["ids"]) == ["fn1", "fn2"]
