"""The cost of one invocation from list prices: a versioned table, overridable by config.

Each platform bills differently, so each has its own formula: Lambda per GB-second of
billed duration per architecture (plus ephemeral storage past the free 512 MB), Cloud Run
per vCPU-second and GiB-second rounded up to 100 ms, Azure consumption per GB-second with
memory rounded up to 128 MB and a 100 ms minimum. All add a per-request charge. Knative and
OpenFaaS run on the user's own nodes and have no list price: their cost stays unknown.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

import yaml

from obsloop import semconv
from obsloop.collectors.normalize import Invocation


def _deep_merge(base: dict[str, Any], override: dict[str, Any]) -> dict[str, Any]:
    merged = dict(base)
    for key, value in override.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = _deep_merge(merged[key], value)
        else:
            merged[key] = value
    return merged


@dataclass(frozen=True, slots=True)
class Resources:
    """What a function is configured with when its reports do not say it."""

    arch: str = "x86_64"
    memory_mb: int | None = None
    vcpu: float | None = None
    ephemeral_storage_mb: int = 512


class Pricing:
    def __init__(self, table: dict[str, Any]) -> None:
        self.table = table
        self.version = str(table["version"])

    @classmethod
    def load(
        cls, path: Path | None = None, overrides: dict[str, Any] | None = None
    ) -> Pricing:
        """The shipped table (or ``path``), with ``overrides`` deep-merged on top."""
        if path is None:
            text = resources.files("obsloop.collectors").joinpath("pricing.yaml").read_text()
        else:
            text = Path(path).read_text()
        return cls(_deep_merge(yaml.safe_load(text), overrides or {}))

    def cost(self, invocation: Invocation, spec: Resources) -> float | None:
        """USD for ``invocation``, or ``None`` when the platform or inputs are unknown."""
        if invocation.platform == semconv.PLATFORM_AWS_LAMBDA:
            return self._lambda(invocation, spec)
        if invocation.platform in (
            semconv.PLATFORM_GCP_CLOUD_RUN,
            semconv.PLATFORM_GCP_CLOUD_FUNCTIONS,
        ):
            return self._cloud_run(invocation, spec)
        if invocation.platform == semconv.PLATFORM_AZURE_FUNCTIONS:
            return self._azure(invocation, spec)
        return None

    def _lambda(self, inv: Invocation, spec: Resources) -> float | None:
        table = self.table["aws_lambda"]
        memory_mb = inv.memory_mb or spec.memory_mb
        if memory_mb is None:
            return None
        billed_ms = inv.billed_duration_ms
        if billed_ms is None:
            if inv.duration_ms is None:
                return None
            raw = inv.duration_ms
            if table["bill_init"] and inv.init_duration_ms:
                raw += inv.init_duration_ms
            step = table["billing_granularity_ms"]
            billed_ms = math.ceil(raw / step) * step
        arch = inv.arch or spec.arch
        rate = table["architectures"][arch]["gb_second"]
        seconds = billed_ms / 1000
        cost = seconds * memory_mb / 1024 * rate + table["request"]
        extra_storage_mb = max(0, spec.ephemeral_storage_mb - table["ephemeral_storage_free_mb"])
        cost += seconds * extra_storage_mb / 1024 * table["ephemeral_storage_gb_second"]
        return cost

    def _cloud_run(self, inv: Invocation, spec: Resources) -> float | None:
        table = self.table[inv.platform]
        if inv.duration_ms is None:
            return None
        step = table["billing_granularity_ms"]
        seconds = math.ceil(inv.duration_ms / step) * step / 1000
        vcpu = spec.vcpu if spec.vcpu is not None else table["default_vcpu"]
        memory_mb = inv.memory_mb or spec.memory_mb or table["default_memory_mb"]
        per_second = vcpu * table["vcpu_second"] + memory_mb / 1024 * table["gib_second"]
        return seconds * per_second + table["request"]

    def _azure(self, inv: Invocation, spec: Resources) -> float | None:
        table = self.table["azure_functions"]
        if inv.duration_ms is None:
            return None
        step = table["memory_rounding_mb"]
        used = inv.memory_used_mb or spec.memory_mb or table["default_memory_mb"]
        memory_mb = min(max(math.ceil(used / step) * step, step), table["max_memory_mb"])
        milliseconds = max(math.ceil(inv.duration_ms), table["min_duration_ms"])
        return milliseconds / 1000 * memory_mb / 1024 * table["gb_second"] + table["execution"]
