"""What a feedback action is: the protocol every action implements, and the records that
pass between the responder, the policy and the action.

An action answers four questions, each in one place:

- ``plan``: does this detection, about this manifest, ask for me (and for what values)?
- ``permission``: which ``allowedActions`` entry of the policy file lets me run;
  ``cooldown``: whether the policy's cooldown holds me back like other actions;
- ``guard``: my own guardrails, after the common ones (permission, minSeverity, daily
  limit, cooldown); it returns the :class:`Decision` whose ``before``/``after`` the audit
  row records;
- ``execute``: do it (outside dry-run), returning the outcome, reason and reference
  (commit, pull request, run id, ticket) of the audit row.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Literal, Protocol

from obsloop.core import semconv
from obsloop.core.manifests import Manifest
from obsloop.detectors.detection import VARIANT, Detection, Severity
from obsloop.feedback.delivery import Sender
from obsloop.feedback.forges import Forge
from obsloop.feedback.gitops import GitOpsRepo
from obsloop.feedback.retrain import RetrainTrigger
from obsloop.feedback.rules import Rules

Outcome = Literal["allowed", "refused", "noop"]
"""A guard's verdict."""
Executed = Literal["applied", "refused", "noop", "failed"]
"""What running an allowed action came to (the audit row's outcome)."""


@dataclass(frozen=True)
class Proposal:
    """What a detection asks for: the spec values it would like (before guardrails)."""

    action: str
    """The registered action's name; also the audit row's ``action``."""
    changes: dict[str, float] = field(default_factory=dict)
    severity: Severity = "critical"
    """The severity of the detection asking (see ``minSeverity``)."""
    kind: str = ""
    """The kind of the detection asking (see ``retrainOn``)."""


@dataclass(frozen=True)
class Decision:
    outcome: Outcome
    reason: str
    action: str
    before: dict[str, float] = field(default_factory=dict)
    after: dict[str, float] = field(default_factory=dict)
    """The guarded changes to write: within bounds and step, possibly less than proposed."""

    @property
    def allowed(self) -> bool:
        return self.outcome == "allowed"


@dataclass(frozen=True)
class Limits:
    """What an action's guard reads besides the manifest and the proposal."""

    rules: Rules
    now: datetime
    forecast_monthly_usd: float | None
    """The deployment's month-end spend forecast, ``None`` when unknown."""
    replica_gb_month_usd: float
    """The policy file's price of one warm replica with 1 GB for a month."""


@dataclass(frozen=True)
class Step:
    """One allowed action, ready to execute."""

    detection: Detection
    manifest: Manifest
    proposal: Proposal
    decision: Decision
    recheck: Callable[[Manifest], Decision]
    """The guardrails again for a fresher copy of the manifest (a human may have pushed
    since the decision); history is not counted twice."""


@dataclass(frozen=True)
class Services:
    """What the responder was built with, for actions to act through."""

    repo: GitOpsRepo
    forge: Forge | None
    sender: Sender
    """HTTP deliveries with retries, dead letters and metrics."""
    retrain: Sequence[RetrainTrigger]
    clock: Callable[[], datetime]


@dataclass(frozen=True)
class Done:
    """The audit row's outcome, reason and reference for an executed action."""

    outcome: Executed
    reason: str
    reference: str = ""


class FeedbackAction(Protocol):
    name: str
    """Registry key, ``Proposal.action`` and the audit row's ``action``."""
    permission: str
    """The ``allowedActions`` entry of the policy file that lets this action run."""
    cooldown: bool
    """Whether ``cooldown`` applies (a rollback does not wait: a regression is live)."""

    def plan(self, detection: Detection, manifest: Manifest) -> Proposal | None: ...

    def guard(self, manifest: Manifest, proposal: Proposal, limits: Limits) -> Decision: ...

    async def execute(self, step: Step, services: Services) -> Done: ...


def is_green(detection: Detection, manifest: Manifest) -> bool:
    """Whether the detection is about the canary side rather than the declared version:
    labelled so by a canary comparison, or about a model version other than the manifest's
    ``modelRef`` (a window series of the canary version itself)."""
    version = detection.series.get(semconv.MODEL_VERSION)
    return detection.series.get(VARIANT) == "green" or (
        version is not None and version != manifest.model_version
    )


def above_range(detection: Detection) -> bool:
    """True unless the detector says every observed value is below its expected range (a
    latency or cost *drop* is an anomaly too, and must not scale anything)."""
    judged = [name for name in detection.observed if name in detection.expected]
    if not judged:
        return True
    return any(detection.observed[name] > detection.expected[name][1] for name in judged)
