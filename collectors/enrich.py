"""Fill in what the platform does not report: model identity, cost center and cost.

The GitOps ``ServerlessModelDeployment`` manifests are the source of truth for which model
a function serves and which cost center pays for it (``spec.finops.costCenter``); a
function with no manifest falls back to a cost-center tag (Lambda tags, GCP labels, Azure
tags) so that unmanaged functions still land on someone's bill.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

import yaml

from obsloop.collectors.normalize import Invocation
from obsloop.collectors.pricing import Pricing, Resources
from obsloop.core import semconv

MANIFEST_KIND = "ServerlessModelDeployment"
FUNCTION_ANNOTATION = "obsloop.io/function-name"
"""Names the deployed function when it differs from the manifest's ``metadata.name``."""

MANIFEST_PLATFORMS = {
    "aws-lambda": semconv.PLATFORM_AWS_LAMBDA,
    "gcp-cloud-run": semconv.PLATFORM_GCP_CLOUD_RUN,
    "google-cloud-run": semconv.PLATFORM_GCP_CLOUD_RUN,
    "gcp-cloud-functions": semconv.PLATFORM_GCP_CLOUD_FUNCTIONS,
    "google-cloud-functions": semconv.PLATFORM_GCP_CLOUD_FUNCTIONS,
    "azure-functions": semconv.PLATFORM_AZURE_FUNCTIONS,
    "knative": semconv.PLATFORM_KNATIVE,
    "openfaas": semconv.PLATFORM_OPENFAAS,
}
"""Manifest ``spec.runtime.platform`` spellings -> ``cloud.platform``; registered collector
kinds add theirs (:attr:`obsloop.collectors.registry.CollectorKind.manifest_platforms`)."""


@dataclass(frozen=True, slots=True)
class Deployment:
    """The parts of a manifest the collectors need."""

    function: str
    platform: str | None
    model_name: str | None
    model_version: str | None
    cost_center: str | None
    memory_mb: int | None


def _memory_mb(text: object) -> int | None:
    """``"4096MB"``, ``"4Gi"``, ``"512Mi"`` or a bare number of MB."""
    if text is None:
        return None
    value = str(text).strip()
    for suffix, factor in (("GB", 1024), ("Gi", 1024), ("G", 1024), ("MB", 1), ("Mi", 1), ("M", 1)):
        if value.endswith(suffix):
            return int(float(value[: -len(suffix)]) * factor)
    return int(float(value)) if value.replace(".", "", 1).isdigit() else None


def parse_manifest(document: Mapping) -> Deployment | None:
    if document.get("kind") != MANIFEST_KIND:
        return None
    metadata = document.get("metadata") or {}
    spec = document.get("spec") or {}
    runtime = spec.get("runtime") or {}
    model = spec.get("modelRef") or {}
    finops = spec.get("finops") or {}
    annotations = metadata.get("annotations") or {}
    function = annotations.get(FUNCTION_ANNOTATION) or metadata.get("name")
    if not function:
        return None
    version = model.get("version")
    return Deployment(
        function=str(function),
        platform=MANIFEST_PLATFORMS.get(str(runtime.get("platform", "")).lower()),
        model_name=model.get("name"),
        model_version=None if version is None else str(version),
        cost_center=finops.get("costCenter"),
        memory_mb=_memory_mb(runtime.get("memory")),
    )


def load_manifests(directory: Path) -> list[Deployment]:
    """Every ``ServerlessModelDeployment`` in ``*.yaml`` / ``*.yml`` files under ``directory``."""
    found = []
    for path in sorted([*directory.rglob("*.yaml"), *directory.rglob("*.yml")]):
        for document in yaml.safe_load_all(path.read_text()):
            if isinstance(document, Mapping) and (deployment := parse_manifest(document)):
                found.append(deployment)
    return found


TagLookup = Callable[[Invocation], Mapping[str, str]]
_DEFAULT_RESOURCES = Resources()
"""Shared (frozen): building one per invocation showed in the profile."""


class Enricher:
    """Adds model, cost center and cost to invocations, in place."""

    def __init__(
        self,
        pricing: Pricing,
        deployments: Iterable[Deployment] = (),
        resources: Mapping[str, Resources] | None = None,
        tags: Mapping[str, Mapping[str, str]] | None = None,
        cost_center_tags: Iterable[str] = ("CostCenter", "cost-center", "cost_center"),
        tag_lookup: TagLookup | None = None,
    ) -> None:
        self.pricing = pricing
        self._deployments = {d.function: d for d in deployments}
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
        deployment = self._deployments.get(invocation.function)
        if deployment is not None and deployment.platform not in (None, invocation.platform):
            deployment = None
        spec = self._resources.get(invocation.function, _DEFAULT_RESOURCES)
        if deployment is not None:
            invocation.model_name = invocation.model_name or deployment.model_name
            invocation.model_version = invocation.model_version or deployment.model_version
            invocation.cost_center = invocation.cost_center or deployment.cost_center
            if spec.memory_mb is None and deployment.memory_mb is not None:
                spec = dataclasses.replace(spec, memory_mb=deployment.memory_mb)
        if invocation.cost_center is None:
            invocation.cost_center = self._cost_center_from_tags(invocation)
        if invocation.arch is None and invocation.platform == semconv.PLATFORM_AWS_LAMBDA:
            invocation.arch = spec.arch
        if invocation.cost_usd is None:
            invocation.cost_usd = self.pricing.cost(invocation, spec)
            if invocation.cost_usd is not None:
                invocation.pricing_version = self.pricing.version
        return invocation
