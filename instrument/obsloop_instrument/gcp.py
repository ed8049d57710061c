"""Google Cloud Functions (functions-framework): ``@instrument_cloud_function``.

Works for HTTP functions (``handler(request: flask.Request)``) and CloudEvent functions
(``handler(cloud_event)``); stack it under ``@functions_framework.http`` /
``@functions_framework.cloud_event``.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Callable

from obsloop_instrument import _semconv as sc
from obsloop_instrument._runtime import decorator_factory, prepare_handler

TYPE_CHECKING = False  # not ``typing.TYPE_CHECKING``: no ``typing`` import at set-up
if TYPE_CHECKING:
    from typing import Any

    from obsloop_instrument._span import Parent


def _resource_attributes() -> dict[str, object]:
    """From the variables Cloud Functions (gen1 names where gen2 has none) and Cloud Run set."""
    env = os.environ
    name = env.get("K_SERVICE") or env.get("FUNCTION_NAME") or env.get("FUNCTION_TARGET")
    region = env.get("FUNCTION_REGION")
    project = env.get("GOOGLE_CLOUD_PROJECT") or env.get("GCP_PROJECT")
    attrs: dict[str, object] = {
        sc.CLOUD_PROVIDER: sc.PROVIDER_GCP,
        sc.CLOUD_PLATFORM: sc.PLATFORM_GCP_CLOUD_FUNCTIONS
        if env.get("FUNCTION_TARGET")
        else sc.PLATFORM_GCP_CLOUD_RUN,
    }
    optional = {
        sc.FAAS_NAME: name,
        sc.FAAS_VERSION: env.get("K_REVISION") or env.get("X_GOOGLE_FUNCTION_VERSION"),
        sc.CLOUD_REGION: region,
        sc.CLOUD_ACCOUNT_ID: project,
    }
    attrs.update({k: v for k, v in optional.items() if v})
    if name and region and project:
        attrs[sc.CLOUD_RESOURCE_ID] = (
            f"//cloudfunctions.googleapis.com/projects/{project}/locations/{region}/functions/{name}"
        )
    memory = env.get("FUNCTION_MEMORY_MB")
    if memory and memory.isdigit():
        attrs[sc.FAAS_MAX_MEMORY] = int(memory) * 1024 * 1024
    return attrs


def _cloud_event_trigger(event_type: str) -> str:
    if event_type.startswith("google.cloud.pubsub."):
        return sc.TRIGGER_PUBSUB
    if event_type.startswith(("google.cloud.storage.", "google.cloud.firestore.")):
        return sc.TRIGGER_DATASOURCE
    return sc.TRIGGER_OTHER


def _describe(argument: Any) -> tuple[str, Parent | None, str | None]:
    """(trigger, parent context, invocation id) of an HTTP request or a CloudEvent."""
    from obsloop_instrument import _propagation as propagation  # loaded by the set-up

    headers = getattr(argument, "headers", None)
    if headers is not None and hasattr(argument, "method"):
        wanted = propagation.lower_keys(
            headers, "traceparent", "tracestate", "x-cloud-trace-context", "function-execution-id"
        )
        parent = propagation.from_traceparent(
            wanted.get("traceparent"), wanted.get("tracestate")
        ) or propagation.from_cloud_trace(wanted.get("x-cloud-trace-context"))
        return sc.TRIGGER_HTTP, parent, wanted.get("function-execution-id")
    get = getattr(argument, "get", None)
    if callable(get):  # a CloudEvent: attributes via get(), distributed-tracing extension
        parent = propagation.from_traceparent(get("traceparent"), get("tracestate"))
        return _cloud_event_trigger(str(get("type") or "")), parent, get("id")
    return sc.TRIGGER_OTHER, None, None


def _status_code(result: object) -> int | None:
    """Status of a Flask return value: a response object or a ``(body, status)`` tuple."""
    if isinstance(result, tuple) and len(result) >= 2 and isinstance(result[1], int):
        return result[1]
    status = getattr(result, "status_code", None)
    return status if isinstance(status, int) else None


_STATIC = (
    sc.CLOUD_PROVIDER,
    sc.CLOUD_REGION,
    sc.CLOUD_RESOURCE_ID,
    sc.FAAS_NAME,
    sc.FAAS_VERSION,
    sc.FAAS_MAX_MEMORY,
)
"""The resource attributes every invocation span repeats."""


def _wrap(
    handler: Callable[..., Any], model_name: str | None, model_version: str | None
) -> Callable[..., Any]:
    start = prepare_handler(handler, model_name, model_version, _resource_attributes(), _STATIC)

    @functools.wraps(handler)
    def wrapper(argument: Any, *args: Any, **kwargs: Any) -> Any:
        trigger, parent, invocation_id = _describe(argument)
        with start(parent, {sc.FAAS_TRIGGER: trigger}) as invocation:
            invocation.set_invocation_id(invocation_id)
            result = handler(argument, *args, **kwargs)
            invocation.set_http_status(_status_code(result))
            return result

    return wrapper


instrument_cloud_function = decorator_factory(_wrap)
"""Decorate a functions-framework handler: bare or with ``model_name=``/``model_version=``."""
