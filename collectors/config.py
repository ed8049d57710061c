"""The ``collectors`` configuration section (to be mounted on :class:`obsloop.config.Config`).

Every cloud collector is off until enabled; each names what to read and how far back a
first start backfills. Pricing, manifests and per-function resources are shared: they
price and attribute invocations whichever collector saw them.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from pydantic import ConfigDict, Field, ValidationError, model_validator
from pydantic_core import ErrorDetails, InitErrorDetails

from obsloop.collectors import registry
from obsloop.core.secret import Secret
from obsloop.core.settings import Section


class ReceiverConfig(Section):
    """OTLP receivers: the standard ports 4318 (HTTP) and 4317 (gRPC)."""

    host: str = "127.0.0.1"
    http_port: int = Field(4318, ge=0, le=65535)
    grpc_port: int = Field(4317, ge=0, le=65535)
    grpc_enabled: bool = True
    max_request_bytes: int = Field(16 * 1024 * 1024, gt=0)
    """Largest accepted request body, compressed or not (413 past it); also the largest
    JSON text any request may contain."""
    max_decompressed_ratio: int = Field(8, ge=1)
    """All decoding layers of one request (``Content-Encoding``, Firehose records,
    ``awslogs`` data) may produce at most ``max_request_bytes`` times this, together."""
    max_documents_per_request: int = Field(50_000, gt=0)
    """JSON documents and Firehose records in one AWS push (413 past it)."""
    max_events_per_request: int = Field(500_000, gt=0)
    """Log events in one AWS push (413 past it)."""
    bearer_token: Secret | None = None
    """When set, every request on the OTLP ports (OTLP and the ``/aws/*`` pushes except
    Firehose, which sends its access key) must carry ``Authorization: Bearer <token>``."""
    retry_after_seconds: int = Field(1, ge=1)


class PullConfig(Section):
    """What every checkpointed pull is configured with; a kind's section extends it."""

    enabled: bool = False
    poll_interval_seconds: float = Field(60.0, gt=0)
    backfill_seconds: int = Field(3600, ge=0)
    """How far back the first run (no checkpoint yet) starts."""


class AwsCollectorConfig(PullConfig):
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


class GcpCollectorConfig(PullConfig):
    project: str | None = None
    filter: str = 'resource.type = ("cloud_run_revision" OR "cloud_function")'
    endpoint: str | None = None
    settle_seconds: float = Field(10.0, ge=0)


class AzureCollectorConfig(PullConfig):
    schema_: Literal["workspace", "classic"] = Field("workspace", alias="schema")
    target: str | None = None
    """A Log Analytics workspace id, or an Application Insights resource id (classic)."""
    region: str | None = None
    subscription: str | None = None
    endpoint: str | None = None
    settle_seconds: float = Field(120.0, ge=0)


class PrometheusCollectorConfig(Section):
    enabled: bool = False
    targets: list[str] = []
    poll_interval_seconds: float = Field(15.0, gt=0)


class FunctionResources(Section):
    """What a function is configured with when its reports do not say (for pricing)."""

    arch: Literal["x86_64", "arm64"] = "x86_64"
    memory_mb: int | None = Field(None, gt=0)
    vcpu: float | None = Field(None, gt=0)
    ephemeral_storage_mb: int = Field(512, gt=0)
    billing: Literal["request", "instance"] | None = None
    """Cloud Run / Cloud Functions billing mode; ``None``: the pricing table's ``billing``."""
    tags: dict[str, str] = {}


class CollectorsConfig(Section):
    """One section per collector kind (:mod:`obsloop.collectors.registry`) and what they share.

    The shipped kinds are fields; a kind registered at run time is an extra key, validated
    with its own model, so a misspelt kind is still an error that names it."""

    model_config = ConfigDict(extra="allow", validate_assignment=True)

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

    @model_validator(mode="after")
    def _registered_kinds(self) -> CollectorsConfig:
        extra = self.__pydantic_extra__ or {}
        for name, value in extra.items():
            try:
                model = registry.kind(name).config
            except registry.UnknownCollector:
                raise ValueError(f"unknown key '{name}': not a field of collectors nor a collector "
                                 f"kind ({', '.join(registry.names())})") from None
            try:
                extra[name] = model.model_validate(value)
            except ValidationError as exc:  # under the kind's key, as a field's errors are
                raise ValidationError.from_exception_data(
                    exc.title, [_under(name, e) for e in exc.errors()]) from None
        return self


def _under(key: str, error: ErrorDetails) -> InitErrorDetails:
    """``error`` re-rooted under ``key``, so a kind's own field errors name ``collectors.<kind>.…``."""
    detail = InitErrorDetails(type=error["type"], loc=(key, *error["loc"]), input=error["input"])
    if "ctx" in error:
        detail["ctx"] = error["ctx"]
    return detail
