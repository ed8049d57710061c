"""Costs against figures computed by hand from the list prices in pricing.yaml."""

from __future__ import annotations

import time

import pytest
from feedback.manifests_data import SEED

from obsloop.collectors.enrich import Enricher
from obsloop.collectors.normalize import Invocation
from obsloop.collectors.pricing import Pricing, Resources, tier_bounds, tiered_cost
from obsloop.core import semconv
from obsloop.core.manifests import valid_manifests


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
    assert pricing.table["aws_lambda"]["architectures"]["arm64"]["gb_second_tiers"][0]["gb_second"] == 0.0000133334


NOW_NS = time.time_ns()
ACCOUNT = {"account_id": "123456789012", "region": "us-east-1", "time_ns": NOW_NS}


def _lambda(memory_mb: int, billed_ms: int, arch: str = "x86_64", **kwargs) -> Invocation:
    fields = {**ACCOUNT, **kwargs}
    return Invocation(platform=semconv.PLATFORM_AWS_LAMBDA, function="fn", invocation_id="r",
                      source="test", memory_mb=memory_mb, billed_duration_ms=billed_ms, arch=arch, **fields)


def test_lambda_tiers_follow_the_months_usage_per_account_region_and_architecture():
    pricing = Pricing.load(overrides={"aws_lambda": {"month_to_date_gb_seconds": {
        "123456789012/us-east-1/x86_64": 6e9 - 0.0625,     # just below the x86 first boundary
        "123456789012/us-east-1/arm64": 6.5e9,             # arm64's first tier runs to 7.5 billion
        "999999999999/us-east-1/arm64": 2e10,              # past arm64's last boundary (18.75 billion)
    }}})
    # 1 GB x 0.125 s = 0.125 GB-s straddling 6 billion: 0.0625 x 0.0000166667 + 0.0625 x 0.000015
    # + 0.0000002 request
    assert pricing.cost(_lambda(1024, 125), Resources()) == pytest.approx(2.17916875e-6, rel=1e-9)
    # the next one lies wholly in the second tier: 0.125 x 0.000015 + 0.0000002
    assert pricing.cost(_lambda(1024, 125), Resources()) == pytest.approx(2.075e-6, rel=1e-9)
    # arm64 at 6.5 billion is still in its first tier: 0.125 x 0.0000133334 + 0.0000002
    assert pricing.cost(_lambda(1024, 125, "arm64"), Resources()) == pytest.approx(1.866675e-6, rel=1e-9)
    # another account, past 18.75 billion: 2 GB x 1 s x 0.0000106667 + 0.0000002
    assert pricing.cost(_lambda(2048, 1000, "arm64", account_id="999999999999"),
                        Resources()) == pytest.approx(2.15334e-5, rel=1e-9)
    # another region of the first account starts at zero: 0.125 x 0.0000166667 + 0.0000002
    assert pricing.cost(_lambda(1024, 125, region="eu-west-1"),
                        Resources()) == pytest.approx(2.2833375e-6, rel=1e-9)
    # a later month starts again from the first tier
    next_month = NOW_NS + 40 * 86400 * 10**9
    assert pricing.cost(_lambda(1024, 125, time_ns=next_month), Resources()) == pytest.approx(2.2833375e-6, rel=1e-9)


def test_tiered_cost_splits_across_every_boundary_crossed():
    tiers = tier_bounds(Pricing.load().table["aws_lambda"]["architectures"]["x86_64"]["gb_second_tiers"])
    # 16 billion GB-s from zero: 6e9 x 0.0000166667 + 9e9 x 0.000015 + 1e9 x 0.0000133334
    assert tiered_cost(16e9, 0, tiers) == pytest.approx(100000.2 + 135000 + 13333.4, rel=1e-12)
    # from 7 billion to 15.5 billion: 8e9 x 0.000015 + 0.5e9 x 0.0000133334
    assert tiered_cost(8.5e9, 7e9, tiers) == pytest.approx(120000 + 6666.7, rel=1e-12)


def test_a_flat_lambda_rate_override_replaces_the_tiers():
    pricing = Pricing.load(overrides={"aws_lambda": {
        "architectures": {"x86_64": {"gb_second": 0.00001}},
        "month_to_date_gb_seconds": {"123456789012/us-east-1/x86_64": 2e10}}})
    # 1 GB x 1 s x 0.00001 + 0.0000002, whatever the month's usage
    assert pricing.cost(_lambda(1024, 1000), Resources()) == pytest.approx(1.02e-5, rel=1e-9)


def test_cloud_run_request_based_and_instance_based_billing():
    run = _inv(semconv.PLATFORM_GCP_CLOUD_RUN, duration_ms=250)
    # request-based (the default): 250 ms -> 300 ms x (1 vCPU x 0.000024 + 0.5 GiB x 0.0000025)
    # + 0.0000004 per request
    assert PRICING.cost(run, Resources()) == pytest.approx(7.975e-6, rel=1e-9)
    # instance-based: 0.3 s x (1 x 0.000018 + 0.5 x 0.000002), no request fee
    assert PRICING.cost(run, Resources(billing="instance")) == pytest.approx(5.7e-6, rel=1e-9)
    # the table's default switched by configuration; 2 vCPU, 1 GiB: 0.3 x (2 x 0.000018 + 0.000002)
    instance = Pricing.load(overrides={"gcp_cloud_run": {"billing": "instance"}})
    assert instance.cost(_inv(semconv.PLATFORM_GCP_CLOUD_RUN, duration_ms=250, memory_mb=1024),
                         Resources(vcpu=2)) == pytest.approx(1.14e-5, rel=1e-9)


def test_a_pricing_table_without_the_configured_rates_is_refused_at_load():
    with pytest.raises(ValueError, match="gcp_cloud_run.billing 'committed'"):
        Pricing.load(overrides={"gcp_cloud_run": {"billing": "committed"}})
    with pytest.raises(ValueError, match="neither gb_second nor gb_second_tiers"):
        Pricing.load(overrides={"aws_lambda": {"architectures": {"arm64": {"gb_second_tiers": []}}}})
    custom = Pricing.load(overrides={"gcp_cloud_run": {"billing_modes": {"instance": None}}})
    with pytest.raises(ValueError, match="collectors.functions.api.billing 'instance'"):
        custom.check_resources("api", Resources(billing="instance"))


SEED_MANIFEST = SEED + """---
kind: ConfigMap
metadata: {name: unrelated}
"""


def test_manifest_gives_model_and_cost_center_else_tag(tmp_path):
    (tmp_path / "fraud.yaml").write_text(SEED_MANIFEST)
    enricher = Enricher(PRICING, valid_manifests(tmp_path),
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


def _call(function: str, platform: str = semconv.PLATFORM_AWS_LAMBDA) -> Invocation:
    return Invocation(platform=platform, function=function, invocation_id="r", time_ns=1, source="t",
                      billed_duration_ms=100)


def test_manifest_memory_in_any_unit_the_feedback_loop_reads_is_priced(tmp_path):
    """``4GiB`` and ``4096mb`` were unknown to enrichment (priced as if no memory were
    declared) while the feedback loop read them as 4096 MB."""
    for name, memory in (("a", "4GiB"), ("b", "4096mb")):
        (tmp_path / f"{name}.yaml").write_text(
            SEED_MANIFEST.replace("fraud-detection-model-v2", name).replace('"4096MB"', memory))
    enricher = Enricher(PRICING, valid_manifests(tmp_path))
    for name in ("a", "b"):
        assert enricher.enrich(_call(name)).cost_usd == pytest.approx(0.1 * 4 * 0.0000166667 + 0.0000002)


def test_manifest_platform_and_function_annotation_as_the_feedback_loop_reads_them(tmp_path):
    """One function name on two platforms is two deployments (each its own cost center; one
    used to replace the other), the function annotation names the deployed function, and a
    platform obsloop has no alias for applies to that platform only (it used to apply to all)."""
    gcp = (SEED_MANIFEST.replace("name: fraud-detection-model-v2", "name: fraud-on-gcp")
           .replace('"aws-lambda"', '"google-cloud-run"').replace("FraudDetection", "Search")
           .replace("  namespace: ai-production\n",
                    "  namespace: search\n  annotations: {obsloop.io/function-name: fraud-detection-model-v2}\n"))
    (tmp_path / "a.yaml").write_text(SEED_MANIFEST)
    (tmp_path / "b.yaml").write_text(gcp)
    (tmp_path / "c.yaml").write_text(SEED_MANIFEST.replace('"aws-lambda"', '"cloudflare-workers"')
                                     .replace("fraud-detection-model-v2", "edge-fn"))
    enricher = Enricher(PRICING, valid_manifests(tmp_path))
    assert enricher.enrich(_call("fraud-detection-model-v2")).cost_center == "FraudDetection"
    on_gcp = enricher.enrich(_call("fraud-detection-model-v2", semconv.PLATFORM_GCP_CLOUD_RUN))
    assert (on_gcp.cost_center, on_gcp.model_name) == ("Search", "fraud-detection-model")
    assert enricher.enrich(_call("edge-fn")).cost_center is None


def test_invalid_manifests_are_logged_and_the_others_still_enrich(tmp_path, caplog):
    """A manifest the feedback loop refuses (here a traffic split of 110%) no longer enriches
    either, and a file that is not YAML no longer stops the collectors from starting."""
    (tmp_path / "good.yaml").write_text(SEED_MANIFEST)
    (tmp_path / "split.yaml").write_text(SEED_MANIFEST.replace("fraud-detection-model-v2", "split-fn").replace(
        '    blue: "100%"\n    green: "0%"', '    blue: "90%"\n    green: "20%"'))
    (tmp_path / "broken.yaml").write_text("kind: ServerlessModelDeployment\nmetadata: [unclosed\n")
    with caplog.at_level("WARNING"):
        enricher = Enricher(PRICING, valid_manifests(tmp_path), tags={"split-fn": {"CostCenter": "Tagged"}})
    assert enricher.enrich(_call("fraud-detection-model-v2")).cost_center == "FraudDetection"
    assert enricher.enrich(_call("split-fn")).cost_center == "Tagged"
    warnings = " | ".join(r.getMessage() for r in caplog.records)
    assert "split.yaml:18: trafficSplit adds up to 110%" in warnings, warnings
    assert "broken.yaml:3: not valid YAML" in warnings
