"""Receivers publish validated raw OTLP request bytes to Kafka, one topic per signal.

A publish resolves only once every in-sync replica has the record (``acks=all``), the
guarantee a WAL fsync gave on one machine. The key is the service name, so a service's
requests stay ordered in one partition a detector worker can own. Failure is bounded in time
(``publish_timeout_ms``) and memory (``max_pending_bytes``), as :class:`BusUnavailable`,
which receivers answer with 503 + Retry-After. Idempotence is off, so a receiver recovers by
itself after a broker lost its state (docs/design/kafka-idempotence-off.md).
"""

from __future__ import annotations

import contextlib
import threading
from concurrent.futures import Future

from kafka import KafkaProducer
from kafka.errors import KafkaError, KafkaTimeoutError, MessageSizeTooLargeError

from obsloop.pipelines.kafka_config import (
    SIGNALS,
    BacklogFull,
    BrokerUnavailable,
    KafkaConfig,
    PayloadTooLarge,
    Signal,
    client_kwargs,
)


class OtlpPublisher:
    """Thread-safe publisher of OTLP payloads; one per receiver process."""

    def __init__(self, config: KafkaConfig) -> None:
        self._config = config
        self._lock = threading.Lock()
        self._pending_bytes = 0
        try:
            self._producer = KafkaProducer(
                **client_kwargs(config),
                acks="all",
                enable_idempotence=False,
                delivery_timeout_ms=config.publish_timeout_ms,
                max_block_ms=config.max_block_ms,
                max_request_size=config.max_request_bytes,
                linger_ms=5,
            )
        except KafkaError as exc:
            raise BrokerUnavailable(
                f"no Kafka broker reachable at {config.bootstrap_servers}"
            ) from exc
        for signal in SIGNALS:
            # Fetch each topic's metadata now (auto-creating it where the broker allows),
            # so that a publish does not block on a metadata lookup later.
            with contextlib.suppress(KafkaTimeoutError):
                self._producer.partitions_for(config.topic(signal))

    @property
    def pending_bytes(self) -> int:
        """Bytes published and not yet acknowledged or failed (for a gauge and for tests)."""
        return self._pending_bytes

    def publish(self, signal: Signal, service_name: str, payload: bytes) -> Future[None]:
        """Send one OTLP request; the future resolves once acknowledged by all replicas.

        Raises :class:`BacklogFull` or :class:`PayloadTooLarge` at once; the future fails
        with :class:`BrokerUnavailable` within ``publish_timeout_ms``. Blocks at most
        ``max_block_ms`` (only when the topic's metadata is unknown), so an asyncio receiver
        can call it directly and ``await asyncio.wrap_future(...)`` the result.
        """
        size = len(payload)
        if size > self._config.max_request_bytes:
            raise PayloadTooLarge(f"{size} bytes exceed max_request_bytes")
        with self._lock:
            if self._pending_bytes + size > self._config.max_pending_bytes:
                raise BacklogFull(f"{self._pending_bytes} bytes await acknowledgement")
            self._pending_bytes += size
        result: Future[None] = Future()
        try:
            sent = self._producer.send(
                self._config.topic(signal), value=payload, key=service_name.encode()
            )
        except MessageSizeTooLargeError as exc:
            self._release(size)
            raise PayloadTooLarge(str(exc)) from exc
        except KafkaError as exc:
            self._release(size)
            raise BrokerUnavailable(f"cannot publish to {self._config.topic(signal)}") from exc
        sent.add_callback(lambda _metadata: self._settle(result, size, None))
        sent.add_errback(lambda exc: self._settle(result, size, exc))
        return result

    def flush(self, timeout_s: float | None = None) -> None:
        """Wait until every publish so far is acknowledged or failed."""
        self._producer.flush(timeout=timeout_s)

    def close(self, timeout_s: float = 5.0) -> None:
        self._producer.close(timeout=timeout_s)

    def _release(self, size: int) -> None:
        with self._lock:
            self._pending_bytes -= size

    def _settle(self, result: Future[None], size: int, error: BaseException | None) -> None:
        self._release(size)
        if error is None:
            result.set_result(None)
        elif isinstance(error, MessageSizeTooLargeError):
            result.set_exception(PayloadTooLarge(str(error)))
        else:
            failure = BrokerUnavailable(f"not acknowledged: {error!r}")
            failure.__cause__ = error
            result.set_exception(failure)
