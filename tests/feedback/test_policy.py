from datetime import UTC, datetime, timedelta

import pytest

from feedback.manifests_data import SEED
from obsloop.core.manifests import parse_manifests
from obsloop.feedback.actions.base import Proposal
from obsloop.feedback.actions.rollback import BLUE, GREEN
from obsloop.feedback.actions.scale import MEMORY, REPLICAS
from obsloop.feedback.audit import TakenAction
from obsloop.feedback.policy import Policy, parse_policy

NOW = datetime(2026, 11, 15, 12, 0, tzinfo=UTC)
POLICY = """\
kind: FeedbackPolicy
defaults:
  allowedActions: [alert]
  maxReplicaStep: 2
  maxMemoryStep: 2048MB
  cooldown: 30m
  maxActionsPerDay: 3
  memory: {min: 128MB, max: 8192MB}
pricing:
  replicaGbMonthUsd: 10.8
namespaces:
  ai-production:
    allowedActions: [alert, scale, rollback, retrain]
policies:
  data-privacy-compliance:
    description: PII never leaves the region
  model-explainability-required:
    cooldown: 1h
"""


def manifest(text=SEED):
    [m], errors = parse_manifests("apps/fraud.yaml", text)
    assert errors == []
    return m


def policy(text=POLICY):
    parsed, error = parse_policy("obsloop-policy.yaml", text)
    assert error is None
    return parsed


def test_scale_up_is_cut_to_max_step_and_recorded():
    decision = policy().evaluate(
        manifest(), Proposal("scale_up", {REPLICAS: 9}), [], NOW, forecast_monthly_usd=100.0
    )
    assert decision.allowed
    assert (decision.before, decision.after) == ({REPLICAS: 1}, {REPLICAS: 3})
    assert "limited to 3 (asked 9)" in decision.reason


def test_bounds_from_manifest_and_policy():
    at_top = manifest(SEED.replace("minReplicas: 1", "minReplicas: 10"))
    p = policy()
    decision = p.evaluate(at_top, Proposal("scale_up", {REPLICAS: 12}), [], NOW, 0.0)
    assert decision.outcome == "noop" and "upper bound" in decision.reason
    memory = p.evaluate(manifest(), Proposal("scale_up", {MEMORY: 16384}), [], NOW, 0.0)
    assert memory.after == {MEMORY: 6144}
    bigger = manifest(SEED.replace("4096MB", "7168MB"))
    assert p.evaluate(bigger, Proposal("scale_up", {MEMORY: 14336}), [], NOW, 0.0).after == {
        MEMORY: 8192
    }
    down = p.evaluate(manifest(), Proposal("scale_down", {REPLICAS: -5}), [], NOW)
    assert down.after == {REPLICAS: 0}


def test_cooldown_is_the_strictest_of_attached_policies():
    p = policy()
    history = [
        TakenAction(
            "ai-production/fraud-detection-model-v2", "scale_up", NOW - timedelta(minutes=45)
        )
    ]
    other = [TakenAction("ai-production/other", "scale_up", NOW - timedelta(minutes=1))]
    refused = p.evaluate(manifest(), Proposal("scale_up", {REPLICAS: 2}), history, NOW, 0.0)
    assert refused.outcome == "refused" and refused.reason.startswith("cooldown")
    assert "2026-11-15T12:15:00+00:00" in refused.reason
    without = manifest(SEED.replace('    - "model-explainability-required"\n', ""))
    assert p.evaluate(without, Proposal("scale_up", {REPLICAS: 2}), history, NOW, 0.0).allowed
    assert p.evaluate(manifest(), Proposal("scale_up", {REPLICAS: 2}), other, NOW, 0.0).allowed


def test_rollback_skips_cooldown_but_not_the_daily_limit():
    canary = manifest(
        SEED.replace('blue: "100%"', 'blue: "90%"').replace('green: "0%"', 'green: "10%"')
    )
    key = canary.key
    recent = [TakenAction(key, "scale_up", NOW - timedelta(minutes=5))]
    decision = policy().evaluate(canary, Proposal("rollback"), recent, NOW)
    assert decision.allowed and decision.after == {BLUE: 100.0, GREEN: 0.0}
    full = [TakenAction(key, "scale_up", NOW - timedelta(hours=h)) for h in (2, 5, 23)]
    limited = policy().evaluate(canary, Proposal("rollback"), full, NOW)
    assert limited.outcome == "refused" and "daily limit: 3" in limited.reason
    stale = [TakenAction(key, "scale_up", NOW - timedelta(hours=h)) for h in (2, 5, 25)]
    assert policy().evaluate(canary, Proposal("rollback"), stale, NOW).allowed
    assert policy().evaluate(manifest(), Proposal("rollback"), [], NOW).outcome == "noop"


def test_namespace_permissions():
    staging = manifest(SEED.replace("ai-production", "ai-staging"))
    decision = policy().evaluate(staging, Proposal("retrain"), [], NOW)
    assert decision.outcome == "refused"
    assert decision.reason == "'retrain' is not allowed for namespace ai-staging"
    assert policy().evaluate(manifest(), Proposal("retrain"), [], NOW).allowed


def test_a_detection_below_min_severity_only_alerts():
    # The detectors send a window anomaly as warning or error when it opens, and as critical
    # once it has lasted detectors.confirm_after_windows windows: the default acts on that.
    p = policy()
    for severity in ("warning", "error"):
        decision = p.evaluate(manifest(), Proposal("scale_up", {REPLICAS: 3}, severity), [], NOW, 0.0)
        assert decision.outcome == "refused" and decision.after == {}
        assert decision.reason.startswith(f"severity {severity} is below minSeverity critical")
    assert p.evaluate(manifest(), Proposal("scale_up", {REPLICAS: 3}, "critical"), [], NOW, 0.0).allowed
    # A namespace may act on less; a policy a manifest names may only ask for more.
    eager = policy(POLICY.replace("    allowedActions: [alert, scale, rollback, retrain]\n",
                                  "    allowedActions: [alert, scale, rollback, retrain]\n"
                                  "    minSeverity: error\n"))
    assert eager.evaluate(manifest(), Proposal("retrain", severity="error"), [], NOW).allowed
    assert not eager.evaluate(manifest(), Proposal("retrain", severity="warning"), [], NOW).allowed
    strict = eager.document.model_copy(deep=True)
    strict.policies["model-explainability-required"].min_severity = "critical"
    assert not Policy(strict).evaluate(manifest(), Proposal("retrain", severity="error"), [], NOW).allowed
    lax = eager.document.model_copy(deep=True)
    lax.policies["model-explainability-required"].min_severity = "warning"
    assert not Policy(lax).evaluate(manifest(), Proposal("retrain", severity="warning"), [], NOW).allowed


def test_budget_rule_refuses_unaffordable_scale_up():
    p = policy()
    # 1 -> 3 replicas of 4 GB: 8 GB more at $10.8 per GB-month, for 15.5 of 30 days.
    ask = Proposal("scale_up", {REPLICAS: 3})
    affordable = p.evaluate(manifest(), ask, [], NOW, forecast_monthly_usd=4900.0)
    assert affordable.allowed
    refused = p.evaluate(manifest(), ask, [], NOW, forecast_monthly_usd=4960.0)
    assert refused.outcome == "refused"
    assert "forecast $4,960.00 + $44.64" in refused.reason
    assert "no cost forecast" in p.evaluate(manifest(), ask, [], NOW).reason
    assert p.evaluate(manifest(), Proposal("scale_down", {REPLICAS: 0}), [], NOW).allowed


def test_every_policy_name_must_be_defined():
    p = policy(
        POLICY.replace(
            "  data-privacy-compliance:\n    description: PII never leaves the region\n", ""
        )
    )
    error = p.check_references(manifest())
    assert (error.path, error.line) == ("apps/fraud.yaml", 1)
    assert "'data-privacy-compliance', not defined in obsloop-policy.yaml" in error.reason
    assert policy().check_references(manifest()) is None


@pytest.mark.parametrize(
    ("text", "line", "reason"),
    [
        (POLICY.replace("cooldown: 30m", "cooldown: soon"), 6, "defaults.cooldown"),
        (POLICY.replace("maxActionsPerDay: 3", "maxActionPerDay: 3"), 7, "maxActionPerDay"),
        (
            POLICY.replace("[alert, scale,", "[alert, scael,"),
            13,
            "namespaces.ai-production.allowedActions.1",
        ),
        (POLICY.replace("kind: FeedbackPolicy", "kind: Policy"), 1, "kind"),
        (POLICY.replace("maxActionsPerDay: 3", "minSeverity: high"), 7, "defaults.minSeverity"),
        (POLICY + "  bad: [\n", 20, "not valid YAML"),
    ],
)
def test_policy_file_errors_name_the_line(text, line, reason):
    parsed, error = parse_policy("obsloop-policy.yaml", text)
    assert parsed is None
    assert error.line == line and reason in error.reason


def test_without_a_policy_file_only_alerts_are_allowed():
    assert Policy().evaluate(manifest(), Proposal("retrain"), [], NOW).outcome == "refused"
    assert Policy().permits(manifest(), "alert")
    assert not Policy().permits(manifest(), "scale")


def test_a_manifest_without_autoscaling_is_alerted_on_not_scaled():
    """Enrichment and budgets have always read manifests without ``autoscaling``; the loop
    used to refuse them as invalid. Now nothing is scaled ("not set", audited as a no-op), a
    memory change still is, and its warm capacity is none: no replicas kept warm."""
    from feedback.test_responder import detection
    from obsloop.feedback.actions import plan

    bare = manifest(SEED.replace("  autoscaling:\n    minReplicas: 1\n    maxReplicas: 10\n    targetUtilization: 70\n", ""))
    assert bare.min_replicas is None
    more = policy().evaluate(bare, plan(detection("cold_start", "c1"), bare), [], NOW, forecast_monthly_usd=100.0)
    assert (more.outcome, more.reason) == ("noop", "autoscaling.minReplicas is not set in the manifest")
    memory = policy().evaluate(bare, plan(detection("latency", "l1"), bare), [], NOW, forecast_monthly_usd=4999.0)
    assert memory.allowed and memory.after == {MEMORY: 6144}


def test_policy_yaml_errors_read_like_manifest_errors():
    """One reader for both files: the policy's syntax errors say where the construct opened
    (the context), not only what was found."""
    _, error = parse_policy("obsloop-policy.yaml", POLICY + "  bad: [\n")
    assert error.reason.startswith("not valid YAML: while parsing a flow node")
