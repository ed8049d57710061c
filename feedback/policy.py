"""Policy-as-code guardrails: what the feedback actions may change, how far, how often, at what cost.

The policy file lives in the GitOps repository next to the manifests, so a change to the
guardrails is reviewed and versioned like any deployment change. Its shape::

    kind: FeedbackPolicy
    defaults:                      # every deployment
      allowedActions: [alert]      # alert | a registered action's permission: scale | rollback | retrain
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

``minSeverity`` is how sure the detectors must be before anything changes (the default acts
on confirmed detections only). What each action may change beyond these common rules is its
own ``guard`` (:mod:`obsloop.feedback.actions`); why: docs/design/feedback-actions.md.

Evaluation is a pure function of the manifest, the proposal, the action history and the
clock, which is what the property-based tests drive.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import replace
from datetime import datetime, timedelta
from typing import Annotated, Any, Literal, get_args

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, ValidationError, field_validator

from obsloop.core.manifests import Manifest, ManifestError, line_of, load_document, parse_memory_mb
from obsloop.detectors.detection import Severity
from obsloop.feedback.actions import ACTIONS, permissions
from obsloop.feedback.actions.base import Decision, Limits, Outcome, Proposal
from obsloop.feedback.audit import TakenAction
from obsloop.feedback.rules import Rules

POLICY_KIND = "FeedbackPolicy"

RetrainReason = Literal["drift", "quality"]

SEVERITY_RANK: dict[str, int] = {name: rank for rank, name in enumerate(get_args(Severity))}

_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(s|m|h|d)?\s*$")
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}


def parse_duration(value: Any) -> timedelta:
    """``90`` (seconds), ``"90s"``, ``"30m"``, ``"2h"``, ``"1d"``."""
    match = _DURATION.match(str(value))
    if isinstance(value, bool) or not match:
        raise ValueError(f"not a duration like '30m': {value!r}")
    return timedelta(seconds=float(match.group(1)) * _UNITS[match.group(2) or "s"])


def _known_permission(name: str) -> str:
    known = permissions()
    if name not in known:
        raise ValueError(f"unknown permission {name!r}: one of {', '.join(sorted(known))}")
    return name


Permission = Annotated[str, AfterValidator(_known_permission)]
"""``alert`` or a registered feedback action's ``permission``."""


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


def _overridden(base: Rules, rules: RuleSet) -> Rules:
    """Values the namespace states replace the defaults."""
    return replace(
        base,
        allowed_actions=frozenset(rules.allowed_actions)
        if rules.allowed_actions is not None
        else base.allowed_actions,
        max_replica_step=rules.max_replica_step or base.max_replica_step,
        max_memory_step_mb=rules.max_memory_step or base.max_memory_step_mb,
        cooldown=rules.cooldown if rules.cooldown is not None else base.cooldown,
        max_actions_per_day=rules.max_actions_per_day
        if rules.max_actions_per_day is not None
        else base.max_actions_per_day,
        min_severity=rules.min_severity or base.min_severity,
        retrain_on=frozenset(rules.retrain_on) if rules.retrain_on is not None else base.retrain_on,
        memory_min_mb=rules.memory.min if rules.memory else base.memory_min_mb,
        memory_max_mb=rules.memory.max if rules.memory else base.memory_max_mb,
    )


def _tightened(base: Rules, rules: RuleSet) -> Rules:
    """A named policy can only make each rule stricter."""
    return replace(
        base,
        allowed_actions=base.allowed_actions & frozenset(rules.allowed_actions)
        if rules.allowed_actions is not None
        else base.allowed_actions,
        max_replica_step=min(base.max_replica_step, rules.max_replica_step or 10**9),
        max_memory_step_mb=min(base.max_memory_step_mb, rules.max_memory_step or 10**9),
        cooldown=max(base.cooldown, rules.cooldown or timedelta(0)),
        max_actions_per_day=min(
            base.max_actions_per_day,
            10**9 if rules.max_actions_per_day is None else rules.max_actions_per_day,
        ),
        min_severity=max(
            base.min_severity, rules.min_severity or "info", key=SEVERITY_RANK.__getitem__
        ),
        retrain_on=base.retrain_on & frozenset(rules.retrain_on)
        if rules.retrain_on is not None
        else base.retrain_on,
        memory_min_mb=max(base.memory_min_mb, rules.memory.min if rules.memory else 0),
        memory_max_mb=min(base.memory_max_mb, rules.memory.max if rules.memory else 10**9),
    )


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
        rules = _overridden(Rules(), self.document.defaults)
        if manifest.namespace in self.document.namespaces:
            rules = _overridden(rules, self.document.namespaces[manifest.namespace])
        for name in manifest.policies:
            # An undefined policy fails closed: nothing but alerts until it is defined.
            rules = _tightened(rules, self.document.policies.get(name, _UNDEFINED))
        return replace(
            rules,
            memory_min_mb=max(rules.memory_min_mb, manifest.min_memory_mb or 0),
            memory_max_mb=min(rules.memory_max_mb, manifest.max_memory_mb or 10**9),
        )

    def permits(self, manifest: Manifest, permission: str) -> bool:
        return permission in self.rules_for(manifest).allowed_actions

    def evaluate(
        self,
        manifest: Manifest,
        proposal: Proposal,
        history: Iterable[TakenAction],
        now: datetime,
        forecast_monthly_usd: float | None = None,
    ) -> Decision:
        """Guard one proposal: the common rules, then the action's own ``guard``.
        ``history`` may hold other deployments' actions too."""
        rules = self.rules_for(manifest)
        name = proposal.action

        def refuse(reason: str, outcome: Outcome = "refused") -> Decision:
            return Decision(outcome, reason, name)

        action = ACTIONS.get(name)
        if action is None:
            return refuse(f"no feedback action named {name!r} is registered")
        if action.permission not in rules.allowed_actions:
            return refuse(f"'{action.permission}' is not allowed for namespace {manifest.namespace}")
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
        if own and action.cooldown and now - own[-1].time < rules.cooldown:
            ready = own[-1].time + rules.cooldown
            return refuse(
                f"cooldown: last action {own[-1].action} at {own[-1].time.isoformat()}, "
                f"next allowed at {ready.isoformat()}"
            )
        limits = Limits(rules, now, forecast_monthly_usd, self.replica_gb_month_usd)
        return action.guard(manifest, proposal, limits)


def parse_policy(path: str, text: str) -> tuple[Policy | None, ManifestError | None]:
    """The policy file, or the error (file, line, reason) that makes it unusable. With no
    usable policy the responder refuses every change: guardrails fail closed."""
    data, error = load_document(path, text)
    if error is not None:
        return None, error
    try:
        return Policy(_PolicyDocument.model_validate(data or {}), path), None
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"]) or "<root>"
        return None, ManifestError(path, line_of(data, first["loc"]), f"{where}: {first['msg']}")
