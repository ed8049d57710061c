"""Quality detections: a model version's accuracy, realized or estimated, below its baseline.

Per model version the first ``baseline_labels`` labelled predictions give the baseline
accuracy (and the baseline of the CBPE estimate). After that every window of prediction
time is tested once, when it has ``min_labels`` labels or has settled (``settle_seconds``
past its end): an exact one-sided binomial test of its ``correct`` out of ``labelled``
against ``baseline - min_drop``. The count is what makes it honest: 9 right out of 12 is no
evidence against a baseline of 0.9, 750 out of 1,000 is overwhelming. Settled windows with
fewer than ``min_labels`` labels (low coverage) are pooled with the next ones until they
have that many, so a 5% labelling rate is tested every few windows rather than never.

The estimate is tested the same way on the expected number right and its variance under
calibration (normal approximation); its detections say ``estimated``. A covariate shift
that moves scores towards 0.5 lowers the estimate; a concept drift, which leaves inputs
and scores alone, is only seen by the labels.

As the window detectors do, a drop opens an episode with an ``error`` detection and is
confirmed (``critical``, the severity the feedback policy acts on) by the next tested
window that is also significantly low; ``clear_after`` windows not significantly low close
it. When two versions of a model both have enough labels in a window, the one with fewer
predictions (the canary) is tested against the other with a two-proportion test, and a
worse canary is a ``quality`` detection labelled ``deployment.variant = green``: the
feedback loop rolls it back.
"""

from __future__ import annotations

import logging
import math
from collections import defaultdict
from dataclasses import asdict, dataclass, field, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from obsloop.core import semconv
from obsloop.detectors.config import QualityConfig
from obsloop.detectors.detection import VARIANT, Detection
from obsloop.detectors.quality import QualityReader, QualityWindow

log = logging.getLogger(__name__)


def binomial_cdf(k: int, n: int, p: float) -> float:
    """``P(X <= k)`` for ``X ~ Binomial(n, p)``, summed in log space (exact, stdlib only).

    >>> round(binomial_cdf(9, 12, 0.87), 3), binomial_cdf(750, 1000, 0.87) < 1e-20
    (0.198, True)
    """
    if k >= n:
        return 1.0
    if p <= 0.0:
        return 1.0
    if p >= 1.0:
        return 0.0
    lp, lq = math.log(p), math.log1p(-p)
    base = math.lgamma(n + 1)
    terms = [base - math.lgamma(i + 1) - math.lgamma(n - i + 1) + i * lp + (n - i) * lq
             for i in range(k + 1)]
    top = max(terms)
    return min(1.0, math.exp(top) * sum(math.exp(t - top) for t in terms))


def normal_sf(z: float) -> float:
    """``P(Z > z)`` for a standard normal."""
    return 0.5 * math.erfc(z / math.sqrt(2.0))


@dataclass
class _Version:
    base_labelled: int = 0
    base_correct: int = 0
    base_scored: int = 0
    base_estimated: float = 0.0
    base_span: tuple[float, float] | None = None
    """Prediction time (epoch seconds) the baseline's windows cover, for reports."""
    open: dict[str, str] = field(default_factory=dict)
    """Open episodes: ``realized``/``estimated`` -> detection id."""
    confirmed: dict[str, bool] = field(default_factory=dict)
    normal: dict[str, int] = field(default_factory=dict)
    carry: QualityWindow | None = None
    """Settled windows with too few labels, pooled until they have ``min_labels``."""

    @property
    def baseline(self) -> float | None:
        return self.base_correct / self.base_labelled if self.base_labelled else None

    @property
    def estimated_baseline(self) -> float | None:
        return self.base_estimated / self.base_scored if self.base_scored else None


class QualityWatch:
    """Tests each window of prediction time once its labels are in; keeps the baselines."""

    def __init__(self, config: QualityConfig, clear_after: int = 5, report_dir: Path | None = None) -> None:
        self.config = config
        self.report_dir = report_dir
        """Where Evidently classification reports of realized drops go (none when ``None``)."""
        self._windows: dict[str, QualityWindow] = {}
        self.clear_after = clear_after
        self.versions: dict[tuple[str, str], _Version] = defaultdict(_Version)
        self.tested_until: dict[tuple[str, str], float] = {}
        """Per model version, the start (epoch s) of the last window tested."""
        self.scanned_until: datetime | None = None
        self.counted: dict[str, int] = {}
        """Labels of the windows tested by the last poll: ``joined``, ``late``, ``duplicate``."""
        self.unmatched = 0
        """Labels of the look-back with no prediction (unknown id, or not arrived yet)."""
        self.drift: dict[tuple[str, str], tuple[datetime, str]] = {}
        """Latest input drift per model version (time, summary), quoted by quality detections."""

    def note_drift(self, detection: Detection) -> None:
        """Remember a drift detection: a quality drop of the same model version within the
        label horizon names it (a drop with no input drift is a concept drift)."""
        model = (detection.series.get(semconv.MODEL_NAME, ""), detection.series.get(semconv.MODEL_VERSION, ""))
        if not detection.cleared:
            self.drift[model] = (detection.time, detection.summary)

    @property
    def horizon_seconds(self) -> float:
        return self.config.horizon_days * 86_400.0

    def poll(self, client: Any, database: str, until: datetime) -> list[Detection]:
        """Test the windows ending by ``until`` (event time) that are ready. Windows are read
        from where the last poll's look-back began (from the first prediction on the first
        poll), so a window is seen at every poll until it settles."""
        seconds = self.config.window_seconds
        lookback = timedelta(seconds=self.config.settle_seconds + seconds)
        start = until - lookback
        if self.scanned_until is None:
            first = QualityReader(client, database, seconds).first_prediction()
            start = start if first is None else min(start, first)
        else:
            start = min(start, self.scanned_until)
        epoch = int(start.timestamp())
        start = datetime.fromtimestamp(epoch - epoch % seconds, until.tzinfo)
        reader = QualityReader(client, database, seconds, self.horizon_seconds)
        windows = [w for w in reader.read(start, until)
                   if w.start + timedelta(seconds=seconds) <= until]
        detections = [self._with_report(reader, d) for d in self.observe(windows, until)]
        self.unmatched = reader.unmatched_labels(until - lookback)
        self.scanned_until = until - lookback
        return detections

    def observe(self, windows: list[QualityWindow], now: datetime) -> list[Detection]:
        """Test the ready, untested windows among ``windows`` (oldest first)."""
        detections: list[Detection] = []
        self.counted = {"joined": 0, "late": 0, "duplicate": 0}
        ready: dict[datetime, list[QualityWindow]] = defaultdict(list)
        for w in windows:
            if w.start.timestamp() <= self.tested_until.get(w.model, -math.inf):
                continue
            end = w.start + timedelta(seconds=w.seconds)
            settled = (now - end).total_seconds() >= self.config.settle_seconds
            if w.labelled >= self.config.min_labels or (settled and w.labelled):
                ready[w.start].append(w)
        for start in sorted(ready):
            group = ready[start]
            for w in group:
                self.tested_until[w.model] = w.start.timestamp()
                self.counted["joined"] += w.labelled
                self.counted["late"] += w.late
                self.counted["duplicate"] += w.duplicates
                if w.labelled >= self.config.min_labels:
                    detections += self._test(w)
                    continue
                state = self.versions[w.model]
                state.carry = w if state.carry is None else pooled(state.carry, w)
                if state.carry.labelled >= self.config.min_labels:
                    detections += self._test(state.carry)
                    state.carry = None
            detections += self._canary(group)
        return detections

    def _with_report(self, reader: QualityReader, detection: Detection) -> Detection:
        """The detection with an Evidently classification report of its window against the
        baseline as evidence (the retraining payload links it); unchanged if none is due."""
        w = self._windows.pop(f"{detection.id}|{detection.severity}", None)
        if self.report_dir is None or w is None or detection.cleared or detection.observed.get("estimated"):
            return detection
        from obsloop.detectors.reports import write_quality_report

        span = self.versions[w.model].base_span
        try:
            reference = [] if span is None else reader.labelled_rows(
                w.model, datetime.fromtimestamp(span[0], UTC), datetime.fromtimestamp(span[1], UTC))
            current = reader.labelled_rows(w.model, w.start, w.start + timedelta(seconds=w.seconds))
            if not reference or not current:
                return detection
            name = f"{detection.id}-{detection.severity}"
            html, summary = write_quality_report(reference, current, self.report_dir, name, context={
                "detection_id": detection.id, "model.name": w.model[0], "model.version": w.model[1]})
        except Exception:  # noqa: BLE001 - a report failure must not lose the detection
            log.exception("quality report failed", extra={"detection": detection.id})
            return detection
        return replace(detection, evidence=(html.resolve().as_uri(), summary.resolve().as_uri()))

    # ------------------------------------------------------------------ realized and estimated
    def _test(self, w: QualityWindow) -> list[Detection]:
        state = self.versions[w.model]
        if state.base_labelled < self.config.baseline_labels:
            state.base_labelled += w.labelled
            state.base_correct += w.correct
            state.base_scored += w.scored
            state.base_estimated += w.estimated_correct
            end = w.start.timestamp() + w.seconds
            state.base_span = (w.start.timestamp() if state.base_span is None else state.base_span[0], end)
            return []
        out = []
        baseline = state.baseline
        assert baseline is not None
        target = max(0.0, baseline - self.config.min_drop)
        p_value = binomial_cdf(w.correct, w.labelled, target)
        out += self._episode(state, w, "realized", p_value, w.correct / w.labelled, baseline)
        est_base = state.estimated_baseline
        if self.config.estimated and w.scored and est_base is not None:
            estimate = w.estimated_correct / w.scored
            se = math.sqrt(max(w.estimated_variance, 1e-12)) / w.scored
            p_est = normal_sf((max(0.0, est_base - self.config.min_drop) - estimate) / se)
            out += self._episode(state, w, "estimated", p_est, estimate, est_base)
        return out

    def _episode(self, state: _Version, w: QualityWindow, basis: str, p_value: float,
                 value: float, baseline: float) -> list[Detection]:
        low = p_value < self.config.alpha
        open_id = state.open.get(basis)
        if not low:
            if open_id is None:
                return []
            state.normal[basis] = state.normal.get(basis, 0) + 1
            if state.normal[basis] < self.clear_after:
                return []
            del state.open[basis]
            paged = state.confirmed.pop(basis, False)
            return [self._detection(open_id, w, basis, p_value, value, baseline, "info", cleared=True,
                                    pending=not paged)]
        state.normal[basis] = 0
        if open_id is None:
            open_id = f"quality-{basis}-{w.model[0]}-{w.model[1]}-{int(w.start.timestamp())}"
            state.open[basis] = open_id.replace("/", "_")
            # Pending, as the window detectors' openings are: one low window pages nobody.
            return [self._detection(state.open[basis], w, basis, p_value, value, baseline, "error",
                                    pending=True)]
        if state.confirmed.get(basis):
            return []
        state.confirmed[basis] = True
        # Only the realized metric is sure enough to act on: an estimate stays an alert.
        severity = "critical" if basis == "realized" else "error"
        return [self._detection(open_id, w, basis, p_value, value, baseline, severity)]

    def _detection(self, detection_id: str, w: QualityWindow, basis: str, p_value: float,
                   value: float, baseline: float, severity: str, *, cleared: bool = False,
                   variant: str | None = None, pending: bool = False) -> Detection:
        name, version = w.model
        metric = "accuracy" if basis == "realized" else "estimated_accuracy"
        series = {semconv.MODEL_NAME: name, semconv.MODEL_VERSION: version}
        if variant:
            series[VARIANT] = variant
        self._windows[f"{detection_id}|{severity}"] = w
        observed = {metric: value, "labelled": float(w.labelled), "predictions": float(w.predictions),
                    "label_coverage": w.metrics.get("label_coverage", 0.0), "p_value": p_value,
                    "estimated": float(basis == "estimated")}
        # The estimate beside a realized drop: still at the baseline, it says the inputs and
        # the model's confidence did not change (a concept drift), not that it missed one.
        estimate = w.metrics.get("estimated_accuracy") if basis == "realized" else None
        summary = (f"{'estimated ' if basis == 'estimated' else ''}accuracy of {name} {version} "
                   f"{value:.3f} vs baseline {baseline:.3f}"
                   f"{'' if estimate is None else f' (estimated {estimate:.3f})'} over {w.labelled} labels "
                   f"({observed['label_coverage']:.0%} coverage), p={p_value:.2g}")
        drift = self.drift.get(w.model)
        end = w.start + timedelta(seconds=w.seconds)
        recent = drift is not None and abs((end - drift[0]).total_seconds()) <= self.horizon_seconds
        observed["input_drift"] = float(recent)
        summary += f"; input drift: {drift[1]}" if recent and drift else "; no input drift (concept drift?)"
        return Detection(
            id=detection_id, time=w.start + timedelta(seconds=w.seconds), kind="quality",
            series=series, score=min(1.0, max(0.0, 1.0 - p_value)), severity=severity,  # type: ignore[arg-type]
            observed=observed, expected={metric: (max(0.0, baseline - self.config.min_drop), 1.0)},
            cleared=cleared, summary=("cleared: " if cleared else "") + summary, pending=pending)

    # ------------------------------------------------------------------ canary
    def _canary(self, group: list[QualityWindow]) -> list[Detection]:
        by_model: dict[str, list[QualityWindow]] = defaultdict(list)
        for w in group:
            if w.labelled >= self.config.min_labels:
                by_model[w.model[0]].append(w)
        out = []
        for versions in by_model.values():
            if len(versions) != 2:
                continue
            green, blue = sorted(versions, key=lambda w: w.predictions)
            p1, p2 = blue.correct / blue.labelled, green.correct / green.labelled
            pooled = (blue.correct + green.correct) / (blue.labelled + green.labelled)
            se = math.sqrt(max(pooled * (1 - pooled), 1e-12) * (1 / blue.labelled + 1 / green.labelled))
            p_value = normal_sf((p1 - p2 - self.config.min_drop) / se) if p1 - p2 > self.config.min_drop else 1.0
            if p_value >= self.config.alpha:
                continue
            detection_id = f"quality-canary-{green.model[0]}-{green.model[1]}".replace("/", "_")
            out.append(self._detection(detection_id, green, "realized", p_value, p2, p1,
                                       "critical", variant="green"))
        return out

    # ------------------------------------------------------------------ state
    def to_state(self) -> dict[str, Any]:
        return {
            "versions": [{"model": list(k), "base": [v.base_labelled, v.base_correct, v.base_scored,
                                                     v.base_estimated],
                          "base_span": None if v.base_span is None else list(v.base_span),
                          "open": v.open, "confirmed": v.confirmed, "normal": v.normal,
                          "carry": None if v.carry is None else _window_state(v.carry)}
                         for k, v in self.versions.items()],
            "tested_until": [[list(k), t] for k, t in self.tested_until.items()],
            "scanned_until": self.scanned_until.timestamp() if self.scanned_until else None,
        }

    def restore(self, state: dict[str, Any]) -> None:
        self.versions.clear()
        for item in state.get("versions", []):
            v = self.versions[(item["model"][0], item["model"][1])]
            v.base_labelled, v.base_correct, v.base_scored = (int(x) for x in item["base"][:3])
            v.base_estimated = float(item["base"][3])
            span = item.get("base_span")
            v.base_span = None if span is None else (float(span[0]), float(span[1]))
            v.open, v.confirmed, v.normal = dict(item["open"]), dict(item["confirmed"]), dict(item["normal"])
            carry = item.get("carry")
            v.carry = None if carry is None else _window_from_state(carry)
        self.tested_until = {(k[0], k[1]): float(t) for k, t in state.get("tested_until", [])}
        scanned = state.get("scanned_until")
        self.scanned_until = None if scanned is None else datetime.fromtimestamp(scanned, UTC)


_SUMMED = ("predictions", "labelled", "correct", "binary", "tp", "fp", "fn", "abs_error_sum",
           "sq_error_sum", "numeric", "scored", "estimated_correct", "estimated_variance", "late",
           "duplicates")


def pooled(first: QualityWindow, later: QualityWindow) -> QualityWindow:
    """Two windows of one model version as one spanning both (counts summed; AUC, Brier,
    MAPE and delays are the later window's, since they do not add up)."""
    seconds = int((later.start - first.start).total_seconds()) + later.seconds
    sums = {name: getattr(first, name) + getattr(later, name) for name in _SUMMED}
    return replace(later, start=first.start, seconds=seconds, **sums)


def _window_state(w: QualityWindow) -> dict[str, Any]:
    state = asdict(w)
    del state["metrics"]
    state["start"] = w.start.timestamp()
    state["model"] = list(w.model)
    state["delay_seconds"] = list(w.delay_seconds)
    return state


def _window_from_state(state: dict[str, Any]) -> QualityWindow:
    values = dict(state)
    values["start"] = datetime.fromtimestamp(values["start"], UTC)
    values["model"] = (values["model"][0], values["model"][1])
    values["delay_seconds"] = tuple(values["delay_seconds"])
    return QualityWindow(**values)
