"""Bulk ground truth: rows of ``prediction_id,label[,time]`` from a CSV or Parquet file, or
a ClickHouse table, into ``quality_labels`` (the table the OTLP ground-truth events fill).

A file is read and checked whole before anything is inserted: a bad row (no id, no label,
a time that is not a time) refuses the file with the line numbers, so a fixed file can be
loaded again without duplicating the rows of a half-loaded one. ``time`` is when the
outcome was observed (ISO 8601 or epoch seconds); without it, the load time.

Loading a file again stores its rows again: ``quality_labels`` keeps a deduplication window
(for the OTLP events' replays), but these ``INSERT … SELECT`` statements carry no token (which
ClickHouse needs to deduplicate one) and their rows differ from an earlier load's anyway in
``received``. A label loaded twice counts as a relabel in the quality report; the latest by
time decides the join.
"""

from __future__ import annotations

import csv
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from obsloop.detectors.quality_schema import LABELS, normalized_class

BATCH = 50_000


class LabelFileError(ValueError):
    """The file cannot be loaded; the message names the file and the bad lines."""


@dataclass(frozen=True, slots=True)
class Label:
    prediction_id: str
    label: str
    time_ms: int | None


def _time_ms(value: Any) -> int | None:
    if value is None or value == "":
        return None
    if isinstance(value, datetime):
        return int((value if value.tzinfo else value.replace(tzinfo=UTC)).timestamp() * 1000)
    text = str(value).strip()
    try:
        return int(float(text) * 1000)
    except ValueError:
        parsed = datetime.fromisoformat(text.replace("Z", "+00:00"))
        return int((parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)).timestamp() * 1000)


def _records(path: Path) -> Iterator[dict[str, Any]]:
    if path.suffix.lower() == ".parquet":
        import pyarrow.parquet as pq

        for batch in pq.ParquetFile(path).iter_batches():
            yield from batch.to_pylist()
        return
    with path.open(newline="") as handle:
        yield from csv.DictReader(handle)


def read_labels(path: Path) -> list[Label]:
    """All rows of ``path``; raises :class:`LabelFileError` naming every bad line (first 10)."""
    labels, problems = [], []
    try:
        for line, record in enumerate(_records(path), start=2):
            pid = str(record.get("prediction_id") or "").strip()
            label = record.get("label")
            label = "" if label is None else str(label).strip()
            problem = None if pid else "no prediction_id"
            if problem is None and not label:
                problem = "no label"
            time_ms = None
            if problem is None:
                try:
                    time_ms = _time_ms(record.get("time"))
                except ValueError:
                    problem = f"time {record.get('time')!r} is neither ISO 8601 nor epoch seconds"
            if problem is not None:
                problems.append(f"line {line}: {problem}")
            else:
                labels.append(Label(pid, label, time_ms))
    except (OSError, UnicodeDecodeError, csv.Error, ImportError) as exc:
        raise LabelFileError(f"{path}: cannot read: {exc}") from None
    except Exception as exc:  # noqa: BLE001 - pyarrow's errors: not a Parquet file, etc.
        raise LabelFileError(f"{path}: cannot read: {exc}") from None
    if problems:
        more = f" (and {len(problems) - 10} more)" if len(problems) > 10 else ""
        raise LabelFileError(f"{path}: nothing loaded, fix these rows: "
                             + "; ".join(problems[:10]) + more)
    return labels


def _quote(text: str) -> str:
    return "'" + text.replace("\\", "\\\\").replace("'", "\\'") + "'"


def insert_statements(labels: list[Label], database: str, now: datetime) -> Iterator[str]:
    """``INSERT`` statements of ``labels``, ``BATCH`` rows each."""
    default_ms = int(now.timestamp() * 1000)
    for i in range(0, len(labels), BATCH):
        values = ", ".join(
            f"({_quote(x.prediction_id)}, {_quote(x.label)}, {default_ms if x.time_ms is None else x.time_ms})"
            for x in labels[i:i + BATCH])
        yield (f"INSERT INTO `{database}`.{LABELS} (prediction_id, label, label_value, label_time, source) "
               f"SELECT pid, {normalized_class('lab')}, toFloat64OrNull(lab), "
               f"fromUnixTimestamp64Milli(ms, 'UTC'), 'bulk' "
               f"FROM values('pid String, lab String, ms Int64', {values})")


def from_table_statement(table: str, database: str) -> str:
    """``INSERT ... SELECT`` of a ClickHouse table with columns ``prediction_id`` and ``label``
    (any types ``toString`` takes); the labels are timed at the load."""
    if not all(part.replace("_", "").isalnum() for part in table.split(".")) or table.count(".") > 1:
        raise LabelFileError(f"table {table!r}: expected name or database.name")
    return (f"INSERT INTO `{database}`.{LABELS} (prediction_id, label, label_value, label_time, source) "
            f"SELECT toString(prediction_id), {normalized_class('toString(label)')}, "
            f"toFloat64OrNull(toString(label)), now64(3), 'table' FROM {table} "
            f"WHERE toString(prediction_id) != '' AND toString(label) != ''")
