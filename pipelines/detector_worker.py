"""The detector worker: window scoring spread over processes by Kafka partition.

``obsloop serve`` runs one :class:`~obsloop.detectors.loop.DetectorLoop` over every series.
Past one machine, ``obsloop detector-worker`` processes join the consumer group
``kafka.detector_group`` over the traces topic, and each scores only the functions whose
name hashes (:func:`partition_of`, the publisher's murmur2) to a partition it owns. The
group is used for ownership only: the worker pauses its partitions and fetches no
records, because the input is the same as in ``serve``, the closed windows ClickHouse
aggregates in ``faas_windows``. Polling keeps the membership alive and delivers rebalances.

Why per function name: a window row knows its function (``faas.name``, or the service name
when there is none), not the Kafka key, and obsloop-instrument sets ``service.name`` to the
function name, so a function's series are usually owned by the worker that owns its spans'
partition too. Either way each function has exactly one owner per group generation.

Rebalances are cooperative (KIP-429, kafka-python's ``CooperativeStickyAssignor``): only
the partitions that move are revoked, so a member keeps the rest in memory instead of
saving and reloading every partition on every membership change (with 14,000 series in 4
partitions, a leaving member's partitions were taken over in 3.0 s instead of 8.8 s with
the eager default; ``bench/kafka/handover.py``).

A partition's state is a whole detector loop (:class:`PartitionLoop`): series models,
expected ranges, open episodes, budget forecasts, canary episodes *and* its position in
event time. On revoke the loop is checkpointed to ``<dir>/traces-<p>-of-<n>.json``; on
assign the new owner restores it and continues from the next unread window of those
functions, so no window is scored twice or skipped when ownership moves cleanly. A
worker that dies resumes from the last periodic checkpoint (``detectors.checkpoint_seconds``):
the windows since then are scored again, and their detections get the same ids (they hash
the series and the window). The partition count is part of the file name: after the topic
gains partitions the functions map elsewhere, and the loops start afresh rather than
restore other functions' models.

What is not partitioned: model drift (prediction events name a model version, not a
function; they stay with ``obsloop serve``'s loop) and cost-center spend (a sum over many
functions, which no single partition sees; per-function spend is still scored).
"""

from __future__ import annotations

import dataclasses
import logging
import threading
import time
from collections.abc import Callable, Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

from kafka.coordinator.assignors.cooperative_sticky import CooperativeStickyAssignor
from kafka.errors import KafkaError
from prometheus_client import CollectorRegistry, Counter, Gauge

from obsloop.config import Config
from obsloop.detectors.config import DetectorsConfig
from obsloop.detectors.cost import Budget, load_budgets
from obsloop.detectors.loop import DetectorLoop, DetectorMetrics
from obsloop.detectors.windows import Window
from obsloop.pipelines.detector_partitions import PartitionedStates, partition_of
from obsloop.pipelines.kafka_config import Signal
from obsloop.pipelines.kafka_consumer import GroupConsumer, OwnedPartition
from obsloop.pipelines.kafka_worker import KafkaWorker

log = logging.getLogger(__name__)

OWNERSHIP_SIGNAL: Signal = "traces"
"""The topic whose partitions divide the functions between detector workers."""


def checkpoint_file(directory: Path, owned: OwnedPartition, partitions: int) -> Path:
    """Where the state of ``owned`` (one of ``partitions``) is kept between owners.

    >>> checkpoint_file(Path("/c"), OwnedPartition("traces", 3), 6).name
    'traces-3-of-6.json'
    """
    return directory / f"{owned.signal}-{owned.partition}-of-{partitions}.json"


class PartitionLoop(DetectorLoop):
    """The detector loop of one partition: the windows of the functions hashing to it.

    Everything else is :class:`DetectorLoop`'s: the watermark, the bounded catch-up, the
    scoring, the detections table, the checkpoint format.
    """

    def __init__(
        self,
        owned: OwnedPartition,
        partitions: int,
        config: DetectorsConfig,
        client: Callable[[], Any],
        data_dir: Path,
        *,
        database: str,
        budgets: dict[str, Budget],
        metrics: DetectorMetrics,
    ) -> None:
        if not 0 <= owned.partition < partitions:
            raise ValueError(f"partition {owned.partition} is not one of {partitions}")
        self.owned = owned
        self.partitions = partitions
        self.restored = False
        """Whether the state came from a checkpoint (a previous owner's, or this worker's)."""
        own_budgets = {f: b for f, b in budgets.items() if self.owns(f)}
        super().__init__(config, client, data_dir, database, budgets=own_budgets, metrics=metrics)

    def restore(self) -> bool:
        self.restored = super().restore()
        return self.restored

    def owns(self, function: str) -> bool:
        return partition_of(function, self.partitions) == self.owned.partition

    def read_windows(self, start: datetime, end: datetime) -> Iterator[Window]:
        for window in super().read_windows(start, end):
            if self.owns(window.key.function):
                # A cost center spans functions of other partitions: its sum here would be
                # partial, so the partition loops score per-function spend only.
                yield dataclasses.replace(window, cost_center="") if window.cost_center else window


class WorkerMetrics:
    """The worker's registry: the detector loop's series (shared by its partition loops)
    plus ownership."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.detector = DetectorMetrics(self.registry)
        self.partitions = Gauge("obsloop_detector_worker_partitions",
                                "Partitions (function shares) this worker scores.", registry=self.registry)
        self.assigned = Counter("obsloop_detector_worker_partitions_assigned",
                                "Partitions taken over, by whether a checkpoint was restored.",
                                ["state"], registry=self.registry)
        self.step_errors = Counter("obsloop_detector_worker_step_errors",
                                   "Failed partition steps (ClickHouse unreachable, usually).",
                                   registry=self.registry)


class DetectorWorker(KafkaWorker):
    """One member of the detector group: a :class:`PartitionLoop` per owned partition."""

    command = "detector-worker"

    def __init__(
        self,
        config: Config,
        *,
        group_id: str | None = None,
        client: Callable[[], Any] | None = None,
    ) -> None:
        self.metrics = WorkerMetrics()
        super().__init__(config, self.metrics.registry, client=client)
        if not config.detectors.enabled:
            raise ValueError("detector-worker: detectors.enabled is false in the configuration")
        self.group_id = group_id or self.kafka.detector_group
        self.checkpoint_dir = self.kafka.detector_checkpoint_dir or config.data_dir / "detectors" / "partitions"
        self.checkpoint_dir.mkdir(parents=True, exist_ok=True)
        # Drift is per model version, not per function: it stays with serve's loop.
        self.detectors = config.detectors.model_copy(
            update={"drift": config.detectors.drift.model_copy(update={"enabled": False})})
        manifests = config.collectors.manifests_dir
        self.budgets = load_budgets(manifests) if manifests else {}
        self.loops: PartitionedStates[PartitionLoop] = PartitionedStates(self._open, self._save)
        self.group: GroupConsumer | None = None
        self._schema_ready = False

    # -- ownership -----------------------------------------------------------------------
    def _partition_count(self) -> int:
        assert self.group is not None
        partitions = self.group.consumer.partitions_for_topic(self.kafka.topic(OWNERSHIP_SIGNAL))
        if not partitions:
            raise RuntimeError(f"no partitions known for {self.kafka.topic(OWNERSHIP_SIGNAL)}")
        return len(partitions)

    def _open(self, owned: OwnedPartition) -> PartitionLoop:
        partitions = self._partition_count()
        settings = self.detectors.model_copy(
            update={"checkpoint_path": checkpoint_file(self.checkpoint_dir, owned, partitions)})
        loop = PartitionLoop(owned, partitions, settings, self.client, self.config.data_dir,
                             database=self.config.storage.database, budgets=self.budgets,
                             metrics=self.metrics.detector)
        self.metrics.assigned.labels("restored" if loop.restored else "fresh").inc()
        log.info("partition assigned", extra={"partition": owned.partition, "partitions": partitions,
                                               "restored": loop.restored})
        return loop

    def _save(self, owned: OwnedPartition, loop: PartitionLoop) -> None:
        loop.checkpoint()

    def _assigned(self, owned: list[OwnedPartition]) -> None:
        """Ownership only: pause the partitions so polling fetches no records."""
        assert self.group is not None
        self.group.consumer.pause(*self.group.consumer.assignment())
        self.loops.on_assign(owned)
        self.metrics.partitions.set(len(self.loops.states))

    def _revoked(self, owned: list[OwnedPartition]) -> None:
        self.loops.on_revoke(owned)
        self.metrics.partitions.set(len(self.loops.states))

    def _lost(self, owned: list[OwnedPartition]) -> None:
        log.warning("evicted from the detector group; partitions dropped unsaved",
                    extra={"partitions": [p.partition for p in owned]})
        self.loops.on_lost(owned)
        self.metrics.partitions.set(len(self.loops.states))

    def owned(self) -> set[OwnedPartition]:
        return set(self.loops.states)

    # -- the work ------------------------------------------------------------------------
    def join(self) -> GroupConsumer:
        """Become a member of the detector group (hooks wired to the partition loops)."""
        self.group = GroupConsumer(self.kafka, self.group_id, signals=[OWNERSHIP_SIGNAL],
                                   on_assign=self._assigned, on_revoke=self._revoked, on_lost=self._lost,
                                   assignors=(CooperativeStickyAssignor,))
        return self.group

    def step(self, poll_ms: int = 0) -> bool:
        """Poll the group (rebalances happen here), then one bounded step of every owned
        partition; True while some partition has more to read right away."""
        assert self.group is not None
        self.group.consumer.poll(timeout_ms=poll_ms)
        if not self._schema_ready:
            self._schema_ready = self.apply_schema()
            if not self._schema_ready:
                return False
        behind = False
        for owned, loop in list(self.loops.states.items()):
            try:
                behind = loop.step() or behind
            except Exception:  # noqa: BLE001 - ClickHouse down: keep polling, state is kept
                self.metrics.step_errors.inc()
                self.storage_healthy = False
                log.exception("detector step failed", extra={"partition": owned.partition})
                return False
            self.storage_healthy = True
        self.metrics.detector.series.set(sum(len(loop.scorer.pool) for loop in self.loops.states.values()))
        return behind

    def run_until(self, stop: threading.Event) -> None:
        """Step until ``stop`` is set; between steps, wait in ``poll`` (so the member stays
        in the group) for ``detectors.poll_seconds``, in slices so a stop is noticed soon."""
        assert self.group is not None
        poll_seconds = self.detectors.poll_seconds
        next_step = 0.0
        while not stop.is_set():
            try:
                now = time.monotonic()
                if now < next_step:
                    self.group.consumer.poll(timeout_ms=int(min(next_step - now, 0.5) * 1000) or 1)
                    continue
                next_step = now if self.step() else now + poll_seconds
            except KafkaError:
                log.exception("Kafka error while polling the detector group; retrying")
                stop.wait(1.0)

    def close(self) -> None:
        """Checkpoint every owned partition and leave the group (the partitions move now)."""
        try:
            if self.group is not None:
                self.group.close()  # revokes first: every loop is checkpointed on the way out
        finally:
            self.loops.checkpoint()  # whatever a failed revoke left behind

    def _work(self) -> None:
        self.group = self._member(self.join)
        if self.group is None:
            return
        try:
            self.run_until(self._stop)
        finally:
            self.close()

    def _joined(self) -> bool:
        return self.group is not None

    def _describe(self) -> dict[str, Any]:
        return {"group": self.group_id, "topic": self.kafka.topic(OWNERSHIP_SIGNAL),
                "checkpoints": str(self.checkpoint_dir)}
