"""``retrain``: start a training run on every configured retraining target
(``feedback.retrain``) when the inputs drifted or the measured quality dropped on the
declared version (a quality drop of the canary is rolled back instead). The policy's
``retrainOn`` may require a quality drop: drift alone is often harmless."""

from __future__ import annotations

from obsloop.core.manifests import Manifest
from obsloop.detectors.detection import Detection
from obsloop.feedback.actions.base import Decision, Done, Limits, Proposal, Services, Step, is_green


class Retrain:
    name = "retrain"
    permission = "retrain"
    cooldown = True

    def plan(self, detection: Detection, manifest: Manifest) -> Proposal | None:
        if detection.kind == "drift" or (detection.kind == "quality" and not is_green(detection, manifest)):
            return Proposal(self.name)
        return None

    def guard(self, manifest: Manifest, proposal: Proposal, limits: Limits) -> Decision:
        retrain_on = limits.rules.retrain_on
        if proposal.kind and proposal.kind not in retrain_on:
            return Decision("refused", f"retrainOn {sorted(retrain_on)} does not include {proposal.kind}: "
                            "alert only until quality drops", self.name)
        return Decision("allowed", "retraining allowed", self.name)

    async def execute(self, step: Step, services: Services) -> Done:
        if not services.retrain:
            return Done("refused", "no retraining target configured")
        references = []
        for trigger in services.retrain:
            references.append(f"{trigger.name}={await trigger.trigger(step.detection, step.manifest)}")
        return Done("applied", step.decision.reason, ", ".join(references))
