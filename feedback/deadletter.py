"""Undeliverable notifications and retraining triggers, kept for a human or a replay.

A row holds the payload *without* its secrets (no routing key, no webhook URL, no
signature), the configured target name, and why delivery stopped. The gauge
``obsloop_feedback_dead_letters`` on ``/metrics`` counts the rows per target, starting from
what the table already holds, so an alert rule can page on a dead letter even after a restart.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

from prometheus_client import REGISTRY, CollectorRegistry, Gauge

from obsloop.pipelines.schema import SchemaOptions

DEAD_LETTER_TABLE = "feedback_dead_letters"


def dead_letter_ddl(options: SchemaOptions) -> str:
    return f"""CREATE TABLE IF NOT EXISTS `{options.database}`.{DEAD_LETTER_TABLE} {options.on_cluster} (
    time DateTime64(3, 'UTC'),
    target LowCardinality(String),
    kind LowCardinality(String),
    key String,
    attempts UInt16,
    error String,
    payload String
) ENGINE = {options.engine()} ORDER BY (target, time)"""


class DeadLetters:
    def __init__(
        self, client: Any, database: str = "default", registry: CollectorRegistry = REGISTRY
    ) -> None:
        self._client = client
        self._table = f"{database}.{DEAD_LETTER_TABLE}"
        client.command(dead_letter_ddl(SchemaOptions(database=database)))
        self.gauge = Gauge(
            "obsloop_feedback_dead_letters",
            "Notifications and triggers that could not be delivered, per target.",
            ["target"],
            registry=registry,
        )
        for target, count in self._client.query(
            f"SELECT target, count() FROM {self._table} GROUP BY target"
        ).result_rows:
            self.gauge.labels(target).set(count)

    def record(
        self, target: str, kind: str, key: str, attempts: int, error: str, payload: Any
    ) -> None:
        row = [datetime.now(UTC), target, kind, key, attempts, error, json.dumps(payload)]
        self._client.insert(
            self._table,
            [row],
            column_names=["time", "target", "kind", "key", "attempts", "error", "payload"],
        )
        self.gauge.labels(target).inc()

    def rows(self) -> list[dict[str, Any]]:
        result = self._client.query(
            f"SELECT target, kind, key, attempts, error, payload FROM {self._table} ORDER BY time"
        )
        return [
            dict(zip(("target", "kind", "key", "attempts", "error"), row[:5], strict=True))
            | {"payload": json.loads(row[5])}
            for row in result.result_rows
        ]
