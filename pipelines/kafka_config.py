"""Kafka settings shared by the publisher (receivers) and the consumers (workers).

Scale-out moves the WAL's job to Kafka: receivers publish validated raw OTLP request bytes
to one topic per signal, keyed by service name, and ingest / detector workers read them as
consumer groups. This module holds what both sides need: the settings model, the topic
names and the keyword arguments every kafka-python client gets (TLS and SASL pass through).
Secrets are ``SecretStr``, unwrapped only in :func:`client_kwargs`, whose result goes to
kafka-python and is never logged. The group timeouts default lower than kafka-python's
(docs/design/kafka-group-timeouts.md).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from obsloop.core.secret import Secret, reveal

Signal = Literal["traces", "logs", "metrics"]
SIGNALS: tuple[Signal, ...] = ("traces", "logs", "metrics")


class KafkaConfig(BaseModel):
    """Where the brokers are, how to authenticate, and the group / producer limits."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True)

    bootstrap_servers: list[str] = Field(default_factory=lambda: ["127.0.0.1:9092"], min_length=1)
    topic_prefix: str = ""
    """Prepended to ``otlp_traces`` / ``otlp_logs`` / ``otlp_metrics`` (e.g. ``prod.``)."""
    client_id: str = "obsloop"
    ingest_group: str = "obsloop-ingest"
    """Consumer group of ``obsloop ingest-worker`` (workers sharing it share the partitions)."""
    detector_group: str = Field("obsloop-detectors", min_length=1)
    """Consumer group of ``obsloop detector-worker``: membership over the traces topic decides
    which worker scores which functions (:mod:`obsloop.workers.detector`)."""
    detector_checkpoint_dir: Path | None = None
    """Per-partition detector state, written on revoke and read on assign; every detector
    worker must see the same directory (a shared volume). Defaults to
    ``<data_dir>/detectors/partitions``, which only one worker on one machine can share."""
    on_unavailable: Literal["reject", "spill"] = "reject"
    """When Kafka cannot acknowledge: answer 503 + Retry-After (``reject``), or acknowledge
    from the receiver's write-ahead log and republish once Kafka is back (``spill``)."""

    security_protocol: Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"] = "PLAINTEXT"
    sasl_mechanism: Literal["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"] | None = None
    sasl_username: str | None = None
    sasl_password: Secret | None = None
    ssl_cafile: str | None = None
    ssl_certfile: str | None = None
    ssl_keyfile: str | None = None
    ssl_password: Secret | None = None
    ssl_check_hostname: bool = True

    max_request_bytes: int = Field(16 * 1024 * 1024, gt=0)
    """Largest payload published; matches the receiver's limit. The broker's (or topic's)
    ``message.max.bytes`` must be at least this, or large requests fail to publish."""
    max_pending_bytes: int = Field(256 * 1024 * 1024, gt=0)
    """Published-but-unacknowledged bytes past which :class:`BacklogFull` is raised."""
    publish_timeout_ms: int = Field(5_000, gt=0)
    """Upper bound for a publish to be acknowledged (acks=all) or fail."""
    request_timeout_ms: int = Field(4_000, gt=0)
    max_block_ms: int = Field(1_000, ge=0)
    """How long ``publish`` may block when the topic's metadata is unknown."""
    bootstrap_timeout_ms: int = Field(5_000, gt=0)
    reconnect_backoff_max_ms: int = Field(1_000, gt=0)
    """Cap on the reconnect backoff, so a restarted broker is used again within a second."""

    session_timeout_ms: int = Field(10_000, gt=0)
    heartbeat_interval_ms: int = Field(3_000, gt=0)
    max_poll_interval_ms: int = Field(300_000, gt=0)
    """Longest time one batch may spend in the insert callable before the member is evicted."""
    max_poll_records: int = Field(500, gt=0)
    """Most records in one consumed batch (per poll, across the assigned partitions)."""
    auto_offset_reset: Literal["earliest", "latest"] = "earliest"

    @model_validator(mode="after")
    def _consistent(self) -> KafkaConfig:
        if self.heartbeat_interval_ms >= self.session_timeout_ms:
            raise ValueError("heartbeat_interval_ms must be below session_timeout_ms")
        if self.publish_timeout_ms < self.request_timeout_ms:
            raise ValueError("publish_timeout_ms must be at least request_timeout_ms")
        if self.security_protocol.startswith("SASL_") and (
            self.sasl_mechanism is None or self.sasl_username is None or self.sasl_password is None
        ):
            raise ValueError(
                f"{self.security_protocol} needs sasl_mechanism, sasl_username and sasl_password"
            )
        return self

    def topic(self, signal: Signal) -> str:
        return f"{self.topic_prefix}otlp_{signal}"

    def signal_of(self, topic: str) -> Signal:
        """The signal a topic carries; the inverse of :meth:`topic`."""
        for signal in SIGNALS:
            if topic == self.topic(signal):
                return signal
        raise ValueError(f"{topic!r} is not one of obsloop's OTLP topics")


class BusUnavailable(Exception):
    """Publishing cannot be acknowledged now; receivers answer 503 with Retry-After."""


class BrokerUnavailable(BusUnavailable):
    """No broker acknowledged in time (unreachable, down, or not accepting writes)."""


class BacklogFull(BusUnavailable):
    """Too many published bytes await acknowledgement: the broker is slower than intake."""


class PayloadTooLarge(ValueError):
    """A payload above ``max_request_bytes``; receivers answer 413."""


def client_kwargs(config: KafkaConfig) -> dict[str, Any]:
    """Connection and security arguments common to kafka-python producers and consumers."""
    kwargs: dict[str, Any] = {
        "bootstrap_servers": list(config.bootstrap_servers),
        "client_id": config.client_id,
        "security_protocol": config.security_protocol,
        "request_timeout_ms": config.request_timeout_ms,
        "bootstrap_timeout_ms": config.bootstrap_timeout_ms,
        "reconnect_backoff_max_ms": config.reconnect_backoff_max_ms,
        "ssl_check_hostname": config.ssl_check_hostname,
    }
    optional = {
        "sasl_mechanism": config.sasl_mechanism,
        "sasl_plain_username": config.sasl_username,
        "sasl_plain_password": reveal(config.sasl_password),
        "ssl_cafile": config.ssl_cafile,
        "ssl_certfile": config.ssl_certfile,
        "ssl_keyfile": config.ssl_keyfile,
        "ssl_password": reveal(config.ssl_password),
    }
    kwargs.update({key: value for key, value in optional.items() if value is not None})
    return kwargs

