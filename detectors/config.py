"""The ``detectors:`` configuration section of ``obsloop serve``.

Defaults suit a live fleet: one-minute windows, half a minute for stragglers, checkpoints
under the data directory so a restart resumes learning rather than starting from zero.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from pydantic import Field, field_validator

from obsloop.core.settings import Section
from obsloop.detectors.windows import BASE_SECONDS


class DriftConfig(Section):
    """Model drift on ``obsloop.model.prediction`` events, one set of detectors per model version."""

    enabled: bool = True
    detector: Literal["adwin", "kswin", "page_hinkley"] = "adwin"
    """river detector run on each monitored stream (prediction, error, selected features)."""
    features: list[str] | None = None
    """Feature names to watch (without ``feature.``); ``None`` watches every numeric one seen."""
    max_features: int = Field(20, ge=0)
    """Cap on features watched per model version when ``features`` is ``None``."""
    reference_size: int = Field(500, ge=10)
    """Events kept as the reference sample (the first ones, then the current one after a drift)."""
    post_change: int = Field(200, ge=10)
    """Events collected after a detector fires, compared with the reference in the report;
    the detection is emitted once they are in (see ``ModelDriftMonitor``)."""
    cooldown: int = Field(1000, ge=0)
    """Events after a drift during which the same model version cannot drift again."""
    max_models: int = Field(1000, ge=1)
    """Model versions monitored at once (least recently seen dropped first)."""


class QualityConfig(Section):
    """Model quality from delayed ground truth (``obsloop.model.ground_truth`` events or
    ``obsloop labels load``), joined with the predictions that carry a ``prediction.id``."""

    enabled: bool = True
    window_seconds: int = Field(300, gt=0)
    """Windows of prediction time whose quality is measured (multiple of 10 s)."""
    horizon_days: float = Field(7.0, gt=0, le=30)
    """Labels arriving later than this after their prediction are counted as late and left
    out; windows are re-read until their labels are complete or this has passed. At most
    the tables' TTL (``quality_schema.HORIZON_TTL_DAYS``)."""
    min_labels: int = Field(100, ge=1)
    """Labels a window needs before it is tested; a window that never gets them is tested
    with what it has once ``settle_seconds`` have passed."""
    settle_seconds: float = Field(3600.0, gt=0)
    """After this long (event time) past its end a window is tested with the labels it has."""
    baseline_labels: int = Field(500, ge=10)
    """Labelled predictions of a model version pooled into its baseline accuracy."""
    min_drop: float = Field(0.03, ge=0, lt=1)
    """Accuracy drop below the baseline that matters: the test is against baseline - min_drop."""
    alpha: float = Field(1e-3, gt=0, lt=0.5)
    """False alarm rate per tested window (one-sided exact binomial test)."""
    estimated: bool = True
    """Also test the CBPE estimate (detections flagged ``estimated``)."""


class DetectorsConfig(Section):
    enabled: bool = True
    window_seconds: int = Field(60, gt=0)
    """Length of a detection window; a multiple of the stored granularity (10 s)."""
    allowed_lateness_seconds: float = Field(30.0, ge=0)
    """How long after a window's end its data may still arrive before it is read."""
    idle_flush_seconds: float = Field(120.0, gt=0)
    """When no new data arrived for this long (wall clock), windows up to now minus the
    lateness close anyway, so the last windows of a quiet fleet are still read."""
    poll_seconds: float = Field(5.0, gt=0)
    checkpoint_path: Path | None = None
    """Defaults to ``<data_dir>/detectors/checkpoint.json``."""
    checkpoint_seconds: float = Field(60.0, gt=0)
    report_dir: Path | None = None
    """Drift reports (HTML and JSON); defaults to ``<data_dir>/reports``."""
    max_series: int = Field(50_000, ge=1)
    """Live series models (one per function x metric), least recently updated dropped first."""
    idle_expiry_seconds: float = Field(7 * 86_400.0, gt=0)
    """A series with no window for this long (event time) is forgotten."""
    score_threshold: float = Field(0.5, gt=0, le=1)
    """A window whose anomaly score reaches this is a detection."""
    clear_after_windows: int = Field(5, ge=1)
    """Normal windows in a row that end an anomaly episode (and send its clearing)."""
    relapse_after_windows: int = Field(2, ge=1)
    """Normal windows in a row after which an anomalous one opens a new episode (a new
    detection the feedback loop can act on) although the old one has not cleared yet."""
    escalate_ratio: float = Field(2.5, ge=0)
    """An open episode whose values go this many times further past the baseline than its
    worst window so far opens a new one (an escalation); 0 turns escalations off."""
    confirm_after_windows: int = Field(2, ge=1)
    """Windows in a row with an anomaly still there (from one scoring above the threshold,
    each later one above it or with values outside the range from before the anomaly) that
    confirm it: its detection then follows again as ``critical``, which pages and which the
    feedback policy acts on by default (``minSeverity``); until then it is pending (stored,
    not paged) unless extreme. 1 confirms on the first window."""
    evidence_alpha: float = Field(1e-3, gt=0, lt=0.5)
    """Significance of the count-aware tests a window statistic must fail to be out of range
    (binomial for error and cold-start rates, order-statistic bounds for latency
    percentiles, Poisson for throughput), per statistic and window."""
    extreme_latency_ratio: float = Field(4.0, ge=0)
    """A window whose p50 is at least this many times its baseline's (by its lower
    confidence bound) pages at once instead of waiting for confirmation; 0 turns it off."""
    extreme_error_rate: float = Field(0.5, ge=0, le=1)
    """A window failing at least this share of its calls (significantly above its
    baseline) pages at once; 0 turns it off."""
    extreme_alpha: float = Field(1e-6, ge=0, lt=0.5)
    """An error or cold-start rate above its baseline (plus the tolerance) at this
    significance, the baseline's own sampling error counted, pages at once instead of
    waiting for confirmation (a 25 % cold-start storm, a 10x error rate); 0 turns it off."""
    warmup_windows: int | None = Field(None, ge=0)
    """Windows a series learns before it may alarm; ``None`` keeps the detector's default."""
    max_catchup_windows: int = Field(1440, ge=1)
    """Windows read per poll at most, so a long backlog is processed in bounded steps."""
    forecast_check_seconds: float = Field(3600.0, gt=0)
    """Spend is bucketed per this many seconds for the month-end forecast (one point each)."""
    drift: DriftConfig = DriftConfig()
    quality: QualityConfig = QualityConfig()
    sections: dict[str, dict[str, Any]] = {}
    """Settings of window detectors beyond the built-in ones, by detector name; each is
    validated by its detector's own model when the detectors are built (docs/extending.md)."""

    @field_validator("window_seconds")
    @classmethod
    def _multiple_of_base(cls, value: int) -> int:
        if value % BASE_SECONDS:
            raise ValueError(f"must be a multiple of {BASE_SECONDS} seconds")
        return value

    def checkpoint_file(self, data_dir: Path) -> Path:
        return self.checkpoint_path or data_dir / "detectors" / "checkpoint.json"

    def reports_directory(self, data_dir: Path) -> Path:
        return self.report_dir or data_dir / "reports"
