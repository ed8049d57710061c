"""What the receivers hand validated requests to: the local pipeline, or the Kafka bus.

Receivers (OTLP/HTTP, OTLP/gRPC, the AWS push endpoints) do not know where acknowledged
data goes. The local :class:`~obsloop.pipelines.ingest.IngestPipeline` appends to a
write-ahead segment, durable when ``submit`` returns; the scale-out
:class:`~obsloop.pipelines.kafka_intake.KafkaIntake` publishes to Kafka, durable only once
the brokers acknowledged, which is later. ``submit`` therefore may return a future: the
receiver answers 200 after it resolved, 503 + Retry-After when either step raises
:class:`~obsloop.pipelines.ingest.PipelineFull`.
"""

from __future__ import annotations

from concurrent.futures import Future
from typing import Protocol

from obsloop.pipelines.backpressure import PipelineFull


class Intake(Protocol):
    storage_healthy: bool
    """Whether acknowledged data can currently reach its destination (``/readyz``)."""

    def submit(self, signal: str, payload: bytes, items: int) -> Future[None] | None:
        """Accept a validated request, or raise ``PipelineFull``.

        ``None``: durable already. A future: durable once it resolves; it fails with
        ``PipelineFull`` when the request could not be made durable (retry later).
        """
        ...

    def refusal(self) -> PipelineFull | None:
        """Why ``submit`` refuses requests now, or ``None`` (``/readyz``)."""
        ...

    def start(self) -> None: ...

    def stop(self, *, drain_timeout: float) -> None:
        """Stop, within ``drain_timeout`` seconds; what is left is kept for the next start."""
        ...

    def refresh_gauges(self) -> None: ...
