"""The detector host of ``obsloop serve``: closed windows -> window detectors -> detections.

Every ``poll_seconds`` it works out the watermark and reads the windows that closed since
the last poll, oldest first, each exactly once, and hands them to its detectors (the
registered kinds of its :class:`~obsloop.detectors.window_detector.Scope`, built from the
configuration by :mod:`obsloop.detectors.registry`):

* **Watermark** is event time, not wall time: the end of the latest stored 10-second slot
  minus ``allowed_lateness``, so replayed or delayed data is windowed as it happened. Data
  arriving after its window closed merges into the stored window but is not scored again.
* When no new data arrived for ``idle_flush_seconds``, the watermark moves to the end of
  the stored data, so the last windows before a quiet period are read too. A fleet-wide
  silence does not advance event time: that is the pipeline's health (``/readyz``).

Every detector's state and the position in time go to one JSON checkpoint, written
atomically every ``checkpoint_seconds`` and at stop, and read back at start.
docs/design/detector-host.md tells why it works this way.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections import defaultdict
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, TypeVar

from prometheus_client import CollectorRegistry

from obsloop.detectors import registry as detector_registry
from obsloop.detectors.builtin import BudgetForecasts
from obsloop.detectors.config import DetectorsConfig
from obsloop.detectors.cost import Budget
from obsloop.detectors.detection import Detection
from obsloop.detectors.detection_bus import DetectionBus, DetectionStore, Subscriber
from obsloop.detectors.metrics import DetectorMetrics
from obsloop.detectors.window_detector import ClosedWindows, DetectorContext, Scope, Step, WindowDetector
from obsloop.detectors.windows import Window, WindowReader

log = logging.getLogger(__name__)

CHECKPOINT_VERSION = 2
"""2: the detectors' states under ``detectors``, by name; 1 had them at the top level."""
D = TypeVar("D", bound=WindowDetector)


def _floor(t: datetime, seconds: int) -> datetime:
    epoch = int(t.timestamp())
    return datetime.fromtimestamp(epoch - epoch % seconds, UTC)


class DetectorHost:
    """Reads closed windows, runs its window detectors on them, stores and publishes their
    detections, and checkpoints their state."""

    def __init__(
        self,
        config: DetectorsConfig,
        client: Callable[[], Any],
        data_dir: Path,
        database: str = "default",
        budgets: dict[str, Budget] | None = None,
        wall_clock: Callable[[], float] = time.time,
        monotonic: Callable[[], float] = time.monotonic,
        registry: CollectorRegistry | None = None,
        metrics: DetectorMetrics | None = None,
        scope: Scope = Scope.ALL,
    ) -> None:
        self.config = config
        # A detector worker runs a host per owned partition; they share one set of series.
        self.metrics = metrics or DetectorMetrics(registry or CollectorRegistry())
        self._client = client
        self.database = database
        self.bus = DetectionBus()
        self.checkpoint_path = config.checkpoint_file(data_dir)
        self.report_dir = config.reports_directory(data_dir)
        self.wall_clock, self.monotonic = wall_clock, monotonic
        self.context = DetectorContext(config, scope, self.metrics, self.report_dir, budgets or {})
        self.detectors = detector_registry.build(self.context)
        self._dormant: dict[str, Any] = {}
        """Checkpointed states of detectors this host does not run (turned off, or of
        another scope), written back unchanged so turning one on again resumes it."""
        self.closed_until: datetime | None = None
        """Start of the first window not read yet."""
        self._high: datetime | None = None
        self._high_changed_at = 0.0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._last_checkpoint = monotonic()
        self.restored = self.restore()
        """Whether the state came from a checkpoint (a detector worker reports it on assign)."""

    def detector(self, kind: type[D]) -> D | None:
        """This host's detector of ``kind``, if it runs one."""
        return next((d for d in self.detectors if isinstance(d, kind)), None)

    def forget_open_episodes(self) -> int:
        """Drop open anomaly episodes without clearing them; returns how many.

        For a switch from replayed history to live traffic (the demo): episodes opened while
        replaying were never acted on, and an open one would swallow a live regression of the
        same series and kind.
        """
        return sum(detector.forget_episodes() for detector in self.detectors)

    def subscribe(self, callback: Subscriber) -> Callable[[], None]:
        """Receive every detection (and clearing) from now on; returns the unsubscriber."""
        return self.bus.subscribe(callback)

    @property
    def client(self) -> Any:
        return self._client()

    def series_count(self) -> int:
        """Live series models of this host's detectors."""
        return sum(detector.series_count() for detector in self.detectors)

    # ------------------------------------------------------------------ one step
    def watermark(self) -> datetime | None:
        """Event time up to which windows are complete (``None`` before any data)."""
        high = WindowReader(self.client, self.database, self.config.window_seconds).event_time_high()
        if high is None:
            return None
        high = min(high, datetime.fromtimestamp(self.wall_clock(), UTC))  # a clock in the future
        now = self.monotonic()
        if high != self._high:
            self._high, self._high_changed_at = high, now
        lateness = timedelta(seconds=self.config.allowed_lateness_seconds)
        if now - self._high_changed_at >= self.config.idle_flush_seconds:
            # Quiet: the window holding the last data is as complete as it will get.
            seconds = self.config.window_seconds
            return _floor(high - timedelta(seconds=1), seconds) + timedelta(seconds=seconds)
        return high - lateness

    def run_once(self) -> list[Detection]:
        """Read every window closed since the last call (bounded per call) and run the
        detectors on it: each window start in turn, then the step as a whole."""
        watermark = self.watermark()
        if watermark is None:
            return []
        seconds = self.config.window_seconds
        if self.closed_until is None:
            self.closed_until = self._first_window()
        end = _floor(watermark, seconds)
        end = min(end, self.closed_until + timedelta(seconds=seconds * self.config.max_catchup_windows))
        if end <= self.closed_until:
            return []
        by_start: dict[datetime, list[Window]] = defaultdict(list)
        for window in self.read_windows(self.closed_until, end):
            by_start[window.start].append(window)
        step = Step(self.closed_until, end, seconds, self.client, self.database)
        detections: list[Detection] = []
        start = step.start
        while start < end:
            closed = ClosedWindows(start, by_start.get(start, []), step)
            for detector in self.detectors:
                detections += detector.process(closed)
            start = closed.end
        for detector in self.detectors:
            detections += detector.finish(step, tuple(detections))
        self.metrics.windows.inc((end - self.closed_until).total_seconds() // seconds)
        self.closed_until = end
        self.metrics.series.set(self.series_count())
        self.metrics.event_time_lag.set(max(0.0, self.wall_clock() - end.timestamp()))
        for detection in detections:
            self.metrics.detections.labels(detection.kind, "cleared" if detection.cleared else "opened").inc()
        self._emit(detections)
        return detections

    def forecast_monthly_usd(self, function: str) -> float | None:
        """The month-end spend forecast of ``function`` (None without a budget or spend yet):
        the feedback loop's budget guardrail refuses scale-ups it cannot price."""
        budgets = self.detector(BudgetForecasts)
        return None if budgets is None else budgets.forecast_monthly_usd(function)

    def read_windows(self, start: datetime, end: datetime) -> Iterator[Window]:
        """The windows starting in ``[start, end)`` that this host sees: all of them here;
        a detector worker's partition host keeps its own functions' (it overrides this)."""
        return WindowReader(self.client, self.database, self.config.window_seconds).read(start, end)

    def _first_window(self) -> datetime:
        value = self.client.command(
            f"SELECT toUnixTimestamp(min(window_start)) FROM `{self.database}`.faas_windows")
        return _floor(datetime.fromtimestamp(int(value), UTC), self.config.window_seconds)

    def _emit(self, detections: list[Detection]) -> None:
        if not detections:
            return
        DetectionStore(self.client, self.database).insert(detections)
        for detection in detections:
            log.info("detection", extra={"detection": detection.id, "kind": detection.kind,
                                          "cleared": detection.cleared, "summary": detection.describe()})
            self.bus.publish(detection)

    # ------------------------------------------------------------------ checkpoints
    def to_state(self) -> dict[str, Any]:
        return {
            "version": CHECKPOINT_VERSION,
            "window_seconds": self.config.window_seconds,
            "closed_until": self.closed_until.timestamp() if self.closed_until else None,
            "detectors": {**self._dormant, **{d.name: d.state() for d in self.detectors}},
        }

    def checkpoint(self) -> None:
        """Write the state atomically (temporary file, then rename)."""
        self.checkpoint_path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.checkpoint_path.with_name(self.checkpoint_path.name + ".tmp")
        tmp.write_text(json.dumps(self.to_state(), separators=(",", ":")))
        tmp.replace(self.checkpoint_path)
        self._last_checkpoint = self.monotonic()

    def restore(self) -> bool:
        """Load the checkpoint if there is one (format 1 too); a detector missing from it
        starts fresh. A checkpoint of another window length or format, or one a detector
        cannot read, is ignored (with a warning) rather than misread: every detector then
        starts fresh."""
        if not self.checkpoint_path.exists():
            return False
        try:
            state = json.loads(self.checkpoint_path.read_text())
            if state.get("version") not in (1, CHECKPOINT_VERSION) or \
                    state.get("window_seconds") != self.config.window_seconds:
                raise ValueError("checkpoint of another version or window length")
            states = state["detectors"] if state["version"] == CHECKPOINT_VERSION else {
                name: value for name, value in state.items()
                if name not in ("version", "window_seconds", "closed_until")}
            for detector in self.detectors:
                if detector.name in states:
                    detector.restore(states[detector.name])
            running = {detector.name for detector in self.detectors}
            self._dormant = {name: value for name, value in states.items() if name not in running}
            closed = state["closed_until"]
        except (ValueError, KeyError, TypeError, AttributeError, IndexError) as exc:
            # Any shape a damaged file can take (a list where a dict was, a short list) is
            # a checkpoint that cannot be read, not a crash at start.
            log.warning("detector checkpoint ignored; learning from scratch",
                        extra={"path": str(self.checkpoint_path), "error": str(exc)})
            self.detectors = detector_registry.build(self.context)
            self._dormant = {}
            return False
        self.closed_until = None if closed is None else datetime.fromtimestamp(closed, UTC)
        return True

    # ------------------------------------------------------------------ thread
    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="obsloop-detectors", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                while self.step() and not self._stop.is_set():
                    pass
            except Exception:  # noqa: BLE001 - ClickHouse down: keep polling, state is kept
                log.exception("detector host step failed")
            self._stop.wait(self.config.poll_seconds)

    def step(self) -> bool:
        """One bounded step (at most ``max_catchup_windows``), then a checkpoint if one is
        due; True while there is more to read (detections found, or a backlog remains).

        Bounded so that a caller with other duties between steps (a detector worker must
        keep polling its consumer group) is never held up by a long backlog.
        """
        found = self.run_once()
        if self.monotonic() - self._last_checkpoint >= self.config.checkpoint_seconds:
            self.checkpoint()
        return bool(found) or self._behind()

    def _behind(self) -> bool:
        """Whether a backlog remains after a bounded step (catch up without waiting a poll)."""
        watermark = self._high
        return bool(watermark and self.closed_until and
                    self.closed_until + timedelta(seconds=self.config.window_seconds)
                    <= watermark - timedelta(seconds=self.config.allowed_lateness_seconds))

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(30)
        try:
            self.checkpoint()
        except OSError:
            log.exception("detector checkpoint failed at stop")
