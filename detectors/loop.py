"""The detector loop of ``obsloop serve``: closed windows -> models -> detections.

Every ``poll_seconds`` it works out the watermark and reads the windows that closed since
the last poll, oldest first, each exactly once:

* **Watermark** is event time, not wall time: the end of the latest stored 10-second slot
  minus ``allowed_lateness``. Replayed or delayed data (a collector catching up, a bench
  sending yesterday's traffic) is then windowed as it happened. A window closes when its
  end passes the watermark; data arriving after that merges into the stored window (the
  table is an ``AggregatingMergeTree``) but the window is not scored again.
* When no new data arrived for ``idle_flush_seconds``, the watermark moves to the end of
  the stored data, so the last windows before a quiet period are read too. A fleet-wide
  silence does not advance event time: that is the pipeline's health (``/readyz``), not
  an anomaly of one function.
* The prediction events of the same time range feed the drift detectors; the spend of
  budgeted functions feeds their month-end forecast.

All model state (series models, expected ranges, open episodes, drift samples, forecasts
and the position in time) goes to one JSON checkpoint, written atomically every
``checkpoint_seconds`` and at stop, and read back at start.
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
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge

from obsloop import semconv
from obsloop.detectors.canary import CanaryWatch
from obsloop.detectors.config import DetectorsConfig
from obsloop.detectors.cost import Budget, BudgetWatch
from obsloop.detectors.detections import DetectionBus, DetectionStore, Subscriber
from obsloop.detectors.drift import DriftEvent, DriftTracker, prediction_event
from obsloop.detectors.quality_watch import QualityWatch
from obsloop.detectors.scoring import WindowScorer
from obsloop.detectors.series import SeriesAnomalyDetector
from obsloop.detectors.windows import Window, WindowReader
from obsloop.feedback.detection import Detection

log = logging.getLogger(__name__)

CHECKPOINT_VERSION = 1


def _floor(t: datetime, seconds: int) -> datetime:
    epoch = int(t.timestamp())
    return datetime.fromtimestamp(epoch - epoch % seconds, UTC)


class DetectorMetrics:
    """The loop's own telemetry (registered on the server's registry, shown on /metrics)."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.windows = Counter("obsloop_detector_windows_scored", "Detection windows read and scored.",
                               registry=registry)
        self.detections = Counter("obsloop_detector_detections", "Detections opened and cleared.",
                                  ["kind", "state"], registry=registry)
        self.series = Gauge("obsloop_detector_series", "Live series models.", registry=registry)
        self.quality_labels = Counter("obsloop_quality_labels", "Labels of the quality windows tested, by "
                                      "state (joined, late, duplicate).", ["state"], registry=registry)
        self.unmatched_labels = Gauge("obsloop_quality_unmatched_labels", "Recent labels whose prediction "
                                      "id is unknown (or whose prediction has not arrived).", registry=registry)
        self.event_time_lag = Gauge("obsloop_detector_event_time_lag_seconds",
                                    "Wall clock minus the end of the last window scored.", registry=registry)


class DetectorLoop:
    """Reads closed windows and prediction events, scores them, stores and publishes detections."""

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
    ) -> None:
        self.config = config
        # A detector worker runs a loop per owned partition; they share one set of series.
        self.metrics = metrics or DetectorMetrics(registry or CollectorRegistry())
        self._client = client
        self.database = database
        self.bus = DetectionBus()
        self.checkpoint_path = config.checkpoint_file(data_dir)
        self.report_dir = config.reports_directory(data_dir)
        self.wall_clock, self.monotonic = wall_clock, monotonic
        warmup = config.warmup_windows
        factory = SeriesAnomalyDetector if warmup is None else (
            lambda: SeriesAnomalyDetector(warmup=warmup))
        self.scorer = WindowScorer(factory=factory, max_series=config.max_series,
                                   idle_seconds=config.idle_expiry_seconds,
                                   threshold=config.score_threshold,
                                   clear_after=config.clear_after_windows,
                                   relapse_after=config.relapse_after_windows,
                                   escalate_ratio=config.escalate_ratio,
                                   confirm_after=config.confirm_after_windows,
                                   evidence_alpha=config.evidence_alpha,
                                   extreme_latency_ratio=config.extreme_latency_ratio,
                                   extreme_error_rate=config.extreme_error_rate)
        self.drift = DriftTracker(config.drift)
        self.canary = CanaryWatch(clear_after=config.clear_after_windows)
        self.quality = QualityWatch(config.quality, clear_after=config.clear_after_windows,
                                    report_dir=self.report_dir)
        self.budgets = BudgetWatch(budgets or {}, config.forecast_check_seconds)
        self.closed_until: datetime | None = None
        """Start of the first window not read yet."""
        self._high: datetime | None = None
        self._high_changed_at = 0.0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._last_checkpoint = monotonic()
        self.restored = self.restore()
        """Whether the state came from a checkpoint (a detector worker reports it on assign)."""

    def forget_open_episodes(self) -> int:
        """Drop open anomaly episodes without clearing them; returns how many.

        For a switch from replayed history to live traffic (the demo): episodes opened while
        replaying were never acted on, and an open one would swallow a live regression of the
        same series and kind.
        """
        count = len(self.scorer.episodes) + len(self.canary.open)
        self.scorer.episodes.clear()
        self.canary.open.clear()
        return count

    def subscribe(self, callback: Subscriber) -> Callable[[], None]:
        """Receive every detection (and clearing) from now on; returns the unsubscriber."""
        return self.bus.subscribe(callback)

    @property
    def client(self) -> Any:
        return self._client()

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
        """Read and score every window closed since the last call (bounded per call)."""
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
        predictions = self._predictions(self.closed_until, end) if self.config.drift.enabled else []
        detections: list[Detection] = []
        start, p = self.closed_until, 0
        while start < end:
            detections += self.score(start, by_start.get(start, []))
            next_start = start + timedelta(seconds=seconds)
            while p < len(predictions) and predictions[p][0] < next_start:
                found = self.drift.update(predictions[p][1], predictions[p][2])
                if found is not None:
                    detections.append(self._drift_detection(found, predictions[p][0]))
                p += 1
            start = next_start
        if self.config.quality.enabled:
            for drifted in (d for d in detections if d.kind == "drift"):
                self.quality.note_drift(drifted)
            detections += self.quality.poll(self.client, self.database, end)
            for state, count in self.quality.counted.items():
                self.metrics.quality_labels.labels(state).inc(count)
            self.metrics.unmatched_labels.set(self.quality.unmatched)
        self.metrics.windows.inc((end - self.closed_until).total_seconds() // seconds)
        self.closed_until = end
        self.metrics.series.set(len(self.scorer.pool))
        self.metrics.event_time_lag.set(max(0.0, self.wall_clock() - end.timestamp()))
        for detection in detections:
            self.metrics.detections.labels(detection.kind, "cleared" if detection.cleared else "opened").inc()
        self._emit(detections)
        return detections

    def score(self, start: datetime, windows: list[Window]) -> list[Detection]:
        """The detections of the windows starting at ``start``: series models (with
        cost-center spend), canary comparisons, budget forecasts. A detector worker's global
        loop overrides this to score cost-center spend only (its partition loops do the rest)."""
        detections = self.scorer.process(start, windows)
        detections += self.canary.compare(start, windows)
        detections += self.budgets.observe(
            start.timestamp(), [(w.key.function, w.cost_usd) for w in windows if w.cost_usd])
        return detections

    def forecast_monthly_usd(self, function: str) -> float | None:
        """The month-end spend forecast of ``function`` (None without a budget or spend yet):
        the feedback loop's budget guardrail refuses scale-ups it cannot price."""
        forecaster = self.budgets.forecasters.get(function)
        return forecaster.forecast() if forecaster is not None and forecaster.now is not None else None

    def read_windows(self, start: datetime, end: datetime) -> Iterator[Window]:
        """The windows starting in ``[start, end)`` that this loop scores: all of them here;
        a detector worker's partition loop keeps its own functions' (it overrides this)."""
        return WindowReader(self.client, self.database, self.config.window_seconds).read(start, end)

    def _first_window(self) -> datetime:
        value = self.client.command(
            f"SELECT toUnixTimestamp(min(window_start)) FROM `{self.database}`.faas_windows")
        return _floor(datetime.fromtimestamp(int(value), UTC), self.config.window_seconds)

    def _predictions(self, start: datetime, end: datetime) -> list[tuple[datetime, tuple[str, str], dict[str, float]]]:
        prefix = semconv.FEATURE_PREFIX
        rows = self.client.query(f"""
SELECT Timestamp,
       coalesce(nullIf(LogAttributes['{semconv.MODEL_NAME}'], ''), ResourceAttributes['{semconv.MODEL_NAME}']),
       coalesce(nullIf(LogAttributes['{semconv.MODEL_VERSION}'], ''), ResourceAttributes['{semconv.MODEL_VERSION}']),
       mapFilter((k, v) -> startsWith(k, '{prefix}')
                           OR k IN ('{semconv.PREDICTION_VALUE}', '{semconv.PREDICTION_LABEL}'),
                 LogAttributes)
FROM `{self.database}`.otel_logs
WHERE EventName = '{semconv.PREDICTION_EVENT}'
  AND TimestampTime >= toDateTime({int(start.timestamp())}, 'UTC')
  AND TimestampTime < toDateTime({int(end.timestamp())}, 'UTC')
ORDER BY Timestamp""").result_rows
        out = []
        for ts, name, version, attributes in rows:
            event = prediction_event(attributes, prefix)
            if event:
                t = ts.replace(tzinfo=UTC) if ts.tzinfo is None else ts
                out.append((t, (name, version), event))
        return out

    def _drift_detection(self, found: DriftEvent, when: datetime) -> Detection:
        from obsloop.detectors.reports import write_drift_report

        name, version = found.model
        detection_id = f"drift-{name}-{version}-{found.position}".replace("/", "_")
        evidence: tuple[str, ...] = ()
        try:
            html, summary = write_drift_report(
                found.reference, found.current, self.report_dir, detection_id,
                context={"detection_id": detection_id, "model.name": name,
                         "model.version": version, "drifted_streams": found.streams})
            evidence = (html.resolve().as_uri(), summary.resolve().as_uri())
        except Exception:  # noqa: BLE001 - a report failure must not lose the detection
            log.exception("drift report failed", extra={"detection": detection_id})
        observed, expected = found.summary_stats()
        # The detector firing is not enough to retrain on: on a heavy-tailed feature ADWIN
        # fires on a few large values (the demo's isolation-forest `amount`, lognormal, after
        # 192 predictions, every run). The drift is confirmed when the predictions after the
        # firing show it (DriftEvent.confirmed).
        confirmed = found.confirmed
        observed["drifted_streams"] = float(len(found.streams))
        score = max(0.5, len(found.streams) / max(1, found.monitored))
        summary = f"drift of {name} {version} in {', '.join(found.streams)} after {found.position} predictions"
        if not confirmed:
            summary += f", not confirmed by the {len(found.current)} predictions after it"
        return Detection(
            id=detection_id, time=when, kind="drift",
            series={semconv.MODEL_NAME: name, semconv.MODEL_VERSION: version},
            score=min(1.0, score),
            severity="critical" if confirmed else "error" if "error" in found.streams else "warning",
            observed=observed, expected=expected, evidence=evidence, summary=summary,
            pending=not confirmed,
        )

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
            "scorer": self.scorer.to_state(),
            "drift": self.drift.to_state(),
            "budgets": self.budgets.to_state(),
            "canary": self.canary.to_state(),
            "quality": self.quality.to_state(),
        }

    def checkpoint(self) -> None:
        """Write the state atomically (temporary file, then rename)."""
        self.checkpoint_path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.checkpoint_path.with_name(self.checkpoint_path.name + ".tmp")
        tmp.write_text(json.dumps(self.to_state(), separators=(",", ":")))
        tmp.replace(self.checkpoint_path)
        self._last_checkpoint = self.monotonic()

    def restore(self) -> bool:
        """Load the checkpoint if there is one; a checkpoint of another window length or
        format is ignored (with a warning) rather than misread."""
        if not self.checkpoint_path.exists():
            return False
        try:
            state = json.loads(self.checkpoint_path.read_text())
            if state.get("version") != CHECKPOINT_VERSION or \
                    state.get("window_seconds") != self.config.window_seconds:
                raise ValueError("checkpoint of another version or window length")
            self.scorer.restore(state["scorer"])
            self.drift.restore(state["drift"])
            self.budgets.restore(state["budgets"])
            self.canary.restore(state.get("canary", {}))
            self.quality.restore(state.get("quality", {}))
        except (ValueError, KeyError, TypeError) as exc:
            log.warning("detector checkpoint ignored; learning from scratch",
                        extra={"path": str(self.checkpoint_path), "error": str(exc)})
            return False
        closed = state["closed_until"]
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
                log.exception("detector loop step failed")
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
