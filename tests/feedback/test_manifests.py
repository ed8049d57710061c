"""Finding the manifest a detection is about, and editing one value of it in place."""

from pathlib import Path

import pytest

from feedback.manifests_data import SEED
from obsloop.core import semconv
from obsloop.core.manifests import load_manifests, parse_manifests
from obsloop.detectors.detection import NAMESPACE
from obsloop.feedback.manifest_edit import ManifestEditError, apply_edits
from obsloop.feedback.manifests import ManifestIndex


def test_index_maps_function_and_model_version_to_manifest(tmp_path: Path):
    (tmp_path / "a.yaml").write_text(SEED)
    index = ManifestIndex(load_manifests(tmp_path).manifests)
    by_function = {semconv.FAAS_NAME: "fraud-detection-model-v2", NAMESPACE: "ai-production"}
    by_model = {semconv.MODEL_NAME: "fraud-detection-model", semconv.MODEL_VERSION: "2.1.0"}
    assert index.find(by_function).name == "fraud-detection-model-v2"
    assert index.find({**by_model, semconv.CLOUD_PLATFORM: "aws_lambda"}).name.endswith("v2")
    assert index.find({**by_model, semconv.MODEL_VERSION: "3.0.0"}) is None
    assert index.find({**by_model, semconv.CLOUD_PLATFORM: "gcp_cloud_run"}) is None
    assert index.find({**by_function, NAMESPACE: "staging"}) is None


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


def test_index_finds_the_function_and_platform_enrichment_wrote(tmp_path: Path):
    """``faas.name`` is the deployed function, which the manifest's annotation may name (the
    name enrichment attached), and ``google-cloud-run`` is OpenTelemetry's ``gcp_cloud_run``:
    the loop used to match neither."""
    text = SEED.replace('"aws-lambda"', '"google-cloud-run"').replace(
        "  namespace: ai-production\n",
        "  namespace: ai-production\n  annotations:\n    obsloop.io/function-name: fraud-scorer\n",
    )
    (tmp_path / "a.yaml").write_text(text)
    index = ManifestIndex(load_manifests(tmp_path).manifests)
    series = {semconv.FAAS_NAME: "fraud-scorer", semconv.CLOUD_PLATFORM: semconv.PLATFORM_GCP_CLOUD_RUN}
    assert index.find(series).key == "ai-production/fraud-detection-model-v2"
    assert index.find({semconv.FAAS_NAME: "fraud-detection-model-v2"}) is None
