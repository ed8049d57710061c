"""What each kind of detection asks of a deployment, before any guardrail is applied.

The mapping is deliberately small and predictable, because on-call engineers must be able to
guess what the loop did from the alert alone:

- ``cold_start``, ``throughput`` above range: more warm replicas (``autoscaling.minReplicas``);
- ``latency`` above range: twice the memory (on Lambda, Cloud Run and Azure Functions memory
  also buys CPU), or more warm replicas when the manifest sets no memory;
- ``cost``, ``budget_forecast`` above range: fewer warm replicas;
- ``latency`` or ``error_rate`` on the green (canary) side: roll traffic back to blue;
- ``drift``: retrain;
- ``quality`` (accuracy below its baseline): retrain, or on the green side roll back;
- anything else (``error_rate`` on blue, anything else about the green side): alert only.

The green side is a detection labelled so (a canary comparison), or one about a model
version other than the manifest's ``modelRef`` (the window series of the canary version
itself): the deployment's capacity is sized for its declared version, so a slow canary is
rolled back, never answered with more memory for everyone.

The size of a step grows with the detection's score; the policy then cuts it to the
configured maximum step and the manifest's bounds, and acts only on detections severe
enough (``minSeverity``): the proposal carries the detection's severity.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from datetime import datetime

from obsloop.core import semconv
from obsloop.detectors.detection import NAMESPACE, VARIANT, Detection, Kind
from obsloop.feedback.manifests import Manifest
from obsloop.feedback.policy import MEMORY, REPLICAS, Proposal

MAX_REPLICA_ASK = 4
"""Replicas a detection with score 1.0 asks for; the policy's maxReplicaStep usually cuts it."""


def _above_range(detection: Detection) -> bool:
    """True unless the detector says every observed value is below its expected range (a
    latency or cost *drop* is an anomaly too, and must not scale anything)."""
    judged = [name for name in detection.observed if name in detection.expected]
    if not judged:
        return True
    return any(detection.observed[name] > detection.expected[name][1] for name in judged)


def _green(detection: Detection, manifest: Manifest) -> bool:
    """Whether the detection is about the canary side rather than the declared version."""
    version = detection.series.get(semconv.MODEL_VERSION)
    return detection.series.get(VARIANT) == "green" or (
        version is not None and version != manifest.model_version
    )


def plan(detection: Detection, manifest: Manifest) -> Proposal | None:
    proposal = _wanted(detection, manifest)
    return None if proposal is None else replace(proposal, severity=detection.severity, kind=detection.kind)


def _wanted(detection: Detection, manifest: Manifest) -> Proposal | None:
    if detection.cleared:
        return None
    ask = max(1, math.ceil(detection.score * MAX_REPLICA_ASK))
    if detection.kind == "drift":
        return Proposal("retrain")
    if _green(detection, manifest):
        return Proposal("rollback") if detection.kind in ("latency", "error_rate", "quality") else None
    if detection.kind == "quality":
        return Proposal("retrain")
    if not _above_range(detection):
        return None
    if detection.kind in ("cold_start", "throughput"):
        return Proposal("scale_up", {REPLICAS: manifest.min_replicas + ask})
    if detection.kind == "latency":
        if manifest.memory_mb is not None:
            return Proposal("scale_up", {MEMORY: manifest.memory_mb * 2})
        return Proposal("scale_up", {REPLICAS: manifest.min_replicas + ask})
    if detection.kind in ("cost", "budget_forecast"):
        return Proposal("scale_down", {REPLICAS: max(0, manifest.min_replicas - ask)})
    return None


@dataclass(frozen=True)
class VariantStats:
    """One side of a blue/green split over the same window."""

    p95_ms: float
    error_rate: float
    requests: int


def canary_regression(
    manifest: Manifest,
    blue: VariantStats,
    green: VariantStats,
    window_end: datetime,
    latency_tolerance: float = 0.2,
    error_tolerance: float = 0.01,
    min_requests: int = 50,
) -> Detection | None:
    """A ``green`` detection when the canary is slower than blue by more than
    ``latency_tolerance`` (relative) or fails more often by more than ``error_tolerance``
    (absolute); ``None`` while green has seen too little traffic to judge."""
    if green.requests < min_requests or blue.requests < min_requests:
        return None
    latency_high = blue.p95_ms * (1 + latency_tolerance)
    errors_high = blue.error_rate + error_tolerance
    slow, failing = green.p95_ms > latency_high, green.error_rate > errors_high
    if not (slow or failing):
        return None
    kind: Kind = "error_rate" if failing else "latency"
    excess = (
        (green.error_rate - errors_high) / max(1e-9, 1 - errors_high)
        if failing
        else (green.p95_ms - latency_high) / green.p95_ms
    )
    window = window_end.isoformat(timespec="minutes")
    return Detection(
        id=f"canary:{manifest.key}:{manifest.model_version}:{kind}:{window}",
        time=window_end,
        series={
            semconv.FAAS_NAME: manifest.name,
            semconv.MODEL_NAME: manifest.model_name,
            semconv.MODEL_VERSION: manifest.model_version,
            NAMESPACE: manifest.namespace,
            VARIANT: "green",
        },
        kind=kind,
        score=min(1.0, max(0.0, 0.5 + excess)),
        severity="critical",
        observed={"p95_ms": green.p95_ms, "error_rate": green.error_rate},
        expected={"p95_ms": (0.0, latency_high), "error_rate": (0.0, errors_high)},
        summary=(
            f"canary (green) of {manifest.key} regressed: p95 {green.p95_ms:.0f} ms vs blue "
            f"{blue.p95_ms:.0f} ms, errors {green.error_rate:.2%} vs {blue.error_rate:.2%}"
        ),
    )
