"""The keyed tables that join predictions with their delayed ground truth, in ClickHouse.

Two materialized views over ``otel_logs`` keep, per prediction id, what quality needs:

* ``quality_predictions``: one row per ``obsloop.model.prediction`` event that carries a
  ``prediction.id`` (model, time, predicted class, numeric value, score);
* ``quality_labels``: one row per ``obsloop.model.ground_truth`` event (or per row of a
  bulk load, see ``obsloop labels load``), keyed on the prediction id.

The join is done at read time, per window of prediction time (``QualityReader``): a label
may arrive seconds or days after its prediction, in any order, even before it, so neither
side can be joined when it is inserted. Both tables are sorted for that read: predictions
by time (a window is a range), labels by prediction id (the window's ids are a key lookup).
Rows expire ``HORIZON_TTL_DAYS`` (the longest label horizon the detectors accept) after
they were stored, not after their event time, so a replay of last month's traffic is kept.

Labels are normalized as classes are: ``true``/``false`` become ``1``/``0`` and integral
numbers lose their ``.0``, so ``1``, ``1.0`` and ``true`` all compare equal.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from obsloop.core import semconv

if TYPE_CHECKING:
    from obsloop.pipelines.schema import SchemaOptions

PREDICTIONS = "quality_predictions"
LABELS = "quality_labels"
HORIZON_TTL_DAYS = 30
"""How long predictions and labels are kept for the join: the largest allowed horizon."""


def _attr(key: str) -> str:
    return f"LogAttributes['{key}']"


def normalized_class(expr: str) -> str:
    """SQL: a class or label string in a canonical form (booleans and integral numbers)."""
    number = f"toFloat64OrNull({expr})"
    return (f"multiIf(lower({expr}) = 'true', '1', lower({expr}) = 'false', '0', "
            f"{number} IS NOT NULL AND {number} = round({number}) AND abs({number}) < 1e15, "
            f"toString(toInt64({number})), {expr})")


def quality_ddl(o: SchemaOptions) -> list[str]:
    """``CREATE`` statements (idempotent) of the two keyed tables and their views."""
    db = f"`{o.database}`"
    ttl = f"toIntervalDay({HORIZON_TTL_DAYS})"
    predictions = f"""CREATE TABLE IF NOT EXISTS {db}.{PREDICTIONS} {o.on_cluster} (
    prediction_id String,
    time DateTime64(3, 'UTC'),
    model_name LowCardinality(String),
    model_version LowCardinality(String),
    predicted String,
    value Nullable(Float64),
    score Nullable(Float64),
    inserted DateTime('UTC') DEFAULT now()
) ENGINE = {o.engine("ReplacingMergeTree")}
PARTITION BY toDate(time)
ORDER BY (time, prediction_id)
TTL inserted + {ttl}
{o.dedup_settings_clause}"""
    labels = f"""CREATE TABLE IF NOT EXISTS {db}.{LABELS} {o.on_cluster} (
    prediction_id String,
    label String,
    label_value Nullable(Float64),
    label_time DateTime64(3, 'UTC'),
    received DateTime64(3, 'UTC') DEFAULT now64(3),
    source LowCardinality(String)
) ENGINE = {o.engine("MergeTree")}
ORDER BY (prediction_id, label_time)
TTL toDateTime(received) + {ttl}
{o.dedup_settings_clause}"""
    value = f"toFloat64OrNull({_attr(semconv.PREDICTION_VALUE)})"
    explicit = f"toFloat64OrNull({_attr(semconv.PREDICTION_SCORE)})"
    probability = f"({explicit} IS NULL AND {value} >= 0 AND {value} <= 1)"
    model = (f"coalesce(nullIf({_attr(semconv.MODEL_NAME)}, ''), "
             f"ResourceAttributes['{semconv.MODEL_NAME}'])")
    version = (f"coalesce(nullIf({_attr(semconv.MODEL_VERSION)}, ''), "
               f"ResourceAttributes['{semconv.MODEL_VERSION}'])")
    predictions_mv = f"""CREATE MATERIALIZED VIEW IF NOT EXISTS {db}.{PREDICTIONS}_mv {o.on_cluster}
TO {db}.{PREDICTIONS} AS
SELECT
    {_attr(semconv.PREDICTION_ID)} AS prediction_id,
    Timestamp AS time,
    {model} AS model_name,
    {version} AS model_version,
    if({probability}, toString(toUInt8({value} >= 0.5)),
       {normalized_class(_attr(semconv.PREDICTION_VALUE))}) AS predicted,
    {value} AS value,
    if({explicit} IS NOT NULL, {explicit}, if({probability}, {value}, NULL)) AS score
FROM {db}.otel_logs
WHERE EventName = '{semconv.PREDICTION_EVENT}' AND {_attr(semconv.PREDICTION_ID)} != ''"""
    labels_mv = f"""CREATE MATERIALIZED VIEW IF NOT EXISTS {db}.{LABELS}_mv {o.on_cluster}
TO {db}.{LABELS} AS
SELECT
    {_attr(semconv.PREDICTION_ID)} AS prediction_id,
    {normalized_class(_attr(semconv.PREDICTION_LABEL))} AS label,
    toFloat64OrNull({_attr(semconv.PREDICTION_LABEL)}) AS label_value,
    Timestamp AS label_time,
    now64(3) AS received,
    'otlp' AS source
FROM {db}.otel_logs
WHERE EventName = '{semconv.GROUND_TRUTH_EVENT}'
  AND {_attr(semconv.PREDICTION_ID)} != '' AND {_attr(semconv.PREDICTION_LABEL)} != ''"""
    return [predictions, labels, predictions_mv, labels_mv]
