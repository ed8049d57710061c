"""Model drift as a window detector: the prediction events of each closed window feed the
river detectors of their model version (:mod:`obsloop.detectors.drift`), and a drift becomes
a detection with an Evidently report as evidence (``detectors.drift``)."""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from obsloop.core import semconv
from obsloop.detectors.detection import Detection
from obsloop.detectors.drift import DriftEvent, DriftTracker, prediction_event
from obsloop.detectors.window_detector import ClosedWindows, DetectorContext, Scope, Step, WindowDetector

log = logging.getLogger(__name__)

Prediction = tuple[datetime, tuple[str, str], dict[str, float]]
"""Event time, (model name, version), the event's prediction, label and features."""


class ModelDrift(WindowDetector):
    """Drift per model version, on the prediction events of the windows, in event time."""

    name = "drift"
    scope = Scope.FLEET

    def __init__(self, tracker: DriftTracker, report_dir: Path) -> None:
        self.tracker = tracker
        self.report_dir = report_dir
        self._predictions: list[Prediction] = []
        self._next = 0

    @classmethod
    def build(cls, context: DetectorContext) -> ModelDrift | None:
        if not context.config.drift.enabled:
            return None
        return cls(DriftTracker(context.config.drift), context.report_dir)

    def process(self, closed: ClosedWindows) -> list[Detection]:
        """Learn the prediction events of the window, oldest first (read once per step)."""
        if closed.start == closed.step.start:
            self._predictions, self._next = read_predictions(closed.step), 0
        detections = []
        end = closed.end
        while self._next < len(self._predictions) and self._predictions[self._next][0] < end:
            when, model, event = self._predictions[self._next]
            found = self.tracker.update(model, event)
            if found is not None:
                detections.append(self.detection(found, when))
            self._next += 1
        return detections

    def detection(self, found: DriftEvent, when: datetime) -> Detection:
        """The drift's detection, confirmed (``critical``) only when the predictions after
        the firing show it: on a heavy-tailed feature ADWIN fires on a few large values, so
        the drifted stream must also differ from the reference by a rank test (``drift.py``)."""
        from obsloop.detectors.reports import write_drift_report

        name, version = found.model
        detection_id = f"drift-{name}-{version}-{found.position}".replace("/", "_")
        evidence: tuple[str, ...] = ()
        try:
            html, summary_json = write_drift_report(
                found.reference, found.current, self.report_dir, detection_id,
                context={"detection_id": detection_id, "model.name": name,
                         "model.version": version, "drifted_streams": found.streams})
            evidence = (html.resolve().as_uri(), summary_json.resolve().as_uri())
        except Exception:  # noqa: BLE001 - a report failure must not lose the detection
            log.exception("drift report failed", extra={"detection": detection_id})
        observed, expected = found.summary_stats()
        confirmed = found.confirmed  # the predictions after the firing show it (a rank test)
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

    def state(self) -> dict[str, Any]:
        return self.tracker.to_state()

    def restore(self, state: dict[str, Any]) -> None:
        self.tracker.restore(state)


def read_predictions(step: Step) -> list[Prediction]:
    """The prediction events of the step's time range, oldest first."""
    prefix = semconv.FEATURE_PREFIX
    rows = step.client.query(f"""
SELECT Timestamp,
       coalesce(nullIf(LogAttributes['{semconv.MODEL_NAME}'], ''), ResourceAttributes['{semconv.MODEL_NAME}']),
       coalesce(nullIf(LogAttributes['{semconv.MODEL_VERSION}'], ''), ResourceAttributes['{semconv.MODEL_VERSION}']),
       mapFilter((k, v) -> startsWith(k, '{prefix}')
                           OR k IN ('{semconv.PREDICTION_VALUE}', '{semconv.PREDICTION_LABEL}'),
                 LogAttributes)
FROM `{step.database}`.otel_logs
WHERE EventName = '{semconv.PREDICTION_EVENT}'
  AND TimestampTime >= toDateTime({int(step.start.timestamp())}, 'UTC')
  AND TimestampTime < toDateTime({int(step.end.timestamp())}, 'UTC')
ORDER BY Timestamp""").result_rows
    out = []
    for ts, name, version, attributes in rows:
        event = prediction_event(attributes, prefix)
        if event:
            t = ts.replace(tzinfo=UTC) if ts.tzinfo is None else ts
            out.append((t, (name, version), event))
    return out
