"""Detector state owned by Kafka partition, so each series' model lives in one worker.

A worker owns exactly the services whose key hashes (:func:`partition_of`, the producer's
murmur2) to its partitions; series ids are prefixed with their service, so the owner of a
series is never ambiguous. State moves with ownership through checkpoints in a directory the
workers share (:class:`PartitionedStates`: saved on revoke, loaded on assign, inside
``poll`` between steps); :class:`PartitionedPools` keeps bare series pools.
Design: docs/design/detector-ownership-by-partition.md.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Generic, TypeVar

from kafka.partitioner.default import murmur2

from obsloop.detectors.series_pool import SeriesDetectorPool
from obsloop.pipelines.kafka_consumer import OwnedPartition

S = TypeVar("S")


def partition_of(service_name: str, partitions: int) -> int:
    """The partition the publisher's records for ``service_name`` go to.

    >>> partition_of("fraud-scorer", 4) == partition_of("fraud-scorer", 4)
    True
    """
    return (murmur2(service_name.encode()) & 0x7FFFFFFF) % partitions


class PartitionedStates(Generic[S]):
    """One state object per owned partition; ``on_assign`` / ``on_revoke`` are the
    :class:`~obsloop.pipelines.kafka_consumer.GroupConsumer` hooks.

    ``open_state(partition)`` builds a partition's state from its checkpoint (or fresh) when
    the partition is assigned; ``save_state(partition, state)`` writes the checkpoint when it
    is revoked, before the group assigns it to anyone else (the hooks run inside ``poll``;
    an eager rebalance waits for every member to rejoin, a cooperative one assigns a moving
    partition only in the round after its old owner revoked it), so the next owner reads
    what this one learned last.
    """

    def __init__(
        self,
        open_state: Callable[[OwnedPartition], S],
        save_state: Callable[[OwnedPartition, S], None],
    ) -> None:
        self._open = open_state
        self._save = save_state
        self.states: dict[OwnedPartition, S] = {}

    def on_assign(self, owned: list[OwnedPartition]) -> None:
        for partition in owned:
            self.states[partition] = self._open(partition)

    def on_revoke(self, owned: list[OwnedPartition]) -> None:
        for partition in owned:
            state = self.states.pop(partition, None)
            if state is not None:
                self._save(partition, state)

    def on_lost(self, owned: list[OwnedPartition]) -> None:
        """Evicted from the group: drop the states unsaved. Another member may own the
        partitions already and have loaded (or written) their checkpoints; it re-scores
        what this one learned since its last periodic checkpoint."""
        for partition in owned:
            self.states.pop(partition, None)

    def checkpoint(self) -> None:
        """Save every owned state (periodically, and before a clean shutdown)."""
        for partition, state in self.states.items():
            self._save(partition, state)


class PartitionedPools(PartitionedStates[SeriesDetectorPool]):
    """One bare detector pool per owned partition, checkpointed to
    ``<checkpoint_dir>/<signal>-<partition>.json``."""

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
        checkpoint_dir.mkdir(parents=True, exist_ok=True)
        super().__init__(self._load, lambda owned, pool: pool.save(self._path(owned)))

    @property
    def pools(self) -> dict[OwnedPartition, SeriesDetectorPool]:
        return self.states

    def _path(self, owned: OwnedPartition) -> Path:
        return self.checkpoint_dir / f"{owned.signal}-{owned.partition}.json"

    def _load(self, owned: OwnedPartition) -> SeriesDetectorPool:
        pool = self._pool_factory()
        path = self._path(owned)
        if path.exists():
            pool.restore(json.loads(path.read_text()))  # keeps the factory's limits
        return pool

    def pool_for(self, signal: str, service_name: str) -> SeriesDetectorPool | None:
        """The pool holding ``service_name``'s series, or None when another worker owns it."""
        return self.pools.get(OwnedPartition(signal, partition_of(service_name, self.partitions)))  # type: ignore[arg-type]
