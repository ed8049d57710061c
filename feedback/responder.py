"""The feedback responder: one detection in, alerts out, then at most one guarded action.

For each detection: alert on-call (alerts are never held back by guardrails), read the
GitOps repository, find the deployment's manifest, ask the registered actions
(:mod:`obsloop.feedback.actions`) for a plan, ask the policy what may be done, and audit
the decision whether it is taken or not. Only then, outside dry-run, does the action run.
Manifest and policy files that do not validate are audited once per distinct error and
never edited.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta

from obsloop.core.manifests import DEFAULT_GLOBS, DEFAULT_POLICY_FILE, load_manifests
from obsloop.detectors.detection import Detection
from obsloop.feedback.actions import ACTIONS, plan
from obsloop.feedback.actions.base import Decision, Done, Services, Step
from obsloop.feedback.alerts import Alerter
from obsloop.feedback.audit import ALERT, INVALID_FILE, AuditEntry, AuditLog, AuditOutcome
from obsloop.feedback.delivery import DeliveryFailed, Sender
from obsloop.feedback.forges import Forge
from obsloop.feedback.gitops import GitError, GitOpsRepo
from obsloop.feedback.manifest_edit import ManifestEditError
from obsloop.feedback.manifests import ManifestIndex
from obsloop.feedback.policy import Policy, parse_policy
from obsloop.feedback.retrain import RetrainTrigger

log = logging.getLogger(__name__)


@dataclass
class _Repository:
    index: ManifestIndex
    policy: Policy | None
    policy_error: str


class Responder:
    def __init__(
        self,
        repo: GitOpsRepo,
        audit: AuditLog,
        sender: Sender,
        alerter: Alerter | None = None,
        retrain: Sequence[RetrainTrigger] = (),
        forge: Forge | None = None,
        policy_file: str = DEFAULT_POLICY_FILE,
        manifest_globs: Sequence[str] = DEFAULT_GLOBS,
        dry_run: bool = False,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        """``sender`` delivers the actions' HTTP requests (retraining triggers, pull
        requests, what added actions send); the alerter has its own."""
        self.repo, self.audit, self.alerter = repo, audit, alerter
        self.services = Services(repo, forge, sender, list(retrain), clock)
        self.policy_file, self.globs = policy_file, tuple(manifest_globs)
        self.dry_run, self.clock = dry_run, clock
        self._reported: set[str] = set()

    def _read(self) -> _Repository:
        """Sync the clone and read policy and manifests; audit new file errors."""
        root = self.repo.sync()
        policy_path = root / self.policy_file
        policy: Policy | None = Policy(source="<no policy file>")
        policy_error = ""
        errors = []
        if policy_path.exists():
            parsed, error = parse_policy(self.policy_file, policy_path.read_text())
            if error is not None:
                errors.append(error)
                policy, policy_error = None, f"policy file invalid: {error}"
            else:
                policy = parsed
        found = load_manifests(root, self.globs, exclude=[self.policy_file])
        errors += found.errors
        valid = []
        for manifest in found.manifests:
            error = policy.check_references(manifest) if policy else None
            if error is None:
                valid.append(manifest)
            else:
                errors.append(error)
        for error in errors:
            if str(error) not in self._reported:
                self._reported.add(str(error))
                log.warning("invalid GitOps file: %s", error)
                self.audit.record(
                    AuditEntry(
                        self.clock(),
                        "",
                        INVALID_FILE,
                        "invalid",
                        error.reason,
                        manifest=f"{error.path}:{error.line}",
                    )
                )
        return _Repository(ManifestIndex(valid), policy, policy_error)

    async def handle(
        self, detection: Detection, forecast_monthly_usd: float | None = None
    ) -> AuditEntry | None:
        """Process one detection; returns the audit entry of its action decision, if any."""
        if self.alerter is not None:
            await self._alert(detection)
        repository = await asyncio.to_thread(self._read)
        manifest = repository.index.for_detection(detection)
        if manifest is None:
            if not detection.cleared:
                log.info("no manifest for detection %s (%s)", detection.id, detection.series)
            return None
        proposal = plan(detection, manifest)
        if proposal is None:
            return None
        now = self.clock()
        policy = repository.policy
        if policy is None:
            decision = Decision("refused", repository.policy_error, proposal.action)
        else:
            history = self.audit.taken(now - timedelta(days=1), self.dry_run)
            decision = policy.evaluate(manifest, proposal, history, now, forecast_monthly_usd)
        # "allowed" is a decision, not an outcome: each allowed path below records what came of it.
        outcome: AuditOutcome = "applied" if decision.outcome == "allowed" else decision.outcome
        entry = AuditEntry(
            now,
            manifest.key,
            proposal.action,
            outcome,
            decision.reason,
            manifest=manifest.path,
            detection_id=detection.id,
            before=decision.before,
            after=decision.after,
        )
        previous = self.audit.done(detection.id, proposal.action)
        if previous is not None:
            entry = replace(entry, outcome="noop", reason=f"detection already acted on ({previous})")
        elif decision.allowed and self.dry_run:
            entry = replace(entry, outcome="dry_run", reason=f"dry run: {decision.reason}")
        elif decision.allowed and policy is not None:
            step = Step(detection, manifest, proposal, decision,
                        lambda fresh: policy.evaluate(fresh, proposal, [], self.clock(), forecast_monthly_usd))
            done = await self._execute(step)
            entry = replace(entry, outcome=done.outcome, reason=done.reason, reference=done.reference)
        self.audit.record(entry)
        return entry

    async def _alert(self, detection: Detection) -> None:
        assert self.alerter is not None
        deliveries = await self.alerter.process(detection)
        if not deliveries:
            return
        failed = [f"{d.target}: {d.reason}" for d in deliveries if not d.delivered]
        sent = [d.target for d in deliveries if d.delivered]
        status = "resolve" if detection.cleared else "fire"
        reason = f"{status} sent to {', '.join(sent) or 'nobody'}"
        if failed:
            reason += f"; dead-lettered: {'; '.join(failed)}"
        self.audit.record(
            AuditEntry(
                self.clock(),
                "",
                ALERT,
                "failed" if failed and not sent else "applied",
                reason,
                detection_id=detection.id,
                reference=detection.fingerprint,
            )
        )

    async def _execute(self, step: Step) -> Done:
        """Run the action; the failures of what it acts through (git, HTTP deliveries,
        manifest edits) are audited as failed, with the message those write without secrets."""
        name = step.proposal.action
        try:
            return await ACTIONS[name].execute(step, self.services)
        except (GitError, DeliveryFailed, ManifestEditError) as exc:
            log.error("action %s for %s failed: %s", name, step.detection.id, exc)
            return Done("failed", str(exc))
