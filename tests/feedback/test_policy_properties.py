"""No sequence of detections drives a manifest outside its bounds, breaks a cooldown,
exceeds the daily action limit or acts on a detection below ``minSeverity``: the actions' plans +
policy + the real manifest edit, step by step."""

from datetime import UTC, datetime, timedelta

from hypothesis import given, settings
from hypothesis import strategies as st

from feedback.manifests_data import SEED
from feedback.test_policy import POLICY
from obsloop.core import semconv
from obsloop.core.manifests import parse_manifests
from obsloop.detectors.detection import VARIANT, Detection
from obsloop.feedback.actions import plan
from obsloop.feedback.audit import TakenAction
from obsloop.feedback.manifest_edit import apply_edits
from obsloop.feedback.policy import parse_policy

START = datetime(2026, 11, 1, tzinfo=UTC)
KINDS = ["latency", "error_rate", "cold_start", "throughput", "cost", "drift", "budget_forecast"]

detections = st.lists(
    st.tuples(
        st.integers(min_value=0, max_value=4 * 3600),  # seconds since the previous detection
        st.sampled_from(KINDS),
        st.floats(min_value=0.0, max_value=1.0),
        st.sampled_from(["blue", "green"]),
        st.booleans(),  # observed above the expected range
        st.sampled_from([0, 5, 10, 40, 60]),  # green traffic percent
        st.sampled_from(["warning", "error", "critical"]),  # critical: confirmed by the detectors
    ),
    max_size=40,
)
policies = st.fixed_dictionaries(
    {
        "step": st.integers(1, 4),
        "cooldown": st.sampled_from(["0s", "10m", "30m", "2h"]),
        "per_day": st.integers(0, 5),
        "max_memory": st.sampled_from(["4096MB", "6144MB", "10240MB"]),
    }
)


@settings(max_examples=150, deadline=None)
@given(detections, policies, st.integers(0, 10), st.integers(0, 10))
def test_no_detection_sequence_escapes_the_guardrails(events, knobs, lo, hi):
    low, high = min(lo, hi), max(lo, hi)
    text = SEED.replace("minReplicas: 1", f"minReplicas: {low}").replace(
        "maxReplicas: 10", f"maxReplicas: {high}"
    )
    policy_text = (
        POLICY.replace("maxReplicaStep: 2", f"maxReplicaStep: {knobs['step']}")
        .replace("cooldown: 30m", f"cooldown: {knobs['cooldown']}")
        .replace("maxActionsPerDay: 3", f"maxActionsPerDay: {knobs['per_day']}")
        .replace("max: 8192MB", f"max: {knobs['max_memory']}")
        .replace("    cooldown: 1h\n", "    description: strict\n")
    )
    policy, error = parse_policy("obsloop-policy.yaml", policy_text)
    assert error is None
    [manifest], _ = parse_manifests("a.yaml", text)
    rules = policy.rules_for(manifest)
    now, taken = START, []
    for number, (gap, kind, score, variant, above, green, severity) in enumerate(events):
        now += timedelta(seconds=gap)
        if manifest.green_percent == 0 and green:
            text = text.replace('blue: "100%"', f'blue: "{100 - green}%"').replace(
                'green: "0%"', f'green: "{green}%"'
            )
            [manifest], _ = parse_manifests("a.yaml", text)
        detection = Detection(
            id=f"d{number}",
            time=now,
            series={semconv.FAAS_NAME: manifest.name, VARIANT: variant},
            kind=kind,
            score=score,
            severity=severity,
            observed={"value": 10.0 if above else 0.0},
            expected={"value": (1.0, 5.0)},
        )
        proposal = plan(detection, manifest)
        if proposal is None:
            continue
        decision = policy.evaluate(manifest, proposal, taken, now, forecast_monthly_usd=0.0)
        if not decision.allowed:
            continue
        assert severity == rules.min_severity == "critical"
        for path, value in decision.after.items():
            if path == "autoscaling.minReplicas":
                assert abs(value - decision.before[path]) <= knobs["step"]
            if path == "runtime.memory":
                assert abs(value - decision.before[path]) <= rules.max_memory_step_mb
        taken.append(TakenAction(manifest.key, proposal.action, now))
        if decision.after:
            text = apply_edits(text, manifest, decision.after)
            [manifest], errors = parse_manifests("a.yaml", text)
            assert errors == []
        assert 0 <= manifest.min_replicas <= manifest.max_replicas == high
        assert rules.memory_min_mb <= manifest.memory_mb <= rules.memory_max_mb

    cooldown = rules.cooldown
    for previous, current in zip(taken, taken[1:], strict=False):
        if current.action != "rollback":
            assert current.time - previous.time >= cooldown
    for action in taken:
        window = [t for t in taken if timedelta(0) <= action.time - t.time < timedelta(days=1)]
        assert len(window) <= knobs["per_day"]
