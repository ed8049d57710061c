"""Model drift: river drift detectors per model version on predictions, errors and features.

Each model version gets one detector (ADWIN, KSWIN or Page-Hinkley) per monitored stream:
the prediction, the error ``|prediction - label|`` when the label is known (concept drift:
the inputs may look the same while the model got worse), and the numeric features. When any
stream drifts, the model version reports a :class:`DriftEvent` with a reference sample and
the most recent events, for a report that shows *what* changed.

Why the bookkeeping around river's detectors: a change is usually seen by several streams
and several times, so after a drift the model version is quiet for ``cooldown`` events
(one incident, one detection), and the reference sample is rebuilt from the events that
follow, so the new regime becomes the normal one. Memory per model version is one bounded
sample (two while a drift is being reported) plus the detectors. A detector firing during
the quiet period starts the reference again: the regime changed once more (the drift
ended, or was rolled back), and a reference of the drifted events would later report the
return to normal as a drift. Model versions beyond ``max_models`` are dropped least
recently seen first.
"""

from __future__ import annotations

import bisect
import math
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Any

from river import drift
from scipy.special import ndtri

from obsloop.detectors.config import DriftConfig

PREDICTION, ERROR = "prediction", "error"
CONFIRM_ALPHA = 1e-5
"""Two-sided significance of the rank test that confirms a drift, looked at after every
event from ``CONFIRM_MIN`` on: that many looks need a small one."""
CONFIRM_MIN = 30
"""Events after a detector fired before the rank test may confirm the drift."""


def make_detector(name: str) -> Any:
    """A fresh river drift detector by configuration name."""
    if name == "adwin":
        return drift.ADWIN()
    if name == "kswin":
        return drift.KSWIN(seed=42)
    if name == "page_hinkley":
        return drift.PageHinkley()
    raise ValueError(f"unknown drift detector {name!r}")


@dataclass
class DriftEvent:
    """Drift of one model version, with the samples a report compares."""

    model: tuple[str, str]
    streams: list[str]
    position: int
    """Events this model version had seen when a detector fired."""
    reference: list[dict[str, float]]
    """Events from before the change."""
    current: list[dict[str, float]]
    """Events after the detector fired (``post_change`` of them)."""
    monitored: int

    def summary_stats(self) -> tuple[dict[str, float], dict[str, tuple[float, float]]]:
        """Per drifted stream: the current mean, and where it would lie without a change
        (the reference mean plus or minus three standard errors of a current-sized mean);
        and, from ``CONFIRM_MIN`` current events on, the rank test's share of (current,
        reference) pairs in which the current value is larger, with its range."""
        observed: dict[str, float] = {}
        expected: dict[str, tuple[float, float]] = {}
        for stream in self.streams:
            ref = [e[stream] for e in self.reference if stream in e]
            cur = [e[stream] for e in self.current if stream in e]
            if not ref or not cur:
                continue
            mean = sum(ref) / len(ref)
            sd = math.sqrt(sum((x - mean) ** 2 for x in ref) / len(ref))
            half = 3.0 * sd / math.sqrt(len(cur))
            observed[f"{stream}.mean"] = sum(cur) / len(cur)
            expected[f"{stream}.mean"] = (mean - half, mean + half)
            if len(cur) >= CONFIRM_MIN:
                share, low, high = rank_shift(ref, cur, CONFIRM_ALPHA)
                observed[f"{stream}.above_reference"] = share
                expected[f"{stream}.above_reference"] = (low, high)
        return observed, expected

    @property
    def confirmed(self) -> bool:
        """Whether the events after the firing show the change: a rank test of
        :meth:`summary_stats` outside its range. Not the means: a heavy-tailed stream's
        mean leaves its range with a few large values, looked at after every event."""
        observed, expected = self.summary_stats()
        return any(not low <= observed[name] <= high for name, (low, high) in expected.items()
                   if name.endswith(".above_reference"))


def rank_shift(reference: list[float], current: list[float],
               alpha: float) -> tuple[float, float, float]:
    """The Mann-Whitney statistic as a share: of all (current, reference) pairs, those in
    which the current value is the larger (ties half), with the range it keeps with
    probability ``1 - alpha`` when both come from one distribution (normal approximation).
    Ranks, not means: a heavy-tailed feature's mean leaps with a few large values; a real
    change moves most of them.

    >>> share, low, high = rank_shift([float(x) for x in range(100)],
    ...                               [float(x) + 70 for x in range(40)], 1e-5)
    >>> round(share, 2), low < 0.5 < high < share
    (0.89, True)
    """
    ordered = sorted(reference)
    n, m = len(ordered), len(current)
    wins = sum(bisect.bisect_left(ordered, x) + 0.5 * (bisect.bisect_right(ordered, x)
                                                        - bisect.bisect_left(ordered, x))
               for x in current)
    half = float(ndtri(1.0 - alpha / 2)) * math.sqrt((n + m + 1) / (12.0 * n * m))
    return wins / (n * m), 0.5 - half, 0.5 + half


@dataclass
class ModelDriftMonitor:
    """Drift detectors and samples of one model version.

    When a detector fires, the event is held until the events after it confirm the change
    (the rank test of :meth:`DriftEvent.summary_stats`, from ``CONFIRM_MIN`` events on) or
    ``post_change`` of them have arrived: a detector fires a few events after a change, so
    the recent events at that moment are still mostly the old regime, and a report comparing
    them with the reference would show nothing. The events after the firing are the new
    regime's sample, and they start the next reference. A drift they do not confirm does
    not silence the model version for ``cooldown`` events (a false firing must not hide a
    real drift after it).

    >>> import random
    >>> rng = random.Random(1)
    >>> monitor = ModelDriftMonitor(("fraud", "2"), DriftConfig(reference_size=200, post_change=100))
    >>> events = [{"prediction": rng.random(), "amount": rng.gauss(10, 1)} for _ in range(2000)]
    >>> events += [{"prediction": rng.random(), "amount": rng.gauss(14, 1)} for _ in range(500)]
    >>> found = [(i, d) for i, e in enumerate(events) if (d := monitor.update(e))]
    >>> [(d.streams, d.position > 2000, len(d.current), d.confirmed) for i, d in found]
    [(['amount'], True, 30, True)]
    """

    model: tuple[str, str]
    config: DriftConfig
    detectors: dict[str, Any] = field(default_factory=dict)
    reference: list[dict[str, float]] = field(default_factory=list)
    seen: int = 0
    quiet_until: int = 0
    pending: DriftEvent | None = None

    def _watched(self, name: str) -> bool:
        if name in self.detectors or name in (PREDICTION, ERROR):
            return True
        features = self.config.features
        if features is not None:
            return name in features
        watched_features = len(self.detectors) - sum(
            1 for n in (PREDICTION, ERROR) if n in self.detectors)
        return watched_features < self.config.max_features

    def learn(self, event: dict[str, float]) -> list[str]:
        """Update the detectors; return the streams whose detector fired."""
        drifted = []
        for name, value in event.items():
            if not self._watched(name):
                continue
            detector = self.detectors.get(name)
            if detector is None:
                detector = self.detectors[name] = make_detector(self.config.detector)
            detector.update(value)
            if detector.drift_detected:
                drifted.append(name)
        return drifted

    def update(self, event: dict[str, float]) -> DriftEvent | None:
        """Learn one prediction event; return a drift once its post-change sample is complete."""
        self.seen += 1
        drifted = self.learn(event)
        if self.pending is not None:
            self.pending.current.append(event)
            if len(self.pending.current) >= self.config.post_change or (
                    len(self.pending.current) >= CONFIRM_MIN and self.pending.confirmed):
                found, self.pending = self.pending, None
                self.reference = list(found.current)
                if not found.confirmed:
                    self.quiet_until = self.seen
                return found
            return None
        if drifted and self.seen < self.quiet_until:
            # Changed again right after a drift (a drift that ended, a rollback): the
            # reference learnt from the events after the drift is not the normal any more.
            self.reference = []
        if len(self.reference) < self.config.reference_size:
            self.reference.append(event)
        if drifted and self.seen >= self.quiet_until:
            self.quiet_until = self.seen + self.config.cooldown
            self.pending = DriftEvent(self.model, sorted(drifted), self.seen, self.reference, [],
                                      len(self.detectors))
            self.reference = []
        return None


class DriftTracker:
    """One :class:`ModelDriftMonitor` per model version, bounded in number."""

    def __init__(self, config: DriftConfig) -> None:
        self.config = config
        self.monitors: OrderedDict[tuple[str, str], ModelDriftMonitor] = OrderedDict()

    def update(self, model: tuple[str, str], event: dict[str, float]) -> DriftEvent | None:
        monitor = self.monitors.get(model)
        if monitor is None:
            while len(self.monitors) >= self.config.max_models:
                self.monitors.popitem(last=False)
            monitor = self.monitors[model] = ModelDriftMonitor(model, self.config)
        else:
            self.monitors.move_to_end(model)
        return monitor.update(event)

    # ------------------------------------------------------------------ state
    def to_state(self) -> dict[str, Any]:
        """Samples and counters; detectors are rebuilt by replaying the reference sample
        (river's detectors have no stable serialized form, and pickle is not safe to load).
        A drift waiting for its post-change sample is kept whole."""
        return {
            "models": [
                {"model": list(key), "reference": m.reference, "seen": m.seen,
                 "quiet_until": m.quiet_until,
                 "pending": None if m.pending is None else {
                     "streams": m.pending.streams, "position": m.pending.position,
                     "reference": m.pending.reference, "current": m.pending.current,
                     "monitored": m.pending.monitored}}
                for key, m in self.monitors.items()
            ]
        }

    def restore(self, state: dict[str, Any]) -> None:
        self.monitors.clear()
        for item in state["models"]:
            model = (item["model"][0], item["model"][1])
            monitor = ModelDriftMonitor(model, self.config)
            for event in item["reference"]:
                monitor.learn(event)
            monitor.reference = item["reference"]
            monitor.seen, monitor.quiet_until = int(item["seen"]), int(item["quiet_until"])
            pending = item["pending"]
            if pending is not None:
                monitor.pending = DriftEvent(model, pending["streams"], pending["position"],
                                             pending["reference"], pending["current"],
                                             pending["monitored"])
            self.monitors[model] = monitor


def prediction_event(attributes: dict[str, str], feature_prefix: str = "feature.") -> dict[str, float]:
    """The numeric streams of one prediction record's attributes (non-numeric ones are skipped).

    >>> prediction_event({"prediction": "0.7", "label": "1", "feature.amount": "12.5",
    ...                   "feature.country": "DE"})
    {'prediction': 0.7, 'error': 0.30000000000000004, 'amount': 12.5}
    """
    event: dict[str, float] = {}
    prediction = _number(attributes.get(PREDICTION))
    if prediction is not None:
        event[PREDICTION] = prediction
        label = _number(attributes.get("label"))
        if label is not None:
            event[ERROR] = abs(prediction - label)
    for key, value in attributes.items():
        if key.startswith(feature_prefix):
            number = _number(value)
            if number is not None:
                event[key[len(feature_prefix):]] = number
    return event


def _number(value: str | None) -> float | None:
    if value is None or value == "":
        return None
    if value in ("true", "false"):
        return float(value == "true")
    try:
        number = float(value)
    except ValueError:
        return None
    return number if math.isfinite(number) else None
