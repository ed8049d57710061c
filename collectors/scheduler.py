"""Build the configured collectors and run them: once (``--once``) or on their intervals.

The kinds and their builders are in :mod:`obsloop.collectors.registry`; this module gives
them what every puller shares (one pricing per process, the enricher, checkpoints) and
polls what they built. A collector that fails keeps its checkpoint and is retried on its
next interval; one failing cloud never stops the others.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Callable
from pathlib import Path

from obsloop.collectors import registry
from obsloop.collectors.config import CollectorsConfig
from obsloop.collectors.enrich import Enricher, TagLookup
from obsloop.collectors.forward import Submit
from obsloop.collectors.pricing import Pricing, Resources
from obsloop.collectors.registry import PullContext, Scheduled
from obsloop.core.manifests import valid_manifests

log = logging.getLogger(__name__)

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
    """The pullers of one collector kind, as configured (none for a push-only kind or a
    registered kind the configuration leaves out)."""
    declared, section = registry.kind(kind), registry.section(config, kind)
    if declared.build is None or section is None:
        return []
    return declared.build(PullContext(
        config, section, submit, checkpoint_dir, time.time(),
        lambda tag_lookup: build_enricher(config, tag_lookup).enrich))


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
