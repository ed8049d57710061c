"""boto3 against a moto server: FilterLogEvents with checkpoints, throttling, 5xx, log groups
discovered by prefix with DescribeLogGroups, and GetMetricData."""

from __future__ import annotations

import contextlib
import socket
import time
from datetime import UTC, datetime

import boto3
import pytest
from botocore.awsrequest import AWSResponse
from botocore.config import Config
from moto.server import ThreadedMotoServer

from obsloop.collectors import selfmetrics
from obsloop.collectors.aws_log_groups import LogGroupDiscovery
from obsloop.collectors.aws_logs_pull import CloudWatchLogsPuller, lambda_tag_lookup
from obsloop.collectors.aws_metrics import LambdaMetricsPuller
from obsloop.collectors.checkpoint import CheckpointStore
from obsloop.collectors.enrich import Enricher
from obsloop.collectors.pricing import Pricing
from obsloop.collectors.retry import GaveUp
from obsloop.core import semconv

GROUP = "/aws/lambda/fraud"
STREAM = "2024/05/01/[$LATEST]0a1b2c3d"


@pytest.fixture(scope="module")
def moto_endpoint():
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    yield f"http://127.0.0.1:{port}"
    server.stop()


def client(endpoint: str, service: str):
    return boto3.client(service, region_name="us-east-1", endpoint_url=endpoint,
                        aws_access_key_id="testing", aws_secret_access_key="testing",
                        config=Config(retries={"total_max_attempts": 1, "mode": "standard"}))


def put_lines(logs, start_ms: int, count: int, tag: str) -> None:
    logs.put_log_events(logGroupName=GROUP, logStreamName=STREAM, logEvents=[
        {"timestamp": start_ms + i, "message": f"{tag} line {i}"} for i in range(count)])


@pytest.fixture
def logs(moto_endpoint):
    logs = client(moto_endpoint, "logs")
    with contextlib.suppress(logs.exceptions.ResourceNotFoundException):
        logs.delete_log_group(logGroupName=GROUP)
    logs.create_log_group(logGroupName=GROUP)
    logs.create_log_stream(logGroupName=GROUP, logStreamName=STREAM)
    return logs


def puller(logs, tmp_path, sink, enrich, **kwargs):
    now_ms = int(time.time() * 1000)
    return CloudWatchLogsPuller(
        logs, [GROUP], CheckpointStore(tmp_path, "aws.logs"), sink, enrich,
        region="us-east-1", account_id="123456789012", initial_start_ms=now_ms - 3_600_000,
        settle_ms=0, overlap_ms=60_000, page_limit=10, sleep=kwargs.pop("sleep", lambda s: None),
        **kwargs)


def bodies(sink) -> list[str]:
    return [row["body"] for row in sink.logs()]


def test_pages_and_checkpoint_survive_a_crash_and_restart(logs, tmp_path, sink, enrich):
    base = int(time.time() * 1000) - 600_000
    put_lines(logs, base, 25, "a")

    class Crashing:
        """Accepts the first page, then the process 'dies' (the ingest path refuses)."""
        def __init__(self):
            self.calls = 0
        def __call__(self, signal, payload, items=None):
            self.calls += 1
            if self.calls > 1:
                raise RuntimeError("pipeline full")
            sink(signal, payload, items)

    with pytest.raises(GaveUp):
        puller(logs, tmp_path, Crashing(), enrich).poll_once()
    assert len(bodies(sink)) == 10
    restarted = puller(logs, tmp_path, sink, enrich)  # a new process: state from disk only
    assert restarted.poll_once() == 15
    assert sorted(bodies(sink)) == sorted(f"a line {i}" for i in range(25))
    # one event ingested late (stamped inside the overlap the last sweep covered), two new
    put_lines(logs, int(time.time() * 1000) - 30_000, 1, "late")
    put_lines(logs, int(time.time() * 1000), 2, "b")
    assert puller(logs, tmp_path, sink, enrich).poll_once() == 3
    all_bodies = bodies(sink)
    assert len(all_bodies) == len(set(all_bodies)) == 28
    row = sink.logs()[0]
    assert row["resource"][semconv.FAAS_NAME] == "fraud"
    assert row["resource"][semconv.CLOUD_ACCOUNT_ID] == "123456789012"


def test_a_refused_page_is_read_again_by_the_same_puller(logs, tmp_path, sink, enrich):
    """``serve`` keeps the puller across a failed poll: the page the intake refused is read
    and handed again at the next poll, none of its events taken for already seen."""
    put_lines(logs, int(time.time() * 1000) - 30_000, 3, "first")
    pull = puller(logs, tmp_path, sink, enrich)
    assert pull.poll_once() == 3
    put_lines(logs, int(time.time() * 1000) - 20_000, 2, "late")  # inside the overlap
    sink.fail = 8  # every attempt of the next poll's submit
    with pytest.raises(GaveUp):
        pull.poll_once()
    assert pull.poll_once() == 2
    assert sorted(bodies(sink)) == sorted([f"first line {i}" for i in range(3)]
                                          + [f"late line {i}" for i in range(2)])


def _error_response(status: int, code: str):
    body = (f'{{"__type":"{code}","message":"slow down"}}').encode()
    return AWSResponse("https://logs", status, {"x-amzn-RequestId": "r",
                                                "Content-Type": "application/x-amz-json-1.1"},
                       type("Raw", (), {"stream": lambda self, **k: iter([body])})())


def test_throttling_and_5xx_are_retried_without_losing_a_page(logs, tmp_path, sink, enrich):
    put_lines(logs, int(time.time() * 1000) - 600_000, 25, "t")
    failures = [_error_response(400, "ThrottlingException"),
                _error_response(400, "ThrottlingException"),
                _error_response(503, "ServiceUnavailableException")]
    calls = {"n": 0}

    def inject(request, **_):
        calls["n"] += 1
        if calls["n"] in (2, 3, 5):  # around the first and second pages
            return failures.pop(0)
        return None

    logs.meta.events.register("before-send.cloudwatch-logs.FilterLogEvents", inject)
    throttled = selfmetrics.ERRORS.labels("aws.logs", "throttled")._value.get()
    sleeps: list[float] = []
    assert puller(logs, tmp_path, sink, enrich, sleep=sleeps.append).poll_once() == 25
    assert sorted(bodies(sink)) == sorted(f"t line {i}" for i in range(25))
    assert len(sleeps) == 3 and not failures
    assert selfmetrics.ERRORS.labels("aws.logs", "throttled")._value.get() == throttled + 2


def test_get_metric_data(moto_endpoint, tmp_path, sink):
    cloudwatch = client(moto_endpoint, "cloudwatch")
    now = int(time.time())
    minute = now - now % 60 - 1200
    for offset, value in ((0, 5.0), (60, 7.0)):
        stamp = datetime.fromtimestamp(minute + offset, UTC)
        cloudwatch.put_metric_data(Namespace="AWS/Lambda", MetricData=[
            {"MetricName": "Invocations", "Dimensions": [{"Name": "FunctionName", "Value": "fraud"}],
             "Timestamp": stamp, "Value": value, "Unit": "Count"},
            {"MetricName": "Duration", "Dimensions": [{"Name": "FunctionName", "Value": "fraud"}],
             "Timestamp": stamp, "Value": 100.0 + value, "Unit": "Milliseconds"}])
    checkpoints = CheckpointStore(tmp_path, "aws.metrics")
    pull = LambdaMetricsPuller(cloudwatch, ["fraud"], checkpoints, sink, region="us-east-1",
                               initial_start_s=minute - 600, delay_s=0)
    assert pull.poll_once() > 0
    from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import (
        ExportMetricsServiceRequest,
    )
    request = ExportMetricsServiceRequest.FromString(sink.payloads[0][1])
    metrics = {m.name: m for m in request.resource_metrics[0].scope_metrics[0].metrics}
    invocations = metrics["aws.lambda.invocations"].sum
    assert sorted(p.as_double for p in invocations.data_points) == [5.0, 7.0]
    assert invocations.data_points[0].time_unix_nano - invocations.data_points[0] \
        .start_time_unix_nano == 60 * 10**9
    assert sorted(p.as_double for p in metrics["aws.lambda.duration.maximum"].gauge.data_points) \
        == [105.0, 107.0]
    assert checkpoints.get("end") >= minute + 60
    assert LambdaMetricsPuller(cloudwatch, ["fraud"], CheckpointStore(tmp_path, "aws.metrics"),
                               sink, region="us-east-1", initial_start_s=minute - 600,
                               delay_s=0).poll_once() == 0  # restart: nothing new, nothing twice


def test_cost_center_from_lambda_tags(moto_endpoint):
    iam = client(moto_endpoint, "iam")
    role = iam.create_role(RoleName="r", AssumeRolePolicyDocument="{}")["Role"]["Arn"]
    lam = client(moto_endpoint, "lambda")
    lam.create_function(FunctionName="tagged", Runtime="python3.12", Role=role,
                        Handler="h.h", Code={"ZipFile": b"PK\x05\x06" + b"\x00" * 18},
                        Tags={"CostCenter": "Search"})
    from obsloop.collectors.normalize import Invocation
    enricher = Enricher(Pricing.load(), tag_lookup=lambda_tag_lookup(lam))
    invocation = enricher.enrich(Invocation(platform="aws_lambda", function="tagged",
                                            invocation_id="x", time_ns=1, source="t"))
    assert invocation.cost_center == "Search"


def make_group(logs, group: str, lines: int = 0, tag: str = "x") -> None:
    with contextlib.suppress(logs.exceptions.ResourceNotFoundException):
        logs.delete_log_group(logGroupName=group)
    logs.create_log_group(logGroupName=group)
    logs.create_log_stream(logGroupName=group, logStreamName=STREAM)
    if lines:
        now_ms = int(time.time() * 1000) - 60_000
        logs.put_log_events(logGroupName=group, logStreamName=STREAM, logEvents=[
            {"timestamp": now_ms + i, "message": f"{tag} line {i}"} for i in range(lines)])


def test_groups_are_discovered_by_prefix_and_a_new_one_is_pulled_on_the_next_poll(logs, tmp_path, sink, enrich):
    make_group(logs, "/aws/lambda/disc-a", 3, "a")
    make_group(logs, "/aws/lambda/disc-a-canary", 2, "canary")
    make_group(logs, "/aws/ecs/disc-a", 2, "ecs")
    discovery = LogGroupDiscovery(logs, "/aws/lambda/disc-", exclude=["*-canary"])
    discovering = puller(logs, tmp_path, sink, enrich, discover=discovery.groups)
    assert discovering.poll_once() == 3
    assert sorted(bodies(sink)) == [f"a line {i}" for i in range(3)]

    make_group(logs, "/aws/lambda/disc-b", 4, "b")  # a function deployed after the first poll
    assert discovering.poll_once() == 4
    assert discovering.log_groups == ["/aws/lambda/disc-a", "/aws/lambda/disc-b"]
    assert sorted(bodies(sink)) == sorted([f"a line {i}" for i in range(3)] + [f"b line {i}" for i in range(4)])
    assert {row["resource"][semconv.FAAS_NAME] for row in sink.logs()} == {"disc-a", "disc-b"}
    checkpoints = CheckpointStore(tmp_path, "aws.logs")  # as a restarted process reads them
    assert checkpoints.get("/aws/lambda/disc-b") is not None  # checkpointed per group as named ones
    assert checkpoints.get("/aws/lambda/disc-a-canary") is None

    logs.delete_log_group(logGroupName="/aws/lambda/disc-a")  # a function removed
    assert discovering.poll_once() == 0
    assert discovering.log_groups == ["/aws/lambda/disc-b"]


def test_discovery_pages_through_groups_and_stops_at_the_limit(logs, caplog):
    names = [f"/aws/lambda/page-{i:03d}" for i in range(57)]  # more than one page of 50
    for name in names:
        make_group(logs, name)
    assert LogGroupDiscovery(logs, "/aws/lambda/page-").groups() == names
    limited = LogGroupDiscovery(logs, "/aws/lambda/page-", limit=52, exclude=["/aws/lambda/page-000"])
    with caplog.at_level("WARNING"):
        assert limited.groups() == names[1:53]
        assert limited.groups() == names[1:53]
    assert [r.getMessage() for r in caplog.records].count(
        "more than 52 log groups under '/aws/lambda/page-': the others are not collected "
        "(raise collectors.aws.log_group_limit or exclude some)") == 1


def test_the_aws_collector_discovers_groups_unless_they_are_named(moto_endpoint, tmp_path, monkeypatch):
    from obsloop.collectors.config import CollectorsConfig
    from obsloop.collectors.scheduler import build

    for key in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"):
        monkeypatch.setenv(key, "testing")
    aws = {"enabled": True, "region": "us-east-1", "endpoint_url": moto_endpoint, "read_tags": False}
    [discovering] = [s for s in build("aws", CollectorsConfig(aws=aws), lambda *a: None, tmp_path) if s.name == "aws.logs"]
    assert discovering.puller.discover is not None
    assert discovering.puller.discover.__self__.prefix == "/aws/lambda/"
    named = CollectorsConfig(aws={**aws, "log_groups": [GROUP]})
    [fixed] = [s for s in build("aws", named, lambda *a: None, tmp_path) if s.name == "aws.logs"]
    assert fixed.puller.discover is None and fixed.puller.log_groups == [GROUP]
