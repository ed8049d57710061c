"""Build the configured collectors and run them: once (``--once``) or on their intervals.

A collector that fails keeps its checkpoint and is retried on its next interval; one
failing cloud never stops the others.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Protocol

from obsloop.collectors.checkpoint import CheckpointStore
from obsloop.collectors.config import CollectorsConfig
from obsloop.collectors.enrich import Enricher, TagLookup
from obsloop.collectors.forward import Submit
from obsloop.collectors.pricing import Pricing, Resources
from obsloop.core.manifests import valid_manifests

log = logging.getLogger(__name__)
KINDS = ("aws", "gcp", "azure", "prometheus")


class Puller(Protocol):
    def poll_once(self) -> int: ...


@dataclass
class Scheduled:
    name: str
    puller: Puller
    interval: float


_pricings: dict[str, Pricing] = {}


def shared_pricing(config: CollectorsConfig) -> Pricing:
    """One :class:`Pricing` per pricing configuration in the process: Lambda's tiers depend
    on the month's usage, which must add up across the push handlers and the pullers."""
    key = json.dumps([str(config.pricing_file), config.pricing_overrides], sort_keys=True, default=str)
    if key not in _pricings:
        _pricings[key] = Pricing.load(config.pricing_file, config.pricing_overrides)
    return _pricings[key]


def build_enricher(config: CollectorsConfig, tag_lookup: TagLookup | None = None) -> Enricher:
    resources = {name: Resources(f.arch, f.memory_mb, f.vcpu, f.ephemeral_storage_mb, f.billing)
                 for name, f in config.functions.items()}
    pricing = shared_pricing(config)
    for name, spec in resources.items():
        pricing.check_resources(name, spec)
    return Enricher(
        pricing,
        valid_manifests(config.manifests_dir) if config.manifests_dir else (),
        resources=resources,
        tags={name: f.tags for name, f in config.functions.items() if f.tags},
        cost_center_tags=config.cost_center_tags,
        tag_lookup=tag_lookup,
    )


def build(kind: str, config: CollectorsConfig, submit: Submit, checkpoint_dir: Path
          ) -> list[Scheduled]:
    """The pullers of one collector kind, as configured."""
    now = time.time()
    if kind == "aws":
        from obsloop.collectors.aws_log_groups import LogGroupDiscovery
        from obsloop.collectors.aws_logs_pull import CloudWatchLogsPuller, lambda_tag_lookup
        from obsloop.collectors.aws_metrics import LambdaMetricsPuller
        from obsloop.collectors.extras import require

        aws = config.aws
        boto3 = require("boto3", "aws")
        make = lambda service: boto3.client(  # noqa: E731
            service, region_name=aws.region, endpoint_url=aws.endpoint_url)
        tags = lambda_tag_lookup(make("lambda")) if aws.read_tags else None
        enrich = build_enricher(config, tags).enrich
        start = now - aws.backfill_seconds
        scheduled = []
        logs = make("logs")
        discovery = None if aws.log_groups else LogGroupDiscovery(
            logs, aws.log_group_prefix, aws.log_group_limit, aws.log_group_exclude)
        scheduled.append(Scheduled("aws.logs", CloudWatchLogsPuller(
            logs, aws.log_groups, CheckpointStore(checkpoint_dir, "aws.logs"),
            submit, enrich, region=aws.region, account_id=aws.account_id,
            initial_start_ms=int(start * 1000), settle_ms=aws.settle_seconds * 1000,
            overlap_ms=aws.overlap_seconds * 1000, discover=discovery.groups if discovery else None),
            aws.poll_interval_seconds))
        if aws.metric_functions:
            scheduled.append(Scheduled("aws.metrics", LambdaMetricsPuller(
                make("cloudwatch"), aws.metric_functions,
                CheckpointStore(checkpoint_dir, "aws.metrics"), submit, region=aws.region,
                account_id=aws.account_id, initial_start_s=int(start)),
                aws.poll_interval_seconds))
        return scheduled
    enrich = build_enricher(config).enrich
    if kind == "gcp":
        from obsloop.collectors.gcp import CloudLoggingPuller
        from obsloop.collectors.gcp import make_client as logging_client

        gcp = config.gcp
        if not gcp.project:
            raise ValueError("collectors.gcp.project is required")
        return [Scheduled("gcp.logging", CloudLoggingPuller(
            logging_client(gcp.project, gcp.endpoint), CheckpointStore(checkpoint_dir, "gcp.logging"),
            submit, enrich, project=gcp.project, log_filter=gcp.filter,
            initial_start=datetime.fromtimestamp(now, UTC) - timedelta(seconds=gcp.backfill_seconds),
            settle_s=gcp.settle_seconds), gcp.poll_interval_seconds)]
    if kind == "azure":
        from obsloop.collectors.azure import CLASSIC, WORKSPACE, AppInsightsPuller
        from obsloop.collectors.azure import make_client as logs_query_client

        azure = config.azure
        if not azure.target:
            raise ValueError("collectors.azure.target is required")
        return [Scheduled("azure.appinsights", AppInsightsPuller(
            logs_query_client(azure.endpoint), CheckpointStore(checkpoint_dir, "azure.appinsights"),
            submit, enrich, target=azure.target,
            schema=WORKSPACE if azure.schema_ == "workspace" else CLASSIC,
            region=azure.region, subscription=azure.subscription,
            initial_start=datetime.fromtimestamp(now, UTC) - timedelta(seconds=azure.backfill_seconds),
            settle_s=azure.settle_seconds), azure.poll_interval_seconds)]
    if kind == "prometheus":
        from obsloop.collectors.prometheus import PrometheusScraper

        prom = config.prometheus
        return [Scheduled("prometheus", PrometheusScraper(prom.targets, submit),
                          prom.poll_interval_seconds)]
    raise ValueError(f"unknown collector {kind!r}; expected one of {', '.join(KINDS)}")


def run(scheduled: list[Scheduled], *, once: bool, stop: threading.Event | None = None,
        on_poll: Callable[[Scheduled, int], None] | None = None) -> int:
    """Poll each collector on its interval until ``stop``; returns the records handed."""
    stop = stop or threading.Event()
    due = {s.name: 0.0 for s in scheduled}
    total = 0
    while not stop.is_set():
        for item in scheduled:
            if time.monotonic() < due[item.name]:
                continue
            try:
                handed = item.puller.poll_once()
                total += handed
                if on_poll:
                    on_poll(item, handed)
            except Exception:  # noqa: BLE001 - one failing source must not stop the others
                if once:
                    raise
                log.exception("collector %s failed; retrying next interval", item.name)
            due[item.name] = time.monotonic() + item.interval
        if once:
            return total
        stop.wait(min(max(0.0, d - time.monotonic()) for d in due.values()) if due else 1.0)
    return total
