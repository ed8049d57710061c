"""``AWS/Lambda`` CloudWatch metrics through ``GetMetricData``, checkpointed on time.

Counts (Invocations, Errors, Throttles) become delta sums over each period; Duration
(average and maximum) and ConcurrentExecutions (maximum) become gauges. CloudWatch keeps
revising the newest datapoints for a few minutes, so the window ends ``delay`` before
now; the checkpoint is the end of the last window whose points were accepted.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from obsloop.collectors.aws_logs_pull import classify_aws_error
from obsloop.collectors.checkpoint import CheckpointStore
from obsloop.collectors.cursor import Batch, CursorPuller, Page
from obsloop.collectors.encode_metrics import DELTA, MetricsBuilder
from obsloop.collectors.forward import Submit
from obsloop.core import semconv

COLLECTOR = "aws.metrics"
NAMESPACE = "AWS/Lambda"
# (CloudWatch metric, statistic, OTLP name, unit, is a count)
SERIES = [
    ("Invocations", "Sum", "aws.lambda.invocations", "{invocation}", True),
    ("Errors", "Sum", "aws.lambda.errors", "{error}", True),
    ("Throttles", "Sum", "aws.lambda.throttles", "{throttle}", True),
    ("Duration", "Average", "aws.lambda.duration.average", "ms", False),
    ("Duration", "Maximum", "aws.lambda.duration.maximum", "ms", False),
    ("ConcurrentExecutions", "Maximum", "aws.lambda.concurrent_executions", "{execution}", False),
]


class LambdaMetricsPuller(CursorPuller):
    collector = COLLECTOR

    def __init__(
        self,
        client,
        functions: list[str],
        checkpoints: CheckpointStore,
        submit: Submit,
        *,
        region: str | None,
        account_id: str | None = None,
        initial_start_s: int,
        period_s: int = 60,
        delay_s: int = 300,
        sleep: Callable[[float], None] = time.sleep,
        clock: Callable[[], float] = time.time,
    ) -> None:
        super().__init__(checkpoints, submit, sleep=sleep, clock=clock)
        self.client = client
        self.functions = functions
        self.region = region
        self.account_id = account_id
        self.initial_start_s = initial_start_s - initial_start_s % period_s
        self.period_s = period_s
        self.delay_s = delay_s

    def _queries(self) -> list[dict]:
        queries = []
        for f_index, function in enumerate(self.functions):
            for s_index, (metric, stat, _, _, _) in enumerate(SERIES):
                queries.append({
                    "Id": f"m{f_index}_{s_index}",
                    "MetricStat": {
                        "Metric": {"Namespace": NAMESPACE, "MetricName": metric,
                                   "Dimensions": [{"Name": "FunctionName", "Value": function}]},
                        "Period": self.period_s,
                        "Stat": stat,
                    },
                    "ReturnData": True,
                })
        return queries

    def classify(self, exc: Exception) -> str | None:
        return classify_aws_error(exc)

    def sources(self) -> list[str]:
        return ["end"]  # one cursor: the end of the last accepted window

    def next_page(self, source: str, saved: int | None) -> Page | None:
        """Every point from ``saved`` to ``now - delay``, its API pages accepted together."""
        start = saved or self.initial_start_s
        end = int(self.clock()) - self.delay_s
        end -= end % self.period_s
        if end <= start:
            return None
        builder = MetricsBuilder()
        token = None
        reads = 0
        while True:
            kwargs = {"MetricDataQueries": self._queries(), "StartTime": start, "EndTime": end,
                      "ScanBy": "TimestampAscending"}
            if token:
                kwargs["NextToken"] = token
            page = self.retry(lambda: self.client.get_metric_data(**kwargs))  # noqa: B023 - called in this iteration
            reads += 1
            for result in page.get("MetricDataResults", []):
                self._add(builder, result)
            token = page.get("NextToken")
            if not token:
                break
        batch = Batch("metrics", builder.build().SerializeToString(), builder.points,
                      counted=False) if builder.points else None
        return Page(end, batch, newest=end, reads=reads)

    def _add(self, builder: MetricsBuilder, result: dict) -> None:
        f_index, s_index = (int(part) for part in result["Id"][1:].split("_"))
        function = self.functions[f_index]
        _, stat, name, unit, is_count = SERIES[s_index]
        resource = {
            semconv.SERVICE_NAME: function,
            semconv.CLOUD_PROVIDER: semconv.PROVIDER_AWS,
            semconv.CLOUD_PLATFORM: semconv.PLATFORM_AWS_LAMBDA,
            semconv.FAAS_NAME: function,
        }
        if self.region:
            resource[semconv.CLOUD_REGION] = self.region
        if self.account_id:
            resource[semconv.CLOUD_ACCOUNT_ID] = self.account_id
        for timestamp, value in zip(result["Timestamps"], result["Values"], strict=True):
            start_ns = int(timestamp.timestamp()) * 1_000_000_000
            if is_count:
                builder.sum(resource, name, start_ns=start_ns,
                            time_ns=start_ns + self.period_s * 1_000_000_000, value=value,
                            temporality=DELTA, unit=unit)
            else:
                builder.gauge(resource, name, time_ns=start_ns, value=value, unit=unit,
                              attributes={"aws.cloudwatch.statistic": stat})
