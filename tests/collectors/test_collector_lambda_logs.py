"""Lambda text and JSON log lines, subscription payloads, Firehose and the Telemetry API."""

from __future__ import annotations

import asyncio
import base64
import gzip
import json

from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from obsloop.collectors.aws_subscription import firehose_handler, mount_firehose, subscription_handler
from obsloop.collectors.aws_telemetry import telemetry_handler
from obsloop.collectors.push_auth import PortGuard
from obsloop.core import semconv

RID = "8f5e1c9a-7d1b-4c7e-9a51-0123456789ab"
REPORT = (
    f"REPORT RequestId: {RID}\tDuration: 102.25 ms\tBilled Duration: 103 ms\t"
    "Memory Size: 1024 MB\tMax Memory Used: 71 MB\tInit Duration: 210.52 ms\t\n"
    "XRAY TraceId: 1-5759e988-bd862e3fe1be46a994272793\tSegmentId: 6c4b0a8f1e2d3c4b\t"
    "Sampled: true\t\n"
)
JSON_REPORT = json.dumps({
    "time": "2024-05-01T10:00:00.250Z", "type": "platform.report",
    "record": {"requestId": "json-req-1", "status": "error", "errorType": "Runtime.ExitError",
               "metrics": {"durationMs": 40.5, "billedDurationMs": 41, "memorySizeMB": 512,
                           "maxMemoryUsedMB": 90},
               "tracing": {"type": "X-Amzn-Trace-Id",
                           "value": "Root=1-5759e988-bd862e3fe1be46a994272793;"
                                    "Parent=53995c3f42cd8ad8;Sampled=1"}},
})


def data_message(events: list[str], group="/aws/lambda/fraud-fn") -> dict:
    return {
        "messageType": "DATA_MESSAGE", "owner": "123456789012", "logGroup": group,
        "logStream": "2024/05/01/[7]0123456789abcdef", "subscriptionFilters": ["f"],
        "logEvents": [{"id": str(i), "timestamp": 1714557600000 + i, "message": m}
                      for i, m in enumerate(events)],
    }


def gz64(message: dict) -> bytes:
    return base64.b64encode(gzip.compress(json.dumps(message).encode()))


def test_text_lines_become_records_and_report_an_invocation(sink, enrich, post):
    lines = [f"START RequestId: {RID} Version: 7",
             f"2024-05-01T10:00:00.001Z\t{RID}\tINFO\tscore=0.9",
             f"END RequestId: {RID}", REPORT,
             "REPORT RequestId: broken\tDuration: lots ms\t"]
    status, _ = post(subscription_handler(sink, enrich), gz64(data_message(lines)),
                     path="/?region=eu-west-1")
    assert status == 200
    rows = sink.logs()
    assert len(rows) == 5
    assert [r["attributes"].get(semconv.FAAS_INVOCATION_ID) for r in rows[:3]] == [RID] * 3
    report = next(r for r in rows if r["event_name"] == semconv.INVOCATION_REPORT_EVENT)
    attrs = report["attributes"]
    assert attrs[semconv.FAAS_DURATION_MS] == 102.25
    assert attrs[semconv.FAAS_BILLED_DURATION_MS] == 103.0
    assert attrs[semconv.FAAS_MAX_MEMORY] == 1024 * 1024 * 1024
    assert attrs[semconv.FAAS_MEMORY_USED_MB] == 71.0
    assert attrs[semconv.FAAS_INIT_DURATION_MS] == 210.52
    assert attrs[semconv.FAAS_COLDSTART] is True
    assert attrs[semconv.FAAS_STATUS] == "success"
    assert attrs[semconv.COST_USD] > 0
    assert report["trace_id"] == "5759e988bd862e3fe1be46a994272793"
    assert report["span_id"] == "6c4b0a8f1e2d3c4b"
    resource = report["resource"]
    assert (resource[semconv.FAAS_NAME], resource[semconv.FAAS_VERSION],
            resource[semconv.CLOUD_REGION], resource[semconv.CLOUD_ACCOUNT_ID]) == (
        "fraud-fn", "7", "eu-west-1", "123456789012")
    raw = [r for r in rows if r["event_name"] == semconv.RAW_RECORD_EVENT]
    assert len(raw) == 1 and raw[0]["body"].startswith("REPORT RequestId: broken")


def test_json_log_format(sink, enrich, post):
    lines = [JSON_REPORT,
             json.dumps({"timestamp": "2024-05-01T10:00:00Z", "level": "ERROR",
                         "message": "model failed", "requestId": "json-req-1"}),
             '{"type": "platform.report", "record": {}}',
             "{not json at all"]
    post(subscription_handler(sink, enrich), gz64(data_message(lines)))
    rows = sink.logs()
    report, function_line, broken, plain = rows
    assert report["event_name"] == semconv.INVOCATION_REPORT_EVENT
    assert report["attributes"][semconv.FAAS_STATUS] == "error"
    assert report["attributes"][semconv.FAAS_ERROR_TYPE] == "Runtime.ExitError"
    assert report["attributes"][semconv.FAAS_COLDSTART] is False
    assert report["span_id"] == "53995c3f42cd8ad8"
    assert (function_line["body"], function_line["severity"]) == ("model failed", "ERROR")
    assert broken["event_name"] == semconv.RAW_RECORD_EVENT
    assert plain["body"] == "{not json at all" and plain["event_name"] == ""


def test_control_message_is_acknowledged_and_not_stored(sink, enrich, post):
    control = {"messageType": "CONTROL_MESSAGE", "owner": "CloudwatchLogs",
               "logGroup": "", "logStream": "", "subscriptionFilters": [],
               "logEvents": [{"id": "", "timestamp": 1, "message": "CWL CONTROL MESSAGE"}]}
    status, body = post(subscription_handler(sink, enrich), gzip.compress(
        json.dumps(control).encode()))
    assert (status, body, sink.payloads) == (200, {"accepted": 0}, [])


def test_lambda_wrapper_and_garbage(sink, enrich, post):
    wrapped = json.dumps({"awslogs": {"data": gz64(data_message([REPORT])).decode()}})
    assert post(subscription_handler(sink, enrich), wrapped.encode())[0] == 200
    assert len(sink.logs()) == 1
    assert post(subscription_handler(sink, enrich), b"\x00\x01garbage")[0] == 400


def test_a_refused_subscription_payload_is_answered_503_and_its_retry_stored_once(sink, enrich, post):
    handler = subscription_handler(sink, enrich)
    body = gz64(data_message([REPORT]))
    sink.fail = 1
    status, answer = post(handler, body)
    assert status == 503 and "busy" in answer["error"] and sink.logs() == []
    assert post(handler, body) == (200, {"accepted": 1})
    assert post(handler, body)[1] == {"accepted": 0, "duplicate": True}
    assert len(sink.logs()) == 1


def test_firehose_envelope_response_and_retry(sink, enrich, post):
    envelope = {"requestId": "ed4acda5-034f-9f42-bba1-f29aea6d7d8f", "timestamp": 1578090901599,
                "records": [{"data": gz64(data_message([REPORT])).decode()},
                            {"data": gz64(data_message(["hello"], "/aws/lambda/b")).decode()}]}
    headers = {"X-Amz-Firehose-Request-Id": envelope["requestId"],
               "X-Amz-Firehose-Access-Key": "secret",
               "X-Amz-Firehose-Source-Arn":
                   "arn:aws:firehose:ap-south-1:123456789012:deliverystream/logs"}
    handler = firehose_handler(sink, enrich)
    guard = PortGuard(bearer_token="bearer-not-for-firehose")

    def guarded(body: bytes, headers: dict) -> tuple[int, dict]:
        async def run():
            app = web.Application(middlewares=[guard.middleware])
            mount_firehose(app, guard, "/", "secret", handler)
            async with TestClient(TestServer(app, host="127.0.0.1")) as client:
                response = await client.post("/", data=body, headers=headers)
                return response.status, await response.json()

        return asyncio.run(run())

    sink.fail = 1
    status, body = guarded(json.dumps(envelope).encode(), headers)
    assert status == 503 and body["requestId"] == envelope["requestId"] and "errorMessage" in body
    status, body = guarded(json.dumps(envelope).encode(), headers)
    assert status == 200 and body["requestId"] == envelope["requestId"]
    assert isinstance(body["timestamp"], int) and "errorMessage" not in body
    rows = sink.logs()
    assert {r["resource"][semconv.FAAS_NAME] for r in rows} == {"fraud-fn", "b"}
    assert {r["resource"][semconv.CLOUD_REGION] for r in rows} == {"ap-south-1"}
    for bad_key in ("wrong", None):  # the access key authenticates Firehose, the bearer token does not
        headers = {k: v for k, v in headers.items() if k != "X-Amz-Firehose-Access-Key"}
        headers.update({"X-Amz-Firehose-Access-Key": bad_key} if bad_key else {})
        status, body = guarded(json.dumps(envelope).encode(),
                               dict(headers, Authorization="Bearer bearer-not-for-firehose"))
        assert (status, body["requestId"], body["errorMessage"]) == (
            401, envelope["requestId"], "missing or invalid Firehose access key")
    assert len(sink.payloads) == 1


def test_telemetry_api_events(sink, enrich, post):
    trace = "Root=1-5759e988-bd862e3fe1be46a994272793;Parent=53995c3f42cd8ad8;Sampled=1"
    events = [
        {"time": "2024-05-01T10:00:00.000Z", "type": "platform.initStart",
         "record": {"initializationType": "on-demand", "phase": "init",
                    "functionName": "fraud-fn", "functionVersion": "$LATEST"}},
        {"time": "2024-05-01T10:00:00.200Z", "type": "platform.start",
         "record": {"requestId": RID, "version": "$LATEST",
                    "tracing": {"type": "X-Amzn-Trace-Id", "value": trace}}},
        {"time": "2024-05-01T10:00:00.210Z", "type": "function",
         "record": f"2024-05-01T10:00:00.210Z\t{RID}\tINFO\tpredicting"},
        {"time": "2024-05-01T10:00:00.211Z", "type": "extension", "record": "ext ready"},
        {"time": "2024-05-01T10:00:00.300Z", "type": "platform.runtimeDone",
         "record": {"requestId": RID, "status": "success",
                    "metrics": {"durationMs": 99.0, "producedBytes": 10}}},
        {"time": "2024-05-01T10:00:00.310Z", "type": "platform.report",
         "record": {"requestId": RID, "status": "success",
                    "metrics": {"durationMs": 99.0, "billedDurationMs": 100, "memorySizeMB": 128,
                                "maxMemoryUsedMB": 60, "initDurationMs": 180.0},
                    "tracing": {"type": "X-Amzn-Trace-Id", "value": trace}}},
        {"time": "2024-05-01T10:00:01.000Z", "type": "platform.logsDropped",
         "record": {"reason": "Consumer seems to have fallen behind",
                    "droppedRecords": 3, "droppedBytes": 500}},
        "not an event",
    ]
    status, body = post(telemetry_handler(sink, enrich), json.dumps(events).encode(),
                        path="/?region=us-east-1&account=123456789012")
    assert status == 200 and body == {"accepted": 8}
    rows = sink.logs()
    invocations = [r for r in rows if r["event_name"] == semconv.INVOCATION_REPORT_EVENT]
    assert len(invocations) == 2  # start (version, trace) + report (metrics): merged by key
    assert {r["attributes"][semconv.FAAS_INVOCATION_ID] for r in invocations} == {RID}
    assert {r["trace_id"] for r in invocations} == {"5759e988bd862e3fe1be46a994272793"}
    report = invocations[1]["attributes"]
    assert report[semconv.FAAS_COLDSTART] is True and report[semconv.FAAS_INIT_DURATION_MS] == 180
    names = [r["event_name"] for r in rows]
    assert "aws.lambda.platform.runtimeDone" in names and "aws.lambda.platform.logsDropped" in names
    function = next(r for r in rows if r["body"].endswith("predicting"))
    assert function["attributes"][semconv.FAAS_INVOCATION_ID] == RID
    assert function["time_ns"] == 1714557600210000000
    assert names.count(semconv.RAW_RECORD_EVENT) == 1
    assert post(telemetry_handler(sink, enrich), b"[]")[0] == 400  # no function name


def test_report_fast_path_reads_what_the_field_parser_reads():
    """The one-regex REPORT parse must agree with the field-by-field one on every shape it
    accepts, and leave the others (failed invocations, odd fields) to it."""
    from obsloop.collectors.aws_lambda_logs import (
        _REPORT,
        LambdaSource,
        _report_invocation_fields,
        report_invocation,
    )

    source = LambdaSource.from_log_stream("/aws/lambda/f", "2024/01/01/[7]abc", "1", "us-east-1")
    base = ("REPORT RequestId: 6f2d4c1e-1111-2222-3333-444455556666\tDuration: 102.25 ms\t"
            "Billed Duration: 103 ms\tMemory Size: 1024 MB\tMax Memory Used: 371 MB\t")
    xray = "\nXRAY TraceId: 1-5759e988-bd862e3fe1be46a994272793\tSegmentId: 6c4b0a8f1e2d3c4b\tSampled: true\t"
    fast = [base, base + "\n", base + "Init Duration: 200.10 ms\t" + xray, base + xray.replace("Sampled: true\t", "")]
    slow = [base + "Status: error\tError Type: Runtime.ExitError\n", base.replace("\tDuration", "\tDurationX"),
            base + "\nXRAY TraceId: 1-5759e988-bd862e3fe1be46a994272793\tSegmentId: zzzzzzzzzzzzzzzz\t"]
    for line in fast + slow:
        assert (_REPORT.fullmatch(line) is not None) == (line in fast), line
        try:
            expected = _report_invocation_fields(line, 7, source, "c")
        except ValueError:
            expected = None
        if expected is not None:
            assert report_invocation(line, 7, source, "c") == expected, line
    failed = report_invocation(slow[0], 7, source, "c")
    assert (failed.status, failed.error_type) == ("error", "Runtime.ExitError")
    assert report_invocation(slow[2], 7, source, "c").span_id is None  # not hex: no span id, no crash
    assert report_invocation(fast[2], 7, source, "c").span_id == bytes.fromhex("6c4b0a8f1e2d3c4b")


def test_a_retried_delivery_is_acknowledged_but_not_stored_twice(sink, enrich, post):
    """Firehose re-sends a requestId whose acknowledgement it lost; a forwarding Lambda
    re-posts the same bytes. Only a delivery that was accepted counts as seen: the retry
    of one refused with 503 must still be stored."""
    from obsloop.collectors.dedup import RecentDeliveries

    envelope = {"requestId": "req-1", "timestamp": 1578090901599,
                "records": [{"data": gz64(data_message([REPORT])).decode()}]}
    handler = firehose_handler(sink, enrich, recent=RecentDeliveries())
    sink.fail = 1
    assert post(handler, json.dumps(envelope).encode())[0] == 503
    assert post(handler, json.dumps(envelope).encode())[0] == 200
    status, body = post(handler, json.dumps(envelope).encode())
    assert status == 200 and body["requestId"] == "req-1"
    assert len(sink.payloads) == 1
    assert post(handler, json.dumps(dict(envelope, requestId="req-2")).encode())[0] == 200
    assert len(sink.payloads) == 2

    raw = gzip.compress(json.dumps(data_message(["hello"])).encode())
    handler = subscription_handler(sink, enrich, recent=RecentDeliveries())
    assert post(handler, raw)[1] == {"accepted": 1}
    assert post(handler, raw)[1] == {"accepted": 0, "duplicate": True}
    assert len(sink.payloads) == 3


def test_recent_deliveries_window_is_bounded_in_time_and_size():
    from obsloop.collectors.dedup import RecentDeliveries

    now = [0.0]
    recent = RecentDeliveries(ttl=10, max_entries=3, clock=lambda: now[0])
    recent.accepted("a")
    now[0] = 5
    assert recent.seen("a")
    now[0] = 10.5
    assert not recent.seen("a")  # past the retry horizon: stored again
    for key in "bcde":
        recent.accepted(key)
    assert len(recent) == 3 and not recent.seen("b") and recent.seen("e")


def test_push_handlers_await_a_kafka_acknowledgement_without_blocking_the_loop(enrich):
    """With Kafka the intake returns a future resolved by the producer's thread. Here it is
    resolved only once both concurrent deliveries were submitted: a handler that waited
    for it synchronously would hold the loop, the second would never be submitted, and
    the fallback would fail both after 2 s. A failed acknowledgement is a 503."""
    import asyncio
    import threading
    from concurrent.futures import Future

    from aiohttp import web
    from aiohttp.test_utils import TestClient, TestServer

    from obsloop.collectors.dedup import RecentDeliveries
    from obsloop.collectors.forward import intake_submit_async
    from obsloop.pipelines.ingest import PipelineFull

    class KafkaLikeIntake:
        def __init__(self, acknowledge_after: int) -> None:
            self.pending: list[Future] = []
            self.acknowledge_after = acknowledge_after

        def submit(self, signal: str, payload: bytes, items: int) -> Future:
            future: Future = Future()
            self.pending.append(future)
            if len(self.pending) == self.acknowledge_after:
                for waiting in self.pending:
                    threading.Timer(0.05, waiting.set_result, (None,)).start()
            threading.Timer(2.0, lambda: future.done() or future.set_exception(PipelineFull("no ack"))).start()
            return future

    async def post_concurrently(intake, bodies):
        app = web.Application()
        app.router.add_post("/", subscription_handler(intake_submit_async(intake), enrich,
                                                      recent=RecentDeliveries()))
        async with TestClient(TestServer(app, host="127.0.0.1")) as client:
            async def one(body):
                response = await client.post("/", data=body)
                return response.status, await response.json()

            return await asyncio.gather(*(one(body) for body in bodies))

    bodies = [gzip.compress(json.dumps(data_message([f"line {i}"])).encode()) for i in range(2)]
    assert asyncio.run(post_concurrently(KafkaLikeIntake(2), bodies)) == [(200, {"accepted": 1})] * 2
    [(status, reply)] = asyncio.run(post_concurrently(KafkaLikeIntake(0), bodies[:1]))
    assert status == 503 and "busy" in reply["error"]


def test_gzip_bombs_and_truncated_bodies_are_refused_not_inflated(sink, enrich, post):
    from dataclasses import replace

    import pytest

    from obsloop.collectors.request_budget import Budget, BudgetExceeded, Limits

    bomb = gzip.compress(b" " * (3 << 20))  # ~3 KB that inflates to 3 MiB
    with pytest.raises(BudgetExceeded, match="exceeds the 1048576-byte limit"):
        Budget(replace(Limits.of(), max_request_bytes=1 << 20)).inflate(bomb)
    two_members = gzip.compress(b'{"a": 1}') + gzip.compress(b'{"b": 2}')
    assert Budget(Limits.of()).inflate(two_members) == b'{"a": 1}{"b": 2}'
    status, reply = post(subscription_handler(sink, enrich), gzip.compress(json.dumps(data_message(["x"])).encode())[:-6])
    assert status == 400 and "truncated" in reply["error"] and sink.payloads == []


def test_log_events_with_unusable_timestamps_or_messages_are_refused(sink, enrich, post):
    handler = subscription_handler(sink, enrich)
    for bad in ({"id": "1", "timestamp": "1" * 1000, "message": "x"},  # would be repeated 1e6 times
                {"id": "1", "timestamp": 1.7e12, "message": "x"},
                {"id": "1", "timestamp": -1, "message": "x"},
                {"id": "1", "timestamp": 2**63, "message": "x"},
                {"id": "1", "timestamp": 1, "message": {"not": "a string"}}):
        message = dict(data_message(["ok"]), logEvents=[bad])
        status, reply = post(handler, gzip.compress(json.dumps(message).encode()))
        assert status == 400 and "integer timestamp" in reply["error"], bad
    assert sink.payloads == []


def test_concatenated_json_documents_split_as_json_would():
    """orjson has no raw_decode: the split at ``}{``, the split at orjson's error position
    and the fallback to ``json`` must all give what ``json.JSONDecoder.raw_decode`` gives."""
    import pytest

    from obsloop.collectors.aws_subscription import PayloadError, _json_documents, decode_data
    from obsloop.collectors.request_budget import Budget, Limits

    cases = [
        b'{"a": 1}',
        b'{"a": 1}{"b": 2}',
        b'{"a": 1}{"b": 2}{"c": 3}',  # more than two: the last "}{" head does not parse alone
        b'{"a": 1} {"b": 2}\n{"c": 3}\n',
        b'{"a": "}{"}{"b": "x}{"}',  # "}{" inside strings
        '{"a": "é€😀"}{"b": 1} {"c": "ü"}'.encode(),  # non-ASCII: positions are not bytes
        b'{"a": "\\ud800"}{"b": NaN}',  # what orjson refuses and json takes
        b"  ",
    ]
    for text in cases:
        decoder, source, expected, index = json.JSONDecoder(), text.decode(), [], 0
        while True:
            while index < len(source) and source[index] in " \t\r\n":
                index += 1
            if index >= len(source):
                break
            document, index = decoder.raw_decode(source, index)
            expected.append(document)
        assert repr(_json_documents(text, Budget(Limits.of()))) == repr(expected), text
    for bad in (b'{"a": 1} xx', b'{"a": 1}{', b'{"a": 1}{"b"', b'{"a": 1}\xff', b"{"):
        with pytest.raises(PayloadError):
            decode_data(bad, Budget(Limits.of()))
