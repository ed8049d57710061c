"""Fill in what the platform does not report: model identity, cost center and cost.

The GitOps ``ServerlessModelDeployment`` manifests (:mod:`obsloop.core.manifests`) are the
source of truth for which model a function serves and which cost center pays for it
(``spec.finops.costCenter``); a function with no manifest falls back to a cost-center tag
(Lambda tags, GCP labels, Azure tags) so that unmanaged functions still land on someone's bill.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterable, Mapping

from obsloop.collectors.normalize import Invocation
from obsloop.collectors.pricing import Pricing, Resources
from obsloop.core import semconv
from obsloop.core.manifests import Manifest

TagLookup = Callable[[Invocation], Mapping[str, str]]
_DEFAULT_RESOURCES = Resources()
"""Shared (frozen): building one per invocation showed in the profile."""


class Enricher:
    """Adds model, cost center and cost to invocations, in place."""

    def __init__(
        self,
        pricing: Pricing,
        manifests: Iterable[Manifest] = (),
        resources: Mapping[str, Resources] | None = None,
        tags: Mapping[str, Mapping[str, str]] | None = None,
        cost_center_tags: Iterable[str] = ("CostCenter", "cost-center", "cost_center"),
        tag_lookup: TagLookup | None = None,
    ) -> None:
        self.pricing = pricing
        self._manifests: dict[tuple[str, str], Manifest] = {}
        for manifest in manifests:
            # The same function name on two platforms is two deployments; a repeat is the
            # feedback loop's choice too: the first manifest by path.
            self._manifests.setdefault((manifest.platform, manifest.function), manifest)
        self._resources = dict(resources or {})
        self._tags = {name: dict(values) for name, values in (tags or {}).items()}
        self._cost_center_tags = tuple(cost_center_tags)
        self._tag_lookup = tag_lookup

    def _cost_center_from_tags(self, invocation: Invocation) -> str | None:
        tags = self._tags.get(invocation.function)
        if tags is None and self._tag_lookup is not None:
            tags = self._tags[invocation.function] = dict(self._tag_lookup(invocation))
        for key in self._cost_center_tags:
            if tags and tags.get(key):
                return tags[key]
        return None

    def enrich(self, invocation: Invocation) -> Invocation:
        manifest = self._manifests.get((invocation.platform, invocation.function))
        spec = self._resources.get(invocation.function, _DEFAULT_RESOURCES)
        if manifest is not None:
            invocation.model_name = invocation.model_name or manifest.model_name
            invocation.model_version = invocation.model_version or manifest.model_version
            invocation.cost_center = invocation.cost_center or manifest.cost_center
            if spec.memory_mb is None and manifest.memory_mb is not None:
                spec = dataclasses.replace(spec, memory_mb=manifest.memory_mb)
        if invocation.cost_center is None:
            invocation.cost_center = self._cost_center_from_tags(invocation)
        if invocation.arch is None and invocation.platform == semconv.PLATFORM_AWS_LAMBDA:
            invocation.arch = spec.arch
        if invocation.cost_usd is None:
            invocation.cost_usd = self.pricing.cost(invocation, spec)
            if invocation.cost_usd is not None:
                invocation.pricing_version = self.pricing.version
        return invocation
