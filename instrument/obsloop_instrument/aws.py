"""AWS Lambda: ``@instrument_lambda`` around a ``handler(event, context)``."""

from __future__ import annotations

import functools
import os
from collections.abc import Callable, Mapping

from obsloop_instrument import _semconv as sc
from obsloop_instrument._runtime import decorator_factory, prepare_handler

TYPE_CHECKING = False  # not ``typing.TYPE_CHECKING``: no ``typing`` import at set-up
if TYPE_CHECKING:
    from typing import Any

    from obsloop_instrument._span import Parent


def _resource_attributes() -> dict[str, object]:
    """What the Lambda runtime tells every process through its environment."""
    env = os.environ
    attrs: dict[str, object] = {
        sc.CLOUD_PROVIDER: sc.PROVIDER_AWS,
        sc.CLOUD_PLATFORM: sc.PLATFORM_AWS_LAMBDA,
    }
    optional = {
        sc.CLOUD_REGION: env.get("AWS_REGION"),
        sc.FAAS_NAME: env.get("AWS_LAMBDA_FUNCTION_NAME"),
        sc.FAAS_VERSION: env.get("AWS_LAMBDA_FUNCTION_VERSION"),
        sc.FAAS_INSTANCE: env.get("AWS_LAMBDA_LOG_STREAM_NAME"),
    }
    attrs.update({k: v for k, v in optional.items() if v})
    memory = env.get("AWS_LAMBDA_FUNCTION_MEMORY_SIZE")
    if memory and memory.isdigit():
        attrs[sc.FAAS_MAX_MEMORY] = int(memory) * 1024 * 1024  # semconv: bytes
    return attrs


_RECORD_TRIGGERS = {
    "aws:sqs": sc.TRIGGER_PUBSUB,
    "aws:sns": sc.TRIGGER_PUBSUB,
    "aws:kinesis": sc.TRIGGER_PUBSUB,
    "aws:s3": sc.TRIGGER_DATASOURCE,
    "aws:dynamodb": sc.TRIGGER_DATASOURCE,
}


def trigger_of(event: object) -> str:
    """``faas.trigger`` from the event's shape (API Gateway/URL, records, EventBridge)."""
    if not isinstance(event, Mapping):
        return sc.TRIGGER_OTHER
    request_context = event.get("requestContext")
    if isinstance(request_context, Mapping) and (
        "http" in request_context or "httpMethod" in event
    ):
        return sc.TRIGGER_HTTP
    if "httpMethod" in event:
        return sc.TRIGGER_HTTP
    records = event.get("Records")
    if isinstance(records, list) and records and isinstance(records[0], Mapping):
        source = records[0].get("eventSource") or records[0].get("EventSource")
        return _RECORD_TRIGGERS.get(str(source), sc.TRIGGER_OTHER)
    if "detail-type" in event and "source" in event:
        return (
            sc.TRIGGER_TIMER if event.get("detail-type") == "Scheduled Event" else sc.TRIGGER_PUBSUB
        )
    return sc.TRIGGER_OTHER


def _sqs_traceparent(event: Mapping[str, Any]) -> str | None:
    """A single-message SQS batch may carry the producer's traceparent as a message attribute."""
    records = event.get("Records")
    if not isinstance(records, list) or len(records) != 1:
        return None
    attrs = records[0].get("messageAttributes") if isinstance(records[0], Mapping) else None
    if not isinstance(attrs, Mapping):
        return None
    value = attrs.get("traceparent")
    return value.get("stringValue") if isinstance(value, Mapping) else None


def parent_of(event: object) -> Parent | None:
    """W3C traceparent (HTTP headers, SQS attribute), then X-Ray (env, then header)."""
    from obsloop_instrument import _propagation as propagation  # loaded by the set-up

    headers: dict[str, str] = {}
    if isinstance(event, Mapping):
        raw = event.get("headers")
        headers = propagation.lower_keys(
            raw if isinstance(raw, Mapping) else None,
            "traceparent",
            "tracestate",
            "x-amzn-trace-id",
        )
        traceparent = headers.get("traceparent") or _sqs_traceparent(event)
        ctx = propagation.from_traceparent(traceparent, headers.get("tracestate"))
        if ctx is not None:
            return ctx
    return propagation.from_xray(os.environ.get("_X_AMZN_TRACE_ID")) or propagation.from_xray(
        headers.get("x-amzn-trace-id")
    )


def _status_code(result: object) -> int | None:
    if isinstance(result, Mapping):
        status = result.get("statusCode")
        return status if isinstance(status, int) else None
    return None


_STATIC = (sc.CLOUD_PROVIDER, sc.CLOUD_REGION, sc.FAAS_NAME, sc.FAAS_VERSION, sc.FAAS_MAX_MEMORY)
"""The resource attributes every invocation span repeats."""


def _wrap(
    handler: Callable[..., Any], model_name: str | None, model_version: str | None
) -> Callable[..., Any]:
    start = prepare_handler(handler, model_name, model_version, _resource_attributes(), _STATIC)

    @functools.wraps(handler)
    def wrapper(event: Any, context: Any, *args: Any, **kwargs: Any) -> Any:
        attributes = {sc.FAAS_TRIGGER: trigger_of(event)}
        arn = getattr(context, "invoked_function_arn", None)
        if arn:
            attributes[sc.CLOUD_RESOURCE_ID] = arn
            parts = arn.split(":")
            if len(parts) > 4 and parts[4]:
                attributes[sc.CLOUD_ACCOUNT_ID] = parts[4]
        with start(parent_of(event), attributes) as invocation:
            invocation.set_invocation_id(getattr(context, "aws_request_id", None))
            result = handler(event, context, *args, **kwargs)
            invocation.set_http_status(_status_code(result))
            return result

    return wrapper


instrument_lambda = decorator_factory(_wrap)
"""Decorate a Lambda handler: bare or with ``model_name=``/``model_version=``."""
