"""The feedback loop: one detection in, alerts out, then at most one guarded change.

For each detection: alert on-call (alerts are never held back by scaling guardrails), read
the GitOps repository, find the deployment's manifest, ask the planner what the detection
wants, ask the policy what may be done, and record the decision in the audit table whether
it is taken or not. Only then, outside dry-run, is the change committed (scale, rollback)
or the retraining run triggered. Manifest and policy files that do not validate are
recorded once per distinct error and never edited.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

from obsloop.detectors.detection import Detection
from obsloop.feedback.alerts import Alerter
from obsloop.feedback.audit import AuditEntry, AuditLog, AuditOutcome
from obsloop.feedback.config import DEFAULT_GLOBS, DEFAULT_POLICY_FILE
from obsloop.feedback.delivery import DeliveryFailed
from obsloop.feedback.forges import Forge
from obsloop.feedback.gitops import Change, GitError, GitOpsRepo
from obsloop.feedback.manifest_edit import ManifestEditError, apply_edits
from obsloop.feedback.manifests import Manifest, ManifestIndex, load_manifests, parse_manifests
from obsloop.feedback.planner import plan
from obsloop.feedback.policy import Decision, Policy, Proposal, parse_policy
from obsloop.feedback.retrain import RetrainTrigger

log = logging.getLogger(__name__)


@dataclass
class _Repository:
    index: ManifestIndex
    policy: Policy | None
    policy_error: str


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


class FeedbackLoop:
    def __init__(
        self,
        repo: GitOpsRepo,
        audit: AuditLog,
        alerter: Alerter | None = None,
        retrain: Sequence[RetrainTrigger] = (),
        forge: Forge | None = None,
        policy_file: str = DEFAULT_POLICY_FILE,
        manifest_globs: Sequence[str] = DEFAULT_GLOBS,
        dry_run: bool = False,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self.repo, self.audit, self.alerter, self.forge = repo, audit, alerter, forge
        self.retrain = list(retrain)
        self.policy_file, self.globs = policy_file, tuple(manifest_globs)
        self.dry_run, self.clock = dry_run, clock
        self._reported: set[str] = set()

    def _read(self) -> _Repository:
        """Sync the clone and read policy and manifests; record new file errors."""
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
                        "manifest",
                        "invalid",
                        error.reason,
                        manifest=f"{error.path}:{error.line}",
                    )
                )
        return _Repository(ManifestIndex(valid), policy, policy_error)

    async def handle(
        self, detection: Detection, forecast_monthly_usd: float | None = None
    ) -> AuditEntry | None:
        """Process one detection; returns the audit entry of its change decision, if any."""
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
        if repository.policy is None:
            decision = Decision("refused", repository.policy_error, proposal.action)
        else:
            history = self.audit.taken(now - timedelta(days=1), self.dry_run)
            decision = repository.policy.evaluate(
                manifest, proposal, history, now, forecast_monthly_usd
            )
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
            entry = _with(entry, "noop", f"detection already acted on ({previous})")
        elif decision.allowed and self.dry_run:
            entry = _with(entry, "dry_run", f"dry run: {decision.reason}")
        elif decision.allowed:
            entry = await self._execute(
                detection,
                manifest,
                proposal,
                decision,
                entry,
                repository.policy,
                forecast_monthly_usd,
            )
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
                "alert",
                "failed" if failed and not sent else "applied",
                reason,
                detection_id=detection.id,
                reference=detection.fingerprint,
            )
        )

    async def _execute(
        self,
        detection: Detection,
        manifest: Manifest,
        proposal: Proposal,
        decision: Decision,
        entry: AuditEntry,
        policy: Policy | None,
        forecast: float | None,
    ) -> AuditEntry:
        try:
            if proposal.action == "retrain":
                return await self._retrain(detection, manifest, entry)
            edit = self._edit(manifest, proposal, decision, policy, forecast)
            change = Change(
                detection.id, manifest.key, commit_message(detection, manifest, decision), edit
            )
            result = await asyncio.to_thread(self.repo.commit, change)
            reference = result.sha
            if result.status == "noop":
                return _with(entry, "noop", "manifest already had the wanted values")
            if self.repo.mode == "pull_request" and self.forge is not None:
                subject = change.message.partition("\n")[0]
                reference = await self.forge.open(
                    result.branch, self.repo.branch, subject, change.message
                )
            if result.status == "duplicate":
                return _with(entry, "noop", f"already committed as {result.sha}", reference)
            return _with(entry, "applied", decision.reason, reference)
        except (GitError, DeliveryFailed, ManifestEditError) as exc:
            log.error("action %s for %s failed: %s", proposal.action, detection.id, exc)
            return _with(entry, "failed", str(exc))

    def _edit(
        self,
        manifest: Manifest,
        proposal: Proposal,
        decision: Decision,
        policy: Policy | None,
        forecast: float | None,
    ) -> Callable[[Path], list[str]]:
        """The edit run on the freshest checkout: if the values moved since the decision
        (a human pushed), the guardrails are evaluated again against what is there now."""

        def edit(root: Path) -> list[str]:
            text = (root / manifest.path).read_text(encoding="utf-8")
            fresh = next(
                (m for m in parse_manifests(manifest.path, text)[0] if m.key == manifest.key),
                None,
            )
            if fresh is None or policy is None:
                return []
            after = decision.after
            if fresh != manifest:
                again = policy.evaluate(fresh, proposal, [], self.clock(), forecast)
                after = again.after if again.allowed else {}
            if not after:
                return []
            (root / manifest.path).write_text(apply_edits(text, fresh, after), encoding="utf-8")
            return [manifest.path]

        return edit

    async def _retrain(
        self, detection: Detection, manifest: Manifest, entry: AuditEntry
    ) -> AuditEntry:
        if not self.retrain:
            return _with(entry, "refused", "no retraining target configured")
        references = []
        for trigger in self.retrain:
            references.append(f"{trigger.name}={await trigger.trigger(detection, manifest)}")
        return _with(entry, "applied", entry.reason, ", ".join(references))


def _with(entry: AuditEntry, outcome: AuditOutcome, reason: str, reference: str = "") -> AuditEntry:
    return AuditEntry(
        entry.time,
        entry.deployment,
        entry.action,
        outcome,
        reason,
        entry.manifest,
        entry.detection_id,
        entry.before,
        entry.after,
        reference or entry.reference,
    )
