"""Committing an allowed action's guarded values (``Decision.after``) to its manifest: the
execution of every action that edits the GitOps repository (scale, rollback).

The edit runs on the freshest checkout; if the values moved since the decision (a human
pushed), the guardrails are evaluated again against what is there now. In ``pull_request``
mode the commit goes to a branch of its own and the forge opens the pull request.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from datetime import UTC
from pathlib import Path

from obsloop.core.manifests import Manifest, parse_manifests
from obsloop.detectors.detection import Detection
from obsloop.feedback.actions.base import Decision, Done, Services, Step
from obsloop.feedback.gitops import Change
from obsloop.feedback.manifest_edit import apply_edits


def commit_message(detection: Detection, manifest: Manifest, decision: Decision) -> str:
    changes = ", ".join(
        f"{path} {decision.before[path]:g} -> {value:g}" for path, value in decision.after.items()
    )
    lines = [
        f"obsloop: {decision.action.replace('_', ' ')} {manifest.key}: {changes}",
        "",
        f"Detection: {detection.describe()}",
        f"Detection-Id: {detection.id}",
        f"Kind: {detection.kind}, score {detection.score:.2f}, severity {detection.severity}, "
        f"at {detection.time.astimezone(UTC).isoformat()}",
    ]
    for name, value in detection.observed.items():
        expected = detection.expected.get(name)
        range_text = f" (expected {expected[0]:g}..{expected[1]:g})" if expected else ""
        lines.append(f"Observed: {name}={value:g}{range_text}")
    lines += [f"Evidence: {link}" for link in detection.evidence]
    lines += [
        f"Change: {changes}",
        f"Manifest: {manifest.path}",
        f"Policy: {decision.reason}",
    ]
    return "\n".join(lines)


async def commit_changes(step: Step, services: Services) -> Done:
    """Commit (or open a pull request for) ``step.decision.after``; raises ``GitError``,
    ``DeliveryFailed`` or ``ManifestEditError``, which the responder audits as failed."""
    detection, manifest, decision = step.detection, step.manifest, step.decision
    change = Change(
        detection.id, manifest.key, commit_message(detection, manifest, decision), _edit(step)
    )
    result = await asyncio.to_thread(services.repo.commit, change)
    reference = result.sha
    if result.status == "noop":
        return Done("noop", "manifest already had the wanted values")
    if services.repo.mode == "pull_request" and services.forge is not None:
        subject = change.message.partition("\n")[0]
        reference = await services.forge.open(
            result.branch, services.repo.branch, subject, change.message
        )
    if result.status == "duplicate":
        return Done("noop", f"already committed as {result.sha}", reference)
    return Done("applied", decision.reason, reference)


def _edit(step: Step) -> Callable[[Path], list[str]]:
    manifest = step.manifest

    def edit(root: Path) -> list[str]:
        text = (root / manifest.path).read_text(encoding="utf-8")
        fresh = next(
            (m for m in parse_manifests(manifest.path, text)[0] if m.key == manifest.key),
            None,
        )
        if fresh is None:
            return []
        after = step.decision.after
        if fresh != manifest:
            again = step.recheck(fresh)
            after = again.after if again.allowed else {}
        if not after:
            return []
        (root / manifest.path).write_text(apply_edits(text, fresh, after), encoding="utf-8")
        return [manifest.path]

    return edit
