"""The publisher fails fast and bounded when the broker goes away, and recovers."""

from __future__ import annotations

import socket
import time
from typing import TYPE_CHECKING

import pytest

from obsloop.pipelines.kafka_config import (
    BacklogFull,
    BrokerUnavailable,
    KafkaConfig,
    PayloadTooLarge,
    client_kwargs,
)
from obsloop.pipelines.kafka_publisher import OtlpPublisher

if TYPE_CHECKING:
    from tansu_broker import TansuBroker


def test_broker_down_fails_within_the_publish_timeout_then_publishing_resumes(
    tansu: TansuBroker, kafka_config: KafkaConfig
) -> None:
    config = kafka_config.model_copy(update={"max_pending_bytes": 1_000})
    publisher = OtlpPublisher(config)
    try:
        publisher.publish("traces", "svc", b"before").result(timeout=10)
        tansu.stop()

        started = time.monotonic()
        pending = publisher.publish("traces", "svc", b"x" * 600)
        with pytest.raises(BacklogFull):
            publisher.publish("traces", "svc", b"y" * 600)
        with pytest.raises(BrokerUnavailable):
            pending.result(timeout=15)
        elapsed = time.monotonic() - started
        assert elapsed < config.publish_timeout_ms / 1000 + 1.5
        assert publisher.pending_bytes == 0

        tansu.start()
        deadline = time.monotonic() + 20
        while True:
            try:
                publisher.publish("traces", "svc", b"after").result(timeout=10)
                break
            except BrokerUnavailable:
                assert time.monotonic() < deadline, "publishing did not resume"
    finally:
        publisher.close()


def test_no_broker_at_start_is_reported_as_unavailable() -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    config = KafkaConfig(bootstrap_servers=[f"127.0.0.1:{port}"], bootstrap_timeout_ms=1_000)
    started = time.monotonic()
    with pytest.raises(BrokerUnavailable):
        OtlpPublisher(config)
    assert time.monotonic() - started < 5


def test_oversized_payload_is_refused_before_sending(kafka_config: KafkaConfig) -> None:
    publisher = OtlpPublisher(kafka_config.model_copy(update={"max_request_bytes": 100}))
    try:
        with pytest.raises(PayloadTooLarge):
            publisher.publish("logs", "svc", b"z" * 101)
        assert publisher.pending_bytes == 0
    finally:
        publisher.close()


def test_secrets_are_masked_and_passed_through() -> None:
    config = KafkaConfig(
        bootstrap_servers=["broker:9093"],
        security_protocol="SASL_SSL",
        sasl_mechanism="SCRAM-SHA-512",
        sasl_username="obsloop",
        sasl_password="hunter2",
        ssl_cafile="/etc/ca.pem",
    )
    assert "hunter2" not in repr(config)
    assert "hunter2" not in config.model_dump_json()
    kwargs = client_kwargs(config)
    assert kwargs["sasl_plain_password"] == "hunter2"
    assert kwargs["sasl_plain_username"] == "obsloop"
    assert kwargs["sasl_mechanism"] == "SCRAM-SHA-512"
    assert kwargs["security_protocol"] == "SASL_SSL"
    assert kwargs["ssl_cafile"] == "/etc/ca.pem"


def test_sasl_without_credentials_is_rejected() -> None:
    with pytest.raises(ValueError, match="sasl_mechanism, sasl_username and sasl_password"):
        KafkaConfig(security_protocol="SASL_PLAINTEXT", sasl_mechanism="PLAIN")
