"""OTLP/gRPC receiver (port 4317): the three collector services' ``Export`` methods.

Requests arrive as raw bytes (no generated servicer, no deserializer), are validated by
the same code as OTLP/HTTP, and their bytes go to the same pipeline. Status codes follow
the specification: INVALID_ARGUMENT for a malformed request (not retryable), UNAVAILABLE
when the pipeline is full (retryable), UNAUTHENTICATED for a missing or wrong token.
"""

from __future__ import annotations

import asyncio

import grpc

from obsloop.collectors.push_auth import secret_matches
from obsloop.core.selfmetrics import SelfMetrics
from obsloop.pipelines.backpressure import PipelineFull
from obsloop.pipelines.intake import Intake
from obsloop.pipelines.otlp_decode import InvalidRequest, validate

SERVICES = {
    "traces": "opentelemetry.proto.collector.trace.v1.TraceService",
    "metrics": "opentelemetry.proto.collector.metrics.v1.MetricsService",
    "logs": "opentelemetry.proto.collector.logs.v1.LogsService",
}


class OtlpGrpcReceiver:
    def __init__(
        self,
        intake: Intake,
        metrics: SelfMetrics,
        *,
        max_request_bytes: int,
        bearer_token: str | None,
    ) -> None:
        self.intake = intake
        self.metrics = metrics
        self.max_request_bytes = max_request_bytes
        self._expected_authorization = f"Bearer {bearer_token}" if bearer_token else None
        """Compared with :func:`secret_matches`, as the OTLP/HTTP port's bearer check does."""

    def _export(self, signal: str):
        async def export(request: bytes, context: grpc.aio.ServicerContext) -> bytes:
            if self._expected_authorization is not None:
                given = dict(context.invocation_metadata() or ()).get("authorization")
                if not secret_matches(given, self._expected_authorization):
                    self.metrics.requests.labels(signal, "grpc", "unauthenticated").inc()
                    await context.abort(grpc.StatusCode.UNAUTHENTICATED, "missing or invalid bearer token")
            try:
                valid = validate(signal, request)
            except InvalidRequest as exc:
                self.metrics.requests.labels(signal, "grpc", "malformed").inc()
                await context.abort(grpc.StatusCode.INVALID_ARGUMENT, str(exc))
            try:
                pending = self.intake.submit(signal, valid.payload, valid.items)
                if pending is not None:  # Kafka: acknowledged once the brokers have it
                    await asyncio.wrap_future(pending)
            except PipelineFull:
                self.metrics.requests.labels(signal, "grpc", "backpressure").inc()
                await context.abort(grpc.StatusCode.UNAVAILABLE, "pipeline full, retry later")
            if valid.rejected:
                self.metrics.items_rejected.labels(signal, "invalid_id").inc(valid.rejected)
            self.metrics.requests.labels(signal, "grpc", "accepted").inc()
            return valid.response().SerializeToString()

        return export

    def server(self, address: str) -> tuple[grpc.aio.Server, int]:
        """A server listening on ``address`` (not started yet) and the port it bound."""
        server = grpc.aio.server(
            options=[
                ("grpc.max_receive_message_length", self.max_request_bytes),
                ("grpc.so_reuseport", 0),
            ]
        )
        handlers = [
            grpc.method_handlers_generic_handler(
                service, {"Export": grpc.unary_unary_rpc_method_handler(self._export(signal))}
            )
            for signal, service in SERVICES.items()
        ]
        server.add_generic_rpc_handlers(handlers)
        port = server.add_insecure_port(address)
        if port == 0:
            raise OSError(f"cannot listen for OTLP/gRPC on {address}")
        return server, port
