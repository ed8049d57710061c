"""The feedback actions: the registry the responder plans from and the policy guards by.

For each detection the responder asks the registered actions, in registration order, for a
plan; the first proposal wins (the built-in ones ask on disjoint detections). The policy
finds the action by the proposal's name, checks its ``permission`` and the common
guardrails, then its ``guard``; the responder executes it and audits the result under its
name. Nothing else names an action: a new one is a module with a class implementing
:class:`~obsloop.feedback.actions.base.FeedbackAction` and one :func:`register` call.

Built in (``docs/extending.md`` adds one): ``retrain`` on drift or a quality drop,
``rollback`` of a regressed canary, ``scale_up``/``scale_down`` of warm capacity; anything
else (an ``error_rate`` on blue, a cold start of the canary, ...) only alerts. The design:
docs/design/feedback-actions.md.
"""

from __future__ import annotations

import re
from dataclasses import replace

from obsloop.core.manifests import Manifest
from obsloop.detectors.detection import Detection
from obsloop.feedback.actions.base import FeedbackAction, Proposal
from obsloop.feedback.actions.retrain import Retrain
from obsloop.feedback.actions.rollback import Rollback
from obsloop.feedback.actions.scale import SCALE_DOWN, SCALE_UP
from obsloop.feedback.audit import ALERT, INVALID_FILE

ALWAYS_ALLOWED = "alert"
"""The permission of alerting, which is no action: alerts are never held back."""

ACTIONS: dict[str, FeedbackAction] = {}
"""Registered actions by name, in registration (planning) order."""

_NAME = re.compile(r"^[a-z][a-z0-9_]{0,39}$")


def register(action: FeedbackAction) -> FeedbackAction:
    """Add ``action`` to the registry (after the ones there); returns it."""
    for what, value in (("name", action.name), ("permission", action.permission)):
        if not _NAME.match(value):
            raise ValueError(f"feedback action {what} {value!r}: lower-case letters, digits and _")
    if action.name in ACTIONS or action.name in (ALERT, INVALID_FILE):
        raise ValueError(f"a feedback action named {action.name!r} exists (or names audit rows)")
    if action.permission == ALWAYS_ALLOWED:
        raise ValueError(f"feedback action {action.name!r}: '{ALWAYS_ALLOWED}' is granted everywhere; "
                         "give it a permission of its own")
    ACTIONS[action.name] = action
    return action


def permissions() -> frozenset[str]:
    """What a policy file's ``allowedActions`` may list."""
    return frozenset({ALWAYS_ALLOWED, *(action.permission for action in ACTIONS.values())})


def plan(detection: Detection, manifest: Manifest) -> Proposal | None:
    """The first registered action's proposal for ``detection``, carrying its severity and
    kind for the policy; ``None`` (alert only) when none asks or the detection clears."""
    if detection.cleared:
        return None
    for action in ACTIONS.values():
        proposal = action.plan(detection, manifest)
        if proposal is not None:
            return replace(proposal, severity=detection.severity, kind=detection.kind)
    return None


register(Retrain())
register(Rollback())
register(SCALE_UP)
register(SCALE_DOWN)
