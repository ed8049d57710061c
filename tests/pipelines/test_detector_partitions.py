"""Detector workers own series by partition; state moves through checkpoints on rebalance."""

from __future__ import annotations

import threading
from pathlib import Path

from kafka import KafkaConsumer
from scale_out import wait_for

from obsloop.pipelines.kafka_config import KafkaConfig
from obsloop.pipelines.kafka_consumer import GroupConsumer, OwnedPartition
from obsloop.pipelines.kafka_publisher import OtlpPublisher
from obsloop.workers.detector_partitions import PartitionedPools, partition_of

SERVICES = [f"service-{n}" for n in range(12)]



def test_partition_of_matches_where_the_publisher_puts_a_service(kafka_config: KafkaConfig) -> None:
    publisher = OtlpPublisher(kafka_config)
    for service in SERVICES:
        publisher.publish("metrics", service, service.encode()).result(timeout=10)
    publisher.close()
    reader = KafkaConsumer("otlp_metrics", bootstrap_servers=kafka_config.bootstrap_servers,
                           auto_offset_reset="earliest", consumer_timeout_ms=3000)
    partitions = len(reader.partitions_for_topic("otlp_metrics") or ())
    placed = {record.key.decode(): record.partition for record in reader}
    reader.close()
    assert partitions > 1
    assert placed == {service: partition_of(service, partitions) for service in SERVICES}
    assert len(set(placed.values())) > 1


class DetectorMember:
    """A detector worker's group membership, polled by its own thread."""

    def __init__(self, config: KafkaConfig, checkpoints: Path, partitions: int) -> None:
        self.pools = PartitionedPools(checkpoints, partitions)
        self.group = GroupConsumer(config, "detectors", signals=["metrics"],
                                   on_assign=self.pools.on_assign, on_revoke=self.pools.on_revoke)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._poll)
        self._thread.start()

    def _poll(self) -> None:
        while not self._stop.is_set():
            self.group.consumer.poll(timeout_ms=100)

    def owned(self) -> set[OwnedPartition]:
        return set(self.pools.pools)

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=10)
        self.group.close()  # revokes first: the pools are checkpointed on the way out


def test_series_state_moves_with_its_partition(kafka_config: KafkaConfig, tmp_path: Path) -> None:
    probe = KafkaConsumer(bootstrap_servers=kafka_config.bootstrap_servers)
    OtlpPublisher(kafka_config).close()  # creates the topics
    partitions = len(probe.partitions_for_topic("otlp_metrics") or ())
    probe.close()
    every = {OwnedPartition("metrics", p) for p in range(partitions)}
    first = DetectorMember(kafka_config, tmp_path, partitions)
    second: DetectorMember | None = None
    try:
        wait_for(lambda: first.owned() == every)
        for service in SERVICES:  # first learns every series while it owns everything
            pool = first.pools.pool_for("metrics", service)
            assert pool is not None
            for t in range(20):
                pool.learn_one(f"{service}/duration_ms", 100.0 + t % 3, float(t))

        second = DetectorMember(kafka_config, tmp_path, partitions)
        wait_for(lambda: bool(first.owned()) and bool(second.owned()) and first.owned() | second.owned() == every)
        assert not first.owned() & second.owned()
        for service in SERVICES:
            owner, other = (first, second) if first.pools.pool_for("metrics", service) else (second, first)
            pool = owner.pools.pool_for("metrics", service)
            assert pool is not None and other.pools.pool_for("metrics", service) is None
            assert f"{service}/duration_ms" in pool  # the model came through the checkpoint
            assert pool.get(f"{service}/duration_ms").last_t == 19.0
    finally:
        for member in (second, first):
            if member is not None:
                member.stop()
