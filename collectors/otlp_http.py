"""OTLP/HTTP receiver (port 4318): ``POST /v1/traces``, ``/v1/metrics``, ``/v1/logs``.

Responses follow the OTLP specification: 200 with an ``Export*ServiceResponse`` (partial
success when items were dropped), 400 for a malformed payload, 401 for a missing or
wrong bearer token, 413 past the size limit, 415 for an unknown content type, 503 with
``Retry-After`` when the pipeline is full. Error bodies are ``google.rpc.Status`` in the
request's encoding.
"""

from __future__ import annotations

import asyncio
import hmac
import zlib

from aiohttp import web
from google.protobuf import json_format
from google.protobuf.message import Message
from google.rpc import code_pb2, status_pb2

from obsloop.collectors.otlp_decode import SIGNALS, InvalidRequest, validate
from obsloop.pipelines.ingest import PipelineFull
from obsloop.pipelines.intake import Intake
from obsloop.selfmetrics import SelfMetrics

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


class _Refused(Exception):
    def __init__(self, status: int, message: str, reason: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.reason = reason


def _encode(message: Message, content_type: str) -> bytes:
    if content_type == JSON:
        return json_format.MessageToJson(message, indent=None).encode()
    return message.SerializeToString()


def _decompress(body: bytes, encoding: str, limit: int) -> bytes:
    if encoding in ("", "identity"):
        return body
    if encoding not in ("gzip", "deflate"):
        raise _Refused(415, f"unsupported Content-Encoding {encoding!r} (use gzip)", "encoding")
    decompressor = zlib.decompressobj(wbits=31 if encoding == "gzip" else 15)
    try:
        data = decompressor.decompress(body, limit + 1)
    except zlib.error as exc:
        raise _Refused(400, f"invalid {encoding} body: {exc}", "bad_compression") from None
    if len(data) > limit:
        raise _Refused(413, f"decompressed body exceeds the {limit}-byte limit", "too_large")
    if not decompressor.eof:
        raise _Refused(400, f"invalid {encoding} body: truncated stream", "bad_compression")
    return data


class OtlpHttpReceiver:
    def __init__(
        self,
        pipeline: Intake,
        metrics: SelfMetrics,
        *,
        max_request_bytes: int,
        bearer_token: str | None,
        retry_after_seconds: int,
    ) -> None:
        self.pipeline = pipeline
        self.metrics = metrics
        self.max_request_bytes = max_request_bytes
        self._expected_authorization = f"Bearer {bearer_token}".encode() if bearer_token else None
        self.retry_after = str(retry_after_seconds)

    def app(self) -> web.Application:
        app = web.Application(client_max_size=self.max_request_bytes)
        for signal in SIGNALS:
            app.router.add_post(f"/v1/{signal}", self._handler(signal))
        return app

    def _handler(self, signal: str):
        async def handle(request: web.Request) -> web.Response:
            return await self.export(signal, request)

        return handle

    def _check_auth(self, request: web.Request) -> None:
        if self._expected_authorization is None:
            return
        given = request.headers.get("Authorization", "").encode()
        if not hmac.compare_digest(given, self._expected_authorization):
            raise _Refused(401, "missing or invalid bearer token", "unauthenticated")

    async def export(self, signal: str, request: web.Request) -> web.Response:
        content_type = request.content_type
        reply_type = content_type if content_type in _ENCODINGS else PROTOBUF
        try:
            self._check_auth(request)
            if content_type not in _ENCODINGS:
                raise _Refused(415, f"unsupported Content-Type {content_type!r}; use {PROTOBUF} or {JSON}",
                               "content_type")
            if request.content_length is not None and request.content_length > self.max_request_bytes:
                raise _Refused(413, f"body of {request.content_length} bytes exceeds the "
                                    f"{self.max_request_bytes}-byte limit", "too_large")
            try:
                body = await request.read()
            except web.HTTPRequestEntityTooLarge:
                raise _Refused(413, f"body exceeds the {self.max_request_bytes}-byte limit",
                               "too_large") from None
            body = _decompress(body, request.headers.get("Content-Encoding", "").lower().strip(),
                               self.max_request_bytes)
            try:
                valid = validate(signal, body, _ENCODINGS[content_type])
            except InvalidRequest as exc:
                raise _Refused(400, str(exc), "malformed") from None
            try:
                pending = self.pipeline.submit(signal, valid.payload, valid.items)
                if pending is not None:  # Kafka: acknowledged once the brokers have it
                    await asyncio.wrap_future(pending)
            except PipelineFull:
                raise _Refused(503, "pipeline full, retry later", "backpressure") from None
        except _Refused as refused:
            return self._refuse(signal, refused, reply_type)
        if valid.rejected:
            self.metrics.items_rejected.labels(signal, "invalid_id").inc(valid.rejected)
        self.metrics.requests.labels(signal, "http", "accepted").inc()
        return web.Response(body=_encode(valid.response(), reply_type), content_type=reply_type)

    def _refuse(self, signal: str, refused: _Refused, content_type: str) -> web.Response:
        self.metrics.requests.labels(signal, "http", refused.reason).inc()
        status = status_pb2.Status(code=_GRPC_CODE_FOR_STATUS[refused.status], message=refused.message)
        headers = {"Retry-After": self.retry_after} if refused.status == 503 else None
        return web.Response(status=refused.status, body=_encode(status, content_type),
                            content_type=content_type, headers=headers)
