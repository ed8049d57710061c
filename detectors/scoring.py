"""Closed windows in, detections out: one series model per function (or cost center) and metric.

Metrics map to detection kinds, each with the direction that hurts: latency percentiles,
error rate, cold-start rate and spend are anomalous when they rise, throughput when it
drops. A value in the harmless direction (a function getting faster) is fed to its model
as the running mean, so it neither alarms nor damps the score of the next real regression.

An *episode* is a run of anomalous windows of one series and kind: it yields one detection
when it opens and one clearing after ``clear_after`` normal windows, sharing an ``id``, so
the feedback loop acts once and resolves the alert. A window is scored once, when it
closes; data arriving later updates the stored window but never opens a second episode.

Windows in which a known function received nothing are scored as zero throughput (that is
what a throughput drop looks like), but only while the function was seen within the idle
expiry, so a deleted function is forgotten rather than alarmed about forever.
"""

from __future__ import annotations

import hashlib
import math
from collections import defaultdict
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from obsloop import semconv
from obsloop.detectors.series import SeriesAnomalyDetector
from obsloop.detectors.series_pool import SeriesDetectorPool
from obsloop.detectors.windows import SeriesKey, Window
from obsloop.feedback.detection import Detection, Kind, Severity

UP, DOWN = 1, -1
METRICS: dict[str, tuple[Kind, int]] = {
    "p50_ms": ("latency", UP),
    "p95_ms": ("latency", UP),
    "p99_ms": ("latency", UP),
    "error_rate": ("error_rate", UP),
    "cold_start_rate": ("cold_start", UP),
    "invocations": ("throughput", DOWN),
    "cost_usd": ("cost", UP),
}
COST_CENTER_PREFIX = "cost_center:"


def severity(score: float) -> Severity:
    return "critical" if score >= 0.99 else "error" if score >= 0.9 else "warning"


class ExpectedRange:
    """Exponentially weighted mean and deviation of one series: the range shown to a human.

    The anomaly score comes from the series model; this is only the "normally between a and
    b" that goes with a detection, kept apart so it does not depend on the model's internals.

    >>> r = ExpectedRange()
    >>> for x in [10.0, 11.0, 9.0, 10.0] * 50:
    ...     r.learn_one(x)
    >>> low, high = r.interval()
    >>> 7.0 < low < 10.0 < high < 13.0
    True
    """

    __slots__ = ("alpha", "k", "mean", "var", "n")

    def __init__(self, alpha: float = 0.05, k: float = 3.0) -> None:
        self.alpha, self.k = alpha, k
        self.mean, self.var, self.n = 0.0, 0.0, 0

    def learn_one(self, x: float) -> None:
        if self.n == 0:
            self.mean = x
        else:
            a = max(self.alpha, 1.0 / (self.n + 1))
            delta = x - self.mean
            self.mean += a * delta
            self.var = (1.0 - a) * (self.var + a * delta * delta)
        self.n += 1

    def interval(self) -> tuple[float, float]:
        sd = math.sqrt(self.var)
        return self.mean - self.k * sd, self.mean + self.k * sd

    def to_state(self) -> list[float]:
        return [self.mean, self.var, self.n]

    @classmethod
    def from_state(cls, state: list[float]) -> ExpectedRange:
        r = cls()
        r.mean, r.var, r.n = float(state[0]), float(state[1]), int(state[2])
        return r


@dataclass
class Episode:
    id: str
    opened: float
    baseline: dict[str, tuple[float, float]]
    """Expected range of each metric when the episode opened: it is over when values are
    back inside, not merely when the model has got used to the new level."""
    normal_run: int = 0

    def is_normal(self, observed: dict[str, float]) -> bool:
        for metric, value in observed.items():
            low, high = self.baseline.get(metric, (-math.inf, math.inf))
            direction = METRICS[metric][1]
            if (direction == UP and value > high) or (direction == DOWN and value < low):
                return False
        return True


def _entity_labels(entity: str) -> dict[str, str]:
    if entity.startswith(COST_CENTER_PREFIX):
        return {semconv.COST_CENTER: entity[len(COST_CENTER_PREFIX):]}
    return SeriesKey.from_id(entity).labels()


class WindowScorer:
    """Scores every closed window of every series; keeps all state needed for a restart.

    >>> from datetime import datetime, timedelta, UTC
    >>> scorer = WindowScorer(factory=lambda: SeriesAnomalyDetector(warmup=30))
    >>> key = SeriesKey("aws_lambda", "fraud-scorer", "fraud", "2.1.0")
    >>> t0 = datetime(2026, 1, 1, tzinfo=UTC)
    >>> def window(i, p95):
    ...     return Window(t0 + timedelta(minutes=i), 60, key, "spans", 100, 1, 2,
    ...                   40.0, p95 + (i % 3), p95 + 10 + (i % 3), 0.0, 0.0)
    >>> found = []
    >>> for i in range(200):
    ...     found += scorer.process(t0 + timedelta(minutes=i), [window(i, 80.0)])
    >>> found
    []
    >>> [d] = scorer.process(t0 + timedelta(minutes=200), [window(200, 400.0)])
    >>> d.kind, d.series["faas.name"], d.observed["p95_ms"] > d.expected["p95_ms"][1]
    ('latency', 'fraud-scorer', True)
    """

    def __init__(
        self,
        factory: Callable[[], SeriesAnomalyDetector] = SeriesAnomalyDetector,
        max_series: int = 50_000,
        idle_seconds: float = 7 * 86_400.0,
        threshold: float = 0.5,
        clear_after: int = 5,
    ) -> None:
        self.pool = SeriesDetectorPool(max_series=max_series, idle_seconds=idle_seconds,
                                       factory=factory)
        self.threshold = threshold
        self.clear_after = clear_after
        self.ranges: dict[str, ExpectedRange] = {}
        self.episodes: dict[str, Episode] = {}
        self.last_seen: dict[str, float] = {}
        """Entity id -> window start (epoch) of its last window with data."""

    @property
    def idle_seconds(self) -> float:
        return self.pool.idle_seconds

    def process(self, start: datetime, windows: Iterable[Window]) -> list[Detection]:
        """Score the windows that start at ``start`` (all series); return new detections."""
        t = start.timestamp()
        by_entity: dict[str, tuple[dict[str, float], int]] = {}
        cost_centers: dict[str, float] = defaultdict(float)
        seconds = 0
        for w in windows:
            by_entity[w.key.id] = (w.metrics, w.seconds)
            seconds = w.seconds
            self.last_seen[w.key.id] = t
            if w.cost_center:
                cost_centers[w.cost_center] += w.cost_usd
        for center, cost in cost_centers.items():
            entity = COST_CENTER_PREFIX + center
            by_entity[entity] = ({"cost_usd": cost}, seconds)
            self.last_seen[entity] = t
        for entity, seen in self.last_seen.items():
            if entity not in by_entity and not entity.startswith(COST_CENTER_PREFIX) \
                    and t - seen <= self.idle_seconds:
                by_entity[entity] = ({"invocations": 0.0}, seconds)
        detections = []
        for entity, (metrics, window_seconds) in by_entity.items():
            detections += self._score_entity(entity, metrics, start, window_seconds)
        self._expire(t)
        return detections

    def _score_entity(self, entity: str, metrics: dict[str, float], start: datetime,
                      seconds: int) -> list[Detection]:
        t = start.timestamp()
        per_kind: dict[Kind, dict[str, Any]] = {}
        for metric, value in metrics.items():
            if metric not in METRICS:
                continue
            kind, direction = METRICS[metric]
            series_id = f"{entity}#{metric}"
            rng = self.ranges.get(series_id)
            if rng is None:
                rng = self.ranges[series_id] = ExpectedRange()
            # One-sided: the model sees a value in the harmless direction as the mean, so a
            # function getting faster is never surprising and never starts the detector's
            # refractory period, which would damp the score of a real regression after it.
            fed = value if rng.n == 0 else (
                max(value, rng.mean) if direction == UP else min(value, rng.mean))
            score = self.pool.score_learn_one(series_id, fed, t)
            low, high = rng.interval()
            harmful = (value - rng.mean) * direction > 0 if rng.n else False
            rng.learn_one(value)
            entry = per_kind.setdefault(kind, {"score": 0.0, "observed": {}, "expected": {}})
            entry["observed"][metric] = value
            entry["expected"][metric] = (low, high)
            if harmful:
                entry["score"] = max(entry["score"], score)
        out = []
        end = start + timedelta(seconds=seconds or 0)
        for kind, entry in per_kind.items():
            detection = self._episode(entity, kind, entry, start, end, t)
            if detection is not None:
                out.append(detection)
        return out

    def _episode(self, entity: str, kind: Kind, entry: dict[str, Any], start: datetime,
                 end: datetime, t: float) -> Detection | None:
        key = f"{kind}|{entity}"
        episode = self.episodes.get(key)
        score = entry["score"]
        labels = _entity_labels(entity)
        if episode is None and score >= self.threshold:
            digest = hashlib.sha256(f"{key}|{t}".encode()).hexdigest()[:16]
            episode = self.episodes[key] = Episode(f"{kind}-{digest}", t, dict(entry["expected"]))
            return Detection(
                id=episode.id, time=end, series=labels, kind=kind, score=min(score, 1.0),
                severity=severity(score), observed=entry["observed"], expected=entry["expected"],
                summary=_summary(kind, labels, entry, start),
            )
        if episode is None:
            return None
        if score >= self.threshold or not episode.is_normal(entry["observed"]):
            episode.normal_run = 0
            return None
        episode.normal_run += 1
        if episode.normal_run < self.clear_after:
            return None
        del self.episodes[key]
        return Detection(
            id=episode.id, time=end, series=labels, kind=kind, score=score, severity="info",
            observed=entry["observed"], expected=entry["expected"], cleared=True,
            summary=f"{kind} back to normal on {_target(labels)} since {start:%Y-%m-%d %H:%M}Z",
        )

    def _expire(self, t: float) -> None:
        """Forget idle entities and the ranges and episodes of dropped models."""
        self.pool.expire(t)
        self.last_seen = {e: s for e, s in self.last_seen.items() if t - s <= self.idle_seconds}
        if len(self.ranges) > len(self.pool):
            self.ranges = {sid: r for sid, r in self.ranges.items() if sid in self.pool}
        live = {sid.rsplit("#", 1)[0] for sid in self.ranges}
        if len(self.episodes) > len(live):
            self.episodes = {k: e for k, e in self.episodes.items()
                             if k.split("|", 1)[1] in live}

    # ------------------------------------------------------------------ state
    def to_state(self) -> dict[str, Any]:
        return {
            "pool": self.pool.to_state(),
            "ranges": {sid: r.to_state() for sid, r in self.ranges.items()},
            "episodes": {k: [e.id, e.opened, e.normal_run, e.baseline]
                         for k, e in self.episodes.items()},
            "last_seen": self.last_seen,
        }

    def restore(self, state: dict[str, Any]) -> None:
        self.pool.restore(state["pool"])
        self.ranges = {sid: ExpectedRange.from_state(r) for sid, r in state["ranges"].items()}
        self.episodes = {
            k: Episode(e[0], float(e[1]), {m: (r[0], r[1]) for m, r in e[3].items()}, int(e[2]))
            for k, e in state["episodes"].items()}
        self.last_seen = {e: float(s) for e, s in state["last_seen"].items()}


def _target(labels: dict[str, str]) -> str:
    return (labels.get(semconv.FAAS_NAME) or labels.get(semconv.COST_CENTER)
            or "/".join(filter(None, (labels.get(semconv.MODEL_NAME),
                                      labels.get(semconv.MODEL_VERSION)))) or "series")


def _summary(kind: Kind, labels: dict[str, str], entry: dict[str, Any], start: datetime) -> str:
    parts = []
    for metric, value in entry["observed"].items():
        low, high = entry["expected"][metric]
        parts.append(f"{metric}={value:.4g} (expected {max(low, 0.0):.4g}..{high:.4g})")
    return (f"{kind} anomaly on {_target(labels)} in the window from "
            f"{start.astimezone(UTC):%Y-%m-%d %H:%M}Z: " + ", ".join(parts))
