"""``scale_up`` and ``scale_down``: warm replicas (``autoscaling.minReplicas``) and memory
(``runtime.memory``), committed to the manifest.

- ``cold_start``, ``throughput`` above range: more warm replicas;
- ``latency`` above range: twice the memory (on Lambda, Cloud Run and Azure Functions memory
  also buys CPU), or more warm replicas when the manifest sets no memory;
- ``cost``, ``budget_forecast`` above range: fewer warm replicas.

Never for the green (canary) side: the deployment's capacity is sized for its declared
version, so a slow canary is rolled back, never answered with more memory for everyone.
The size of a step grows with the detection's score; the guard cuts it to ``maxReplicaStep``
/ ``maxMemoryStep`` and the manifest's bounds, and a scale-up must fit the budget.
"""

from __future__ import annotations

import calendar
import math
from datetime import datetime

from obsloop.core.manifests import Manifest
from obsloop.detectors.detection import Detection
from obsloop.feedback.actions.base import (
    Decision,
    Done,
    Limits,
    Proposal,
    Services,
    Step,
    above_range,
    is_green,
)
from obsloop.feedback.actions.commit import commit_changes

REPLICAS = "autoscaling.minReplicas"
MEMORY = "runtime.memory"

MAX_REPLICA_ASK = 4
"""Replicas a detection with score 1.0 asks for; the policy's maxReplicaStep usually cuts it."""


class Scale:
    """One direction of scaling; ``SCALE_UP`` and ``SCALE_DOWN`` are the registered two."""

    permission = "scale"
    cooldown = True

    def __init__(self, up: bool) -> None:
        self.up = up
        self.name = "scale_up" if up else "scale_down"

    def plan(self, detection: Detection, manifest: Manifest) -> Proposal | None:
        if is_green(detection, manifest) or not above_range(detection):
            return None
        ask = max(1, math.ceil(detection.score * MAX_REPLICA_ASK))
        replicas = manifest.min_replicas or 0
        if self.up and detection.kind in ("cold_start", "throughput"):
            return Proposal(self.name, {REPLICAS: replicas + ask})
        if self.up and detection.kind == "latency":
            if manifest.memory_mb is not None:
                return Proposal(self.name, {MEMORY: manifest.memory_mb * 2})
            return Proposal(self.name, {REPLICAS: replicas + ask})
        if not self.up and detection.kind in ("cost", "budget_forecast"):
            return Proposal(self.name, {REPLICAS: max(0, replicas - ask)})
        return None

    def guard(self, manifest: Manifest, proposal: Proposal, limits: Limits) -> Decision:
        rules, up = limits.rules, self.up
        current = {REPLICAS: manifest.min_replicas, MEMORY: manifest.memory_mb}
        bounds = {
            REPLICAS: (0, manifest.max_replicas, rules.max_replica_step),
            MEMORY: (rules.memory_min_mb, rules.memory_max_mb, rules.max_memory_step_mb),
        }
        before: dict[str, float] = {}
        after: dict[str, float] = {}
        notes = []
        for path, wanted in proposal.changes.items():
            old = current.get(path)
            if old is None:
                notes.append(f"{path} is not set in the manifest")
                continue
            low, high, step = bounds[path]
            if high is None:
                notes.append(f"{path} has no upper bound in the manifest")
                continue
            target = int(min(wanted, old + step, high) if up else max(wanted, old - step, low))
            if (up and target <= old) or (not up and target >= old):
                notes.append(f"{path} {old} is at its {'upper' if up else 'lower'} bound")
                continue
            if target != int(wanted):
                notes.append(f"{path} limited to {target} (asked {int(wanted)})")
            before[path], after[path] = old, target
        if not after:
            return Decision("noop", "; ".join(notes) or "nothing to change", self.name)
        if up and manifest.budget_monthly_usd is not None:
            refusal = _over_budget(manifest, before, after, limits)
            if refusal:
                return Decision("refused", refusal, self.name, before, after)
        reason = "; ".join(["within bounds, step and budget", *notes])
        return Decision("allowed", reason, self.name, before, after)

    async def execute(self, step: Step, services: Services) -> Done:
        return await commit_changes(step, services)


SCALE_UP = Scale(up=True)
SCALE_DOWN = Scale(up=False)


def _month_left(now: datetime) -> float:
    days = calendar.monthrange(now.year, now.month)[1]
    elapsed = (now.day - 1 + (now.hour * 3600 + now.minute * 60 + now.second) / 86400) / days
    return max(0.0, 1.0 - elapsed)


def _over_budget(
    manifest: Manifest, before: dict[str, float], after: dict[str, float], limits: Limits
) -> str | None:
    """Warm capacity (replicas x GB) is what a scale-up adds to the bill; the rest of the
    month of it must fit under ``finops.budgetLimit`` on top of the spend forecast."""
    forecast = limits.forecast_monthly_usd
    if forecast is None:
        return "budget: no cost forecast for this deployment; scale-up refused"

    def capacity(values: dict[str, float]) -> float:
        replicas = values.get(REPLICAS, manifest.min_replicas or 0)
        memory = values.get(MEMORY, manifest.memory_mb or 1024)
        return replicas * memory / 1024

    extra = (capacity(after) - capacity(before)) * limits.replica_gb_month_usd
    extra *= _month_left(limits.now)
    budget = manifest.budget_monthly_usd or 0.0
    if forecast + extra > budget:
        return (
            f"budget: forecast ${forecast:,.2f} + ${extra:,.2f} for the change "
            f"exceeds finops.budgetLimit ${budget:,.2f}/month"
        )
    return None
