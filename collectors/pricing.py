"""The cost of one invocation from list prices: a versioned table, overridable by config.

Each platform bills differently, so each has its own formula: Lambda per GB-second of
billed duration per architecture, tiered on the month's aggregate usage (plus ephemeral
storage past the free 512 MB), Cloud Run per vCPU-second and GiB-second rounded up to
100 ms at the rates of the service's billing mode (request-based or instance-based),
Azure consumption per GB-second with memory rounded up to 128 MB and a 100 ms minimum.
All but instance-based Cloud Run add a per-request charge. Knative and OpenFaaS run on the
user's own nodes and have no list price: their cost stays unknown.

Lambda's tiers price an invocation at the marginal rate of the month's usage so far:
docs/design/lambda-tier-pricing.md.
"""

from __future__ import annotations

import math
import threading
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from importlib import resources
from pathlib import Path
from typing import Any

import yaml

from obsloop.collectors.normalize import Invocation
from obsloop.core import semconv
from obsloop.core.settings import deep_merge


@dataclass(frozen=True, slots=True)
class Resources:
    """What a function is configured with when its reports do not say it."""

    arch: str = "x86_64"
    memory_mb: int | None = None
    vcpu: float | None = None
    ephemeral_storage_mb: int = 512
    billing: str | None = None
    """Cloud Run billing mode (``request`` or ``instance``); ``None``: the table's default."""


Tiers = tuple[tuple[float, float], ...]
"""(end of the tier in monthly units, price per unit), in order; the last ends at infinity."""


def tier_bounds(tiers: list[dict[str, Any]]) -> Tiers:
    """``gb_second_tiers`` of the table as :data:`Tiers` (the last tier never ends)."""
    bounds = [(math.inf if t["up_to_gb_seconds"] is None else float(t["up_to_gb_seconds"]),
               float(t["gb_second"])) for t in tiers]
    bounds[-1] = (math.inf, bounds[-1][1])
    return tuple(bounds)


def tiered_cost(quantity: float, used_before: float, tiers: Tiers) -> float:
    """The price of ``quantity`` units consumed after ``used_before`` units this month:
    each part at the rate of the tier it falls in."""
    cost, position, end = 0.0, used_before, used_before + quantity
    for tier_end, rate in tiers:
        if position >= tier_end:
            continue
        if end <= tier_end:
            return cost + (end - position) * rate
        cost += (tier_end - position) * rate
        position = tier_end
    return cost


def _month_of(time_ns: int) -> tuple[int, int, str]:
    """The UTC calendar month holding ``time_ns``: its bounds in ns and ``YYYY-MM``."""
    at = datetime.fromtimestamp(time_ns / 1e9, UTC)
    start = at.replace(day=1, hour=0, minute=0, second=0, microsecond=0)
    end = start.replace(year=start.year + 1, month=1) if start.month == 12 else start.replace(month=start.month + 1)
    return int(start.timestamp()) * 10**9, int(end.timestamp()) * 10**9, start.strftime("%Y-%m")


class MonthlyUsage:
    """Month-to-date GB-seconds per (account, region, architecture, month), the basis of
    Lambda's tiers; a key first seen starts from its configured starting point (current
    month only). Old months are dropped as new ones begin, so it stays small."""

    def __init__(self, starting_points: dict[str, float] | None = None) -> None:
        self._starting_points = {key: float(value) for key, value in (starting_points or {}).items()}
        self._used: dict[tuple[str, str, str, str], float] = {}
        self._lock = threading.Lock()
        self._month: tuple[int, int, str] = (0, 0, "")
        """The last month seen, as [start, end) in ns: nearly every invocation is in it."""

    def add(self, account: str, region: str, arch: str, time_ns: int, gb_seconds: float) -> float:
        """Record ``gb_seconds`` and return the month's usage before them."""
        start, end, month = self._month
        if not start <= time_ns < end:
            start, end, month = self._month = _month_of(time_ns)
        key = (account, region, arch, month)
        with self._lock:
            before = self._used.get(key)
            if before is None:
                current = datetime.now(UTC).strftime("%Y-%m")
                before = self._starting_points.get(f"{account}/{region}/{arch}", 0.0) if month == current else 0.0
                if len({k[3] for k in self._used} | {month}) > 2:  # keep this month and the last
                    self._used = {k: v for k, v in self._used.items() if k[3] >= min(month, current)}
            self._used[key] = before + gb_seconds
            return before


@dataclass(frozen=True, slots=True)
class _LambdaRates:
    """The ``aws_lambda`` section as the per-invocation formula reads it: looked up once,
    not a dozen times for every REPORT line."""

    duration: dict[str, tuple[float | None, Tiers]]
    """Architecture → (flat GB-second rate or ``None``, tiers used when there is none)."""
    request: float
    storage_free_mb: float
    storage_gb_second: float
    bill_init: bool
    granularity_ms: float

    @classmethod
    def from_table(cls, table: dict[str, Any]) -> _LambdaRates:
        return cls(
            duration={arch: (rates.get("gb_second"),
                             () if "gb_second" in rates else tier_bounds(rates["gb_second_tiers"]))
                      for arch, rates in table["architectures"].items()},
            request=table["request"],
            storage_free_mb=table["ephemeral_storage_free_mb"],
            storage_gb_second=table["ephemeral_storage_gb_second"],
            bill_init=table["bill_init"],
            granularity_ms=table["billing_granularity_ms"],
        )


class Pricing:
    def __init__(self, table: dict[str, Any]) -> None:
        self.table = table
        self.version = str(table["version"])
        self.usage = MonthlyUsage(table.get("aws_lambda", {}).get("month_to_date_gb_seconds"))
        self._check()
        self._lambda_rates = _LambdaRates.from_table(table["aws_lambda"]) if "aws_lambda" in table else None

    def _check(self) -> None:
        """Refuse at load, not at the first invocation: a missing rate found while pricing
        would fail a delivery that the client then retries forever."""
        for platform in (semconv.PLATFORM_GCP_CLOUD_RUN, semconv.PLATFORM_GCP_CLOUD_FUNCTIONS):
            section = self.table.get(platform)
            if section is not None and not section.get("billing_modes", {}).get(section.get("billing")):
                raise ValueError(f"pricing: {platform}.billing {section.get('billing')!r} is not one of "
                                 f"{platform}.billing_modes {sorted(section.get('billing_modes', {}))}")
        for arch, rates in self.table.get("aws_lambda", {}).get("architectures", {}).items():
            if "gb_second" not in rates and not rates.get("gb_second_tiers"):
                raise ValueError(f"pricing: aws_lambda.architectures.{arch} has neither gb_second "
                                 "nor gb_second_tiers")

    def check_resources(self, name: str, spec: Resources) -> None:
        """A function's configured billing mode must have rates in the table."""
        for platform in (semconv.PLATFORM_GCP_CLOUD_RUN, semconv.PLATFORM_GCP_CLOUD_FUNCTIONS):
            modes = self.table.get(platform, {}).get("billing_modes", {})
            if spec.billing is not None and not modes.get(spec.billing):  # null: removed
                raise ValueError(f"collectors.functions.{name}.billing {spec.billing!r}: no "
                                 f"{platform}.billing_modes.{spec.billing} in the pricing table")

    @classmethod
    def load(
        cls, path: Path | None = None, overrides: dict[str, Any] | None = None
    ) -> Pricing:
        """The shipped table (or ``path``), with ``overrides`` deep-merged on top."""
        if path is None:
            text = resources.files("obsloop.collectors").joinpath("pricing.yaml").read_text()
        else:
            text = Path(path).read_text()
        return cls(deep_merge(yaml.safe_load(text), overrides or {}))

    def cost(self, invocation: Invocation, spec: Resources) -> float | None:
        """USD for ``invocation``, or ``None`` when the platform or inputs are unknown."""
        formula = FORMULAS.get(invocation.platform)
        return None if formula is None else formula(self, invocation, spec)

    def _lambda(self, inv: Invocation, spec: Resources) -> float | None:
        rates = self._lambda_rates
        memory_mb = inv.memory_mb or spec.memory_mb
        if rates is None or memory_mb is None:
            return None
        billed_ms = inv.billed_duration_ms
        if billed_ms is None:
            if inv.duration_ms is None:
                return None
            raw = inv.duration_ms
            if rates.bill_init and inv.init_duration_ms:
                raw += inv.init_duration_ms
            step = rates.granularity_ms
            billed_ms = math.ceil(raw / step) * step
        arch = inv.arch or spec.arch
        flat, tiers = rates.duration[arch]
        seconds = billed_ms / 1000
        gb_seconds = seconds * memory_mb / 1024
        if flat is not None:  # a flat (negotiated) rate overrides the tiers
            cost = gb_seconds * flat
        else:
            before = self.usage.add(inv.account_id or "", inv.region or "", arch, inv.time_ns, gb_seconds)
            cost = tiered_cost(gb_seconds, before, tiers)
        cost += rates.request
        if spec.ephemeral_storage_mb > rates.storage_free_mb:
            extra_storage_mb = spec.ephemeral_storage_mb - rates.storage_free_mb
            cost += seconds * extra_storage_mb / 1024 * rates.storage_gb_second
        return cost

    def _cloud_run(self, inv: Invocation, spec: Resources) -> float | None:
        table = self.table[inv.platform]
        if inv.duration_ms is None:
            return None
        step = table["billing_granularity_ms"]
        seconds = math.ceil(inv.duration_ms / step) * step / 1000
        vcpu = spec.vcpu if spec.vcpu is not None else table["default_vcpu"]
        memory_mb = inv.memory_mb or spec.memory_mb or table["default_memory_mb"]
        rates = table["billing_modes"][spec.billing or table["billing"]]  # checked at load
        per_second = vcpu * rates["vcpu_second"] + memory_mb / 1024 * rates["gib_second"]
        return seconds * per_second + rates["request"]

    def _azure(self, inv: Invocation, spec: Resources) -> float | None:
        table = self.table["azure_functions"]
        if inv.duration_ms is None:
            return None
        step = table["memory_rounding_mb"]
        used = inv.memory_used_mb or spec.memory_mb or table["default_memory_mb"]
        memory_mb = min(max(math.ceil(used / step) * step, step), table["max_memory_mb"])
        milliseconds = max(math.ceil(inv.duration_ms), table["min_duration_ms"])
        return milliseconds / 1000 * memory_mb / 1024 * table["gb_second"] + table["execution"]


PriceFormula = Callable[[Pricing, Invocation, Resources], "float | None"]
"""USD for one invocation of a platform, from the table (``pricing.table[<platform>]``)."""

FORMULAS: dict[str, PriceFormula] = {
    semconv.PLATFORM_AWS_LAMBDA: Pricing._lambda,
    semconv.PLATFORM_GCP_CLOUD_RUN: Pricing._cloud_run,
    semconv.PLATFORM_GCP_CLOUD_FUNCTIONS: Pricing._cloud_run,
    semconv.PLATFORM_AZURE_FUNCTIONS: Pricing._azure,
}
"""``cloud.platform`` -> formula: the shipped table's platforms, and those of the collector
kinds registered (:attr:`obsloop.collectors.registry.CollectorKind.pricing`)."""
