"""Policy-as-code guardrails: what the loop may change, how far, how often, at what cost.

The policy file lives in the GitOps repository next to the manifests, so a change to the
guardrails is reviewed and versioned like any deployment change. Its shape::

    kind: FeedbackPolicy
    defaults:                      # every deployment
      allowedActions: [alert]      # alert | scale | rollback | retrain
      maxReplicaStep: 2            # replicas per change
      maxMemoryStep: 2048MB        # memory per change
      cooldown: 30m                # between two actions on one deployment
      maxActionsPerDay: 6          # per deployment, rolling 24 hours
      minSeverity: critical        # detections below it only alert
      retrainOn: [drift, quality]  # detection kinds that may retrain ([quality]: drift alone never does)
      memory: {min: 128MB, max: 10240MB}
    pricing:
      replicaGbMonthUsd: 10.8      # one warm replica with 1 GB for a month
    namespaces:                    # replace the defaults they name, per namespace
      ai-production: {allowedActions: [alert, scale, rollback, retrain]}
    policies:                      # every name a manifest lists under spec.policies
      data-privacy-compliance: {description: "..."}
      model-explainability-required: {allowedActions: [alert, rollback]}

A named policy may only tighten the rules (the smaller step, the longer cooldown, the
intersection of allowed actions, the higher severity), so attaching a policy to a manifest
can never grant it more than its namespace allows.

``minSeverity`` is how sure the detectors must be before anything changes. The detectors
send a window anomaly as ``warning`` or ``error`` when it opens and as ``critical`` once it
has lasted ``detectors.confirm_after_windows`` windows; a drift is ``critical`` when the
predictions after it confirm the change, a canary regression and a budget forecast past
the budget always are. The default acts on those only: a single anomalous window (most of
them are noise: a p95 that a few extra cold starts lift) alerts on-call and changes nothing.

Evaluation is a pure function of the manifest, the proposal, the action history and the
clock, which is what the property-based tests drive.
"""

from __future__ import annotations

import calendar
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from typing import Any, Literal, get_args

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator
from ruamel.yaml import YAML
from ruamel.yaml.comments import CommentedMap, CommentedSeq
from ruamel.yaml.error import MarkedYAMLError

from obsloop.detectors.detection import Severity
from obsloop.feedback.manifests import Manifest, ManifestError, parse_memory_mb

POLICY_KIND = "FeedbackPolicy"

Action = Literal["scale_up", "scale_down", "rollback", "retrain"]
RetrainReason = Literal["drift", "quality"]
Permission = Literal["alert", "scale", "rollback", "retrain"]
Outcome = Literal["allowed", "refused", "noop"]

REPLICAS = "autoscaling.minReplicas"
MEMORY = "runtime.memory"
BLUE = "trafficSplit.blue"
GREEN = "trafficSplit.green"

SEVERITY_RANK: dict[str, int] = {name: rank for rank, name in enumerate(get_args(Severity))}

_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(s|m|h|d)?\s*$")
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}


def parse_duration(value: Any) -> timedelta:
    """``90`` (seconds), ``"90s"``, ``"30m"``, ``"2h"``, ``"1d"``."""
    match = _DURATION.match(str(value))
    if isinstance(value, bool) or not match:
        raise ValueError(f"not a duration like '30m': {value!r}")
    return timedelta(seconds=float(match.group(1)) * _UNITS[match.group(2) or "s"])


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)


class _Bounds(_Strict):
    min: int = 128
    max: int = 10240

    @field_validator("min", "max", mode="before")
    @classmethod
    def _size(cls, value: Any) -> int:
        return parse_memory_mb(value)


class RuleSet(_Strict):
    """Rule values as written; ``None`` means "not said here"."""

    allowed_actions: list[Permission] | None = Field(None, alias="allowedActions")
    max_replica_step: int | None = Field(None, alias="maxReplicaStep", ge=1)
    max_memory_step: int | None = Field(None, alias="maxMemoryStep")
    cooldown: timedelta | None = None
    max_actions_per_day: int | None = Field(None, alias="maxActionsPerDay", ge=0)
    min_severity: Severity | None = Field(None, alias="minSeverity")
    retrain_on: list[RetrainReason] | None = Field(None, alias="retrainOn")
    memory: _Bounds | None = None
    description: str = ""

    @field_validator("max_memory_step", mode="before")
    @classmethod
    def _step(cls, value: Any) -> int | None:
        return None if value is None else parse_memory_mb(value)

    @field_validator("cooldown", mode="before")
    @classmethod
    def _cooldown(cls, value: Any) -> timedelta | None:
        return None if value is None else parse_duration(value)


_UNDEFINED = RuleSet(allowed_actions=["alert"])


class _Pricing(_Strict):
    replica_gb_month_usd: float = Field(10.8, alias="replicaGbMonthUsd", ge=0)
    """AWS Lambda provisioned concurrency: $0.0000041667 per GB-second, about $10.8."""


class _PolicyDocument(_Strict):
    kind: Literal["FeedbackPolicy"]
    api_version: str | None = Field(None, alias="apiVersion")
    defaults: RuleSet = RuleSet()
    pricing: _Pricing = _Pricing()
    namespaces: dict[str, RuleSet] = {}
    policies: dict[str, RuleSet] = {}


@dataclass(frozen=True)
class Rules:
    """The effective rules for one deployment."""

    allowed_actions: frozenset[str] = frozenset({"alert"})
    max_replica_step: int = 2
    max_memory_step_mb: int = 2048
    cooldown: timedelta = timedelta(minutes=30)
    max_actions_per_day: int = 6
    min_severity: Severity = "critical"
    """Detections less severe than this are alerted on, never acted on."""
    retrain_on: frozenset[str] = frozenset({"drift", "quality"})
    """Detection kinds that may start a retraining: ``{"quality"}`` retrains only on a
    measured (or, with a low enough ``minSeverity``, estimated) quality drop, not on drift."""
    memory_min_mb: int = 128
    memory_max_mb: int = 10240

    def overridden(self, rules: RuleSet) -> Rules:
        """Values the namespace states replace the defaults."""
        return replace(
            self,
            allowed_actions=frozenset(rules.allowed_actions)
            if rules.allowed_actions is not None
            else self.allowed_actions,
            max_replica_step=rules.max_replica_step or self.max_replica_step,
            max_memory_step_mb=rules.max_memory_step or self.max_memory_step_mb,
            cooldown=rules.cooldown if rules.cooldown is not None else self.cooldown,
            max_actions_per_day=rules.max_actions_per_day
            if rules.max_actions_per_day is not None
            else self.max_actions_per_day,
            min_severity=rules.min_severity or self.min_severity,
            retrain_on=frozenset(rules.retrain_on) if rules.retrain_on is not None else self.retrain_on,
            memory_min_mb=rules.memory.min if rules.memory else self.memory_min_mb,
            memory_max_mb=rules.memory.max if rules.memory else self.memory_max_mb,
        )

    def tightened(self, rules: RuleSet) -> Rules:
        """A named policy can only make each rule stricter."""
        return replace(
            self,
            allowed_actions=self.allowed_actions & frozenset(rules.allowed_actions)
            if rules.allowed_actions is not None
            else self.allowed_actions,
            max_replica_step=min(self.max_replica_step, rules.max_replica_step or 10**9),
            max_memory_step_mb=min(self.max_memory_step_mb, rules.max_memory_step or 10**9),
            cooldown=max(self.cooldown, rules.cooldown or timedelta(0)),
            max_actions_per_day=min(
                self.max_actions_per_day,
                10**9 if rules.max_actions_per_day is None else rules.max_actions_per_day,
            ),
            min_severity=max(
                self.min_severity, rules.min_severity or "info", key=SEVERITY_RANK.__getitem__
            ),
            retrain_on=self.retrain_on & frozenset(rules.retrain_on)
            if rules.retrain_on is not None
            else self.retrain_on,
            memory_min_mb=max(self.memory_min_mb, rules.memory.min if rules.memory else 0),
            memory_max_mb=min(self.memory_max_mb, rules.memory.max if rules.memory else 10**9),
        )


@dataclass(frozen=True)
class TakenAction:
    """One action already taken (or, in dry-run, that would have been taken)."""

    deployment: str
    action: str
    time: datetime


@dataclass(frozen=True)
class Proposal:
    """What a detection asks for: the spec values it would like (before guardrails)."""

    action: Action
    changes: dict[str, float] = field(default_factory=dict)
    severity: Severity = "critical"
    """The severity of the detection asking (see ``minSeverity``)."""
    kind: str = ""
    """The kind of the detection asking (see ``retrainOn``)."""


@dataclass(frozen=True)
class Decision:
    outcome: Outcome
    reason: str
    action: Action
    before: dict[str, float] = field(default_factory=dict)
    after: dict[str, float] = field(default_factory=dict)
    """The guarded changes to write: within bounds and step, possibly less than proposed."""

    @property
    def allowed(self) -> bool:
        return self.outcome == "allowed"


_PERMISSION: dict[str, str] = {
    "scale_up": "scale",
    "scale_down": "scale",
    "rollback": "rollback",
    "retrain": "retrain",
}


def _month_left(now: datetime) -> float:
    days = calendar.monthrange(now.year, now.month)[1]
    elapsed = (now.day - 1 + (now.hour * 3600 + now.minute * 60 + now.second) / 86400) / days
    return max(0.0, 1.0 - elapsed)


class Policy:
    """A parsed policy file."""

    def __init__(self, document: _PolicyDocument | None = None, source: str = "<defaults>"):
        self.document = document or _PolicyDocument(kind=POLICY_KIND)
        self.source = source

    @property
    def replica_gb_month_usd(self) -> float:
        return self.document.pricing.replica_gb_month_usd

    def check_references(self, manifest: Manifest) -> ManifestError | None:
        """Every name under ``spec.policies`` must be defined, or the manifest is invalid:
        an undefined policy is a guardrail somebody expects and nobody enforces."""
        missing = [name for name in manifest.policies if name not in self.document.policies]
        if not missing:
            return None
        return ManifestError(
            manifest.path,
            manifest.line,
            f"spec.policies names {', '.join(map(repr, missing))}, not defined in {self.source}",
        )

    def rules_for(self, manifest: Manifest) -> Rules:
        rules = Rules().overridden(self.document.defaults)
        if manifest.namespace in self.document.namespaces:
            rules = rules.overridden(self.document.namespaces[manifest.namespace])
        for name in manifest.policies:
            # An undefined policy fails closed: nothing but alerts until it is defined.
            rules = rules.tightened(self.document.policies.get(name, _UNDEFINED))
        return replace(
            rules,
            memory_min_mb=max(rules.memory_min_mb, manifest.min_memory_mb or 0),
            memory_max_mb=min(rules.memory_max_mb, manifest.max_memory_mb or 10**9),
        )

    def permits(self, manifest: Manifest, permission: Permission) -> bool:
        return permission in self.rules_for(manifest).allowed_actions

    def evaluate(
        self,
        manifest: Manifest,
        proposal: Proposal,
        history: Iterable[TakenAction],
        now: datetime,
        forecast_monthly_usd: float | None = None,
    ) -> Decision:
        """Guard one proposal. ``history`` may hold other deployments' actions too."""
        rules = self.rules_for(manifest)
        action = proposal.action

        def refuse(reason: str, outcome: Outcome = "refused") -> Decision:
            return Decision(outcome, reason, action)

        permission = _PERMISSION[action]
        if permission not in rules.allowed_actions:
            return refuse(f"'{permission}' is not allowed for namespace {manifest.namespace}")
        if SEVERITY_RANK[proposal.severity] < SEVERITY_RANK[rules.min_severity]:
            return refuse(
                f"severity {proposal.severity} is below minSeverity {rules.min_severity}: "
                "alert only (not confirmed yet)"
            )
        own = sorted((t for t in history if t.deployment == manifest.key), key=lambda t: t.time)
        today = [t for t in own if now - t.time < timedelta(days=1)]
        if len(today) >= rules.max_actions_per_day:
            return refuse(
                f"daily limit: {len(today)} actions in the last 24h "
                f"(maxActionsPerDay {rules.max_actions_per_day})"
            )
        if own and action != "rollback" and now - own[-1].time < rules.cooldown:
            ready = own[-1].time + rules.cooldown
            return refuse(
                f"cooldown: last action {own[-1].action} at {own[-1].time.isoformat()}, "
                f"next allowed at {ready.isoformat()}"
            )
        if action == "retrain":
            if proposal.kind and proposal.kind not in rules.retrain_on:
                return refuse(f"retrainOn {sorted(rules.retrain_on)} does not include {proposal.kind}: "
                              "alert only until quality drops")
            return Decision("allowed", "retraining allowed", action)
        if action == "rollback":
            return self._rollback(manifest)
        return self._scale(manifest, proposal, rules, now, forecast_monthly_usd)

    def _rollback(self, manifest: Manifest) -> Decision:
        if manifest.green_percent is None or manifest.blue_percent is None:
            return Decision("refused", "manifest has no blue/green trafficSplit", "rollback")
        before = {BLUE: manifest.blue_percent, GREEN: manifest.green_percent}
        if manifest.green_percent == 0:
            return Decision("noop", "green already receives 0% of traffic", "rollback", before)
        after = {BLUE: 100.0, GREEN: 0.0}
        return Decision(
            "allowed", "canary regressed: all traffic back to blue", "rollback", before, after
        )

    def _scale(
        self,
        manifest: Manifest,
        proposal: Proposal,
        rules: Rules,
        now: datetime,
        forecast: float | None,
    ) -> Decision:
        up = proposal.action == "scale_up"
        current = {REPLICAS: manifest.min_replicas, MEMORY: manifest.memory_mb}
        limits = {
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
            low, high, step = limits[path]
            target = int(min(wanted, old + step, high) if up else max(wanted, old - step, low))
            if (up and target <= old) or (not up and target >= old):
                notes.append(f"{path} {old} is at its {'upper' if up else 'lower'} bound")
                continue
            if target != int(wanted):
                notes.append(f"{path} limited to {target} (asked {int(wanted)})")
            before[path], after[path] = old, target
        if not after:
            return Decision("noop", "; ".join(notes) or "nothing to change", proposal.action)
        if up and manifest.budget_monthly_usd is not None:
            refusal = self._budget(manifest, before, after, now, forecast)
            if refusal:
                return Decision("refused", refusal, proposal.action, before, after)
        reason = "; ".join(["within bounds, step and budget", *notes])
        return Decision("allowed", reason, proposal.action, before, after)

    def _budget(
        self,
        manifest: Manifest,
        before: dict[str, float],
        after: dict[str, float],
        now: datetime,
        forecast: float | None,
    ) -> str | None:
        """Warm capacity (replicas x GB) is what a scale-up adds to the bill; the rest of the
        month of it must fit under ``finops.budgetLimit`` on top of the spend forecast."""
        if forecast is None:
            return "budget: no cost forecast for this deployment; scale-up refused"

        def capacity(values: dict[str, float]) -> float:
            replicas = values.get(REPLICAS, manifest.min_replicas)
            memory = values.get(MEMORY, manifest.memory_mb or 1024)
            return replicas * memory / 1024

        extra = (capacity(after) - capacity(before)) * self.replica_gb_month_usd
        extra *= _month_left(now)
        budget = manifest.budget_monthly_usd or 0.0
        if forecast + extra > budget:
            return (
                f"budget: forecast ${forecast:,.2f} + ${extra:,.2f} for the change "
                f"exceeds finops.budgetLimit ${budget:,.2f}/month"
            )
        return None


def _line_of(node: Any, loc: Sequence[int | str]) -> int:
    line = 1
    for part in loc:
        if isinstance(node, CommentedMap) and part in node:
            line = node.lc.key(part)[0] + 1
            node = node[part]
        elif isinstance(node, CommentedSeq) and isinstance(part, int) and part < len(node):
            line = node.lc.item(part)[0] + 1
            node = node[part]
        else:
            break
    return line


def parse_policy(path: str, text: str) -> tuple[Policy | None, ManifestError | None]:
    """The policy file, or the error (file, line, reason) that makes it unusable. With no
    usable policy the loop refuses every change: guardrails fail closed."""
    try:
        data = YAML(typ="rt").load(text)
    except MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        return None, ManifestError(
            path, mark.line + 1 if mark else 1, f"not valid YAML: {exc.problem}"
        )
    try:
        return Policy(_PolicyDocument.model_validate(data or {}), path), None
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"]) or "<root>"
        return None, ManifestError(path, _line_of(data, first["loc"]), f"{where}: {first['msg']}")
