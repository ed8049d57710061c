"""Closed windows in, detections out: one series model per function (or cost center) and metric,
and count-aware tests of every window against its baseline.

Metrics map to detection kinds, each with the direction that hurts: latency percentiles,
error rate, cold-start rate and spend are anomalous when they rise, throughput when it
drops. A value in the harmless direction is fed to its model as the running mean, so it
neither alarms nor damps the score of the next real regression.

A window is anomalous for a kind when a count-aware test (:mod:`.evidence`) puts one of its
statistics outside the range the baseline allows for the window's counts *and* the series
model scores it above the threshold (the model knows the series' rhythm and history, the
test knows how many invocations the statistic rests on), or the statistic is far out
(``CLEAR_FACTOR``). The detection shows those tests:
each statistic's observed value, the range it was judged against and how far out it is.

An *episode* is a run of anomalous windows of one series and kind, sharing an ``id``. Paging
follows Prometheus' ``for:``: the opening detection is *pending* (stored, on the dashboards,
not paged) unless it is *extreme*; once the anomaly has lasted ``confirm_after`` windows in
a row, counted from a window the model scored above the threshold, each later one still out
of range against the baseline from before the episode, the same id follows as ``critical``,
which pages and which the feedback loop acts on; so does a test of the last ``confirm_after``
windows' counts summed (:meth:`WindowScorer._pooled`), which tells a 3x error rate at 150
calls a window from noise where each window alone cannot. A clearing follows
``clear_after`` normal windows. Relapses and escalations open a new episode while one is open (see
:meth:`WindowScorer._episode`); the scorer asks the series model for its *undamped* score
because episodes take the place of its refractory period. docs/design/paging.md tells why,
with the measurements behind each choice.

Windows in which a known function received nothing are scored as zero throughput, but only
while the function was seen within the idle expiry; when most of the fleet drops at once,
no function's throughput is judged (the pipeline or the load dropped, not the functions).
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from obsloop.core import semconv
from obsloop.detectors.detection import Detection, Kind, Severity
from obsloop.detectors.evidence import (
    DOWN,
    MIN_WINDOWS,
    SHAPE,
    UP,
    Baseline,
    Count,
    Evidence,
    Sample,
    count_from_state,
    is_tail,
    judge,
    source,
    summed,
    throughput,
)
from obsloop.detectors.series import SeriesAnomalyDetector
from obsloop.detectors.series_pool import SeriesDetectorPool
from obsloop.detectors.windows import SeriesKey, Window

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
HELD: frozenset[Kind] = frozenset({"throughput"})
"""Kinds judged against the baseline from before a previous window past it (see
:meth:`WindowScorer._reference`): throughput's Holt forecast moves a fifth of the way to a
window at once. The rates and the spend per call learn 2 % of a window, too little to
matter (holding them too changed no fault in the bench and added a false page in its
warm-up); latency's levels learn clipped."""
EXTREME_MIN_ERRORS = 5
"""Errors a window needs to page at once as failing most calls (3 of 5 does not)."""
MIN_POOLED_CALLS = 60
"""Calls a sum of windows needs before its rates or spend are tested: a low-traffic
function's 3 errors in 7 calls over two windows, or an ordinary one's spend with a few
cold starts in 50 calls, paged on noise (four false pages in the bench's seed 2)."""
STILL_ALPHA = 0.05
"""A window of an open episode with a count past its baseline at this (loose) level is not a
normal one: a 3x error rate's windows are mostly not significant alone, and counting them
as normal split one incident into a page and a relapse."""
CLEAR_FACTOR = 1.25
"""A statistic this many times past its range's edge opens an episode whatever the series
model scores: after a recent blip the model's surprise history is wide, and a sustained
regression right after it scored below the threshold for all its windows."""


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
    reference: Baseline
    """The entity's baseline when the episode opened: its windows are judged against the
    time before the anomaly, not against a baseline that has learnt the anomaly's values.
    An episode that follows another one (a relapse or an escalation) inherits it."""
    normal_run: int = 0
    severity: Severity = "critical"
    """Its score's severity when it opened: an escalation must score at least as high."""
    peak: float | None = None
    """The largest :func:`excess` of its windows so far (``None``: not known yet)."""
    recovered: bool = False
    """Whether it has had ``relapse_after`` normal windows in a row (it is kept open until
    ``clear_after``, but a new anomalous window is then a new incident)."""
    anomalous_run: int = 1
    """Windows in a row, up to the latest, from one that scored above the threshold, in each
    of which a statistic was still out of range (0 after a normal window, and until a
    window scores above the threshold)."""
    confirmed: bool = True
    """Whether ``anomalous_run`` has reached ``confirm_after`` (the confirmation was sent)."""
    confirmed_at: float | None = None
    """Start (epoch) of the window that confirmed it. Escalations count ``escalate_after``
    from there too (the confirming window may be the first, partial one of an incident)."""
    paged: bool = False
    """Whether a detection of it was sent unpending (extreme, or confirmed): its clearing
    then resolves a page, else it is pending too."""


def excess(evidence: dict[str, Evidence]) -> float:
    """How far the worst statistic is past its range's edge, as a ratio (> 1 when out). The
    tail tests are left out (:func:`~obsloop.detectors.evidence.is_tail`): how far out they
    are says little of how much worse things got (an 8x slowdown after a 1.5x one)."""
    return max((e.factor for m, e in evidence.items() if not is_tail(m)), default=0.0)


def _entity_labels(entity: str) -> dict[str, str]:
    if entity.startswith(COST_CENTER_PREFIX):
        return {semconv.COST_CENTER: entity[len(COST_CENTER_PREFIX):]}
    return SeriesKey.from_id(entity).labels()


@dataclass
class _Kind:
    """One window of one entity and kind, while it is scored."""

    score: float = 0.0
    metrics: list[str] = field(default_factory=list)


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
    >>> d.kind, d.pending, d.observed["p95_ms"] > d.expected["p95_ms"][1]
    ('latency', True, True)
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
        evidence_alpha: float = 1e-3,
        extreme_latency_ratio: float = 4.0,
        extreme_error_rate: float = 0.5,
        extreme_alpha: float = 1e-6,
    ) -> None:
        self.pool = SeriesDetectorPool(max_series=max_series, idle_seconds=idle_seconds,
                                       factory=factory)
        self.threshold = threshold
        self.clear_after = clear_after
        self.relapse_after = relapse_after
        """Normal windows in a row after which a new anomalous window of an open episode is
        a new incident (a relapse); 0 turns relapses off."""
        self.escalate_ratio = escalate_ratio
        """How many times the episode's peak :func:`excess` a window must reach to escalate
        (see :meth:`_episode`); 0 turns escalations off."""
        self.escalate_after = escalate_after
        """Windows after its opening (or confirmation) before an episode can escalate: an
        incident that starts within a window is only partly in its first one."""
        self.confirm_after = confirm_after
        """Windows in a row with the anomaly still there that confirm an episode (its
        ``critical`` detection, which pages); 1 confirms it when it opens."""
        self.evidence_alpha = evidence_alpha
        """Significance of the count-aware tests (per statistic and window)."""
        self.extreme_latency_ratio = extreme_latency_ratio
        """A window whose p50 is at least this many times its baseline's (by its lower
        confidence bound) pages at once; 0 turns it off."""
        self.extreme_error_rate = extreme_error_rate
        """A window failing at least this share of its calls (significantly above its
        baseline) pages at once; 0 turns it off."""
        self.extreme_alpha = extreme_alpha
        """An error or cold-start rate above its baseline at this significance, the
        baseline's own sampling error counted (:meth:`Baseline.overwhelming`), pages at
        once; 0 turns it off."""
        self.ranges: dict[str, ExpectedRange] = {}
        self.baselines: dict[str, Baseline] = {}
        self.episodes: dict[str, Episode] = {}
        self.last_seen: dict[str, float] = {}
        """Entity id -> window start (epoch) of its last window with data."""
        self.recent: dict[str, tuple[float, list[dict[str, Count]]]] = {}
        """Entity id -> start (epoch) of its latest window scored and the tallies of its last
        ``confirm_after - 1`` windows, oldest first: the pooled confirmation sums them."""
        self.held: dict[str, tuple[float, frozenset[Kind], Baseline]] = {}
        """Entity id -> start (epoch) of its latest window, the kinds whose counts were past
        their baseline in it, and the baseline from before it (:meth:`_reference`)."""

    @property
    def idle_seconds(self) -> float:
        return self.pool.idle_seconds

    def process(self, start: datetime, windows: Iterable[Window]) -> list[Detection]:
        """Score the windows that start at ``start`` (all series); return new detections."""
        t = start.timestamp()
        windows = list(windows)
        by_entity: dict[str, tuple[Sample, int]] = {}
        seconds = 0
        for w in windows:
            by_entity[w.key.id] = (Sample(w.metrics, w.invocations, w.errors, w.cold_starts,
                                          w.quantile_function() if w.invocations else None,
                                          w.cost_usd), w.seconds)
            seconds = w.seconds
            self.last_seen[w.key.id] = t
        for entity, center in self._centers(windows, t).items():
            by_entity[entity] = (center, seconds)
        for entity, seen in self.last_seen.items():
            if entity not in by_entity and not entity.startswith(COST_CENTER_PREFIX) \
                    and t - seen <= self.idle_seconds:
                by_entity[entity] = (Sample({"invocations": 0.0}), seconds)
        fleet_drop = self._fleet_drop(by_entity)
        detections = []
        for entity, (sample, window_seconds) in by_entity.items():
            detections += self._score_entity(entity, sample, start, window_seconds, fleet_drop)
        self._expire(t)
        return detections

    def process_cost_centers(self, start: datetime, windows: Iterable[Window],
                             seconds: int) -> list[Detection]:
        """Score the cost centers' spend only, as :meth:`process` does (same ids, labels and
        episodes): a detector worker's global loop, whose partition loops score the
        functions."""
        t = start.timestamp()
        detections = []
        for entity, center in self._centers(windows, t).items():
            detections += self._score_entity(entity, center, start, seconds)
        self._expire(t)
        return detections

    def _centers(self, windows: Iterable[Window], t: float) -> dict[str, Sample]:
        """Spend and invocations per cost center (entity id -> sample)."""
        centers: dict[str, Sample] = {}
        for w in windows:
            if w.cost_center:
                entity = COST_CENTER_PREFIX + w.cost_center
                center = centers.setdefault(entity, Sample({"cost_usd": 0.0}))
                center.cost += w.cost_usd
                center.n += w.invocations
                center.metrics["cost_usd"] = center.cost
                self.last_seen[entity] = t
        return centers

    def _fleet_drop(self, by_entity: dict[str, tuple[Sample, int]]) -> bool:
        """Whether most of the fleet (at least three functions) has too few invocations in
        this window: then it is the pipeline or the load that dropped (a sender starved of
        CPU, a collector behind), shown by ``/readyz`` and the ingest metrics, and a
        throughput page per function would be one cause paged many times."""
        judged = low = 0
        for entity, (sample, _) in by_entity.items():
            baseline = self.baselines.get(entity)
            if entity.startswith(COST_CENTER_PREFIX) or baseline is None \
                    or baseline.windows < MIN_WINDOWS:
                continue
            judged += 1
            low += throughput(sample.n, max(baseline.throughput.forecast(), 0.0),
                              self.evidence_alpha).out
        return judged >= 3 and low > judged / 2

    def _score_entity(self, entity: str, sample: Sample, start: datetime,
                      seconds: int, fleet_drop: bool = False) -> list[Detection]:
        t = start.timestamp()
        per_kind: dict[Kind, _Kind] = {}
        for metric, value in sample.metrics.items():
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
            # Undamped: episodes play the refractory period's role here.
            score = self.pool.score_learn_one(series_id, fed, t, damped=False)
            harmful = (value - rng.mean) * direction > 0 if rng.n else False
            rng.learn_one(value)
            entry = per_kind.setdefault(kind, _Kind())
            entry.metrics.append(metric)
            if harmful:
                entry.score = max(entry.score, score)
        baseline = self.baselines.get(entity)
        if baseline is None:
            baseline = self.baselines[entity] = Baseline()
        history = self._history(entity, t, seconds)
        counted: dict[str, Count] = {}
        out = []
        end = start + timedelta(seconds=seconds or 0)
        held = self.held.pop(entity, None)
        for kind, entry in per_kind.items():
            episode = self.episodes.get(f"{kind}|{entity}")
            reference = episode.reference if episode is not None else \
                self._reference(kind, baseline, held, t, seconds)
            tallies = {test: tally for test, tally in reference.tallies(sample).items()
                       if source(test) in entry.metrics
                       and not (fleet_drop and test == "invocations")}
            tests = reference.evidence(sample, self.evidence_alpha, tallies)
            judged = {m: e for m, e in tests.items() if source(m) in entry.metrics}
            counted |= tallies
            detection = self._episode(entity, kind, entry.score, judged,
                                      self._pooled(tallies, history), sample, start, end, t,
                                      any(e.out for e in judge(tallies, STILL_ALPHA).values()))
            if detection is not None:
                out.append(detection)
        if self.confirm_after > 1:
            self.recent[entity] = (t, [*history, counted][1 - self.confirm_after:])
            past = frozenset(METRICS[source(test)][0] for test, tally in counted.items()
                             if tally.elevated and METRICS[source(test)][0] in HELD)
            if past:
                self.held[entity] = (t, past, baseline.copy())
        baseline.learn(sample)  # after: an opening episode copies the baseline without it
        return out

    @staticmethod
    def _reference(kind: Kind, baseline: Baseline,
                   held: tuple[float, frozenset[Kind], Baseline] | None, t: float,
                   seconds: int) -> Baseline:
        """The baseline a window of ``kind`` is judged against outside an episode: the one
        from before the previous window when that window's counts of ``kind`` were already
        past it, else the current one. A fault's first window, not significant alone, must
        not teach the baseline before its second is judged: a halved throughput lowers the
        Holt forecast by a tenth in one window, and the two windows' summed counts then
        fall short of significance by a few calls."""
        if held is not None and seconds and t - held[0] == seconds and kind in held[1]:
            return held[2]
        return baseline

    def _history(self, entity: str, t: float, seconds: int) -> list[dict[str, Count]]:
        """The tallies of the windows right before ``t`` (none after a gap)."""
        last = self.recent.get(entity)
        return last[1] if last is not None and seconds and t - last[0] == seconds else []

    def _pooled(self, tallies: dict[str, Count],
                history: list[dict[str, Count]]) -> dict[str, Evidence]:
        """The tests of the summed tallies of the last ``confirm_after`` windows (this one's
        included), for each statistic past its baseline in every one of them and in line
        with their sum (:meth:`Tally.consistent`: not one window far out): an anomaly
        that lasts that long is confirmed by their counts together, which tell a 3x error
        rate at 1 % of 150 calls a window from noise where no single window can (M out of
        N on the sum, rather than each window significant on its own)."""
        if self.confirm_after < 2 or len(history) < self.confirm_after - 1:
            return {}
        sums: dict[str, Count] = {}
        for test, tally in tallies.items():
            found = [window.get(test) for window in history]
            parts = [part for part in found if part is not None and part.elevated]
            if len(parts) < len(found) or not tally.elevated:
                continue
            parts.append(tally)
            total = summed(parts)
            if total is not None and (test == "invocations" or total.trials >= MIN_POOLED_CALLS):
                sums[test] = total
        return judge(sums, self.evidence_alpha)

    def _extreme(self, kind: Kind, evidence: dict[str, Evidence], sample: Sample,
                 reference: Baseline) -> bool:
        """Whether the window is out of range by so much that it pages at once: a p50 (its
        lower confidence bound) ``extreme_latency_ratio`` times its baseline, most calls
        failing, or an error or cold-start rate significant at ``extreme_alpha`` (a 25 %
        cold-start storm on a busy function: waiting a window for a second one adds
        nothing)."""
        if kind == "latency" and self.extreme_latency_ratio > 0:
            p50 = evidence.get("p50_ms")
            base = reference.percentiles.get("p50_ms")
            return bool(p50 is not None and p50.out and base is not None
                        and p50.bound >= self.extreme_latency_ratio * base.forecast() > 0)
        if kind in ("error_rate", "cold_start") and self.extreme_alpha > 0 and any(
                evidence[m].out for m in reference.overwhelming(sample, self.extreme_alpha)
                if m in evidence):
            return True
        if kind == "error_rate" and self.extreme_error_rate > 0:
            errors = evidence.get("error_rate")
            return bool(errors is not None and errors.out and sample.errors >= EXTREME_MIN_ERRORS
                        and errors.observed >= self.extreme_error_rate)
        return False

    def _episode(self, entity: str, kind: Kind, score: float, evidence: dict[str, Evidence],
                 pooled: dict[str, Evidence], sample: Sample, start: datetime, end: datetime,
                 t: float, elevated: bool = False) -> Detection | None:
        """One window of one series and kind through its episode: a detection when an
        episode opens (or follows another one), is confirmed or turns extreme, a clearing
        when it is over, else nothing.

        ``pooled`` are the tests of the last ``confirm_after`` windows' counts summed
        (:meth:`_pooled`): one out of range confirms the anomaly, opening the episode
        confirmed if no window alone opened it. An ``elevated`` window (a count past its
        baseline at ``STILL_ALPHA``) is not a normal one: it keeps an open episode from
        clearing or counting towards a relapse, though it does not extend a run.

        Two things open a new episode while one is open, because the first detection (and
        the feedback action taken on it, idempotent per id) was about something else:

        * a **relapse**: the episode had ``relapse_after`` normal windows in a row and a
          window is anomalous again;
        * an **escalation**: a window at least ``escalate_after`` windows after the opening
          (or the confirmation), scoring at least at the episode's severity, with a
          statistic ``escalate_ratio`` times as far out as the episode's worst so far
          (a 2x slowdown, or a false spike, followed by an 8x one).

        The new episode inherits the reference baseline and gets a new id; the alert is the
        same (its fingerprint is series and kind). The episode it replaces gets no clearing
        of its own: its successor's clearing resolves the alert.
        """
        key = f"{kind}|{entity}"
        episode = self.episodes.get(key)
        labels = _entity_labels(entity)
        out_of_range = any(e.out for e in evidence.values())
        reference = episode.reference if episode is not None else self.baselines[entity]
        extreme = out_of_range and self._extreme(kind, evidence, sample, reference)
        worst = excess(evidence)
        anomalous = out_of_range and (score >= self.threshold or extreme
                                      or worst >= CLEAR_FACTOR)
        # Latency has rhythms its levels do not follow (busy hours slower): a level's summed
        # counts need the model's word too, a test of the tail's shape does not.
        sustained = [e for test, e in pooled.items() if e.out and (
            kind != "latency" or test in SHAPE or score >= self.threshold)]
        shown = evidence | {e.metric: e for e in sustained}
        if episode is None:
            if not (anomalous or sustained):
                return None
            return self._open(key, kind, labels, score, shown, start, end, t,
                              self.baselines[entity].copy(), extreme, sustained=bool(sustained))
        if anomalous or sustained:
            after = None
            if episode.recovered:
                after = "relapse"
            elif (self.escalate_ratio > 0.0 and episode.peak is not None
                  and t - max(episode.opened, episode.confirmed_at or episode.opened)
                  >= self.escalate_after * (end - start).total_seconds()
                  and SEVERITY_RANK[severity(score)] >= SEVERITY_RANK[episode.severity]
                  and math.isfinite(worst)
                  and worst >= self.escalate_ratio * max(episode.peak, 1.0)):
                after = "escalation"
            if after is not None:
                return self._open(key, kind, labels, score, shown, start, end, t,
                                  episode.reference, extreme, follows=(after, episode),
                                  sustained=bool(sustained))
        episode.peak = worst if episode.peak is None else max(episode.peak, worst)
        if anomalous or out_of_range or sustained:
            episode.normal_run = 0
            if anomalous or episode.anomalous_run:
                episode.anomalous_run += 1
            if not episode.confirmed and (episode.anomalous_run >= self.confirm_after
                                          or sustained):
                episode.confirmed, episode.confirmed_at, episode.paged = True, t, True
                note = f"{episode.anomalous_run} anomalous windows in a row" \
                    if episode.anomalous_run >= self.confirm_after \
                    else _pooled_note(self.confirm_after)
                return self._detection(episode, kind, labels, score, shown, start, end,
                                       "critical", f"confirmed: {note}")
            if extreme and not episode.paged:
                episode.paged = True
                return self._detection(episode, kind, labels, score, evidence, start, end,
                                       "error", "extreme: paged at once")
            return None
        episode.anomalous_run = 0
        if elevated:
            episode.normal_run = 0
            return None
        episode.normal_run += 1
        if self.relapse_after > 0 and episode.normal_run >= self.relapse_after:
            episode.recovered = True
        if episode.normal_run < self.clear_after:
            return None
        del self.episodes[key]
        return Detection(
            id=episode.id, time=end, series=labels, kind=kind, score=min(score, 1.0),
            severity="info", observed={m: e.observed for m, e in evidence.items()},
            expected={m: (e.low, e.high) for m, e in evidence.items()}, cleared=True,
            pending=not episode.paged,
            summary=f"{kind} back to normal on {_target(labels)} since {start:%Y-%m-%d %H:%M}Z",
        )

    def _open(self, key: str, kind: Kind, labels: dict[str, str], score: float,
              evidence: dict[str, Evidence], start: datetime, end: datetime, t: float,
              reference: Baseline, extreme: bool,
              follows: tuple[str, Episode] | None = None, sustained: bool = False) -> Detection:
        digest = hashlib.sha256(f"{key}|{t}".encode()).hexdigest()[:16]
        confirmed = self.confirm_after <= 1 or sustained
        episode = self.episodes[key] = Episode(f"{kind}-{digest}", t, reference,
                                               severity=severity(score), confirmed=confirmed,
                                               paged=confirmed or extreme)
        episode.peak = excess(evidence)
        if sustained:
            note = f"confirmed: {_pooled_note(self.confirm_after)}"
        elif confirmed:
            note = "confirmed"
        elif extreme:
            note = "extreme: paged at once"
        else:
            note = f"pending: pages if it lasts {self.confirm_after} windows"
        if follows is not None:
            note = f"{follows[0]} after {follows[1].id}; {note}"
        return self._detection(episode, kind, labels, score, evidence, start, end,
                               reported_severity(score, confirmed), note)

    def _detection(self, episode: Episode, kind: Kind, labels: dict[str, str], score: float,
                   evidence: dict[str, Evidence], start: datetime, end: datetime,
                   level: Severity, note: str) -> Detection:
        return Detection(
            id=episode.id, time=end, series=labels, kind=kind, score=min(score, 1.0),
            severity=level, observed={m: e.observed for m, e in evidence.items()},
            expected={m: (e.low, e.high) for m, e in evidence.items()},
            pending=not episode.paged,
            summary=f"{_summary(kind, labels, evidence, start)} ({note})",
        )

    def _expire(self, t: float) -> None:
        """Forget idle entities and the ranges, baselines and episodes of dropped models."""
        self.pool.expire(t)
        self.last_seen = {e: s for e, s in self.last_seen.items() if t - s <= self.idle_seconds}
        if len(self.recent) > len(self.last_seen):
            self.recent = {e: r for e, r in self.recent.items() if e in self.last_seen}
        if len(self.held) > len(self.last_seen):
            self.held = {e: h for e, h in self.held.items() if e in self.last_seen}
        if len(self.ranges) > len(self.pool):
            self.ranges = {sid: r for sid, r in self.ranges.items() if sid in self.pool}
        live = {sid.rsplit("#", 1)[0] for sid in self.ranges}
        if len(self.baselines) > len(live):
            self.baselines = {e: b for e, b in self.baselines.items() if e in live}
        if len(self.episodes) > len(live):
            self.episodes = {k: e for k, e in self.episodes.items()
                             if k.split("|", 1)[1] in live}

    # ------------------------------------------------------------------ state
    def to_state(self) -> dict[str, Any]:
        return {
            "pool": self.pool.to_state(),
            "ranges": {sid: r.to_state() for sid, r in self.ranges.items()},
            "baselines": {e: b.to_state() for e, b in self.baselines.items()},
            # [id, opened, normal_run, (unused), severity, peak, recovered, anomalous_run,
            # confirmed, confirmed_at, reference, paged]: older checkpoints have the first
            # four to ten, which restore still reads.
            "episodes": {k: [e.id, e.opened, e.normal_run, {}, e.severity,
                             None if e.peak is None else min(e.peak, 1e300), e.recovered,
                             e.anomalous_run, e.confirmed, e.confirmed_at,
                             e.reference.to_state(), e.paged]
                         for k, e in self.episodes.items()},
            "last_seen": self.last_seen,
            "recent": {e: [t, [{test: x.to_state() for test, x in window.items()}
                               for window in windows]]
                       for e, (t, windows) in self.recent.items()},
            # Only when some window is held: a checkpoint without it reads back unchanged.
            **({"held": {e: [t, sorted(kinds), b.to_state()] for e, (t, kinds, b) in self.held.items()}}
               if self.held else {}),
        }

    def restore(self, state: dict[str, Any]) -> None:
        self.pool.restore(state["pool"])
        self.ranges = {sid: ExpectedRange.from_state(r) for sid, r in state["ranges"].items()}
        self.baselines = {e: Baseline.from_state(b)
                          for e, b in state.get("baselines", {}).items()}
        self.episodes = {k: self._episode_from_state(k, e) for k, e in state["episodes"].items()}
        self.last_seen = {e: float(s) for e, s in state["last_seen"].items()}
        self.recent = {e: (float(t), [{test: count_from_state(test, x)
                                       for test, x in window.items()} for window in windows])
                       for e, (t, windows) in state.get("recent", {}).items()}
        self.held = {e: (float(t), frozenset(kinds), Baseline.from_state(b))
                     for e, (t, kinds, b) in state.get("held", {}).items()}

    def _episode_from_state(self, key: str, e: list[Any]) -> Episode:
        """An episode from its checkpoint list. Fields after the fourth are optional: an
        older checkpoint's episode was alerted when it opened (paged), and is judged against
        its entity's current baseline (it kept ranges, not a baseline)."""
        entity = key.split("|", 1)[1]
        reference = Baseline.from_state(e[10]) if len(e) > 10 else \
            self.baselines.setdefault(entity, Baseline()).copy()
        episode = Episode(e[0], float(e[1]), reference, int(e[2]),
                          paged=bool(e[11]) if len(e) > 11 else True)
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


def _pooled_note(windows: int) -> str:
    return f"out of range on the counts of its last {windows} windows together"


def _target(labels: dict[str, str]) -> str:
    return (labels.get(semconv.FAAS_NAME) or labels.get(semconv.COST_CENTER)
            or "/".join(filter(None, (labels.get(semconv.MODEL_NAME),
                                      labels.get(semconv.MODEL_VERSION)))) or "series")


def _summary(kind: Kind, labels: dict[str, str], evidence: dict[str, Evidence],
             start: datetime) -> str:
    """The statistics out of range first (value, range, how far out, what they rest on),
    then the others; for latency, whether the median moved or only the tail."""
    out = [e for e in evidence.values() if e.out]
    inside = [e for e in evidence.values() if not e.out]
    cause = ""
    if kind == "latency" and out:
        cause = "median shift: " if any(e.metric == "p50_ms" for e in out) else \
            "tail regression (median in range): "
    text = (f"{kind} anomaly on {_target(labels)} in the window from "
            f"{start.astimezone(UTC):%Y-%m-%d %H:%M}Z: {cause}"
            + "; ".join(e.describe() for e in out))
    if inside:
        text += "; in range: " + ", ".join(
            f"{e.metric}={e.observed:.4g} (expected {max(e.low, 0.0):.4g}..{e.high:.4g})"
            for e in inside)
    return text
