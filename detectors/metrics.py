"""The window detectors' own telemetry, on the registry of the process that hosts them
(``/metrics``); a detector worker's hosts share one instance."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge


class DetectorMetrics:
    """Windows read, detections, live series models, quality labels and event-time lag."""

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
