"""Evidently drift reports: what a human opens from a drift detection.

Evidently is heavy (seconds to import, pandas and plotly behind it), so it is imported
here, lazily, only when a drift fires; the detector host never loads it otherwise.
The report compares the model version's reference sample with its recent events, column
by column (``DataDriftPreset``); the HTML is Evidently's own page, the JSON a summary that
other tools read without Evidently: which columns drifted, with which test and value.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any


def write_drift_report(
    reference: list[dict[str, float]],
    current: list[dict[str, float]],
    directory: Path,
    name: str,
    context: dict[str, Any] | None = None,
) -> tuple[Path, Path]:
    """Write ``<directory>/<name>.html`` and ``<name>.json``; return both paths."""
    import pandas as pd
    from evidently import Report
    from evidently.presets import DataDriftPreset

    columns = sorted({k for e in reference for k in e} & {k for e in current for k in e})
    ref = pd.DataFrame(reference, columns=columns)
    cur = pd.DataFrame(current, columns=columns)
    snapshot = Report([DataDriftPreset()]).run(cur, ref)
    return _save(snapshot, directory, name, {**(context or {}), "reference_rows": len(ref),
                                             "current_rows": len(cur), "columns": columns})


def _save(snapshot: Any, directory: Path, name: str, summary: dict[str, Any]) -> tuple[Path, Path]:
    """Evidently's HTML page and a JSON summary (``summary`` plus each metric's value)."""
    directory.mkdir(parents=True, exist_ok=True)
    html, summary_path = directory / f"{name}.html", directory / f"{name}.json"
    snapshot.save_html(str(html))
    summary["metrics"] = [{"metric": m.get("metric_name"), "value": m.get("value")}
                          for m in snapshot.dict().get("metrics", [])]
    summary_path.write_text(json.dumps(summary, indent=2, default=str))
    return html, summary_path


def drifted_share(summary_path: Path) -> float | None:
    """Share of columns Evidently found drifted, from a summary written above."""
    for metric in json.loads(summary_path.read_text())["metrics"]:
        value = metric["value"]
        if str(metric["metric"]).startswith("DriftedColumnsCount") and isinstance(value, dict):
            return float(value["share"])
    return None


def write_quality_report(
    reference: list[tuple[str, str, float | None]],
    current: list[tuple[str, str, float | None]],
    directory: Path,
    name: str,
    context: dict[str, Any] | None = None,
) -> tuple[Path, Path]:
    """Evidently's classification report (``ClassificationPreset``) of a window's labelled
    predictions against the baseline's: rows of ``(predicted class, label, score)``, binary
    classes ``"0"``/``"1"``. Written as ``<name>.html`` and ``<name>.json``."""
    import pandas as pd
    from evidently import BinaryClassification, DataDefinition, Dataset, Report
    from evidently.presets import ClassificationPreset

    scored = all(score is not None for _, _, score in reference + current)

    def frame(rows: list[tuple[str, str, float | None]]) -> Any:
        data: dict[str, list[int] | list[float]] = {
            "prediction": [int(p) for p, _, _ in rows], "target": [int(t) for _, t, _ in rows]}
        if scored:
            data["score"] = [float(s) for _, _, s in rows if s is not None]
        return pd.DataFrame(data)

    definition = DataDefinition(classification=[BinaryClassification(
        target="target", prediction_labels="prediction", prediction_probas="score" if scored else None,
        pos_label=1)], numerical_columns=["score"] if scored else [], categorical_columns=["target", "prediction"])
    cur = Dataset.from_pandas(frame(current), data_definition=definition)
    ref = Dataset.from_pandas(frame(reference), data_definition=definition)
    snapshot = Report([ClassificationPreset()]).run(cur, ref)
    return _save(snapshot, directory, name, {**(context or {}), "reference_rows": len(reference),
                                             "current_rows": len(current)})
