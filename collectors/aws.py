"""The ``aws`` collector kind: Lambda logs and metrics pulled, and the AWS pushes served.

Pulls: CloudWatch Logs ``FilterLogEvents`` per log group (named, or discovered under a
prefix) and ``AWS/Lambda`` metrics. Pushes, on the OTLP/HTTP port behind its guard, into
the same intake as OTLP: CloudWatch Logs subscriptions, the Lambda Telemetry API and
Firehose, which authenticates with its access key, so its route exists only when
``collectors.aws.firehose_access_key`` is set.
"""

from __future__ import annotations

import logging

from obsloop.collectors import aws_subscription, aws_telemetry
from obsloop.collectors.aws_log_groups import LogGroupDiscovery
from obsloop.collectors.aws_logs_pull import CloudWatchLogsPuller, lambda_tag_lookup
from obsloop.collectors.aws_metrics import LambdaMetricsPuller
from obsloop.collectors.config import AwsCollectorConfig
from obsloop.collectors.extras import require
from obsloop.collectors.registry import CollectorKind, PullContext, PushContext, Scheduled

log = logging.getLogger(__name__)


def build(ctx: PullContext) -> list[Scheduled]:
    aws: AwsCollectorConfig = ctx.section
    boto3 = require("boto3", "aws")

    def make(service: str):
        return boto3.client(service, region_name=aws.region, endpoint_url=aws.endpoint_url)

    enrich = ctx.enrich(lambda_tag_lookup(make("lambda")) if aws.read_tags else None)
    start = ctx.backfill_start().timestamp()
    logs = make("logs")
    discovery = None if aws.log_groups else LogGroupDiscovery(
        logs, aws.log_group_prefix, aws.log_group_limit, aws.log_group_exclude)
    scheduled = [Scheduled("aws.logs", CloudWatchLogsPuller(
        logs, aws.log_groups, ctx.checkpoints("aws.logs"), ctx.submit, enrich,
        region=aws.region, account_id=aws.account_id, initial_start_ms=int(start * 1000),
        settle_ms=aws.settle_seconds * 1000, overlap_ms=aws.overlap_seconds * 1000,
        discover=discovery.groups if discovery else None), aws.poll_interval_seconds)]
    if aws.metric_functions:
        scheduled.append(Scheduled("aws.metrics", LambdaMetricsPuller(
            make("cloudwatch"), aws.metric_functions, ctx.checkpoints("aws.metrics"), ctx.submit,
            region=aws.region, account_id=aws.account_id, initial_start_s=int(start)),
            aws.poll_interval_seconds))
    return scheduled


def mount(ctx: PushContext) -> None:
    aws = ctx.collectors.aws
    region = aws.push_region or aws.region
    ctx.app.router.add_post("/aws/cloudwatch-logs", aws_subscription.subscription_handler(
        ctx.submit, ctx.enrich, region, limits=ctx.limits))
    ctx.app.router.add_post("/aws/telemetry", aws_telemetry.telemetry_handler(
        ctx.submit, ctx.enrich, limits=ctx.limits))
    if aws.firehose_access_key:
        aws_subscription.mount_firehose(
            ctx.app, ctx.guard, "/aws/firehose", aws.firehose_access_key.get_secret_value(),
            aws_subscription.firehose_handler(ctx.submit, ctx.enrich, region, limits=ctx.limits))
    else:
        log.info("Firehose endpoint /aws/firehose not served: collectors.aws.firehose_access_key is not set")


KIND = CollectorKind("aws", AwsCollectorConfig, build=build, mount=mount)
