"""Closed windows in, detections out: one series model per function (or cost center) and metric.

Metrics map to detection kinds, each with the direction that hurts: latency percentiles,
error rate, cold-start rate and spend are anomalous when they rise, throughput when it
drops. A value in the harmless direction (a function getting faster) is fed to its model
as the running mean, so it neither alarms nor damps the score of the next real regression.

An *episode* is a run of anomalous windows of one series and kind: it yields one detection
when it opens and one clearing after ``clear_after`` normal windows, sharing an ``id``, so
the feedback loop acts once and resolves the alert. A window is scored once, when it
closes; data arriving later updates the stored window but never opens a second episode.

Episodes take the place of the series detector's refractory period here, so the scorer asks
the detector for its *undamped* score (``score_learn_one(..., damped=False)``). The
refractory period (after an alarm, the next ``refractory`` = 50 points score 0) is right for
``obsloop score-series`` and NAB, where every point is scored on its own and an incident
must yield one alarm, and it stays their default. In the service it would make a series
blind for 50 windows after any alarm, a false one included: a false latency alarm
followed three windows later by a real slowdown, or a regression arriving after an episode
cleared but within the 50 windows, went undetected. While an episode is open, a *relapse*
(anomalous again after ``relapse_after`` normal windows) or an *escalation* (values
``escalate_ratio`` times as far past the baseline as the episode's worst) opens a new
episode with a new id, so the feedback loop can act on it (see :meth:`WindowScorer._episode`).
``bench/detect/run.py --spike-at`` measures it end to end.

An episode is *confirmed* once the anomaly has been there ``confirm_after`` windows in a
row, counted from a window scoring above the threshold, each later one scoring above it or
with values still outside the episode's baseline. The score alone would not do: after a
recent blip, a sustained 3x regression scored 1.0 in its first window and 0.49 in the next
ones, as the detector's surprise history had widened. Values off the baseline alone must not
start a run: with 20 invocations a window, two cold starts put p95 outside its range while
the model, which has learnt that this p95 jumps, scores 0.3 (``bench/detect/run.py --seed
12 --spike-at 357 --spike-factor 3 --factor 8``: two such windows in a row on embedder).
Its opening detection alerts at once, with a severity of at most ``error``; when it is
confirmed, a second detection with the same id and severity ``critical`` follows, and that
is what the feedback loop changes deployments on (the policy's ``minSeverity``). The alert
is not sent again (same fingerprint, already firing).

Why: a window's percentiles jump on their own. With 3 % cold starts, its p95 sits at the
edge of the cold-start mass and leaps from about 2x to 10x the median whenever a few more
invocations than usual start cold. Replayed through this scorer, three runs of the demo
(eight functions, 200 invocations per 10-second window) opened 98 latency, cold-start and
error-rate episodes on normal traffic; one of them was still there in the next window (where
replayed and live traffic meet, before the feedback loop starts), while both injected
regressions were, in every run. Acting on the first window committed memory changes for
those blips, and a blip's cooldown then held back the real fix.

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


SEVERITY_RANK: dict[str, int] = {"info": 0, "warning": 1, "error": 2, "critical": 3}


def reported_severity(score: float, confirmed: bool) -> Severity:
    """The severity a window detection carries: ``critical`` once its episode is confirmed,
    else its score's, at most ``error`` (one window, however extreme, is not yet a reason
    to change a deployment).

    >>> reported_severity(1.0, False), reported_severity(0.6, False), reported_severity(0.6, True)
    ('error', 'warning', 'critical')
    """
    return "critical" if confirmed else "error" if score >= 0.9 else "warning"


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
    back inside, not merely when the model has got used to the new level. An episode that
    follows another one (a relapse or an escalation) inherits it: the range from before the
    incident, not one that has learnt the incident's values."""
    normal_run: int = 0
    severity: Severity = "critical"
    """Its score's severity when it opened: an escalation must score at least as high
    (``critical`` for an episode restored from a checkpoint written before severities were
    kept: it is never escalated on severity)."""
    peak: float | None = None
    """The largest :meth:`excess` of its windows so far (``None``: not known yet, e.g.
    restored from an older checkpoint; the next window sets it)."""
    recovered: bool = False
    """Whether it has had ``relapse_after`` normal windows in a row (it is kept open until
    ``clear_after``, but a new anomalous window is then a new incident)."""
    anomalous_run: int = 1
    """Windows in a row, up to the latest, from one that scored above the threshold, in each
    of which the anomaly was still there: a score above the threshold, or values still
    outside the baseline (0 after a normal window, and until a window scores above it)."""
    confirmed: bool = True
    """Whether ``anomalous_run`` has reached ``confirm_after`` (the confirmation was sent).
    True for an episode restored from a checkpoint written before confirmations: its
    detection was acted on when it opened."""
    confirmed_at: float | None = None
    """Start (epoch) of the window that confirmed it. Escalations count ``escalate_after``
    from there too: that window may be the first, partial one of the incident the feedback
    loop then acts on (a blip followed by a regression), and the regression's first full
    window is not a second incident."""

    def is_normal(self, observed: dict[str, float]) -> bool:
        for metric, value in observed.items():
            low, high = self.baseline.get(metric, (-math.inf, math.inf))
            direction = METRICS[metric][1]
            if (direction == UP and value > high) or (direction == DOWN and value < low):
                return False
        return True

    def excess(self, observed: dict[str, float]) -> float:
        """How far the worst metric is from the middle of its baseline range in the harmful
        direction, in half-widths of that range (1 = at its edge, 0 or less = harmless).

        >>> ep = Episode("e", 0.0, {"p50_ms": (30.0, 50.0), "p95_ms": (0.0, 200.0)})
        >>> ep.excess({"p50_ms": 80.0, "p95_ms": 150.0})  # p50: (80 - 40) / 10
        4.0
        >>> ep.excess({"p50_ms": 35.0, "p95_ms": 90.0})
        -0.1
        """
        worst = -math.inf
        for metric, value in observed.items():
            if metric not in self.baseline:
                continue
            low, high = self.baseline[metric]
            mid, half = (low + high) / 2.0, (high - low) / 2.0
            away = (value - mid) * METRICS[metric][1]
            u = away / half if half > 0.0 else (math.inf if away > 0.0 else 0.0)
            worst = max(worst, u)
        return worst if worst > -math.inf else 0.0


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
        relapse_after: int = 2,
        escalate_ratio: float = 2.5,
        escalate_after: int = 2,
        confirm_after: int = 2,
    ) -> None:
        self.pool = SeriesDetectorPool(max_series=max_series, idle_seconds=idle_seconds,
                                       factory=factory)
        self.threshold = threshold
        self.clear_after = clear_after
        self.relapse_after = relapse_after
        """Normal windows in a row after which a new anomalous window of an open episode is
        a new incident (a relapse); 0 turns relapses off."""
        self.escalate_ratio = escalate_ratio
        """How many times the episode's peak :meth:`Episode.excess` a window must reach to
        escalate (see :meth:`_episode`); 0 turns escalations off."""
        self.escalate_after = escalate_after
        """Windows after its opening before an episode can escalate: an incident that starts
        within a window is only partly in its first one (p95 up, p50 not yet), and its first
        full window must not count as an escalation of the partial one (simulated: an 8x
        regression starting in the last 20-40 % of a window split in two in 4-6 runs of 20
        without this, none with it)."""
        self.confirm_after = confirm_after
        """Windows in a row with the anomaly still there that confirm an episode (its
        ``critical`` detection, the one the feedback loop acts on); 1 confirms it when it
        opens."""
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
            # function getting faster is never surprising (and never learnt as a new normal
            # range that would hide a real regression after it).
            fed = value if rng.n == 0 else (
                max(value, rng.mean) if direction == UP else min(value, rng.mean))
            # Undamped: episodes play the refractory period's role here (see the module
            # docstring); the pool's own score_learn_one would apply it.
            score = self.pool.score_learn_one(series_id, fed, t, damped=False)
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
        """One window of one series and kind through its episode: a detection when an
        episode opens (or follows another one), a clearing when it is over, else nothing.

        Scores here are the detector's *undamped* ones (see the module docstring), so an
        open episode is what stands between a run of anomalous windows and a page per
        window. Two things still open a new episode while one is open, because the first
        detection (and the feedback action taken on it, which is idempotent per detection
        id) was about something else:

        * a **relapse**: the episode had ``relapse_after`` normal windows in a row (values
          back inside its baseline, score below the threshold) and a window scores above the
          threshold again. A one-window false alarm followed a few windows later by a real
          regression is two incidents; a sustained regression whose score flickers around the
          threshold is not a relapse, since its values stay outside the baseline.
        * an **escalation**: a window at least ``escalate_after`` windows after the opening
          scores above the threshold, at least at the episode's severity, with values
          ``escalate_ratio`` times as far past the baseline as the episode's worst window so
          far (:meth:`Episode.excess`): a 2x slowdown (or a false spike) followed by an 8x
          one. Severity alone does not escalate: a level shift's score typically climbs from
          ``warning`` to ``critical`` over its first windows as the detector's short average
          builds up, and that is one regression, not two. The ratio is 2.5 rather than 2
          because per-window percentiles of a few dozen invocations are noisy: on simulated
          fleet traffic (20 invocations per window) a sustained 2x regression split in two at
          2 (1 run in 20) and never at 2.5 (40 runs), while a 3x spike followed by an 8x
          regression escalated in 39 of 40 runs (36 at 3).

        The new episode inherits the baseline (the range from before the incident) and gets
        a new id, so the feedback loop can act on it; the alert is the same (its fingerprint
        is series and kind), so on-call is not paged again within ``repeat_interval``. The
        episode it replaces gets no clearing of its own: its successor's clearing resolves
        the alert.
        """
        key = f"{kind}|{entity}"
        episode = self.episodes.get(key)
        score = entry["score"]
        labels = _entity_labels(entity)
        anomalous = score >= self.threshold
        if episode is None:
            if not anomalous:
                return None
            return self._open(key, kind, labels, entry, start, end, t, dict(entry["expected"]))
        excess = episode.excess(entry["observed"])
        if anomalous:
            after = None
            if episode.recovered:
                after = "relapse"
            elif (self.escalate_ratio > 0.0 and episode.peak is not None
                  and t - max(episode.opened, episode.confirmed_at or episode.opened)
                  >= self.escalate_after * (end - start).total_seconds()
                  and SEVERITY_RANK[severity(score)] >= SEVERITY_RANK[episode.severity]
                  and math.isfinite(excess)  # not against a zero-width baseline
                  and excess >= self.escalate_ratio * max(episode.peak, 1.0)):
                after = "escalation"
            if after is not None:
                return self._open(key, kind, labels, entry, start, end, t, episode.baseline,
                                  follows=(after, episode))
        episode.peak = excess if episode.peak is None else max(episode.peak, excess)
        if anomalous or not episode.is_normal(entry["observed"]):
            episode.normal_run = 0
            if anomalous or episode.anomalous_run:
                episode.anomalous_run += 1
            if not episode.confirmed and episode.anomalous_run >= self.confirm_after:
                episode.confirmed, episode.confirmed_at = True, t
                return self._confirm(episode, kind, labels, entry, start, end)
            return None
        episode.anomalous_run = 0
        episode.normal_run += 1
        if self.relapse_after > 0 and episode.normal_run >= self.relapse_after:
            episode.recovered = True
        if episode.normal_run < self.clear_after:
            return None
        del self.episodes[key]
        return Detection(
            id=episode.id, time=end, series=labels, kind=kind, score=score, severity="info",
            observed=entry["observed"], expected=entry["expected"], cleared=True,
            summary=f"{kind} back to normal on {_target(labels)} since {start:%Y-%m-%d %H:%M}Z",
        )

    def _open(self, key: str, kind: Kind, labels: dict[str, str], entry: dict[str, Any],
              start: datetime, end: datetime, t: float,
              baseline: dict[str, tuple[float, float]],
              follows: tuple[str, Episode] | None = None) -> Detection:
        score = entry["score"]
        digest = hashlib.sha256(f"{key}|{t}".encode()).hexdigest()[:16]
        episode = self.episodes[key] = Episode(f"{kind}-{digest}", t, dict(baseline),
                                               severity=severity(score),
                                               confirmed=self.confirm_after <= 1)
        episode.peak = episode.excess(entry["observed"])
        expected = {m: baseline.get(m, r) for m, r in entry["expected"].items()}
        summary = _summary(kind, labels, {**entry, "expected": expected}, start)
        if follows is not None:
            summary += f" ({follows[0]} after {follows[1].id})"
        return Detection(
            id=episode.id, time=end, series=labels, kind=kind, score=min(score, 1.0),
            severity=reported_severity(score, episode.confirmed), observed=entry["observed"],
            expected=expected, summary=summary,
        )

    def _confirm(self, episode: Episode, kind: Kind, labels: dict[str, str],
                 entry: dict[str, Any], start: datetime, end: datetime) -> Detection:
        """The confirmation of an open episode: its id, this window's values against the
        episode's baseline, severity ``critical``."""
        expected = {m: episode.baseline.get(m, r) for m, r in entry["expected"].items()}
        summary = _summary(kind, labels, {**entry, "expected": expected}, start)
        return Detection(
            id=episode.id, time=end, series=labels, kind=kind, score=min(entry["score"], 1.0),
            severity=reported_severity(entry["score"], True), observed=entry["observed"],
            expected=expected,
            summary=f"{summary} (confirmed: {episode.anomalous_run} anomalous windows in a row)",
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
            # [id, opened, normal_run, baseline, severity, peak, recovered, anomalous_run,
            # confirmed, confirmed_at]: the first four are the original format, which
            # restore still reads.
            "episodes": {k: [e.id, e.opened, e.normal_run, e.baseline, e.severity,
                             None if e.peak is None else min(e.peak, 1e300), e.recovered,
                             e.anomalous_run, e.confirmed, e.confirmed_at]
                         for k, e in self.episodes.items()},
            "last_seen": self.last_seen,
        }

    def restore(self, state: dict[str, Any]) -> None:
        self.pool.restore(state["pool"])
        self.ranges = {sid: ExpectedRange.from_state(r) for sid, r in state["ranges"].items()}
        self.episodes = {k: _episode_from_state(e) for k, e in state["episodes"].items()}
        self.last_seen = {e: float(s) for e, s in state["last_seen"].items()}


def _episode_from_state(e: list[Any]) -> Episode:
    """An episode from its checkpoint list; the fields after the fourth are optional (an
    older checkpoint has none: see :class:`Episode` for what they then default to)."""
    episode = Episode(e[0], float(e[1]), {m: (r[0], r[1]) for m, r in e[3].items()}, int(e[2]))
    if len(e) > 4 and e[4] in SEVERITY_RANK:
        episode.severity = e[4]
    if len(e) > 5 and e[5] is not None:
        episode.peak = float(e[5])
    if len(e) > 6:
        episode.recovered = bool(e[6])
    if len(e) > 8:
        episode.anomalous_run, episode.confirmed = int(e[7]), bool(e[8])
    if len(e) > 9 and e[9] is not None:
        episode.confirmed_at = float(e[9])
    return episode


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
