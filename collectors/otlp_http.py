"""OTLP/HTTP receiver (port 4318): ``POST /v1/traces``, ``/v1/metrics``, ``/v1/logs``.

Responses follow the OTLP specification: 200 with an ``Export*ServiceResponse`` (partial
success when items were dropped), 400 for a malformed payload, 401 for a missing or
wrong bearer token, 413 past the size limit, 415 for an unknown content type, 503 with
``Retry-After`` when the pipeline is full. Error bodies are ``google.rpc.Status`` in the
request's encoding.
"""

from __future__ import annotations

import asyncio

from aiohttp import web
from google.protobuf import json_format
from google.protobuf.message import Message
from google.rpc import code_pb2, status_pb2

from obsloop.collectors.push_auth import PortGuard, Refused
from obsloop.collectors.request_budget import Budget, Limits, read_body
from obsloop.core.selfmetrics import SelfMetrics
from obsloop.pipelines.backpressure import PipelineFull
from obsloop.pipelines.intake import Intake
from obsloop.pipelines.otlp_decode import SIGNALS, InvalidRequest, validate

PROTOBUF = "application/x-protobuf"
JSON = "application/json"
_ENCODINGS = {PROTOBUF: "protobuf", JSON: "json"}
_GRPC_CODE_FOR_STATUS = {
    400: code_pb2.INVALID_ARGUMENT,
    401: code_pb2.UNAUTHENTICATED,
    413: code_pb2.RESOURCE_EXHAUSTED,
    415: code_pb2.INVALID_ARGUMENT,
    503: code_pb2.UNAVAILABLE,
}


def _encode(message: Message, content_type: str) -> bytes:
    if content_type == JSON:
        return json_format.MessageToJson(message, indent=None).encode()
    return message.SerializeToString()


class OtlpHttpReceiver:
    def __init__(
        self,
        intake: Intake,
        metrics: SelfMetrics,
        *,
        limits: Limits,
        guard: PortGuard,
        retry_after_seconds: int,
    ) -> None:
        self.intake = intake
        self.metrics = metrics
        self.limits = limits
        self.guard = guard
        self.retry_after = str(retry_after_seconds)

    def app(self) -> web.Application:
        """The OTLP/HTTP application; every route on it, the AWS pushes mounted later
        included, passes through ``guard``."""
        app = web.Application(client_max_size=self.limits.max_request_bytes,
                              middlewares=[self.guard.middleware])
        for signal in SIGNALS:
            path = f"/v1/{signal}"
            app.router.add_post(path, self._handler(signal))
            self.guard.render(path, self._renderer(signal))
        return app

    def _renderer(self, signal: str):
        def render(request: web.Request, refused: Refused) -> web.Response:
            content_type = request.content_type
            return self._refuse(signal, refused, content_type if content_type in _ENCODINGS else PROTOBUF)

        return render

    def _handler(self, signal: str):
        async def handle(request: web.Request) -> web.Response:
            return await self.export(signal, request)

        return handle

    async def export(self, signal: str, request: web.Request) -> web.Response:
        content_type = request.content_type
        reply_type = content_type if content_type in _ENCODINGS else PROTOBUF
        try:
            if content_type not in _ENCODINGS:
                raise Refused(415, f"unsupported Content-Type {content_type!r}; use {PROTOBUF} or {JSON}",
                              "content_type")
            body = await read_body(request, Budget(self.limits))
            try:
                valid = validate(signal, body, _ENCODINGS[content_type])
            except InvalidRequest as exc:
                raise Refused(400, str(exc), "malformed") from None
            try:
                pending = self.intake.submit(signal, valid.payload, valid.items)
                if pending is not None:  # Kafka: acknowledged once the brokers have it
                    await asyncio.wrap_future(pending)
            except PipelineFull:
                raise Refused(503, "pipeline full, retry later", "backpressure") from None
        except Refused as refused:
            return self._refuse(signal, refused, reply_type)
        if valid.rejected:
            self.metrics.items_rejected.labels(signal, "invalid_id").inc(valid.rejected)
        self.metrics.requests.labels(signal, "http", "accepted").inc()
        return web.Response(body=_encode(valid.response(), reply_type), content_type=reply_type)

    def _refuse(self, signal: str, refused: Refused, content_type: str) -> web.Response:
        self.metrics.requests.labels(signal, "http", refused.reason).inc()
        status = status_pb2.Status(code=_GRPC_CODE_FOR_STATUS[refused.status], message=refused.message)
        headers = {"Retry-After": self.retry_after} if refused.status == 503 else None
        return web.Response(status=refused.status, body=_encode(status, content_type),
                            content_type=content_type, headers=headers)
