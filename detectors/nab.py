"""A scorer for the Numenta Anomaly Benchmark (NAB), written from the rules in
``data/nab/README.md``.

Why our own scorer: NAB's reference code is AGPL and pulls in pandas and its whole runner;
we need only the scoring rules to evaluate our detectors reproducibly in CI and in
``bench/nab``.

The rules, as implemented here:

* The first 15 % of each file (at most 750 rows) is a *probationary* period: those rows are
  neither rewarded nor penalised, and a window lying entirely inside it is not counted.
* Each row inside an anomaly window ``[start, end]`` (inclusive) that is *detected* (its
  anomaly score is ``>= threshold``) is worth ``tp_weight * σ(y) / σ(-1)``, where
  ``y = -(right - i + 1) / width`` is its relative position (``-1`` at the left edge,
  near ``0`` at the right edge) and ``σ(y) = 2 / (1 + e^{5y}) - 1``. Dividing by ``σ(-1)``
  makes the earliest possible detection worth exactly ``tp_weight``. Only the best (that is
  the earliest) detection of a window counts; a window without any detection costs
  ``-fn_weight``.
* A detected row outside every window costs ``fp_weight * σ(y)`` (``σ`` is negative here),
  with ``y = (i - right_prev) / (width_prev - 1)`` measured from the end of the previous
  window (so a detection just after a window costs almost nothing) and ``σ = -1`` when
  ``y >= 3`` or when no window has ended yet.
* One threshold per profile for the whole corpus, chosen to maximise the summed raw score.
* Normalised score ``100 * (S - S_null) / (S_perfect - S_null)`` with
  ``S_null = -fn_weight * N`` (never fires) and ``S_perfect = tp_weight * N`` (fires on the
  first row of every window and nowhere else), ``N`` = number of scored windows.

Checked against NAB's reference sweeper (``nab/sweeper.py``: probation ``min(floor(0.15 n),
750)``, ``y >= 3`` or no previous window gives ``-1``, first detection in a window, sweep over
every distinct score with ``>=``): the same raw scores and thresholds on the AWS corpus to
four decimals. One deliberate difference: NAB's runner normalises with ``S_perfect`` =
``tp_weight`` x the number of *labels* (31 on the AWS corpus: two labels of
``ec2_cpu_utilization_825cc2`` share one merged window), so a perfect detector would score
98.4 there; we follow the README (perfect = 100) and ``bench/nab/run.py`` prints both.
"""

from __future__ import annotations

import json
import math
from bisect import bisect_left, bisect_right
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

__all__ = [
    "PROFILES",
    "CorpusResult",
    "by_category",
    "FileResult",
    "Profile",
    "ScoredRow",
    "load_windows",
    "probationary_length",
    "scaled_sigmoid",
    "score_corpus",
    "sweep_file",
]


@dataclass(frozen=True)
class Profile:
    """Weights of one NAB application profile."""

    tp_weight: float
    fn_weight: float
    fp_weight: float


PROFILES: dict[str, Profile] = {
    "standard": Profile(tp_weight=1.0, fn_weight=1.0, fp_weight=0.11),
    "reward_low_FP_rate": Profile(tp_weight=1.0, fn_weight=1.0, fp_weight=0.22),
    "reward_low_FN_rate": Profile(tp_weight=1.0, fn_weight=2.0, fp_weight=0.11),
}

PROBATION_PERCENT = 0.15
PROBATION_MAX_ROWS = 750


def scaled_sigmoid(y: float) -> float:
    """NAB's scaled sigmoid ``2 / (1 + e^{5y}) - 1``, clamped to ``-1`` from ``y >= 3``."""
    if y >= 3.0:
        return -1.0
    return 2.0 / (1.0 + math.exp(5.0 * y)) - 1.0


MAX_TP = scaled_sigmoid(-1.0)


def probationary_length(n_rows: int) -> int:
    """Rows at the start of a file that are not scored: 15 %, at most 750."""
    return min(math.floor(PROBATION_PERCENT * n_rows), PROBATION_MAX_ROWS)


@dataclass(frozen=True, slots=True)
class ScoredRow:
    """One scorable row: its anomaly score and what detecting it would be worth.

    ``window`` is ``None`` outside every window; ``value`` is unweighted (``(0, 1]`` inside
    a window, ``[-1, 0)`` outside), the profile's weight is applied when scoring.
    """

    score: float
    value: float
    window: str | None
    file: str


def _parse_ts(text: str) -> datetime:
    return datetime.fromisoformat(text.strip())


def load_windows(path: str | Path) -> dict[str, list[tuple[datetime, datetime]]]:
    """Read NAB's ``windows.json``: ``{relative file: [[start, end], ...]}``."""
    raw = json.loads(Path(path).read_text())
    return {
        name: [(_parse_ts(a), _parse_ts(b)) for a, b in spans] for name, spans in raw.items()
    }


def sweep_file(
    name: str,
    timestamps: Sequence[datetime],
    scores: Sequence[float],
    windows: Iterable[tuple[datetime, datetime]],
) -> list[ScoredRow]:
    """Turn one file's detector output into scorable rows (probationary rows dropped).

    ``timestamps`` must be sorted; a window covers the rows with ``start <= t <= end``.
    """
    if len(timestamps) != len(scores):
        raise ValueError(f"{name}: {len(timestamps)} timestamps but {len(scores)} scores")
    n = len(timestamps)
    # For each row: (window id, left index, right index) or None.
    spans: list[tuple[int, int]] = []
    for start, end in sorted(windows):
        left = bisect_left(timestamps, start)
        right = bisect_right(timestamps, end) - 1
        if right >= left:
            spans.append((left, right))
    probation = probationary_length(n)
    rows: list[ScoredRow] = []
    span_idx = 0
    prev_right: int | None = None
    prev_width = 0
    for i in range(n):
        while span_idx < len(spans) and spans[span_idx][1] < i:
            prev_right, prev_width = spans[span_idx][1], spans[span_idx][1] - spans[span_idx][0] + 1
            span_idx += 1
        window: str | None = None
        if span_idx < len(spans) and spans[span_idx][0] <= i:
            left, right = spans[span_idx]
            width = right - left + 1
            value = scaled_sigmoid(-(right - i + 1) / width) / MAX_TP
            window = f"{name}|{timestamps[left].isoformat(sep=' ')}"
        elif prev_right is None:
            value = -1.0
        else:
            position = (i - prev_right) / max(prev_width - 1, 1)
            value = scaled_sigmoid(position)
        if i >= probation:
            rows.append(ScoredRow(float(scores[i]), value, window, name))
    return rows


@dataclass
class FileResult:
    """Counts for one file at the chosen threshold."""

    score: float = 0.0
    tp: int = 0  # detected windows
    fn: int = 0  # missed windows
    fp: int = 0  # detected rows outside windows


@dataclass
class CorpusResult:
    """A profile's outcome on a corpus at its best threshold."""

    profile: str
    threshold: float
    raw: float
    null: float
    perfect: float
    normalized: float
    files: dict[str, FileResult] = field(default_factory=dict)


def score_corpus(
    rows: Sequence[ScoredRow],
    profile: str | Profile = "standard",
    threshold: float | None = None,
) -> CorpusResult:
    """Score a corpus at its best single threshold (or at ``threshold`` when given).

    Sweeps the thresholds from the highest anomaly score down: lowering the threshold past
    a group of equal scores turns all those rows into detections at once.
    """
    prof = PROFILES[profile] if isinstance(profile, str) else profile
    name = profile if isinstance(profile, str) else "custom"
    window_names = sorted({r.window for r in rows if r.window is not None})
    n_windows = len(window_names)
    null = -prof.fn_weight * n_windows
    perfect = prof.tp_weight * n_windows
    if threshold is None:
        threshold = _best_threshold(rows, prof, null)
    best: dict[str, float] = {}
    files: dict[str, FileResult] = {}
    fp_total = 0.0
    for r in rows:
        fr = files.setdefault(r.file, FileResult())
        if r.score < threshold:
            continue
        if r.window is None:
            fr.fp += 1
            fp_total += prof.fp_weight * r.value
            fr.score += prof.fp_weight * r.value
        elif r.value > best.get(r.window, -math.inf):
            best[r.window] = r.value
    for w in window_names:
        fr = files.setdefault(w.split("|", 1)[0], FileResult())
        if w in best:
            fr.tp += 1
            fr.score += prof.tp_weight * best[w]
        else:
            fr.fn += 1
            fr.score -= prof.fn_weight
    raw = fp_total + sum(prof.tp_weight * v for v in best.values())
    raw -= prof.fn_weight * (n_windows - len(best))
    span = perfect - null
    normalized = 100.0 * (raw - null) / span if span else 0.0
    return CorpusResult(name, threshold, raw, null, perfect, normalized, files)


def _best_threshold(rows: Sequence[ScoredRow], prof: Profile, null: float) -> float:
    """The threshold that maximises the raw corpus score (above every score if none helps)."""
    order = sorted(rows, key=lambda r: r.score, reverse=True)
    best_window: dict[str, float] = {}
    current = null
    best_score, best_threshold = null, math.inf
    i = 0
    while i < len(order):
        level = order[i].score
        while i < len(order) and order[i].score == level:
            r = order[i]
            if r.window is None:
                current += prof.fp_weight * r.value
            else:
                old = best_window.get(r.window)
                if old is None:
                    current += prof.fn_weight + prof.tp_weight * r.value
                    best_window[r.window] = r.value
                elif r.value > old:
                    current += prof.tp_weight * (r.value - old)
                    best_window[r.window] = r.value
            i += 1
        if current > best_score:
            best_score, best_threshold = current, level
    return best_threshold


def score_results(
    results: Mapping[str, tuple[Sequence[datetime], Sequence[float]]],
    windows: Mapping[str, Iterable[tuple[datetime, datetime]]],
    profiles: Iterable[str] = tuple(PROFILES),
) -> dict[str, CorpusResult]:
    """Score ``{file: (timestamps, scores)}`` against ``windows`` for each profile."""
    rows: list[ScoredRow] = []
    for name, (ts, sc) in results.items():
        rows.extend(sweep_file(name, ts, sc, windows.get(name, ())))
    return {p: score_corpus(rows, p) for p in profiles}


def by_category(result: CorpusResult, profile: str | Profile = "standard") -> dict[str, float]:
    """Normalised score of each category (the folder of ``category/file.csv``) at the
    corpus's threshold, as :func:`score_corpus` normalises a corpus.

    A category without windows (NAB's ``artificialNoAnomaly``) has no normalised score of
    its own; its entry is what its false positives cost the whole corpus, in normalised
    points (0 or negative)."""
    prof = PROFILES[profile] if isinstance(profile, str) else profile
    cats: dict[str, list[FileResult]] = {}
    for name, fr in result.files.items():
        cats.setdefault(name.split("/", 1)[0] if "/" in name else "", []).append(fr)
    out: dict[str, float] = {}
    span = result.perfect - result.null
    for cat, frs in sorted(cats.items()):
        n = sum(f.tp + f.fn for f in frs)
        raw = sum(f.score for f in frs)
        if n:
            out[cat] = 100.0 * (raw + prof.fn_weight * n) / ((prof.tp_weight + prof.fn_weight) * n)
        else:
            out[cat] = 100.0 * raw / span if span else 0.0
    return out
