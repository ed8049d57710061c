"""Two workers in one group share the partitions and rebalance when one leaves."""

from __future__ import annotations

import threading
import time

from kafka import KafkaConsumer
from scale_out import wait_for

from obsloop.pipelines.kafka_config import KafkaConfig
from obsloop.pipelines.kafka_consumer import IngestConsumer, OwnedPartition
from obsloop.pipelines.kafka_publisher import OtlpPublisher


class Worker:
    """An ingest worker polled by its own thread, recording ownership through the hooks."""

    def __init__(self, config: KafkaConfig, seen: list[bytes]) -> None:
        self.owned: set[OwnedPartition] = set()
        self.revocations = 0
        self.consumer = IngestConsumer(
            config,
            "detectors",
            lambda _signal, payloads, _token: seen.extend(payloads),
            signals=["logs"],
            on_assign=self._assigned,
            on_revoke=self._revoked,
        )
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self.consumer.run, args=(self._stop,))
        self._thread.start()

    def _assigned(self, partitions: list[OwnedPartition]) -> None:
        self.owned = self.owned | set(partitions)  # rebind: the test thread reads it

    def _revoked(self, partitions: list[OwnedPartition]) -> None:
        self.revocations += 1
        self.owned = self.owned - set(partitions)

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=10)
        self.consumer.close()



def test_two_workers_share_partitions_and_rebalance_when_one_stops(
    kafka_config: KafkaConfig,
) -> None:
    publisher = OtlpPublisher(kafka_config)
    published: list[bytes] = []

    def publish(count: int) -> None:
        for n in range(len(published), len(published) + count):
            payload = f"log-{n}".encode()
            publisher.publish("logs", f"service-{n % 16}", payload).result(timeout=10)
            published.append(payload)

    probe = KafkaConsumer(bootstrap_servers=kafka_config.bootstrap_servers)
    every = {OwnedPartition("logs", p) for p in probe.partitions_for_topic("otlp_logs")}
    probe.close()
    assert len(every) > 1
    seen: list[bytes] = []
    first = Worker(kafka_config, seen)
    second: Worker | None = None
    try:
        wait_for(lambda: first.owned == every)
        publish(40)
        wait_for(lambda: len(seen) >= 40)

        second = Worker(kafka_config, seen)
        wait_for(lambda: first.owned and second.owned and first.owned | second.owned == every)
        assert not first.owned & second.owned
        assert first.revocations >= 1
        publish(40)
        wait_for(lambda: len(seen) >= 80)

        second.stop()
        second = None
        wait_for(lambda: first.owned == every)
        publish(40)
        wait_for(lambda: len(seen) >= 120)
        time.sleep(0.5)  # a duplicate would arrive now
    finally:
        for worker in (first, second):
            if worker is not None:
                worker.stop()
        publisher.close()

    assert sorted(seen) == sorted(published)
