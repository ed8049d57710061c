"""Attribute and event names used by obsloop-instrument.

Copied from ``obsloop/semconv.py`` in the obsloop repository (the source of truth): this
distribution must not depend on the obsloop server package, so the few strings it needs
are duplicated here, deliberately. ``tests/instrument/test_instrument_semconv.py`` checks
that every name defined in both files has the same value in both: a change on either side
fails it rather than letting the library and the service drift apart silently. Names only
the library needs (the ``faas.trigger`` values, the FaaS metric names) live here alone.
"""

from __future__ import annotations

SERVICE_NAME = "service.name"
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

PROVIDER_AWS = "aws"
PROVIDER_GCP = "gcp"
PROVIDER_AZURE = "azure"
PLATFORM_AWS_LAMBDA = "aws_lambda"
PLATFORM_GCP_CLOUD_RUN = "gcp_cloud_run"
PLATFORM_GCP_CLOUD_FUNCTIONS = "gcp_cloud_functions"
PLATFORM_AZURE_FUNCTIONS = "azure_functions"

# faas.trigger values (OpenTelemetry FaaS semantic conventions)
TRIGGER_HTTP = "http"
TRIGGER_PUBSUB = "pubsub"
TRIGGER_DATASOURCE = "datasource"
TRIGGER_TIMER = "timer"
TRIGGER_OTHER = "other"

MODEL_NAME = "model.name"
MODEL_VERSION = "model.version"

PREDICTION_EVENT = "obsloop.model.prediction"
PREDICTION_VALUE = "prediction"
PREDICTION_LABEL = "label"
FEATURE_PREFIX = "feature."
PREDICTION_ID = "prediction.id"
PREDICTION_SCORE = "prediction.score"
GROUND_TRUTH_EVENT = "obsloop.model.ground_truth"

# FaaS metric names (OpenTelemetry FaaS metrics semantic conventions)
METRIC_INVOKE_DURATION = "faas.invoke_duration"
METRIC_INVOCATIONS = "faas.invocations"
METRIC_COLDSTARTS = "faas.coldstarts"
METRIC_ERRORS = "faas.errors"
