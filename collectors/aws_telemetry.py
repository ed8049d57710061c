"""Lambda Telemetry API events forwarded by an extension, over HTTP.

The Telemetry API delivers a JSON array of ``{"time", "type", "record"}`` events to a
listener inside the execution environment; an extension forwards that array here. The
events do not say which function they belong to (the extension knows it from its
environment), so the extension adds ``?function=&region=&account=&version=`` — read from
``AWS_LAMBDA_FUNCTION_NAME``, ``AWS_REGION``, the account and
``AWS_LAMBDA_FUNCTION_VERSION``. ``platform.initStart`` also names the function and is
used when the query does not.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable

from aiohttp import web

from obsloop.collectors import selfmetrics
from obsloop.collectors.aws_lambda_logs import LambdaLogDecoder, LambdaSource, iso_ns
from obsloop.collectors.encode import LogsBuilder
from obsloop.collectors.forward import AsyncSubmit, Submit, deliver
from obsloop.collectors.normalize import Invocation
from obsloop.collectors.request_budget import Budget, Limits, read_body, too_deep
from obsloop.pipelines.backpressure import PipelineFull
from obsloop.pipelines.otlp_decode import MAX_JSON_DEPTH

log = logging.getLogger(__name__)


def _text(value: object) -> str | None:
    return value if isinstance(value, str) else None


def _source(events: list, query) -> LambdaSource | None:
    function = query.get("function")
    version = query.get("version")
    for event in events:
        if isinstance(event, dict) and event.get("type") == "platform.initStart":
            record = event.get("record")
            if isinstance(record, dict):
                function = function or _text(record.get("functionName"))
                version = version or _text(record.get("functionVersion"))
    if not function:
        return None
    return LambdaSource(
        function=function,
        account_id=query.get("account"),
        region=query.get("region"),
        version=version,
    )


def _event_ns(event: object) -> int:
    try:
        return iso_ns(event["time"])  # type: ignore[index]
    except (KeyError, TypeError, ValueError):
        return 0


def encode_events(events: list, source: LambdaSource, decoder: LambdaLogDecoder) -> LogsBuilder:
    """Each event as a record; ``platform.start`` / ``platform.report`` as invocations,
    ``function`` / ``extension`` lines as log records parsed like CloudWatch lines."""
    builder = LogsBuilder()
    resource = source.resource()
    for event in events:
        raw = json.dumps(event, separators=(",", ":"))
        time_ns = _event_ns(event)
        if not isinstance(event, dict) or not isinstance(event.get("type"), str):
            builder.add_raw(resource, time_ns, raw, "telemetry event without a type")
            decoder.malformed += 1
            continue
        kind = event["type"]
        if kind.startswith("platform."):
            decoder.add_platform_event(builder, source, resource, time_ns, event, raw)
            if kind == "platform.logsDropped":
                selfmetrics.ERRORS.labels(decoder.collector, "logs_dropped").inc()
            continue
        record = event.get("record")
        line = record if isinstance(record, str) else json.dumps(record, separators=(",", ":"))
        decoder.add_cloudwatch_events(builder, source, [(time_ns // 1_000_000, line)])
    return builder


def _events(body: bytes, budget: Budget) -> list:
    """The body's events; :class:`ValueError` with the reason when it holds none."""
    budget.check_json(body, "Telemetry API batch")
    try:
        events = json.loads(body)
    except RecursionError:
        raise ValueError(f"JSON nested deeper than {MAX_JSON_DEPTH} levels") from None
    except ValueError:
        raise ValueError("body is not JSON") from None
    if isinstance(events, dict):
        events = [events]
    if not isinstance(events, list):
        raise ValueError("expected a JSON array of events")
    if too_deep(events, MAX_JSON_DEPTH):
        raise ValueError(f"JSON nested deeper than {MAX_JSON_DEPTH} levels")
    budget.count_documents(1)
    budget.count_events(len(events))
    return events


def telemetry_handler(
    submit: Submit | AsyncSubmit,
    enrich: Callable[[Invocation], Invocation],
    collector: str = "aws.telemetry",
    limits: Limits | None = None,
):
    """``POST`` a Telemetry API batch, as an extension forwards it (with the port's bearer
    token in ``Authorization``: :class:`obsloop.collectors.push_auth.PortGuard`)."""
    decoder = LambdaLogDecoder(enrich, collector)
    limits = limits or Limits.of()

    async def handler(request: web.Request) -> web.Response:
        budget = Budget(limits)
        body = await read_body(request, budget)
        try:
            events = _events(body, budget)
        except ValueError as exc:
            selfmetrics.ERRORS.labels(collector, "bad_payload").inc()
            return web.json_response({"error": str(exc)}, status=400)
        source = _source(events, request.query)
        if source is None:
            selfmetrics.ERRORS.labels(collector, "bad_payload").inc()
            return web.json_response(
                {"error": "no function name: pass ?function= or a platform.initStart event"},
                status=400,
            )
        builder = encode_events(events, source, decoder)
        if builder.count:
            try:
                await deliver(submit, "logs", builder.serialize(), builder.count)
            except Exception as exc:  # noqa: BLE001 - any sink failure means "not accepted"
                if not isinstance(exc, PipelineFull):  # backpressure is logged by the pipeline
                    log.warning("ingest path refused telemetry events", exc_info=True)
                selfmetrics.ERRORS.labels(collector, "ingest_refused").inc()
                return web.json_response({"error": "ingest path busy"}, status=503)
        selfmetrics.PAGES.labels(collector).inc()
        selfmetrics.EVENTS.labels(collector).inc(builder.count)
        if decoder.malformed:
            selfmetrics.MALFORMED.labels(collector).inc(decoder.malformed)
            decoder.malformed = 0
        return web.json_response({"accepted": builder.count})

    return handler
