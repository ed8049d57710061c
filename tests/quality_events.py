"""Writes prediction and ground-truth log records into a chDB ``otel_logs``, as the receivers
store them, so the quality tables fill through their real materialized views."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import datetime
from typing import Any


def _time(t: datetime) -> str:
    return f"fromUnixTimestamp64Nano({int(t.timestamp() * 1e9)})"


def _map(pairs: dict[str, Any]) -> str:
    items = ", ".join(f"'{k}', '{v}'" for k, v in pairs.items())
    return f"map({items})"


def insert_predictions(client: Any, db: str,
                       rows: Iterable[tuple[datetime, str, str, str, Any, float | None]]) -> None:
    """Rows of ``(time, model_name, model_version, prediction_id, prediction, score)``."""
    values = []
    for t, name, version, pid, prediction, score in rows:
        attrs = {"model.name": name, "model.version": version, "prediction.id": pid,
                 "prediction": prediction}
        if score is not None:
            attrs["prediction.score"] = score
        values.append(f"({_time(t)}, 'obsloop.model.prediction', {_map(attrs)})")
    _insert(client, db, values)


def insert_labels(client: Any, db: str, rows: Sequence[tuple[datetime, str, Any]]) -> None:
    """Rows of ``(time observed, prediction_id, label)``."""
    _insert(client, db, [
        f"({_time(t)}, 'obsloop.model.ground_truth', "
        f"{_map({'prediction.id': pid, 'label': label})})" for t, pid, label in rows])


def _insert(client: Any, db: str, values: list[str]) -> None:
    for i in range(0, len(values), 5000):
        client.command(f"INSERT INTO {db}.otel_logs (Timestamp, EventName, LogAttributes) VALUES "
                       + ", ".join(values[i:i + 5000]))
