"""``obsloop score-series``: score NAB-format CSV series with the service's detector.

Input ``timestamp,value`` (header required, extra columns ignored); output
``timestamp,value,anomaly_score``. Strictly streaming: each row is parsed, scored by
:meth:`SeriesAnomalyDetector.score_learn_one` and written before the next row is read, so the
score can never depend on the future (the NAB rule, and what the live service does).

Bad input raises :class:`SeriesInputError` naming the file, line and column, after which the
partial output file is removed so that no half-scored file is mistaken for a result. A row
whose timestamp steps back (a real export's clock glitch) is not bad input: it is scored at
its place in the stream (the detector treats its clock as non-decreasing), with one warning
per file.
"""

from __future__ import annotations

import csv
import logging
import math
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from obsloop.detectors.series import SeriesAnomalyDetector

__all__ = ["ScoreStats", "SeriesInputError", "iter_series", "score_file", "score_path"]

log = logging.getLogger(__name__)


class SeriesInputError(ValueError):
    """A malformed input series; the message names file, line and column."""


@dataclass
class ScoreStats:
    """What a run did: files and rows scored and time spent scoring."""

    files: int = 0
    rows: int = 0
    clock_steps: int = 0  # rows whose timestamp is before an earlier row's


def _parse_timestamp(text: str) -> datetime:
    text = text.strip()
    try:
        return datetime.fromisoformat(text)
    except ValueError:
        pass
    try:
        return datetime.fromtimestamp(float(text), tz=UTC).replace(tzinfo=None)  # epoch s
    except (ValueError, OverflowError, OSError):
        raise ValueError(f"not a timestamp: {text!r}") from None


def iter_series(
    path: Path, stats: ScoreStats | None = None
) -> Iterator[tuple[str, datetime, float]]:
    """Yield ``(timestamp text, timestamp, value)`` rows, validating as it goes.

    A timestamp before the previous row's is yielded as it is (the detector copes), counted
    in ``stats.clock_steps`` and logged once per file."""
    with path.open(newline="") as fh:
        reader = csv.reader(fh)
        try:
            header = next(reader)
        except StopIteration:
            raise SeriesInputError(
                f"{path}: empty file, expected header 'timestamp,value'"
            ) from None
        names = [h.strip().lower() for h in header]
        missing = [c for c in ("timestamp", "value") if c not in names]
        if missing:
            raise SeriesInputError(
                f"{path}:1: missing column(s) {', '.join(missing)}; header is {header!r}, "
                "expected 'timestamp,value'"
            )
        ti, vi = names.index("timestamp"), names.index("value")
        prev: datetime | None = None  # the latest timestamp so far
        stepped = False
        for row in reader:
            line = reader.line_num
            if not row or all(not c.strip() for c in row):
                continue
            if len(row) <= max(ti, vi):
                raise SeriesInputError(
                    f"{path}:{line}: expected {len(header)} columns, got {len(row)}"
                )
            try:
                ts = _parse_timestamp(row[ti])
            except ValueError as exc:
                raise SeriesInputError(f"{path}:{line}: column 'timestamp': {exc}") from None
            try:
                value = float(row[vi])
            except ValueError:
                raise SeriesInputError(
                    f"{path}:{line}: column 'value': not a number: {row[vi]!r}"
                ) from None
            if not math.isfinite(value):
                raise SeriesInputError(f"{path}:{line}: column 'value': not finite: {row[vi]!r}")
            if prev is not None and ts < prev:
                if stats is not None:
                    stats.clock_steps += 1
                if not stepped:
                    log.warning(
                        "%s:%d: column 'timestamp': %s is before the previous row's %s; scored "
                        "in file order (further steps back in this file are not reported)",
                        path, line, row[ti].strip(), prev.isoformat(sep=" "))
                    stepped = True
            else:
                prev = ts
            yield row[ti].strip(), ts, value


def score_file(
    src: Path,
    dst: Path,
    factory: Callable[[], SeriesAnomalyDetector] = SeriesAnomalyDetector,
    stats: ScoreStats | None = None,
) -> int:
    """Score one CSV file into ``dst``; return the number of rows."""
    det = factory()
    step = det.score_learn_one
    dst.parent.mkdir(parents=True, exist_ok=True)
    rows = 0
    try:
        with dst.open("w", newline="") as out:
            write = out.write
            write("timestamp,value,anomaly_score\n")
            for text, ts, value in iter_series(src, stats):
                score = step(value, ts)
                write(f"{text},{value!r},{score:.10g}\n")
                rows += 1
    except BaseException:
        dst.unlink(missing_ok=True)
        raise
    return rows


def score_path(
    src: str | Path,
    out: str | Path,
    factory: Callable[[], SeriesAnomalyDetector] = SeriesAnomalyDetector,
) -> ScoreStats:
    """Score a file into ``out`` or a folder of ``*.csv`` into ``out/<same relative path>``."""
    src, out = Path(src), Path(out)
    stats = ScoreStats()
    if src.is_dir():
        files = sorted(p for p in src.rglob("*.csv") if p.is_file())
        if not files:
            raise SeriesInputError(f"{src}: no .csv files found")
        for f in files:
            stats.rows += score_file(f, out / f.relative_to(src), factory, stats)
            stats.files += 1
    elif src.is_file():
        stats.rows += score_file(src, out, factory, stats)
        stats.files = 1
    else:
        raise SeriesInputError(f"{src}: no such file or directory")
    return stats
