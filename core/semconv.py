"""Names shared by every part of obsloop: OpenTelemetry semantic conventions plus ours.

Where OpenTelemetry defines a name (``faas.*``, ``cloud.*``, ``service.name``) it is used
as is; obsloop's own names live under ``obsloop.`` or ``model.`` so they never collide.
"""

from __future__ import annotations

# --- OpenTelemetry resource / span attributes -------------------------------------------
SERVICE_NAME = "service.name"
SERVICE_VERSION = "service.version"
CLOUD_PROVIDER = "cloud.provider"
CLOUD_PLATFORM = "cloud.platform"
CLOUD_REGION = "cloud.region"
CLOUD_ACCOUNT_ID = "cloud.account.id"
CLOUD_RESOURCE_ID = "cloud.resource_id"
FAAS_NAME = "faas.name"
FAAS_VERSION = "faas.version"
FAAS_INSTANCE = "faas.instance"
FAAS_INVOCATION_ID = "faas.invocation_id"
FAAS_COLDSTART = "faas.coldstart"
FAAS_MAX_MEMORY = "faas.max_memory"
FAAS_TRIGGER = "faas.trigger"
HOST_ARCH = "host.arch"

# cloud.provider / cloud.platform values
PROVIDER_AWS = "aws"
PROVIDER_GCP = "gcp"
PROVIDER_AZURE = "azure"
PLATFORM_AWS_LAMBDA = "aws_lambda"
PLATFORM_GCP_CLOUD_RUN = "gcp_cloud_run"
PLATFORM_GCP_CLOUD_FUNCTIONS = "gcp_cloud_functions"
PLATFORM_AZURE_FUNCTIONS = "azure_functions"
PLATFORM_KNATIVE = "knative"  # not (yet) an OpenTelemetry value
PLATFORM_OPENFAAS = "openfaas"  # not (yet) an OpenTelemetry value

# --- Model identity (the GitOps manifest's modelRef) ------------------------------------
MODEL_NAME = "model.name"
MODEL_VERSION = "model.version"

# --- Event names of log records obsloop itself understands ------------------------------
PREDICTION_EVENT = "obsloop.model.prediction"
"""A model prediction: ``model.*`` attributes, ``prediction``, optional ``label`` and
``feature.<name>`` attributes, read by the drift detectors."""
PREDICTION_VALUE = "prediction"
PREDICTION_LABEL = "label"
FEATURE_PREFIX = "feature."
PREDICTION_ID = "prediction.id"
"""Stable id of one prediction, the key its ground truth is joined on."""
PREDICTION_SCORE = "prediction.score"
"""A classifier's probability of the positive class, for estimated quality (CBPE)."""
GROUND_TRUTH_EVENT = "obsloop.model.ground_truth"
"""The observed outcome of an earlier prediction: ``prediction.id`` and ``label``; the
record's timestamp is when the outcome was observed."""

INVOCATION_REPORT_EVENT = "obsloop.faas.invocation"
"""One platform invocation report (Lambda REPORT, Cloud Run request log, Azure AppRequests
row), normalized; these rows feed the ``faas_invocations`` table."""

# --- Normalized invocation report fields (attributes of INVOCATION_REPORT_EVENT records) ---
FAAS_DURATION_MS = "faas.duration_ms"
FAAS_BILLED_DURATION_MS = "faas.billed_duration_ms"
FAAS_MEMORY_USED_MB = "faas.memory_used_mb"
FAAS_INIT_DURATION_MS = "faas.init_duration_ms"
FAAS_STATUS = "faas.status"
"""``success``, ``error`` or ``timeout``."""
FAAS_ERROR_TYPE = "error.type"
COST_USD = "obsloop.cost.usd"
COST_CENTER = "obsloop.cost_center"
COST_PRICING_VERSION = "obsloop.cost.pricing_version"
"""The ``version`` of the pricing table a cost was computed with."""
HTTP_RESPONSE_STATUS_CODE = "http.response.status_code"
INVOCATION_SOURCE = "obsloop.source"
"""Which collector saw the record (``aws.logs``, ``aws.telemetry``, ``gcp.logging`` ...)."""
RAW_RECORD_EVENT = "obsloop.raw"
"""A line a collector could not parse, kept verbatim in the body rather than dropped."""
