"""``rollback``: all traffic back to blue (``trafficSplit``) when the green (canary) side is
slow, failing or less accurate; committed to the manifest, without waiting out a cooldown
(the regression is live), but counted against the daily limit."""

from __future__ import annotations

from obsloop.core.manifests import Manifest
from obsloop.detectors.detection import Detection
from obsloop.feedback.actions.base import Decision, Done, Limits, Proposal, Services, Step, is_green
from obsloop.feedback.actions.commit import commit_changes

BLUE = "trafficSplit.blue"
GREEN = "trafficSplit.green"


class Rollback:
    name = "rollback"
    permission = "rollback"
    cooldown = False

    def plan(self, detection: Detection, manifest: Manifest) -> Proposal | None:
        if is_green(detection, manifest) and detection.kind in ("latency", "error_rate", "quality"):
            return Proposal(self.name)
        return None

    def guard(self, manifest: Manifest, proposal: Proposal, limits: Limits) -> Decision:
        if manifest.green_percent is None or manifest.blue_percent is None:
            return Decision("refused", "manifest has no blue/green trafficSplit", self.name)
        before = {BLUE: manifest.blue_percent, GREEN: manifest.green_percent}
        if manifest.green_percent == 0:
            return Decision("noop", "green already receives 0% of traffic", self.name, before)
        after = {BLUE: 100.0, GREEN: 0.0}
        return Decision("allowed", "canary regressed: all traffic back to blue", self.name, before, after)

    async def execute(self, step: Step, services: Services) -> Done:
        return await commit_changes(step, services)
