"""Azure Functions (Python v2 model) wrapper, called the way the worker calls functions."""

from __future__ import annotations

import inspect
import json
import threading
from typing import Any

import azure.functions as func
import pytest
from azure.functions._abc import RetryContext, TraceContext
from obsloop_instrument import instrument_azure_function, log_prediction
from otlp_capture import OtlpCaptureReceiver, attributes, picked


class HostTraceContext(TraceContext):
    def __init__(self, trace_parent: str, trace_state: str = "") -> None:
        self._parent, self._state = trace_parent, trace_state

    @property
    def trace_parent(self) -> str:
        return self._parent

    @property
    def trace_state(self) -> str:
        return self._state

    @property
    def attributes(self) -> dict[str, str]:
        return {}


class HostRetryContext(RetryContext):
    @property
    def retry_count(self) -> int:
        return 0

    @property
    def max_retry_count(self) -> int:
        return 0

    @property
    def exception(self) -> Any:
        return None


class HostContext(func.Context):
    """What the Python worker passes as ``context``."""

    def __init__(self, invocation_id: str, function_name: str, trace_parent: str) -> None:
        self._id, self._name = invocation_id, function_name
        self._trace = HostTraceContext(trace_parent)

    invocation_id = property(lambda self: self._id)
    function_name = property(lambda self: self._name)
    function_directory = property(lambda self: "/home/site/wwwroot")
    trace_context = property(lambda self: self._trace)
    retry_context = property(lambda self: HostRetryContext())
    thread_local_storage = property(lambda self: threading.local())


def call_like_worker(
    app: func.FunctionApp, name: str, bindings: dict[str, Any], context: Any
) -> Any:
    """Bind by parameter name and pass ``context`` only if the signature asks for it."""
    [function] = [f for f in app.get_functions() if f.get_function_name() == name]
    user_function = function.get_user_function()
    parameters = inspect.signature(user_function).parameters
    kwargs = {k: v for k, v in bindings.items() if k in parameters}
    if "context" in parameters:
        kwargs["context"] = context
    return user_function(**kwargs)


HOST_TRACEPARENT = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
REQUEST = func.HttpRequest(
    "POST",
    "https://ml-scoring.azurewebsites.net/api/predict",
    headers={
        "content-type": "application/json",
        "traceparent": "00-11111111111111111111111111111111-2222222222222222-01",
    },
    body=json.dumps({"amount": 912.5, "country": "DE"}).encode(),
)


def test_http_trigger_without_context_parameter_gets_one(
    otlp: OtlpCaptureReceiver, azure_env: None
) -> None:
    app = func.FunctionApp(http_auth_level=func.AuthLevel.ANONYMOUS)

    @app.route(route="predict", methods=["POST"])
    @instrument_azure_function(model_name="fraud-scorer", model_version="2026.11.1")
    def predict(req: func.HttpRequest) -> func.HttpResponse:
        features = req.get_json()
        probability = round(features["amount"] / 5000, 4)
        log_prediction(features, probability)
        return func.HttpResponse(json.dumps({"fraud_probability": probability}), status_code=200)

    context = HostContext("3f6a1c2e-inv-1", "predict", HOST_TRACEPARENT)
    response = call_like_worker(app, "predict", {"req": REQUEST}, context)

    assert json.loads(response.get_body()) == {"fraud_probability": 0.1825}
    [(resource, span)] = otlp.spans()
    expected = {
        "faas.trigger": "http",
        "faas.invocation_id": "3f6a1c2e-inv-1",
        "faas.name": "ml-scoring/predict",
        "faas.coldstart": True,
        "cloud.provider": "azure",
        "cloud.region": "West Europe",
        "cloud.resource_id": "/subscriptions/0d5b1f7e-0000-4000-8000-000000000001"
        "/resourceGroups/ml-rg/providers/Microsoft.Web/sites/ml-scoring/functions/predict",
        "model.version": "2026.11.1",
    }
    assert picked(attributes(span.attributes), expected) == expected
    assert resource["service.name"] == "fraud-scorer"  # OTEL_SERVICE_NAME beats the app name
    # the host's trace context (the function context) wins over the request header
    assert span.trace_id.hex() == "4bf92f3577b34da6a3ce929d0e0e4736"
    assert span.parent_span_id.hex() == "00f067aa0ba902b7"
    [record] = otlp.log_records()
    assert record.trace_id == span.trace_id


def test_async_handler_with_context_records_exception(
    otlp: OtlpCaptureReceiver, azure_env: None
) -> None:
    import asyncio

    app = func.FunctionApp(http_auth_level=func.AuthLevel.ANONYMOUS)

    @app.route(route="predict", methods=["POST"])
    @instrument_azure_function
    async def predict(req: func.HttpRequest, context: func.Context) -> func.HttpResponse:
        raise RuntimeError(f"model not loaded in {context.function_name}")

    context = HostContext("inv-2", "predict", HOST_TRACEPARENT)
    with pytest.raises(RuntimeError, match="model not loaded in predict"):
        asyncio.run(call_like_worker(app, "predict", {"req": REQUEST}, context))

    [(_, span)] = otlp.spans()
    assert attributes(span.attributes)["faas.invocation_id"] == "inv-2"
    assert [e.name for e in span.events] == ["exception"]
    assert otlp.latest_metrics()["faas.errors"].sum.data_points[0].as_int == 1
