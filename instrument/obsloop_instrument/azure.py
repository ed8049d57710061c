"""Azure Functions, Python v2 programming model: ``@instrument_azure_function``.

Stack it under the trigger decorator (``@app.route(...)``, ``@app.queue_trigger(...)``).
The worker binds arguments by parameter name, so the wrapper exposes the handler's own
signature, plus a ``context`` parameter when the handler has none: the function context
carries the invocation id and the host's W3C trace context.
"""

from __future__ import annotations

import functools
import inspect
import os
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from obsloop_instrument import _semconv as sc
from obsloop_instrument._runtime import decorator_factory, prepare_handler

if TYPE_CHECKING:
    from obsloop_instrument._invocation import Invocation
    from obsloop_instrument._span import Parent

_TRIGGERS = {
    "HttpRequest": sc.TRIGGER_HTTP,
    "TimerRequest": sc.TRIGGER_TIMER,
    "QueueMessage": sc.TRIGGER_PUBSUB,
    "ServiceBusMessage": sc.TRIGGER_PUBSUB,
    "EventHubEvent": sc.TRIGGER_PUBSUB,
    "EventGridEvent": sc.TRIGGER_PUBSUB,
    "InputStream": sc.TRIGGER_DATASOURCE,
    "Document": sc.TRIGGER_DATASOURCE,
    "DocumentList": sc.TRIGGER_DATASOURCE,
}


def _app_environment() -> tuple[str | None, str | None, str | None]:
    """(function app name, subscription id, resource group) from the App Service variables."""
    env = os.environ
    owner = env.get("WEBSITE_OWNER_NAME", "")  # "<subscription>+<group>-<region>webspace"
    subscription = owner.split("+", 1)[0] or None
    return env.get("WEBSITE_SITE_NAME"), subscription, env.get("WEBSITE_RESOURCE_GROUP")


def _resource_attributes() -> dict[str, object]:
    env = os.environ
    app, subscription, _ = _app_environment()
    attrs: dict[str, object] = {
        sc.CLOUD_PROVIDER: sc.PROVIDER_AZURE,
        sc.CLOUD_PLATFORM: sc.PLATFORM_AZURE_FUNCTIONS,
    }
    optional = {
        sc.CLOUD_REGION: env.get("REGION_NAME"),
        sc.CLOUD_ACCOUNT_ID: subscription,
        sc.FAAS_INSTANCE: env.get("WEBSITE_INSTANCE_ID"),
        "service.name": app,
    }
    attrs.update({k: v for k, v in optional.items() if v})
    memory = env.get("WEBSITE_MEMORY_LIMIT_MB")
    if memory and memory.isdigit():
        attrs[sc.FAAS_MAX_MEMORY] = int(memory) * 1024 * 1024
    return attrs


def _trigger(arguments: dict[str, Any]) -> str:
    for value in arguments.values():
        trigger = _TRIGGERS.get(type(value).__name__)
        if trigger is not None:
            return trigger
    return sc.TRIGGER_OTHER


def _parent(context: Any, arguments: dict[str, Any]) -> Parent | None:
    """The host's trace context first (it is the W3C parent), then an HTTP traceparent header."""
    from obsloop_instrument import _propagation as propagation  # loaded by the set-up

    trace_context = getattr(context, "trace_context", None)
    parent = propagation.from_traceparent(
        getattr(trace_context, "trace_parent", None), getattr(trace_context, "trace_state", None)
    )
    if parent is not None:
        return parent
    for value in arguments.values():
        if type(value).__name__ == "HttpRequest":
            headers = propagation.lower_keys(value.headers, "traceparent", "tracestate")
            return propagation.from_traceparent(
                headers.get("traceparent"), headers.get("tracestate")
            )
    return None


_STATIC = (sc.CLOUD_PROVIDER, sc.CLOUD_REGION, sc.FAAS_MAX_MEMORY)
"""The resource attributes every invocation span repeats (``faas.name`` is per function)."""


def _wrap(
    handler: Callable[..., Any], model_name: str | None, model_version: str | None
) -> Callable[..., Any]:
    start = prepare_handler(handler, model_name, model_version, _resource_attributes(), _STATIC)
    app, subscription, group = _app_environment()
    signature = inspect.signature(handler)
    wants_context = "context" in signature.parameters
    takes_any_keyword = any(p.kind is p.VAR_KEYWORD for p in signature.parameters.values())

    def begin(kwargs: dict[str, Any]) -> tuple[Invocation, str | None]:
        """The call's invocation (flushed by the caller) and its id."""
        context = (
            kwargs.get("context")
            if wants_context or takes_any_keyword
            else kwargs.pop("context", None)
        )
        function = getattr(context, "function_name", None) or handler.__name__
        attributes = {
            sc.FAAS_TRIGGER: _trigger(kwargs),
            sc.FAAS_NAME: f"{app}/{function}" if app else function,
        }
        if app and subscription and group:
            attributes[sc.CLOUD_RESOURCE_ID] = (
                f"/subscriptions/{subscription}/resourceGroups/{group}"
                f"/providers/Microsoft.Web/sites/{app}/functions/{function}"
            )
        invocation = start(_parent(context, kwargs), attributes, function, flush=False)
        return invocation, getattr(context, "invocation_id", None)

    def status_of(result: Any) -> int | None:
        status = getattr(result, "status_code", None)
        return status if isinstance(status, int) else None

    if inspect.iscoroutinefunction(handler):

        @functools.wraps(handler)
        async def async_wrapper(*args: Any, **kwargs: Any) -> Any:
            import asyncio  # the worker runs on asyncio: already loaded

            # The pipeline was built while decorating: the first call has nothing to wait for.
            invocation, invocation_id = begin(kwargs)
            try:
                with invocation:
                    invocation.set_invocation_id(invocation_id)
                    result = await handler(*args, **kwargs)
                    invocation.set_http_status(status_of(result))
                    return result
            finally:
                # Off the event loop: other invocations of this worker keep running.
                await asyncio.to_thread(invocation.flush)

        wrapper: Callable[..., Any] = async_wrapper
    else:

        @functools.wraps(handler)
        def sync_wrapper(*args: Any, **kwargs: Any) -> Any:
            invocation, invocation_id = begin(kwargs)
            try:
                with invocation:
                    invocation.set_invocation_id(invocation_id)
                    result = handler(*args, **kwargs)
                    invocation.set_http_status(status_of(result))
                    return result
            finally:
                invocation.flush()

        wrapper = sync_wrapper

    if not wants_context and not takes_any_keyword:
        context_parameter = inspect.Parameter("context", inspect.Parameter.KEYWORD_ONLY)
        wrapper.__signature__ = signature.replace(  # type: ignore[attr-defined]
            parameters=[*signature.parameters.values(), context_parameter]
        )
    return wrapper


instrument_azure_function = decorator_factory(_wrap)
"""Decorate a v2-model Azure Function: bare or with ``model_name=``/``model_version=``."""
