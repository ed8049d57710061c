"""obsloop's five dashboards: Fleet, Cost, Model health, Detections and feedback, Collector health.

Every ClickHouse query reads the tables obsloop writes (``faas_invocations_merged``,
``otel_traces``, ``otel_logs``, ``detections``, ``feedback_audit``,
``feedback_dead_letters``) through the Grafana ClickHouse plugin's macros, so the same JSON
works against a ClickHouse server and against ``obsloop serve``'s ClickHouse HTTP interface
over the embedded engine. Collector health is PromQL over a Prometheus scraping ``/metrics``.
"""

from __future__ import annotations

from obsloop.core import semconv as sc
from obsloop.dashboards.grafana import Annotation, Constant, Dashboard, Panel, PromQL, Row, Sql, Variable

INVOCATIONS = "faas_invocations_merged"
FLEET_FILTER = "platform IN (${platform:singlequote}) AND function IN (${function:singlequote})"

PLATFORM = Variable("platform", "Platform", f"SELECT DISTINCT platform FROM {INVOCATIONS} ORDER BY platform")
FUNCTION = Variable(
    "function", "Function",
    f"SELECT DISTINCT function FROM {INVOCATIONS} WHERE platform IN (${{platform:singlequote}}) ORDER BY function",
)
COST_CENTER = Variable(
    "cost_center", "Cost center",
    f"SELECT DISTINCT ifNull(cost_center, '') FROM {INVOCATIONS} ORDER BY 1",
)
CENTER = "ifNull(cost_center, 'unassigned')"
"""Spend without a cost center, shown as such. Its alias must not be ``cost_center``: ClickHouse
would substitute the alias inside ``WHERE`` too, and the filter on ``ifNull(cost_center, '')``
would drop exactly this spend."""
BUDGET = Constant("monthly_budget_usd", "Monthly budget (USD)", "1000")


def _log_attr(key: str) -> str:
    """A prediction record's attribute, falling back to its resource (as the instrument sets either)."""
    return f"if(LogAttributes['{key}'] != '', LogAttributes['{key}'], ResourceAttributes['{key}'])"


MODEL_VERSION = f"concat({_log_attr(sc.MODEL_NAME)}, ' ', {_log_attr(sc.MODEL_VERSION)})"
PREDICTIONS = f"FROM otel_logs WHERE EventName = '{sc.PREDICTION_EVENT}' AND $__timeFilter(Timestamp)"
MODEL = Variable(
    "model", "Model version",
    f"SELECT DISTINCT {MODEL_VERSION} FROM otel_logs WHERE EventName = '{sc.PREDICTION_EVENT}' ORDER BY 1",
)

DETECTIONS_ANNOTATION = Annotation(
    "Detections",
    "SELECT time, if(summary != '', summary, concat(kind, ' (', severity, ', score ', toString(round(score, 2)), ') ', "
    f"series['{sc.FAAS_NAME}'], ' ', series['{sc.MODEL_NAME}'])) AS text, "
    "[kind, severity, if(cleared, 'cleared', 'open')] AS tags "
    "FROM detections WHERE $__timeFilter(time) ORDER BY time",
    "orange",
)
FEEDBACK_ANNOTATION = Annotation(
    "Feedback actions",
    "SELECT time, concat(action, ' ', deployment, ': ', outcome, if(reference != '', concat(' ', reference), ''), "
    "' - ', reason) AS text, [action, outcome] AS tags "
    "FROM feedback_audit WHERE $__timeFilter(time) AND outcome IN ('applied', 'dry_run', 'failed') ORDER BY time",
    "purple",
)
ANNOTATIONS = (DETECTIONS_ANNOTATION, FEEDBACK_ANNOTATION)


def _per_interval(title: str, by: str, value: str, source: str, unit: str) -> Panel:
    """A time series of ``value`` (``expression AS name``) per ``by``, over ``source``."""
    return Panel(title, (Sql(
        f"SELECT $__timeInterval(time) AS time, {by}, {value} {source} GROUP BY time, {by} ORDER BY time"),), unit=unit)


def fleet() -> Dashboard:
    by_platform = f"FROM {INVOCATIONS} WHERE $__timeFilter(time) AND {FLEET_FILTER}"
    spans = (
        "FROM otel_traces WHERE SpanKind = 'Server' AND $__timeFilter(Timestamp) "
        f"AND ResourceAttributes['{sc.CLOUD_PLATFORM}'] IN (${{platform:singlequote}})"
    )
    return Dashboard(
        uid="obsloop-fleet", title="obsloop / Fleet",
        description="Invocations, errors and latency of every function, from the platforms' own "
                    "invocation reports (faas_invocations) and from traced invocations.",
        variables=(PLATFORM, FUNCTION), annotations=ANNOTATIONS,
        items=(
            Panel("Invocations", (Sql(f"SELECT count() {by_platform}", "table"),), "stat", 6, 4),
            Panel("Error rate", (Sql(f"SELECT countIf(status != 'success') / count() {by_platform}", "table"),),
                  "stat", 6, 4, unit="percentunit"),
            Panel("p95 latency", (Sql(f"SELECT quantile(0.95)(duration_ms) {by_platform}", "table"),),
                  "stat", 6, 4, unit="ms"),
            Panel("Cold starts", (Sql(f"SELECT countIf(coldstart = 1) {by_platform}", "table"),), "stat", 6, 4),
            Row("By platform"),
            _per_interval("Invocations per platform", "platform", "count() AS invocations", by_platform, "short"),
            _per_interval("Errors per platform", "platform", "countIf(status != 'success') AS errors",
                          by_platform, "short"),
            _per_interval("p95 latency per platform", "platform", "quantile(0.95)(duration_ms) AS p95",
                          by_platform, "ms"),
            _per_interval("p99 latency per platform", "platform", "quantile(0.99)(duration_ms) AS p99",
                          by_platform, "ms"),
            Row("By function"),
            _per_interval("p95 latency per function", "function", "quantile(0.95)(duration_ms) AS p95",
                          by_platform, "ms"),
            _per_interval("p99 latency per function", "function", "quantile(0.99)(duration_ms) AS p99",
                          by_platform, "ms"),
            Panel("Functions", (Sql(
                "SELECT platform, function, count() AS invocations, countIf(status != 'success') AS errors, "
                "round(countIf(status != 'success') / count(), 4) AS error_rate, "
                "round(quantile(0.95)(duration_ms), 1) AS p95_ms, round(quantile(0.99)(duration_ms), 1) AS p99_ms, "
                "countIf(coldstart = 1) AS cold_starts, round(sum(cost_usd), 4) AS spend_usd "
                f"{by_platform} GROUP BY platform, function ORDER BY invocations DESC", "table"),),
                "table", 24, 9),
            Row("Traced invocations (obsloop-instrument and OpenTelemetry SDKs)"),
            Panel("Traced invocations and errors per function", (Sql(
                f"SELECT $__timeInterval(Timestamp) AS time, ServiceName AS function, count() AS invocations, "
                f"countIf(StatusCode = 'Error') AS errors {spans} GROUP BY time, function ORDER BY time"),),
                unit="short"),
            Panel("Traced p95 / p99 per function", (Sql(
                f"SELECT $__timeInterval(Timestamp) AS time, ServiceName AS function, "
                f"quantile(0.95)(Duration) / 1e6 AS p95, quantile(0.99)(Duration) / 1e6 AS p99 {spans} "
                "GROUP BY time, function ORDER BY time"),), unit="ms"),
        ),
    )


def cost() -> Dashboard:
    where = (f"FROM {INVOCATIONS} WHERE $__timeFilter(time) AND {FLEET_FILTER} "
             "AND ifNull(cost_center, '') IN (${cost_center:singlequote})")
    month = (f"FROM {INVOCATIONS} WHERE time >= toStartOfMonth(now()) AND {FLEET_FILTER} "
             "AND ifNull(cost_center, '') IN (${cost_center:singlequote})")
    elapsed_days = "(dateDiff('second', toDateTime(toStartOfMonth(now())), now()) / 86400)"
    run_rate = f"(SELECT sum(cost_usd) {month}) / {elapsed_days}"
    return Dashboard(
        uid="obsloop-cost", title="obsloop / Cost",
        description="Spend from the invocation reports (priced with collectors/pricing.yaml) by cost center, "
                    "function and platform; this month's burn against a linear forecast and the budget.",
        variables=(PLATFORM, FUNCTION, COST_CENTER, BUDGET), annotations=ANNOTATIONS,
        items=(
            Panel("Spend in range", (Sql(f"SELECT sum(cost_usd) {where}", "table"),), "stat", 6, 4, unit="currencyUSD"),
            Panel("Month to date", (Sql(f"SELECT sum(cost_usd) {month}", "table"),), "stat", 6, 4, unit="currencyUSD"),
            Panel("Forecast for the month", (Sql(
                f"SELECT {run_rate} * toDayOfMonth(toLastDayOfMonth(now())) AS forecast", "table"),),
                "stat", 6, 4, unit="currencyUSD",
                description="This month's spend so far, extrapolated linearly to the month's end."),
            Panel("Forecast / budget", (Sql(
                f"SELECT {run_rate} * toDayOfMonth(toLastDayOfMonth(now())) / $monthly_budget_usd AS burn",
                "table"),), "stat", 6, 4, unit="percentunit",
                description="Above 100%: at this month's rate the budget runs out before the month does."),
            Panel("Budget burn this month", (Sql(
                "SELECT toDateTime(days.day) AS time, "
                "if(days.day <= today(), sum(ifNull(spent.cost, 0)) OVER (ORDER BY days.day), NULL) AS spend, "
                f"{run_rate} * toDayOfMonth(days.day) AS forecast, toFloat64($monthly_budget_usd) AS budget "
                "FROM (SELECT toStartOfMonth(now()) + number AS day "
                "FROM numbers(toDayOfMonth(toLastDayOfMonth(now())))) AS days "
                f"LEFT JOIN (SELECT toDate(time) AS day, sum(cost_usd) AS cost {month} GROUP BY day) AS spent "
                "ON spent.day = days.day ORDER BY time"),), width=24, unit="currencyUSD",
                description="Cumulative spend, the linear forecast and the budget; the whole month, "
                            "whatever the time range."),
            Panel("Spend per cost center", (Sql(
                f"SELECT $__timeInterval(time) AS time, {CENTER} AS center, "
                f"sum(cost_usd) AS cost {where} GROUP BY time, center ORDER BY time"),),
                unit="currencyUSD", options={"legend": {"displayMode": "table", "placement": "right"}}),
            Panel("Spend per platform", (Sql(
                f"SELECT $__timeInterval(time) AS time, platform, sum(cost_usd) AS cost {where} "
                "GROUP BY time, platform ORDER BY time"),), unit="currencyUSD"),
            Panel("Spend per function", (Sql(
                f"SELECT function, sum(cost_usd) AS cost {where} GROUP BY function ORDER BY cost DESC", "table"),),
                "bargauge", 12, 8, unit="currencyUSD"),
            Panel("Cost centers", (Sql(
                f"SELECT {CENTER} AS center, platform, function, count() AS invocations, "
                "round(sum(cost_usd), 4) AS spend_usd, round(sum(cost_usd) / count() * 1e6, 2) AS usd_per_million "
                f"{where} GROUP BY center, platform, function ORDER BY spend_usd DESC", "table"),),
                "table", 12, 8),
        ),
    )


def model_health() -> Dashboard:
    selected = f"{PREDICTIONS} AND {MODEL_VERSION} IN (${{model:singlequote}})"
    prediction = f"toFloat64OrNull(LogAttributes['{sc.PREDICTION_VALUE}'])"
    return Dashboard(
        uid="obsloop-model-health", title="obsloop / Model health",
        description="Drift scores from the detectors and the distribution of predictions per model version "
                    f"(the {sc.PREDICTION_EVENT} events of obsloop-instrument).",
        variables=(MODEL,), annotations=ANNOTATIONS,
        items=(
            Panel("Drift score per model version", (Sql(
                f"SELECT $__timeInterval(time) AS time, concat(series['{sc.MODEL_NAME}'], ' ', "
                f"series['{sc.MODEL_VERSION}']) AS model, max(score) AS drift FROM detections "
                "WHERE kind = 'drift' AND NOT cleared AND $__timeFilter(time) GROUP BY time, model ORDER BY time"),),
                width=24, unit="percentunit",
                description="The drift detectors' score in [0, 1] per window; 1 is certain drift."),
            Panel("Prediction quantiles per model version", (Sql(
                f"SELECT $__timeInterval(Timestamp) AS time, {MODEL_VERSION} AS model, "
                f"quantile(0.1)({prediction}) AS p10, quantile(0.5)({prediction}) AS p50, "
                f"quantile(0.9)({prediction}) AS p90 {selected} GROUP BY time, model ORDER BY time"),)),
            Panel("Predictions per model version", (Sql(
                f"SELECT $__timeInterval(Timestamp) AS time, {MODEL_VERSION} AS model, count() AS predictions "
                f"{selected} GROUP BY time, model ORDER BY time"),), unit="short"),
            Panel("Prediction distribution", (Sql(
                f"SELECT toString(round(floor(prediction * 10) / 10, 1)) AS bucket, model, count() AS predictions "
                f"FROM (SELECT {prediction} AS prediction, {MODEL_VERSION} AS model {selected}) "
                "WHERE prediction IS NOT NULL GROUP BY bucket, model ORDER BY bucket, model", "table"),),
                "barchart", 24, 9, description="Predictions per tenth of the prediction's range, per model version.",
                options={"xField": "bucket"},
                transformations=({"id": "groupingToMatrix", "options": {
                    "rowField": "bucket", "columnField": "model", "valueField": "predictions"}},)),
            Panel("Model versions", (Sql(
                f"SELECT {MODEL_VERSION} AS model, count() AS predictions, round(avg({prediction}), 4) AS mean, "
                f"round(stddevPop({prediction}), 4) AS stddev, "
                f"countIf(LogAttributes['{sc.PREDICTION_LABEL}'] != '') AS labelled, "
                f"min(Timestamp) AS first_seen, max(Timestamp) AS last_seen {selected} "
                "GROUP BY model ORDER BY model", "table"),), "table", 24, 7),
            *quality_panels(),
        ),
    )


QUALITY_JOIN = (
    "FROM quality_predictions AS p LEFT JOIN (SELECT prediction_id, argMax(label, label_time) AS label, "
    "min(label_time) AS labelled_at FROM quality_labels WHERE label_time >= $__fromTime GROUP BY prediction_id) "
    "AS l ON p.prediction_id = l.prediction_id "
    "WHERE $__timeFilter(p.time) AND concat(p.model_name, ' ', p.model_version) IN (${model:singlequote})"
)


def quality_panels() -> tuple[Panel, ...]:
    """Accuracy from the ground truth joined so far, next to its estimate from the scores."""
    model = "concat(p.model_name, ' ', p.model_version)"
    return (
        Panel("Accuracy per model version: realized and estimated", (Sql(
            f"SELECT $__timeInterval(p.time) AS time, {model} AS model, "
            "avgIf(p.predicted = l.label, l.label != '') AS realized, "
            "avgIf(greatest(p.score, 1 - p.score), p.score IS NOT NULL) AS estimated "
            f"{QUALITY_JOIN} GROUP BY time, model ORDER BY time"),), unit="percentunit",
            description="Realized: share of labelled predictions that were right. Estimated (CBPE): the mean "
                        "of max(p, 1 - p) over the scores, what a calibrated model expects before any label."),
        Panel("Label coverage and delay", (Sql(
            f"SELECT $__timeInterval(p.time) AS time, {model} AS model, "
            "countIf(l.label != '') / count() AS coverage, "
            "quantileIf(0.5)(dateDiff('second', p.time, l.labelled_at), l.label != '') AS delay_p50_s "
            f"{QUALITY_JOIN} GROUP BY time, model ORDER BY time"),),
            description="Share of predictions with ground truth so far, and the median seconds it took."),
    )


def detections_and_feedback() -> Dashboard:
    return Dashboard(
        uid="obsloop-detections", title="obsloop / Detections and feedback",
        description="What the detectors found and what the feedback loop did about it: scaling commits, "
                    "retraining, alerts, and notifications that could not be delivered.",
        annotations=ANNOTATIONS,
        items=(
            Panel("Detections per kind", (Sql(
                "SELECT $__timeInterval(time) AS time, kind, uniqExact(id) AS detections FROM detections "
                "WHERE $__timeFilter(time) AND NOT cleared GROUP BY time, kind ORDER BY time"),), unit="short"),
            Panel("Feedback actions per outcome", (Sql(
                "SELECT $__timeInterval(time) AS time, concat(action, ' ', outcome) AS action, count() AS actions "
                "FROM feedback_audit WHERE $__timeFilter(time) GROUP BY time, action ORDER BY time"),), unit="short"),
            Panel("Detections", (Sql(
                f"SELECT time, kind, severity, round(score, 3) AS score, series['{sc.FAAS_NAME}'] AS function, "
                f"series['{sc.MODEL_NAME}'] AS model, cleared, summary, observed, expected_low, expected_high, "
                "evidence FROM detections "
                "WHERE $__timeFilter(time) ORDER BY time DESC LIMIT 200", "table"),), "table", 24, 9),
            Panel("Commits and pull requests", (Sql(
                "SELECT time, deployment, action, outcome, reference, manifest, reason FROM feedback_audit "
                "WHERE $__timeFilter(time) AND action IN ('scale_up', 'scale_down', 'rollback', 'manifest') "
                "ORDER BY time DESC LIMIT 200", "table"),), "table", 12, 8),
            Panel("Alerts and retraining", (Sql(
                "SELECT time, deployment, action, outcome, detection_id, reference, reason FROM feedback_audit "
                "WHERE $__timeFilter(time) AND action IN ('alert', 'retrain') ORDER BY time DESC LIMIT 200",
                "table"),), "table", 12, 8),
            Panel("Dead letters", (Sql(
                "SELECT time, target, kind, key, attempts, error FROM feedback_dead_letters "
                "WHERE $__timeFilter(time) ORDER BY time DESC LIMIT 200", "table"),), "table", 24, 7,
                description="Notifications and retraining triggers that exhausted their retries."),
        ),
    )


def collector_health() -> Dashboard:
    rate = "[$__rate_interval]"
    return Dashboard(
        uid="obsloop-collector", title="obsloop / Collector health",
        description="obsloop's own /metrics (scraped by Prometheus): receivers, write-ahead log, storage "
                    "inserts and platform collectors.",
        annotations=ANNOTATIONS, time_from="now-1h",
        items=(
            Panel("Export requests per outcome", (PromQL(
                f"sum by (signal, outcome) (rate(obsloop_receiver_requests_total{rate}))",
                "{{signal}} {{outcome}}"),), unit="reqps"),
            Panel("Items received and rejected", (
                PromQL(f"sum by (signal) (rate(obsloop_receiver_items_received_total{rate}))", "{{signal}} received"),
                PromQL(f"sum by (signal, reason) (rate(obsloop_receiver_items_rejected_total{rate}))",
                       "{{signal}} rejected ({{reason}})"),
            ), unit="short"),
            Panel("Items stored", (PromQL(
                f"sum by (signal) (rate(obsloop_storage_items_stored_total{rate}))", "{{signal}}"),), unit="short"),
            Panel("Segment insert p99", (PromQL(
                "histogram_quantile(0.99, sum by (le, signal) "
                f"(rate(obsloop_storage_insert_duration_seconds_bucket{rate})))", "{{signal}}"),), unit="s"),
            Panel("Write-ahead log waiting for storage", (
                PromQL("obsloop_wal_bytes", "bytes"),
            ), unit="bytes"),
            Panel("Insert errors and quarantined segments", (
                PromQL(f"sum by (signal) (increase(obsloop_storage_insert_errors_total{rate}))", "{{signal}} errors"),
                PromQL(f"sum by (signal) (increase(obsloop_storage_segments_quarantined_total{rate}))",
                       "{{signal}} quarantined"),
            ), unit="short"),
            Row("Platform collectors"),
            Panel("Collector events", (PromQL(
                f"sum by (collector) (rate(obsloop_collector_events_total{rate}))", "{{collector}}"),), unit="short"),
            Panel("Collector errors and malformed records", (
                PromQL(f"sum by (collector, kind) (increase(obsloop_collector_errors_total{rate}))",
                       "{{collector}} {{kind}}"),
                PromQL(f"sum by (collector) (increase(obsloop_collector_malformed_total{rate}))",
                       "{{collector}} malformed"),
            ), unit="short"),
            Panel("Collector lag", (PromQL("max by (collector) (obsloop_collector_lag_seconds)", "{{collector}}"),),
                  width=24, unit="s"),
        ),
    )


def all_dashboards() -> list[Dashboard]:
    return [fleet(), cost(), model_health(), detections_and_feedback(), collector_health()]
