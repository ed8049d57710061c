"""The effective guardrails for one deployment, as the policy file resolves them.

A plain record, so the feedback actions' guards read it without the policy file's model
(:mod:`obsloop.feedback.policy` resolves defaults, namespaces and named policies into it).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta

from obsloop.detectors.detection import Severity


@dataclass(frozen=True)
class Rules:
    """The effective rules for one deployment."""

    allowed_actions: frozenset[str] = frozenset({"alert"})
    """Permissions granted: ``alert`` and registered actions' ``permission`` names."""
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
