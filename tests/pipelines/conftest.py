"""Fixtures of the scale-out tests: a throwaway `tansu` broker per test
(:mod:`tansu_broker`), Kafka settings for it, and a database with obsloop's tables."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))  # the helpers: tansu_broker, scale_out

from tansu_broker import TansuBroker  # noqa: E402 - needs the path above

from obsloop.pipelines.kafka_config import KafkaConfig  # noqa: E402


@pytest.fixture
def tansu(tmp_path: Path) -> Iterator[TansuBroker]:
    broker = TansuBroker(tmp_path / "tansu.log")
    broker.start()
    yield broker
    broker.stop()


@pytest.fixture
def kafka_config(tansu: TansuBroker) -> KafkaConfig:
    """Settings for tests: short group timeouts, since tansu holds a join for half the
    session timeout, and short publish timeouts, so failures surface within seconds."""
    return KafkaConfig(
        bootstrap_servers=[tansu.bootstrap],
        session_timeout_ms=2_000,
        heartbeat_interval_ms=500,
        publish_timeout_ms=2_000,
        request_timeout_ms=1_500,
        bootstrap_timeout_ms=3_000,
        max_poll_records=50,
    )
