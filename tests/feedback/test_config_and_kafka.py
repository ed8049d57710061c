import asyncio
import importlib.util
import json
from pathlib import Path

import pytest
from kafka import KafkaConsumer, TopicPartition
from prometheus_client import CollectorRegistry

from feedback.gitrepos import make_remote
from feedback.manifests_data import SEED
from feedback.test_responder import detection
from obsloop.core.manifests import parse_manifests
from obsloop.feedback.build import build_responder
from obsloop.feedback.config import FeedbackConfig
from obsloop.feedback.delivery import RetryPolicy, Sender
from obsloop.feedback.retrain import KafkaTrigger
from obsloop.pipelines.kafka_config import client_kwargs

# The pipelines tests' throwaway broker, loaded by path (tests/ is not a package).
_spec = importlib.util.spec_from_file_location(
    "pipelines_conftest", Path(__file__).parents[1] / "pipelines" / "conftest.py"
)
_broker = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(_broker)


@pytest.fixture
def kafka_config(tmp_path):
    broker = _broker.TansuBroker(tmp_path / "tansu.log")
    broker.start()
    yield _broker.KafkaConfig(
        bootstrap_servers=[broker.bootstrap],
        publish_timeout_ms=5_000,
        request_timeout_ms=3_000,
        bootstrap_timeout_ms=3_000,
    )
    broker.stop()


def test_config_builds_a_responder_and_masks_secrets(tmp_path, receiver, clickhouse, database):
    remote = make_remote(tmp_path, {"apps/fraud.yaml": SEED})
    config = FeedbackConfig.model_validate(
        {
            "enabled": True,
            "git": {
                "remote": str(remote),
                "mode": "pull_request",
                "forge": "gitlab",
                "forge_project": "acme/gitops",
                "token": "glpat-secret",
            },
            "notifiers": [
                {"name": "pd", "type": "pagerduty", "routing_key": "rk-secret"},
                {
                    "name": "slack",
                    "type": "slack",
                    "url": "https://hooks.slack.local/T/B/slack-secret",
                },
            ],
            "retrain": [{"name": "train", "type": "webhook", "url": receiver.url("/train")}],
        }
    )
    dumped = repr(config) + config.model_dump_json()
    for secret in ("glpat-secret", "rk-secret", "slack-secret"):
        assert secret not in dumped
    responder = build_responder(config, clickhouse, tmp_path / "data", database, CollectorRegistry())
    assert responder.dry_run and responder.repo.mode == "pull_request"
    assert [n.name for n in responder.alerter.notifiers] == ["pd", "slack"]
    assert [t.name for t in responder.services.retrain] == ["train"]


def test_kafka_retraining_message(kafka_config):
    [manifest], _ = parse_manifests("apps/fraud.yaml", SEED)
    sender = Sender(RetryPolicy(1, 0.01, 0.01), registry=CollectorRegistry())
    trigger = KafkaTrigger("kafka", kafka_config, "obsloop.retrain", sender)
    reference = asyncio.run(trigger.trigger(detection("drift", "d7"), manifest))
    topic, _, position = reference.partition("/")
    number, _, offset = position.partition("@")
    assert (topic, offset) == ("obsloop.retrain", "0")
    consumer = KafkaConsumer(**client_kwargs(kafka_config), consumer_timeout_ms=5000)
    partition = TopicPartition(topic, int(number))
    consumer.assign([partition])
    consumer.seek_to_beginning(partition)
    [message] = list(consumer)[:1]
    consumer.close()
    assert message.key == b"ai-production/fraud-detection-model-v2"
    event = json.loads(message.value)
    assert event["detection"]["id"] == "d7" and event["report_url"] == "http://grafana.local/d/x"
