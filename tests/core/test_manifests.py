"""The one manifest model: what a valid ``ServerlessModelDeployment`` reads as, and the
file-and-line error each invalid one becomes."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from obsloop.core import semconv
from obsloop.core.manifests import (
    Budget,
    ManifestError,
    line_of,
    load_document,
    load_manifests,
    normalize_platform,
    parse_budget,
    parse_manifests,
    parse_memory_mb,
    valid_manifests,
)

# The seed article's manifest, shared with the feedback tests.
sys.path.append(str(Path(__file__).resolve().parent.parent / "feedback"))

from manifests_data import SEED  # noqa: E402


def test_seed_manifest_reads_every_section():
    [manifest], errors = parse_manifests("deploy/fraud.yaml", SEED)
    assert errors == []
    assert manifest.key == "ai-production/fraud-detection-model-v2"
    assert manifest.function == "fraud-detection-model-v2"
    assert (manifest.model_name, manifest.model_version) == ("fraud-detection-model", "2.1.0")
    assert manifest.platform == semconv.PLATFORM_AWS_LAMBDA
    assert manifest.cost_center == "FraudDetection"
    assert (manifest.min_replicas, manifest.max_replicas, manifest.memory_mb) == (1, 10, 4096)
    assert (manifest.blue_percent, manifest.green_percent) == (100.0, 0.0)
    assert manifest.budget == Budget("fraud-detection-model-v2", 5000.0, 0.8, "FraudDetection")
    assert manifest.budget.alert_usd == 4000.0
    assert manifest.policies == ("data-privacy-compliance", "model-explainability-required")
    assert manifest.positions["autoscaling.minReplicas"] == (21, 17)
    assert manifest.spec_value("runtime.memory") == 4096
    assert manifest.spec_value("trafficSplit.green") == 0.0


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
        # Read by the budget forecast; feedback used to accept any value here.
        (SEED.replace('alertThreshold: "80%"', 'alertThreshold: "most"'), 28, "finops.alertThreshold"),
        # Enrichment used to read "4096mb" as unknown and price the default memory.
        (SEED.replace('"4096MB"', '"4 GB-ish"'), 13, "runtime.memory: not a memory size"),
        (SEED.replace("  name: fraud-detection-model-v2\n",
                      "  name: fraud-detection-model-v2\n  annotations: [x]\n"), 5, "metadata.annotations is not a mapping"),
        (SEED.replace('costCenter: "FraudDetection"', "costCenter: {team: fraud}"), 26, "spec.finops.costCenter"),
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


def test_units_and_budgets():
    assert parse_memory_mb("4Gi") == 4096
    assert parse_memory_mb("512 MB") == 512
    assert parse_memory_mb("4096mb") == parse_memory_mb("4GiB") == 4096
    assert parse_budget("$200/day") == pytest.approx(200 * 30.4375)
    assert parse_budget("$60,000/year") == 5000.0
    with pytest.raises(ValueError):
        parse_memory_mb("big")


@pytest.mark.parametrize(
    ("written", "expected"),
    [
        ("aws-lambda", semconv.PLATFORM_AWS_LAMBDA),
        ("AWS_Lambda", semconv.PLATFORM_AWS_LAMBDA),
        ("google-cloud-run", semconv.PLATFORM_GCP_CLOUD_RUN),
        ("gcp-cloud-run", semconv.PLATFORM_GCP_CLOUD_RUN),
        ("google-cloud-functions", semconv.PLATFORM_GCP_CLOUD_FUNCTIONS),
        ("azure-functions", semconv.PLATFORM_AZURE_FUNCTIONS),
        ("knative", semconv.PLATFORM_KNATIVE),
        ("cloudflare-workers", "cloudflare_workers"),
    ],
)
def test_platforms_read_as_opentelemetry_writes_them(written, expected):
    assert normalize_platform(written) == expected


def test_function_annotation_names_the_deployed_function():
    text = SEED.replace(
        "  namespace: ai-production\n",
        "  namespace: ai-production\n  annotations:\n    obsloop.io/function-name: fraud-scorer\n",
    )
    [manifest], _ = parse_manifests("a.yaml", text)
    assert (manifest.key, manifest.function) == ("ai-production/fraud-detection-model-v2", "fraud-scorer")
    assert manifest.budget.function == "fraud-scorer"


def test_sections_enrichment_needs_are_enough():
    """Enrichment and budgets read manifests without autoscaling, traffic split or budget:
    such a deployment has nothing to scale (``None``), not an invalid manifest."""
    text = (
        "apiVersion: ai.apexlogic.com/v1alpha1\nkind: ServerlessModelDeployment\n"
        "metadata: {name: scorer}\n"
        "spec:\n  modelRef: {name: m, version: 1}\n  runtime: {platform: knative}\n"
    )
    [manifest], errors = parse_manifests("a.yaml", text)
    assert errors == []
    assert (manifest.namespace, manifest.model_version, manifest.cost_center) == ("default", "1", None)
    assert (manifest.min_replicas, manifest.max_replicas, manifest.memory_mb) == (None, None, None)
    assert manifest.budget is None and list(manifest.positions) == ["runtime.platform"]
    manifests, [error] = parse_manifests("a.yaml", text + "  autoscaling: {}\n")
    assert manifests == []
    assert (error.line, error.reason) == (7, "autoscaling.minReplicas must be a non-negative integer")


def test_a_file_that_is_not_utf8_is_an_error_not_a_crash(tmp_path: Path):
    (tmp_path / "good.yaml").write_text(SEED)
    (tmp_path / "latin1.yaml").write_bytes(SEED.replace("FraudDetection", "Fraud\xe9").encode("latin-1"))
    result = load_manifests(tmp_path)
    assert [m.path for m in result.manifests] == ["good.yaml"]
    assert [str(e).split(" (")[0] for e in result.errors] == ["latin1.yaml:1: not UTF-8 text"]


def test_valid_manifests_logs_each_invalid_one_and_skips_the_policy_file(tmp_path: Path, caplog):
    (tmp_path / "good.yaml").write_text(SEED)
    (tmp_path / "bad.yaml").write_text(SEED.replace("fraud-detection-model-v2", "b").replace('"$5000/month"', "lots"))
    (tmp_path / "obsloop-policy.yaml").write_text("kind: FeedbackPolicy\n")
    with caplog.at_level("WARNING", logger="obsloop.core.manifests"):
        assert [m.name for m in valid_manifests(tmp_path)] == ["fraud-detection-model-v2"]
    assert [r.getMessage() for r in caplog.records] == [
        "manifest ignored: bad.yaml:27: finops.budgetLimit: not a budget like '$5000/month': 'lots'"
    ]


def test_policy_file_reads_round_trip_with_lines():
    data, error = load_document("obsloop-policy.yaml", "kind: FeedbackPolicy\ndefaults:\n  allowedActions: [alert, x]\n")
    assert error is None
    assert line_of(data, ["defaults", "allowedActions", 1]) == 3
    assert line_of(data, ["defaults", "missing"]) == 2
    _, error = load_document("obsloop-policy.yaml", "kind: FeedbackPolicy\n---\nkind: Again\n")
    assert isinstance(error, ManifestError) and error.line == 2
    assert error.reason.startswith("not valid YAML: expected a single document")


def test_a_yaml_alias_bomb_is_refused_without_expanding_it(tmp_path: Path):
    """A manifest is read from a repository others write to: nested aliases (a "billion
    laughs" document, 10^8 strings if expanded) must cost what their text costs."""
    levels = ['a: &a ["x","x","x","x","x","x","x","x","x","x"]']
    for previous, name in zip("abcdefg", "bcdefgh", strict=True):
        levels.append(f"{name}: &{name} [" + ",".join([f"*{previous}"] * 10) + "]")
    (tmp_path / "bomb.yaml").write_text("\n".join([*levels, "kind: ServerlessModelDeployment", ""]))
    (tmp_path / "good.yaml").write_text(SEED)
    manifests = valid_manifests(tmp_path)
    assert [m.path for m in manifests] == ["good.yaml"]
