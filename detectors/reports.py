"""Evidently drift reports: what a human opens from a drift detection.

Evidently is heavy (seconds to import, pandas and plotly behind it), so it is imported
here, lazily, only when a drift fires; the detector loop never loads it otherwise.
The report compares the model version's reference sample with its recent events, column
by column (``DataDriftPreset``); the HTML is Evidently's own page, the JSON a summary that
other tools read without Evidently: which columns drifted, with which test and value.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

_COMPAT_PATCHED = False


def _pandas_compat() -> None:
    """Evidently 0.7's legacy modules import ``pandas.core.dtypes.common.infer_dtype_from_object``,
    which pandas 3 removed; every module of Evidently imports them at start-up. Provide the
    old function (numpy's dtype type of an object) until Evidently stops importing it."""
    global _COMPAT_PATCHED
    if _COMPAT_PATCHED:
        return
    import numpy as np
    from pandas.core.dtypes import common

    if not hasattr(common, "infer_dtype_from_object"):
        common.infer_dtype_from_object = lambda dtype: np.dtype(dtype).type
    _COMPAT_PATCHED = True


def write_drift_report(
    reference: list[dict[str, float]],
    current: list[dict[str, float]],
    directory: Path,
    name: str,
    context: dict[str, Any] | None = None,
) -> tuple[Path, Path]:
    """Write ``<directory>/<name>.html`` and ``<name>.json``; return both paths."""
    _pandas_compat()
    import pandas as pd
    from evidently import Report
    from evidently.presets import DataDriftPreset

    columns = sorted({k for e in reference for k in e} & {k for e in current for k in e})
    ref = pd.DataFrame(reference, columns=columns)
    cur = pd.DataFrame(current, columns=columns)
    snapshot = Report([DataDriftPreset()]).run(cur, ref)
    directory.mkdir(parents=True, exist_ok=True)
    html, summary_path = directory / f"{name}.html", directory / f"{name}.json"
    snapshot.save_html(str(html))
    summary = {
        **(context or {}),
        "reference_rows": len(ref),
        "current_rows": len(cur),
        "columns": columns,
        "metrics": [
            {"metric": m.get("metric_name"), "value": m.get("value")}
            for m in snapshot.dict().get("metrics", [])
        ],
    }
    summary_path.write_text(json.dumps(summary, indent=2, default=str))
    return html, summary_path


def drifted_share(summary_path: Path) -> float | None:
    """Share of columns Evidently found drifted, from a summary written above."""
    for metric in json.loads(summary_path.read_text())["metrics"]:
        value = metric["value"]
        if str(metric["metric"]).startswith("DriftedColumnsCount") and isinstance(value, dict):
            return float(value["share"])
    return None
