"""Detector state owned by Kafka partition, so each series' model lives in one worker.

Receivers key every OTLP record by its service name, so all of a service's data is in one
partition of each topic. A detector worker that is a member of a consumer group over a
topic owns exactly the services whose key hashes to its partitions, with the hash the
producer used (kafka-python's murmur2, the Java client's too): :func:`partition_of`.
Series ids are prefixed with their service, so the owner of a series is never ambiguous.

State moves with ownership through checkpoints: on revoke a worker saves each partition's
:class:`SeriesDetectorPool` to ``<checkpoint_dir>/<signal>-<partition>.json`` and forgets
it; on assign the new owner loads it (a fresh pool when there is none). The directory must
be shared by the workers (a ReadWriteMany volume, or a synced bucket), and the hooks run
inside ``poll`` between batches, so a pool is never saved while it is being updated.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

from kafka.partitioner.default import murmur2

from obsloop.detectors.series_pool import SeriesDetectorPool
from obsloop.pipelines.kafka_consumer import OwnedPartition


def partition_of(service_name: str, partitions: int) -> int:
    """The partition the publisher's records for ``service_name`` go to.

    >>> partition_of("fraud-scorer", 4) == partition_of("fraud-scorer", 4)
    True
    """
    return (murmur2(service_name.encode()) & 0x7FFFFFFF) % partitions


class PartitionedPools:
    """One detector pool per owned partition; ``on_assign`` / ``on_revoke`` are the
    :class:`~obsloop.pipelines.kafka_consumer.GroupConsumer` hooks."""

    def __init__(
        self,
        checkpoint_dir: Path,
        partitions: int,
        *,
        pool_factory: Callable[[], SeriesDetectorPool] = SeriesDetectorPool,
    ) -> None:
        self.checkpoint_dir = checkpoint_dir
        self.partitions = partitions
        self._pool_factory = pool_factory
        self.pools: dict[OwnedPartition, SeriesDetectorPool] = {}
        checkpoint_dir.mkdir(parents=True, exist_ok=True)

    def _path(self, owned: OwnedPartition) -> Path:
        return self.checkpoint_dir / f"{owned.signal}-{owned.partition}.json"

    def on_assign(self, owned: list[OwnedPartition]) -> None:
        for partition in owned:
            path = self._path(partition)
            pool = self._pool_factory()
            if path.exists():
                pool.restore(json.loads(path.read_text()))  # keeps the factory's limits
            self.pools[partition] = pool

    def on_revoke(self, owned: list[OwnedPartition]) -> None:
        for partition in owned:
            pool = self.pools.pop(partition, None)
            if pool is not None:
                pool.save(self._path(partition))

    def checkpoint(self) -> None:
        """Save every owned pool (periodically, and before a clean shutdown)."""
        for partition, pool in self.pools.items():
            pool.save(self._path(partition))

    def pool_for(self, signal: str, service_name: str) -> SeriesDetectorPool | None:
        """The pool holding ``service_name``'s series, or None when another worker owns it."""
        return self.pools.get(OwnedPartition(signal, partition_of(service_name, self.partitions)))  # type: ignore[arg-type]
