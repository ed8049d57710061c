"""Costs against figures computed by hand from the list prices in pricing.yaml."""

from __future__ import annotations

import pytest

from obsloop import semconv
from obsloop.collectors.enrich import Enricher, load_manifests
from obsloop.collectors.normalize import Invocation
from obsloop.collectors.pricing import Pricing, Resources


def _inv(platform: str, **kwargs) -> Invocation:
    return Invocation(platform=platform, function="fn", invocation_id="r1", time_ns=1,
                      source="test", **kwargs)


PRICING = Pricing.load()


@pytest.mark.parametrize(
    ("invocation", "spec", "expected"),
    [
        # 0.103 s x 1 GB x 0.0000166667 + 0.0000002
        (_inv(semconv.PLATFORM_AWS_LAMBDA, billed_duration_ms=103, memory_mb=1024),
         Resources(), 1.9166701e-6),
        # arm64: 1 s x 0.125 GB x 0.0000133334 + 0.0000002 + 9.5 GB x 1 s x 0.0000000309
        (_inv(semconv.PLATFORM_AWS_LAMBDA, billed_duration_ms=1000, memory_mb=128),
         Resources(arch="arm64", ephemeral_storage_mb=10240), 2.160225e-6),
        # no Billed Duration: ceil(50.2 + 200.1 init) = 251 ms x 0.5 GB, x86
        (_inv(semconv.PLATFORM_AWS_LAMBDA, duration_ms=50.2, init_duration_ms=200.1,
              memory_mb=512), Resources(), 2.29167085e-6),
        # Cloud Run: 123 ms -> 200 ms x (1 vCPU x 0.000024 + 0.5 GiB x 0.0000025) + 0.0000004
        (_inv(semconv.PLATFORM_GCP_CLOUD_RUN, duration_ms=123), Resources(), 5.45e-6),
        # Azure: 42 ms -> 100 ms minimum, 200 MB -> 256 MB: 0.1 x 0.25 x 0.000016 + 0.0000002
        (_inv(semconv.PLATFORM_AZURE_FUNCTIONS, duration_ms=42, memory_used_mb=200),
         Resources(), 6e-7),
        # Azure: 1234.5 ms -> 1235 ms, 1600 MB capped at 1536 MB
        (_inv(semconv.PLATFORM_AZURE_FUNCTIONS, duration_ms=1234.5, memory_used_mb=1600),
         Resources(), 2.984e-5),
    ],
)
def test_cost_matches_hand_computed(invocation, spec, expected):
    assert PRICING.cost(invocation, spec) == pytest.approx(expected, rel=1e-9)


def test_platforms_without_list_price_have_no_cost():
    assert PRICING.cost(_inv(semconv.PLATFORM_KNATIVE, duration_ms=10), Resources()) is None


def test_overrides_deep_merge_and_version():
    pricing = Pricing.load(overrides={"version": "negotiated-2026",
                                      "aws_lambda": {"request": 0.0}})
    cost = pricing.cost(_inv(semconv.PLATFORM_AWS_LAMBDA, billed_duration_ms=1000,
                             memory_mb=1024), Resources())
    assert cost == pytest.approx(0.0000166667)
    assert pricing.version == "negotiated-2026"
    assert pricing.table["aws_lambda"]["architectures"]["arm64"]["gb_second"] == 0.0000133334


SEED_MANIFEST = """
apiVersion: ai.apexlogic.com/v1alpha1
kind: ServerlessModelDeployment
metadata:
  name: fraud-detection-model-v2
  namespace: ai-production
spec:
  modelRef:
    name: fraud-detection-model
    version: "2.1.0"
  runtime:
    platform: "aws-lambda"
    region: "us-east-1"
    memory: "4096MB"
  finops:
    costCenter: "FraudDetection"
---
kind: ConfigMap
metadata: {name: unrelated}
"""


def test_manifest_gives_model_and_cost_center_else_tag(tmp_path):
    (tmp_path / "fraud.yaml").write_text(SEED_MANIFEST)
    enricher = Enricher(PRICING, load_manifests(tmp_path),
                        tags={"other-fn": {"CostCenter": "Search"}})
    managed = enricher.enrich(Invocation(
        platform=semconv.PLATFORM_AWS_LAMBDA, function="fraud-detection-model-v2",
        invocation_id="r", time_ns=1, source="t", billed_duration_ms=100))
    assert (managed.model_name, managed.model_version, managed.cost_center) == (
        "fraud-detection-model", "2.1.0", "FraudDetection")
    # memory from the manifest (4096MB) since the source did not report it
    assert managed.cost_usd == pytest.approx(0.1 * 4 * 0.0000166667 + 0.0000002)
    assert managed.pricing_version == PRICING.version
    tagged = enricher.enrich(Invocation(
        platform=semconv.PLATFORM_AWS_LAMBDA, function="other-fn", invocation_id="r",
        time_ns=1, source="t"))
    assert (tagged.model_name, tagged.cost_center, tagged.cost_usd) == (None, "Search", None)
    # same name on another platform is not the manifest's function
    elsewhere = enricher.enrich(Invocation(
        platform=semconv.PLATFORM_GCP_CLOUD_RUN, function="fraud-detection-model-v2",
        invocation_id="r", time_ns=1, source="t"))
    assert elsewhere.cost_center is None
