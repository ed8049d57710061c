"""The detector worker: window detectors spread over processes by Kafka partition.

Each ``obsloop detector-worker`` joins the consumer group ``kafka.detector_group`` over the
traces topic for ownership only, and runs the detectors of
:attr:`~obsloop.detectors.window_detector.Scope.SERIES` scope on the functions whose name
hashes (:func:`partition_of`) to a partition it owns, from the same closed windows ``serve``
reads. A partition's state is a whole detector host (:class:`PartitionHost`), checkpointed on
revoke and restored on assign; rebalances are cooperative, so only moving partitions are
saved. The :attr:`~obsloop.detectors.window_detector.Scope.FLEET` detectors (model drift,
quality, cost-center spend), which no partition sees whole, run in one host in the owner of
partition 0. With ``feedback.enabled`` each worker runs the feedback stage on its own
detections, as ``serve`` does. The worker starts while ClickHouse is down and ``/readyz``
answers 503 until ClickHouse answered.
Design: docs/design/detector-worker.md, docs/design/detector-ownership-by-partition.md,
docs/design/cooperative-rebalancing.md.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterator
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from kafka.coordinator.assignors.cooperative_sticky import CooperativeStickyAssignor
from kafka.errors import KafkaError
from prometheus_client import CollectorRegistry, Counter, Gauge

from obsloop.config import Config
from obsloop.detectors.config import DetectorsConfig
from obsloop.detectors.cost import Budget, load_budgets
from obsloop.detectors.detection import Detection
from obsloop.detectors.detection_bus import DetectionBus
from obsloop.detectors.host import DetectorHost
from obsloop.detectors.metrics import DetectorMetrics
from obsloop.detectors.window_detector import Scope
from obsloop.detectors.windows import Window
from obsloop.pipelines.kafka_config import Signal
from obsloop.pipelines.kafka_consumer import GroupConsumer, OwnedPartition
from obsloop.workers.detector_partitions import PartitionedStates, partition_of
from obsloop.workers.kafka_base import KafkaWorker

if TYPE_CHECKING:
    from obsloop.feedback.stage import FeedbackStage

log = logging.getLogger(__name__)

OWNERSHIP_SIGNAL: Signal = "traces"
"""The topic whose partitions divide the functions between detector workers."""
LEADER_PARTITION = 0
"""Its owner also runs the host of the fleet's detectors (drift, quality, cost centers)."""
GLOBAL_CHECKPOINT = "global.json"


def checkpoint_file(directory: Path, owned: OwnedPartition, partitions: int) -> Path:
    """Where the state of ``owned`` (one of ``partitions``) is kept between owners.

    >>> checkpoint_file(Path("/c"), OwnedPartition("traces", 3), 6).name
    'traces-3-of-6.json'
    """
    return directory / f"{owned.signal}-{owned.partition}-of-{partitions}.json"


class PartitionHost(DetectorHost):
    """The detector host of one partition: the ``SERIES`` detectors on the windows of the
    functions hashing to it (and the budgets of those functions)."""

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
        own_budgets = {f: b for f, b in budgets.items() if self.owns(f)}
        super().__init__(config, client, data_dir, database, budgets=own_budgets, metrics=metrics,
                         scope=Scope.SERIES)

    def owns(self, function: str) -> bool:
        return partition_of(function, self.partitions) == self.owned.partition

    def read_windows(self, start: datetime, end: datetime) -> Iterator[Window]:
        return (window for window in super().read_windows(start, end) if self.owns(window.key.function))


class WorkerMetrics:
    """The worker's registry: the detector hosts' series (shared by its hosts) plus ownership."""

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
        self.leader = Gauge("obsloop_detector_worker_leader",
                            "1 while this worker owns partition 0 and runs the fleet's detectors.",
                            registry=self.registry)


class DetectorWorker(KafkaWorker):
    """One member of the detector group: a :class:`PartitionHost` per owned partition, the
    fleet's host while it owns partition 0, and the feedback loop when enabled."""

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
        if config.feedback.enabled and (config.feedback.git is None or not config.feedback.git.remote.strip()):
            raise ValueError("feedback.enabled needs feedback.git.remote (the GitOps repository, a URL or a path)")
        self.group_id = group_id or self.kafka.detector_group
        self.checkpoint_dir = self.kafka.detector_checkpoint_dir or config.data_dir / "detectors" / "partitions"
        self.checkpoint_dir.mkdir(parents=True, exist_ok=True)
        manifests = config.collectors.manifests_dir
        self.budgets = load_budgets(manifests) if manifests else {}
        self.bus = DetectionBus()
        """Every detection of this worker's hosts (they come and go with ownership)."""
        self.hosts: PartitionedStates[PartitionHost] = PartitionedStates(self._open, self._save)
        self.leading: PartitionedStates[DetectorHost] = PartitionedStates(self._open_fleet, self._save)
        """The fleet's host, under partition 0's key while this worker owns it."""
        self.feedback: FeedbackStage | None = None
        self.group: GroupConsumer | None = None
        self._schema_ready = False

    # -- ownership -----------------------------------------------------------------------
    def _partition_count(self) -> int:
        assert self.group is not None
        partitions = self.group.consumer.partitions_for_topic(self.kafka.topic(OWNERSHIP_SIGNAL))
        if not partitions:
            raise RuntimeError(f"no partitions known for {self.kafka.topic(OWNERSHIP_SIGNAL)}")
        return len(partitions)

    def _open(self, owned: OwnedPartition) -> PartitionHost:
        partitions = self._partition_count()
        settings = self.config.detectors.model_copy(
            update={"checkpoint_path": checkpoint_file(self.checkpoint_dir, owned, partitions)})
        host = PartitionHost(owned, partitions, settings, self.client, self.config.data_dir,
                             database=self.config.storage.database, budgets=self.budgets,
                             metrics=self.metrics.detector)
        host.subscribe(self.bus.publish)
        self.metrics.assigned.labels("restored" if host.restored else "fresh").inc()
        log.info("partition assigned", extra={"partition": owned.partition, "partitions": partitions,
                                               "restored": host.restored})
        return host

    def _open_fleet(self, owned: OwnedPartition) -> DetectorHost:
        """Partition 0 came with the fleet's detectors: restore them from ``global.json``.
        The file does not depend on the partition count (neither model versions nor cost
        centers hash to partitions)."""
        settings = self.config.detectors.model_copy(
            update={"checkpoint_path": self.checkpoint_dir / GLOBAL_CHECKPOINT})
        host = DetectorHost(settings, self.client, self.config.data_dir, self.config.storage.database,
                            metrics=self.metrics.detector, scope=Scope.FLEET)
        host.subscribe(self.bus.publish)
        log.info("leading: the fleet's detectors", extra={"restored": host.restored})
        return host

    def _save(self, owned: OwnedPartition, host: DetectorHost) -> None:
        host.checkpoint()

    def _ownership_changed(self) -> None:
        self.metrics.partitions.set(len(self.hosts.states))
        self.metrics.leader.set(len(self.leading.states))

    @staticmethod
    def _leader(owned: list[OwnedPartition]) -> list[OwnedPartition]:
        return [p for p in owned if p.partition == LEADER_PARTITION]

    def _assigned(self, owned: list[OwnedPartition]) -> None:
        """Ownership only: pause the partitions so polling fetches no records."""
        assert self.group is not None
        self.group.consumer.pause(*self.group.consumer.assignment())
        self.hosts.on_assign(owned)
        self.leading.on_assign(self._leader(owned))
        self._ownership_changed()

    def _revoked(self, owned: list[OwnedPartition]) -> None:
        self.hosts.on_revoke(owned)
        self.leading.on_revoke(self._leader(owned))
        self._ownership_changed()

    def _lost(self, owned: list[OwnedPartition]) -> None:
        log.warning("evicted from the detector group; partitions dropped unsaved",
                    extra={"partitions": [p.partition for p in owned]})
        self.hosts.on_lost(owned)
        self.leading.on_lost(self._leader(owned))
        self._ownership_changed()

    def owned(self) -> set[OwnedPartition]:
        return set(self.hosts.states)

    @property
    def fleet_host(self) -> DetectorHost | None:
        """The host of the fleet's detectors while this worker leads (owns partition 0), else None."""
        return next(iter(self.leading.states.values()), None)

    def forecast_monthly_usd(self, detection: Detection) -> float | None:
        """The spend forecast of the detection's function, from the partition host that
        owns it (the feedback loop's budget guardrail); None when another worker owns it."""
        function = detection.function or ""
        for host in list(self.hosts.states.values()):
            if host.owns(function):
                return host.forecast_monthly_usd(function)
        return None

    # -- the work ------------------------------------------------------------------------
    def join(self) -> GroupConsumer:
        """Become a member of the detector group (hooks wired to the partition hosts)."""
        self.group = GroupConsumer(self.kafka, self.group_id, signals=[OWNERSHIP_SIGNAL],
                                   on_assign=self._assigned, on_revoke=self._revoked, on_lost=self._lost,
                                   assignors=(CooperativeStickyAssignor,))
        return self.group

    def step(self, poll_ms: int = 0) -> bool:
        """Poll the group (rebalances happen here), then one bounded step of every owned
        partition's host (and of the fleet's when leading); True while one has more to read."""
        assert self.group is not None
        self.group.consumer.poll(timeout_ms=poll_ms)
        if not self._schema_ready:
            self._schema_ready = self.apply_schema()
            if not self._schema_ready:
                return False
        behind = False
        hosts: list[tuple[OwnedPartition, DetectorHost]] = [*self.hosts.states.items(), *self.leading.states.items()]
        for owned, host in hosts:
            try:
                behind = host.step() or behind
            except Exception as exc:  # noqa: BLE001 - ClickHouse down: keep polling, state is kept
                self.metrics.step_errors.inc()
                self.storage.failed(exc)  # logged once per outage; each failure at debug level
                log.debug("detector step failed", exc_info=True,
                          extra={"partition": owned.partition, "global": not isinstance(host, PartitionHost)})
                return False
        self.storage.succeeded()
        self.metrics.detector.series.set(sum(host.series_count() for _, host in hosts))
        return behind

    def run_until(self, stop: threading.Event) -> None:
        """Step until ``stop`` is set; between steps, wait in ``poll`` (so the member stays
        in the group) for ``detectors.poll_seconds``, or the backoff while ClickHouse does
        not answer, in slices so a stop is noticed soon."""
        assert self.group is not None
        poll_seconds = self.config.detectors.poll_seconds
        next_step = 0.0
        while not stop.is_set():
            try:
                now = time.monotonic()
                if now < next_step:
                    self.group.consumer.poll(timeout_ms=int(min(next_step - now, 0.5) * 1000) or 1)
                    continue
                behind = self.step()
                wait = poll_seconds if self.storage.ok else self.storage.delay  # backoff while down
                next_step = now if behind else now + wait
            except KafkaError:
                log.exception("Kafka error while polling the detector group; retrying")
                stop.wait(1.0)

    def close(self) -> None:
        """Checkpoint every owned partition and leave the group (the partitions move now)."""
        try:
            if self.group is not None:
                self.group.close()  # revokes first: every host is checkpointed on the way out
        finally:
            self.hosts.checkpoint()  # whatever a failed revoke left behind
            self.leading.checkpoint()

    async def start(self) -> str:
        """With ``feedback.enabled``, subscribe the feedback stage (on this event loop)
        before the work thread can publish a detection; then the admin endpoints and the work."""
        if self.config.feedback.enabled:
            from obsloop.feedback.stage import FeedbackStage

            self.feedback = FeedbackStage.build(
                self.config.feedback, self.client, self.config.data_dir, self.config.storage.database,
                forecast=self.forecast_monthly_usd, registry=self.registry)
            self.feedback.start(self.bus.subscribe)
        return await super().start()

    async def stop(self) -> None:
        """Stop the work (its last detections are queued), then drain the feedback."""
        try:
            await super().stop()
        finally:
            if self.feedback is not None:
                await self.feedback.stop()

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

    def _readiness(self) -> dict[str, str]:
        parts = super()._readiness()
        if self.feedback is not None:
            parts["feedback"] = "ok" if self.feedback.ready else "connecting"
        return parts

    def _describe(self) -> dict[str, Any]:
        return {"group": self.group_id, "topic": self.kafka.topic(OWNERSHIP_SIGNAL),
                "checkpoints": str(self.checkpoint_dir), "feedback": self.config.feedback.enabled}
