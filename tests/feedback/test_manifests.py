from pathlib import Path

import pytest

from feedback.manifests_data import SEED
from obsloop.core import semconv
from obsloop.detectors.detection import NAMESPACE
from obsloop.feedback.manifest_edit import ManifestEditError, apply_edits
from obsloop.feedback.manifests import (
    load_manifests,
    parse_budget,
    parse_manifests,
    parse_memory_mb,
)


def test_seed_manifest_reads_every_section():
    [manifest], errors = parse_manifests("deploy/fraud.yaml", SEED)
    assert errors == []
    assert manifest.key == "ai-production/fraud-detection-model-v2"
    assert (manifest.model_name, manifest.model_version) == ("fraud-detection-model", "2.1.0")
    assert manifest.platform == semconv.PLATFORM_AWS_LAMBDA
    assert (manifest.min_replicas, manifest.max_replicas, manifest.memory_mb) == (1, 10, 4096)
    assert (manifest.blue_percent, manifest.green_percent) == (100.0, 0.0)
    assert manifest.budget_monthly_usd == 5000.0
    assert manifest.policies == ("data-privacy-compliance", "model-explainability-required")
    assert manifest.positions["autoscaling.minReplicas"] == (21, 17)


@pytest.mark.parametrize(
    ("text", "line", "reason"),
    [
        (SEED.replace("  modelRef:\n", "  modelRef: [\n"), 9, "not valid YAML"),
        (SEED.replace("ServerlessModelDeployment", "Deployment"), 2, "unknown kind 'Deployment'"),
        (SEED.replace("  modelRef:", "  modelRefs:"), 6, "spec.modelRef is missing"),
        (SEED.replace("minReplicas: 1", "minReplicas: 12"), 22, "minReplicas 12 > maxReplicas 10"),
        (SEED.replace('green: "0%"', 'green: "10%"'), 18, "adds up to 110%"),
        (SEED.replace('"$5000/month"', '"lots"'), 27, "finops.budgetLimit"),
        (SEED.replace("maxReplicas: 10", "maxReplicas: -1"), 23, "non-negative integer"),
    ],
)
def test_invalid_manifest_reports_file_line_and_reason(text, line, reason):
    manifests, [error] = parse_manifests("deploy/bad.yaml", text)
    assert manifests == []
    assert (error.path, error.line) == ("deploy/bad.yaml", line)
    assert reason in error.reason
    assert str(error).startswith(f"deploy/bad.yaml:{line}: ")


def test_repository_load_keeps_good_manifests_next_to_bad_ones(tmp_path: Path):
    (tmp_path / "apps").mkdir()
    (tmp_path / "apps" / "a.yaml").write_text(SEED)
    second = SEED.replace("fraud-detection-model-v2", "churn-v1").replace(
        "fraud-detection-model", "churn"
    )
    (tmp_path / "apps" / "b.yml").write_text(second + "---\n" + "kind: Service\n")
    (tmp_path / "apps" / "dup.yaml").write_text(SEED)
    (tmp_path / "obsloop-policy.yaml").write_text("kind: FeedbackPolicy\n")
    (tmp_path / ".git").mkdir()
    (tmp_path / ".git" / "x.yaml").write_text("kind: Junk\n")

    result = load_manifests(tmp_path, exclude=["obsloop-policy.yaml"])

    assert sorted(m.key for m in result.manifests) == [
        "ai-production/churn-v1",
        "ai-production/fraud-detection-model-v2",
    ]
    assert sorted(str(e) for e in result.errors) == [
        "apps/b.yml:33: unknown kind 'Service' (expected ServerlessModelDeployment)",
        "apps/dup.yaml:1: deployment ai-production/fraud-detection-model-v2 is already "
        "declared in apps/a.yaml:1",
    ]


def test_index_maps_function_and_model_version_to_manifest(tmp_path: Path):
    (tmp_path / "a.yaml").write_text(SEED)
    index = load_manifests(tmp_path).index()
    by_function = {semconv.FAAS_NAME: "fraud-detection-model-v2", NAMESPACE: "ai-production"}
    by_model = {semconv.MODEL_NAME: "fraud-detection-model", semconv.MODEL_VERSION: "2.1.0"}
    assert index.find(by_function).name == "fraud-detection-model-v2"
    assert index.find({**by_model, semconv.CLOUD_PLATFORM: "aws_lambda"}).name.endswith("v2")
    assert index.find({**by_model, semconv.MODEL_VERSION: "3.0.0"}) is None
    assert index.find({**by_model, semconv.CLOUD_PLATFORM: "gcp_cloud_run"}) is None
    assert index.find({**by_function, NAMESPACE: "staging"}) is None


def test_units_and_budgets():
    assert parse_memory_mb("4Gi") == 4096
    assert parse_memory_mb("512 MB") == 512
    assert parse_budget("$200/day") == pytest.approx(200 * 30.4375)
    assert parse_budget("$60,000/year") == 5000.0
    with pytest.raises(ValueError):
        parse_memory_mb("big")


def test_edit_changes_only_the_value_tokens():
    [manifest], _ = parse_manifests("a.yaml", SEED)
    changes = {
        "autoscaling.minReplicas": 3,
        "runtime.memory": 6144,
        "trafficSplit.blue": 100,
        "trafficSplit.green": 0,
    }
    edited = apply_edits(SEED, manifest, changes)
    expected = SEED.replace("minReplicas: 1", "minReplicas: 3").replace("4096MB", "6144MB")
    assert edited == expected


def test_edit_keeps_quote_style_units_and_comments():
    text = (
        SEED.replace('memory: "4096MB"', "memory: 4Gi  # sized for p95")
        .replace('green: "0%" # For canary deployments', "green: '25%' # For canary deployments")
        .replace('blue: "100%"', "blue: 75%")
    )
    [manifest], errors = parse_manifests("a.yaml", text)
    assert errors == []
    edited = apply_edits(
        text, manifest, {"runtime.memory": 8192, "trafficSplit.blue": 100, "trafficSplit.green": 0}
    )
    assert "memory: 8Gi  # sized for p95\n" in edited
    assert "blue: 100%\n" in edited
    assert "green: '0%' # For canary deployments\n" in edited
    assert len(edited.splitlines()) == len(text.splitlines())


def test_edit_in_flow_mapping_and_second_document():
    text = "kind: Other\n---\n" + SEED.replace(
        "  autoscaling:\n    minReplicas: 1\n    maxReplicas: 10\n    targetUtilization: 70\n",
        "  autoscaling: {minReplicas: 1, maxReplicas: 10, targetUtilization: 70}\n",
    )
    manifests, errors = parse_manifests("multi.yaml", text)
    assert [m.document for m in manifests] == [1] and len(errors) == 1
    edited = apply_edits(text, manifests[0], {"autoscaling.minReplicas": 2})
    assert "autoscaling: {minReplicas: 2, maxReplicas: 10, targetUtilization: 70}\n" in edited


def test_edit_refuses_values_that_break_validation():
    [manifest], _ = parse_manifests("a.yaml", SEED)
    with pytest.raises(
        ManifestEditError,
        match="would make it invalid: autoscaling.minReplicas 11 > maxReplicas 10",
    ):
        apply_edits(SEED, manifest, {"autoscaling.minReplicas": 11})
    with pytest.raises(ManifestEditError, match="not set in the file"):
        apply_edits(SEED, manifest, {"autoscaling.minMemory": 128})
