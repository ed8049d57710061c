"""The ``collectors`` configuration section (to be mounted on :class:`obsloop.config.Config`).

Every cloud collector is off until enabled; each names what to read and how far back a
first start backfills. Pricing, manifests and per-function resources are shared: they
price and attribute invocations whichever collector saw them.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from obsloop.secret import Secret


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True)


class _Pull(_Section):
    enabled: bool = False
    poll_interval_seconds: float = Field(60.0, gt=0)
    backfill_seconds: int = Field(3600, ge=0)
    """How far back the first run (no checkpoint yet) starts."""


class AwsCollectorConfig(_Pull):
    region: str | None = None
    account_id: str | None = None
    endpoint_url: str | None = None
    """Only for tests or VPC endpoints; boto3 resolves the public endpoint otherwise."""
    log_groups: list[str] = []
    """The log groups to pull; empty: every group under ``log_group_prefix``, discovered
    again at every poll (functions deployed later are picked up)."""
    log_group_prefix: str = "/aws/lambda/"
    log_group_limit: int = Field(1000, gt=0)
    """At most this many discovered groups are pulled (the first in name order)."""
    log_group_exclude: list[str] = []
    """Discovered groups to skip: names or shell patterns (``/aws/lambda/*-canary``)."""
    metric_functions: list[str] = []
    """Functions whose ``AWS/Lambda`` metrics ``GetMetricData`` pulls."""
    settle_seconds: int = Field(30, ge=0)
    overlap_seconds: int = Field(120, ge=0)
    read_tags: bool = True
    """Read Lambda tags for the cost-center fallback (``lambda:GetFunction``)."""
    firehose_access_key: Secret | None = None
    push_region: str | None = None
    """Region stamped on subscription pushes (their payload does not carry one)."""


class GcpCollectorConfig(_Pull):
    project: str | None = None
    filter: str = 'resource.type = ("cloud_run_revision" OR "cloud_function")'
    endpoint: str | None = None
    settle_seconds: float = Field(10.0, ge=0)


class AzureCollectorConfig(_Pull):
    schema_: Literal["workspace", "classic"] = Field("workspace", alias="schema")
    target: str | None = None
    """A Log Analytics workspace id, or an Application Insights resource id (classic)."""
    region: str | None = None
    subscription: str | None = None
    endpoint: str | None = None
    settle_seconds: float = Field(120.0, ge=0)


class PrometheusCollectorConfig(_Section):
    enabled: bool = False
    targets: list[str] = []
    poll_interval_seconds: float = Field(15.0, gt=0)


class FunctionResources(_Section):
    """What a function is configured with when its reports do not say (for pricing)."""

    arch: Literal["x86_64", "arm64"] = "x86_64"
    memory_mb: int | None = Field(None, gt=0)
    vcpu: float | None = Field(None, gt=0)
    ephemeral_storage_mb: int = Field(512, gt=0)
    billing: Literal["request", "instance"] | None = None
    """Cloud Run / Cloud Functions billing mode; ``None``: the pricing table's ``billing``."""
    tags: dict[str, str] = {}


class CollectorsConfig(_Section):
    aws: AwsCollectorConfig = AwsCollectorConfig()
    gcp: GcpCollectorConfig = GcpCollectorConfig()
    azure: AzureCollectorConfig = AzureCollectorConfig()
    prometheus: PrometheusCollectorConfig = PrometheusCollectorConfig()
    checkpoint_dir: Path | None = None
    """Defaults to ``<data_dir>/checkpoints``."""
    manifests_dir: Path | None = None
    """GitOps ``ServerlessModelDeployment`` manifests: model identity and cost center."""
    pricing_file: Path | None = None
    pricing_overrides: dict[str, Any] = {}
    cost_center_tags: list[str] = ["CostCenter", "cost-center", "cost_center"]
    functions: dict[str, FunctionResources] = {}
