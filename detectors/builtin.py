"""The built-in window detectors of the scoring, canary, budget and quality modules, as
:class:`~obsloop.detectors.window_detector.WindowDetector` kinds (model drift is in
:mod:`obsloop.detectors.model_drift`). Each wraps its module's object and keeps its
checkpoint key (``scorer``, ``canary``, ``budgets``, ``quality``)."""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import Any

from obsloop.detectors.canary import CanaryWatch
from obsloop.detectors.cost import BudgetWatch
from obsloop.detectors.detection import Detection
from obsloop.detectors.metrics import DetectorMetrics
from obsloop.detectors.quality_watch import QualityWatch
from obsloop.detectors.scoring import WindowScorer
from obsloop.detectors.series import SeriesAnomalyDetector
from obsloop.detectors.window_detector import ClosedWindows, DetectorContext, Scope, Step, WindowDetector


class SeriesScoring(WindowDetector):
    """A series model per function (and cost center) and metric, tested against its baseline.

    Functions are its ``SERIES`` share; a cost center's spend sums functions of every
    partition, its ``FLEET`` share. A host of one share scores that share only.
    """

    name = "scorer"
    scope = Scope.ALL

    def __init__(self, scorer: WindowScorer, scope: Scope) -> None:
        self.scorer = scorer
        self.share = scope & self.scope

    @classmethod
    def build(cls, context: DetectorContext) -> SeriesScoring:
        config = context.config
        warmup = config.warmup_windows
        factory = SeriesAnomalyDetector if warmup is None else (
            lambda: SeriesAnomalyDetector(warmup=warmup))
        return cls(WindowScorer(factory=factory, max_series=config.max_series,
                                idle_seconds=config.idle_expiry_seconds,
                                threshold=config.score_threshold,
                                clear_after=config.clear_after_windows,
                                relapse_after=config.relapse_after_windows,
                                escalate_ratio=config.escalate_ratio,
                                confirm_after=config.confirm_after_windows,
                                evidence_alpha=config.evidence_alpha,
                                extreme_latency_ratio=config.extreme_latency_ratio,
                                extreme_error_rate=config.extreme_error_rate,
                                extreme_alpha=config.extreme_alpha), context.scope)

    def process(self, closed: ClosedWindows) -> list[Detection]:
        if self.share == Scope.FLEET:
            return self.scorer.process_cost_centers(closed.start, closed.windows, closed.step.window_seconds)
        windows = closed.windows
        if self.share == Scope.SERIES:  # a cost center's sum over one partition's functions is partial
            windows = [dataclasses.replace(w, cost_center="") if w.cost_center else w for w in windows]
        return self.scorer.process(closed.start, windows)

    def state(self) -> dict[str, Any]:
        return self.scorer.to_state()

    def restore(self, state: dict[str, Any]) -> None:
        self.scorer.restore(state)

    def series_count(self) -> int:
        return len(self.scorer.pool)

    def forget_episodes(self) -> int:
        count = len(self.scorer.episodes)
        self.scorer.episodes.clear()
        return count


class CanaryComparison(WindowDetector):
    """Each function's versions served side by side: a green one worse than blue."""

    name = "canary"
    scope = Scope.SERIES

    def __init__(self, watch: CanaryWatch) -> None:
        self.watch = watch

    @classmethod
    def build(cls, context: DetectorContext) -> CanaryComparison:
        return cls(CanaryWatch(clear_after=context.config.clear_after_windows))

    def process(self, closed: ClosedWindows) -> list[Detection]:
        return self.watch.compare(closed.start, closed.windows)

    def state(self) -> dict[str, Any]:
        return self.watch.to_state()

    def restore(self, state: dict[str, Any]) -> None:
        self.watch.restore(state)

    def forget_episodes(self) -> int:
        count = len(self.watch.open)
        self.watch.open.clear()
        return count


class BudgetForecasts(WindowDetector):
    """Month-end spend forecasts of the budgeted functions (the manifests' ``finops``)."""

    name = "budgets"
    scope = Scope.SERIES

    def __init__(self, watch: BudgetWatch) -> None:
        self.watch = watch

    @classmethod
    def build(cls, context: DetectorContext) -> BudgetForecasts:
        return cls(BudgetWatch(context.budgets, context.config.forecast_check_seconds))

    def process(self, closed: ClosedWindows) -> list[Detection]:
        return self.watch.observe(closed.start.timestamp(),
                                  [(w.key.function, w.cost_usd) for w in closed.windows if w.cost_usd])

    def forecast_monthly_usd(self, function: str) -> float | None:
        """The month-end forecast of ``function`` (None without a budget or spend yet)."""
        forecaster = self.watch.forecasters.get(function)
        return forecaster.forecast() if forecaster is not None and forecaster.now is not None else None

    def state(self) -> dict[str, Any]:
        return self.watch.to_state()

    def restore(self, state: dict[str, Any]) -> None:
        self.watch.restore(state)


class ModelQuality(WindowDetector):
    """Each model version's accuracy from delayed labels, once per step (``detectors.quality``)."""

    name = "quality"
    scope = Scope.FLEET

    def __init__(self, watch: QualityWatch, metrics: DetectorMetrics) -> None:
        self.watch = watch
        self.metrics = metrics

    @classmethod
    def build(cls, context: DetectorContext) -> ModelQuality | None:
        config = context.config
        if not config.quality.enabled:
            return None
        return cls(QualityWatch(config.quality, clear_after=config.clear_after_windows,
                                report_dir=context.report_dir), context.metrics)

    def finish(self, step: Step, found: Sequence[Detection]) -> list[Detection]:
        for drifted in (d for d in found if d.kind == "drift"):
            self.watch.note_drift(drifted)  # a quality drop names the input drift before it
        detections = self.watch.poll(step.client, step.database, step.end)
        for state, count in self.watch.counted.items():
            self.metrics.quality_labels.labels(state).inc(count)
        self.metrics.unmatched_labels.set(self.watch.unmatched)
        return detections

    def state(self) -> dict[str, Any]:
        return self.watch.to_state()

    def restore(self, state: dict[str, Any]) -> None:
        self.watch.restore(state)
