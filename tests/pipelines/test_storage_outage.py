"""The parts a worker uses to wait out a ClickHouse outage, with the real classes: the
retry state (one log line per change, doubling delays) and the feedback stage (queues
detections until its tables exist, then handles them; a half-built attempt leaves nothing
behind that breaks the next)."""

from __future__ import annotations

import asyncio
import logging
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from clickhouse_connect.driver.exceptions import OperationalError
from prometheus_client import CollectorRegistry

from obsloop.core import semconv
from obsloop.core.retry import Retry
from obsloop.detectors.detection import NAMESPACE, VARIANT, Detection
from obsloop.detectors.detection_bus import DetectionBus
from obsloop.feedback.config import FeedbackConfig, GitConfig
from obsloop.feedback.stage import FeedbackStage

# The feedback tests' Git fixtures; appended, so `conftest` stays this directory's.
sys.path.append(str(Path(__file__).resolve().parent.parent / "feedback"))

from gitrepos import make_remote  # noqa: E402
from manifests_data import SEED  # noqa: E402

POLICY = """\
kind: FeedbackPolicy
defaults: {allowedActions: [alert, scale], maxMemoryStep: 2048MB, memory: {min: 128MB, max: 8192MB}}
policies:
  data-privacy-compliance: {}
  model-explainability-required: {}
"""
DOWN = OperationalError("Error HTTPConnectionPool(host='127.0.0.1', port=9): Connection refused")


def test_retry_logs_each_change_once_and_doubles_its_delay_up_to_the_cap(caplog: pytest.LogCaptureFixture) -> None:
    retry = Retry(logging.getLogger("test.retry"), "down", "back", first_delay=1.0, max_delay=5.0)
    assert retry.ok is None
    with caplog.at_level(logging.INFO, logger="test.retry"):
        assert [retry.failed(DOWN) for _ in range(5)] == [1.0, 2.0, 4.0, 5.0, 5.0]
        assert retry.ok is False
        retry.succeeded()
        retry.succeeded()
        assert retry.ok is True
        assert retry.failed(DOWN) == 1.0  # a new outage starts from the first delay
    assert [(r.levelname, r.getMessage()) for r in caplog.records] == [
        ("WARNING", "down"), ("INFO", "back"), ("WARNING", "down")]
    assert caplog.records[0].error.startswith("Error HTTPConnectionPool(host='127.0.0.1', port=9)")


class QueriesFail:
    """A client whose statements run but whose queries fail until :attr:`down` is cleared:
    the feedback responder's first attempt creates its tables, then fails half-way."""

    def __init__(self, client: Any) -> None:
        self._client = client
        self.down = True

    def command(self, *args: Any, **kwargs: Any) -> Any:
        return self._client.command(*args, **kwargs)

    def query(self, *args: Any, **kwargs: Any) -> Any:
        if self.down:
            raise DOWN
        return self._client.query(*args, **kwargs)

    def insert(self, *args: Any, **kwargs: Any) -> Any:
        return self._client.insert(*args, **kwargs)


def test_feedback_stage_queues_detections_until_clickhouse_answers_and_then_handles_them(
    chdb_client: Any, chdb_database: str, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    remote = make_remote(tmp_path, {"apps/fraud.yaml": SEED, "obsloop-policy.yaml": POLICY})
    config = FeedbackConfig(enabled=True, dry_run=True, git=GitConfig(remote=str(remote)))
    client = QueriesFail(chdb_client)
    unreachable = True

    def connect() -> Any:
        if unreachable:
            raise DOWN
        return client

    registry = CollectorRegistry()
    stage = FeedbackStage.build(config, connect, tmp_path / "data", chdb_database, registry=registry)
    detection = Detection(id="d-outage", time=datetime(2026, 11, 15, 12, 0, tzinfo=UTC), kind="latency",
                          score=1.0, severity="critical",
                          series={semconv.FAAS_NAME: "fraud-detection-model-v2", NAMESPACE: "ai-production",
                                  VARIANT: "blue"},
                          observed={"p95_ms": 900.0}, expected={"p95_ms": (40.0, 60.0)})

    def audited() -> list[tuple[Any, ...]]:
        return chdb_client.query(f"SELECT action, outcome FROM {chdb_database}.feedback_audit "
                                 "WHERE detection_id = 'd-outage'").result_rows

    async def scenario() -> None:
        nonlocal unreachable
        bus = DetectionBus()
        stage.start(bus.subscribe)
        try:
            await asyncio.sleep(0.2)
            assert not stage.ready
            bus.publish(detection)  # queued: it wakes an attempt, which fails too
            await asyncio.sleep(0.2)
            assert not stage.ready
            unreachable = False  # connects, creates the tables, then the first query fails
            deadline = time.monotonic() + 10
            while chdb_client.command(f"EXISTS TABLE {chdb_database}.feedback_dead_letters") != 1:
                assert time.monotonic() < deadline, "no attempt created the tables"
                await asyncio.sleep(0.05)
            await asyncio.sleep(0.2)
            assert not stage.ready
            client.down = False
            deadline = time.monotonic() + 30
            while not stage.ready:
                assert time.monotonic() < deadline, "the stage did not connect"
                await asyncio.sleep(0.05)
            await asyncio.wait_for(stage.drained(), timeout=60)
        finally:
            await stage.stop()

    with caplog.at_level(logging.INFO, logger="obsloop.feedback.stage"):
        asyncio.run(scenario())
    assert audited(), "the detection queued during the outage was not handled"
    # The half-built attempt's dead-letter gauge did not stay behind to collide with the
    # next one's: exactly one is registered, and it counts.
    assert [m.name for m in registry.collect()].count("obsloop_feedback_dead_letters") == 1
    messages = [r.getMessage() for r in caplog.records if r.name == "obsloop.feedback.stage"]
    assert sum(m.startswith("feedback waiting for ClickHouse") for m in messages) == 1, messages
    assert messages.count("feedback connected to ClickHouse") == 1, messages
