"""The history behind ``data/checkpoint-v1.json``: 40 minutes of one function in two model
versions (the green one slower from minute 30), with spend in a cost center and a budget,
and prediction events that drift. Every built-in window detector has state after it.

The checkpoint was written by the detector loop of commit 39683c8 (checkpoint format 1,
before the window detectors had a registry), over this history with :data:`SETTINGS` and
:data:`BUDGETS`, stopped after :data:`SPLIT_MINUTE` minutes; the upgrade test restores it
with today's code.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from obsloop.detectors.config import DetectorsConfig, DriftConfig
from obsloop.detectors.cost import Budget

T0 = datetime(2026, 3, 2, 12, 0, tzinfo=UTC)
FUNCTION = "fraud-scorer"
MINUTES = 40
SPLIT_MINUTE = 32
SETTINGS: dict[str, Any] = dict(
    window_seconds=60, allowed_lateness_seconds=30, idle_flush_seconds=60, warmup_windows=20,
    forecast_check_seconds=600, drift=DriftConfig(reference_size=300, post_change=200))
BUDGETS = {FUNCTION: Budget(FUNCTION, monthly_usd=50.0, alert_fraction=0.5, cost_center="FraudDetection")}
WALL_CLOCK = datetime(2026, 4, 1, tzinfo=UTC).timestamp()


def settings(**overrides: Any) -> DetectorsConfig:
    return DetectorsConfig(**{**SETTINGS, **overrides})


def insert_history(client: Any, db: str) -> None:
    """Invocation reports: blue (2.1.0) 30 a minute, green (2.2.0) 20 a minute and 6x slower
    from minute 30; every invocation $0.002 in cost center FraudDetection. Then 3,000
    prediction events of 2.1.0 in minute 0 and 1,500 shifted ones in minute 1."""
    client.command(f"""
INSERT INTO {db}.otel_logs (Timestamp, ServiceName, ResourceAttributes, LogAttributes, EventName)
SELECT toDateTime64('{T0:%Y-%m-%d %H:%M:%S}', 9, 'UTC') + toIntervalMinute(m) + toIntervalSecond(5 + number % 30),
    '{FUNCTION}', map('cloud.platform', 'aws_lambda'),
    map('faas.name', '{FUNCTION}', 'faas.invocation_id', concat(v, '-', toString(m), '-', toString(number)),
        'model.name', 'fraud', 'model.version', v, 'obsloop.cost.usd', '0.002',
        'obsloop.cost_center', 'FraudDetection',
        'faas.duration_ms', toString((40 + cityHash64(v, m, number) % 21) * if(v = '2.2.0' AND m >= 30, 6, 1))),
    'obsloop.faas.invocation'
FROM (SELECT intDiv(number, 50) AS m, number % 50 < 30 ? '2.1.0' : '2.2.0' AS v, number
      FROM numbers({MINUTES * 50}))""")
    client.command(f"""
INSERT INTO {db}.otel_logs (Timestamp, ServiceName, ResourceAttributes, LogAttributes, EventName)
SELECT toDateTime64('{T0:%Y-%m-%d %H:%M:%S}', 9, 'UTC') + if(n < 3000, n / 100, 60 + (n - 3000) / 100),
    '{FUNCTION}', map('faas.name', '{FUNCTION}'),
    map('model.name', 'fraud', 'model.version', '2.1.0', 'prediction', toString((cityHash64(n, 7) % 100) / 100.0),
        'feature.amount', toString(if(n < 3000, 10, 13) + (cityHash64(n, 3) % 1000) / 500.0)),
    'obsloop.model.prediction'
FROM (SELECT number AS n FROM numbers(4500))""")
