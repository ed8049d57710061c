"""Model quality per window of prediction time, joined with delayed ground truth in ClickHouse.

``QualityReader.read`` returns, per model version and window, the realized metrics over the
predictions labelled so far (accuracy, precision, recall, F1, ROC AUC and Brier score when
the labels are binary; MAE, RMSE and MAPE when they are numbers), the label coverage and
delay, and the estimate of accuracy before any label (CBPE, as NannyML does it: a
calibrated score ``p`` is right with probability ``max(p, 1 - p)``, so the expected
accuracy of a window is the mean of that over its predictions).

A label counts when it arrived within ``horizon`` of its prediction; later ones are counted
as late and left out. A prediction labelled twice takes the latest label (a correction) and
counts as a duplicate. Windows are re-read as labels arrive: a window's metrics are the
ones known at the time of the read.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from obsloop.detectors.quality_schema import LABELS, PREDICTIONS

DELAY_QUANTILES = (0.5, 0.9, 0.99)


@dataclass(slots=True)
class QualityWindow:
    """Predictions of one model version made in one window, and what their labels say."""

    start: datetime
    seconds: int
    model: tuple[str, str]
    predictions: int
    labelled: int
    correct: int
    binary: int
    """Labelled predictions whose label is ``0`` or ``1`` (classification metrics use these)."""
    tp: int
    fp: int
    fn: int
    auc: float | None
    brier: float | None
    abs_error_sum: float
    sq_error_sum: float
    numeric: int
    """Labelled predictions with a numeric prediction and label (regression metrics)."""
    mape: float | None
    scored: int
    estimated_correct: float
    """Sum over scored predictions of ``max(p, 1 - p)``: the expected number right."""
    estimated_variance: float
    """Sum of ``q (1 - q)``: the variance of the number right, if the scores are calibrated."""
    late: int
    duplicates: int
    delay_seconds: tuple[float, ...]
    metrics: dict[str, float] = field(init=False)

    def __post_init__(self) -> None:
        m: dict[str, float] = {"predictions": float(self.predictions),
                               "labelled": float(self.labelled)}
        if self.predictions:
            m["label_coverage"] = self.labelled / self.predictions
        if self.labelled:
            m["accuracy"] = self.correct / self.labelled
            for q, d in zip(DELAY_QUANTILES, self.delay_seconds, strict=False):
                m[f"label_delay_p{round(q * 100)}_s"] = d
        if self.binary:
            precision = self.tp / (self.tp + self.fp) if self.tp + self.fp else 0.0
            recall = self.tp / (self.tp + self.fn) if self.tp + self.fn else 0.0
            m.update(precision=precision, recall=recall,
                     f1=2 * precision * recall / (precision + recall) if precision + recall else 0.0)
            if self.auc is not None:
                m["roc_auc"] = self.auc
            if self.brier is not None:
                m["brier"] = self.brier
        if self.numeric:
            m["mae"] = self.abs_error_sum / self.numeric
            m["rmse"] = math.sqrt(self.sq_error_sum / self.numeric)
            if self.mape is not None:
                m["mape"] = self.mape
        if self.scored:
            m["estimated_accuracy"] = self.estimated_correct / self.scored
            if "accuracy" in m:
                m["estimation_error"] = m["estimated_accuracy"] - m["accuracy"]
        self.metrics = m


def _finite(value: Any) -> float | None:
    if value is None:
        return None
    number = float(value)
    return number if math.isfinite(number) else None


class QualityReader:
    """Reads :class:`QualityWindow` rows through a ``clickhouse-connect`` style client."""

    def __init__(self, client: Any, database: str = "default", window_seconds: int = 300,
                 horizon_seconds: float = 7 * 86_400.0) -> None:
        self.client = client
        self.db = f"`{database}`"
        self.seconds = window_seconds
        self.horizon_ms = int(horizon_seconds * 1000)

    def read(self, start: datetime, end: datetime) -> list[QualityWindow]:
        """Windows of prediction time starting in ``[start, end)``, oldest first."""
        w = self.seconds
        lo, hi = int(start.timestamp() * 1000), int(end.timestamp() * 1000)
        q = ", ".join(str(x) for x in DELAY_QUANTILES)
        rows = self.client.query(f"""
WITH p AS (
    SELECT prediction_id, any(time) AS t, any(model_name) AS m, any(model_version) AS v,
           any(predicted) AS pc, any(value) AS pv, any(score) AS ps
    FROM {self.db}.{PREDICTIONS}
    WHERE time >= fromUnixTimestamp64Milli({lo}, 'UTC') AND time < fromUnixTimestamp64Milli({hi}, 'UTC')
    GROUP BY prediction_id
), l AS (
    SELECT prediction_id, argMax(label, (label_time, received)) AS lab,
           argMax(label_value, (label_time, received)) AS lv, min(label_time) AS lt, count() AS nl
    FROM {self.db}.{LABELS}
    WHERE prediction_id IN (SELECT prediction_id FROM p)
    GROUP BY prediction_id
), j AS (
    SELECT p.*, l.lab, l.lv, l.lt, l.nl,
           l.nl > 0 AND dateDiff('millisecond', p.t, l.lt) <= {self.horizon_ms} AS ok,
           ok AND l.lab IN ('0', '1') AS bin,
           ok AND p.pv IS NOT NULL AND l.lv IS NOT NULL AS num
    FROM p LEFT JOIN l ON p.prediction_id = l.prediction_id
    SETTINGS join_use_nulls = 0
)
SELECT toStartOfInterval(t, INTERVAL {w} SECOND, 'UTC') AS ws, m, v,
       count(), countIf(ok), countIf(ok AND pc = lab), countIf(bin),
       countIf(bin AND pc = '1' AND lab = '1'), countIf(bin AND pc = '1' AND lab = '0'),
       countIf(bin AND pc = '0' AND lab = '1'),
       if(countIf(bin AND ps IS NOT NULL AND lab = '1') > 0
          AND countIf(bin AND ps IS NOT NULL AND lab = '0') > 0,
          arrayAUC(groupArrayIf(assumeNotNull(ps), bin AND ps IS NOT NULL),
                   groupArrayIf(toUInt8(lab = '1'), bin AND ps IS NOT NULL)), NULL),
       avgIf(pow(assumeNotNull(ps) - toFloat64(lab = '1'), 2), bin AND ps IS NOT NULL),
       sumIf(abs(assumeNotNull(pv) - assumeNotNull(lv)), num),
       sumIf(pow(assumeNotNull(pv) - assumeNotNull(lv), 2), num), countIf(num),
       avgIf(abs((assumeNotNull(pv) - assumeNotNull(lv)) / assumeNotNull(lv)), num AND lv != 0),
       countIf(ps IS NOT NULL),
       sumIf(greatest(assumeNotNull(ps), 1 - assumeNotNull(ps)), ps IS NOT NULL),
       sumIf(greatest(assumeNotNull(ps), 1 - assumeNotNull(ps))
             * least(assumeNotNull(ps), 1 - assumeNotNull(ps)), ps IS NOT NULL),
       countIf(nl > 0 AND NOT ok), sumIf(nl - 1, ok),
       quantilesIf({q})(dateDiff('millisecond', t, lt) / 1000, ok)
FROM j
GROUP BY ws, m, v
ORDER BY ws, m, v""").result_rows
        out = []
        for r in rows:
            ws = r[0].replace(tzinfo=UTC) if r[0].tzinfo is None else r[0].astimezone(UTC)
            out.append(QualityWindow(
                ws, w, (r[1], r[2]), int(r[3]), int(r[4]), int(r[5]), int(r[6]), int(r[7]),
                int(r[8]), int(r[9]), _finite(r[10]), _finite(r[11]), float(r[12] or 0),
                float(r[13] or 0), int(r[14]), _finite(r[15]), int(r[16]), float(r[17] or 0),
                float(r[18] or 0), int(r[19]), int(r[20]),
                tuple(float(x) for x in r[21]) if int(r[4]) else ()))
        return out

    def labelled_rows(self, model: tuple[str, str], start: datetime, end: datetime,
                      limit: int = 5000) -> list[tuple[str, str, float | None]]:
        """``(predicted, label, score)`` of binary-labelled predictions of ``model`` made in
        ``[start, end)``, at most ``limit`` (for a report, not for the metrics)."""
        lo, hi = int(start.timestamp() * 1000), int(end.timestamp() * 1000)
        name, version = (v.replace("\\", "\\\\").replace("'", "\\'") for v in model)
        rows = self.client.query(f"""
WITH p AS (
    SELECT prediction_id, any(predicted) AS predicted, any(score) AS score, any(time) AS t
    FROM {self.db}.{PREDICTIONS}
    WHERE time >= fromUnixTimestamp64Milli({lo}, 'UTC') AND time < fromUnixTimestamp64Milli({hi}, 'UTC')
      AND model_name = '{name}' AND model_version = '{version}'
    GROUP BY prediction_id
), l AS (
    SELECT prediction_id, argMax(label, (label_time, received)) AS lab, min(label_time) AS lt
    FROM {self.db}.{LABELS} WHERE prediction_id IN (SELECT prediction_id FROM p) GROUP BY prediction_id
)
SELECT p.predicted, l.lab, p.score FROM p INNER JOIN l ON p.prediction_id = l.prediction_id
WHERE l.lab IN ('0', '1') AND p.predicted IN ('0', '1') AND dateDiff('millisecond', p.t, l.lt) <= {self.horizon_ms}
LIMIT {int(limit)}""").result_rows
        return [(str(a), str(b), None if c is None else float(c)) for a, b, c in rows]

    def first_prediction(self) -> datetime | None:
        """Time of the oldest stored prediction (``None`` when there is none)."""
        value = self.client.command(
            f"SELECT toUnixTimestamp(min(time)), count() > 0 FROM {self.db}.{PREDICTIONS}")
        first, any_rows = value if isinstance(value, list) else (value, 0)
        return datetime.fromtimestamp(int(first), UTC) if int(any_rows) else None

    def unmatched_labels(self, since: datetime) -> int:
        """Labels observed since ``since`` whose prediction id is unknown (a typo, a sampled-out
        or expired prediction, or one whose event has not arrived yet)."""
        lo = int(since.timestamp() * 1000)
        recent = (f"SELECT prediction_id FROM {self.db}.{LABELS} "
                  f"WHERE label_time >= fromUnixTimestamp64Milli({lo}, 'UTC')")
        return int(self.client.command(f"""
SELECT count() FROM ({recent}) AS l LEFT ANTI JOIN (
    SELECT DISTINCT prediction_id FROM {self.db}.{PREDICTIONS} WHERE prediction_id IN ({recent})
) AS p ON l.prediction_id = p.prediction_id"""))
