"""Scrape Knative and OpenFaaS Prometheus endpoints into OTLP metrics.

Knative's queue-proxy exposes ``revision_request_count`` / ``revision_request_latencies``
(OpenCensus era, labels ``service_name``, ``revision_name``, ``namespace_name``) or, since
its OpenTelemetry migration, ``kn.serving.invocation.duration`` and friends (exported as
``kn_serving_…`` with labels ``kn_service_name``, ``kn_revision_name``,
``k8s_namespace_name``); the OpenFaaS gateway exposes ``gateway_function_invocation_total``
and the ``gateway_functions_seconds`` histogram (label ``function_name``). Names are kept
as scraped; the labels naming the function become ``faas.*`` resource attributes so that
both schemes land on the same resource. Histograms stay histograms (cumulative buckets
turned into per-bucket counts), counters become cumulative monotonic sums.
"""

from __future__ import annotations

import math
import time
import urllib.request
from collections.abc import Callable
from functools import partial

from prometheus_client.parser import text_string_to_metric_families

from obsloop.collectors import selfmetrics
from obsloop.collectors.config import PrometheusCollectorConfig
from obsloop.collectors.encode_metrics import CUMULATIVE, MetricsBuilder
from obsloop.collectors.forward import Submit
from obsloop.collectors.registry import CollectorKind, PullContext, Scheduled
from obsloop.collectors.retry import classify_http_error, submit_error, with_backoff
from obsloop.core import semconv

COLLECTOR = "prometheus"

# label -> resource attribute, for each naming scheme (the first present label wins)
_FUNCTION_LABELS = ("kn_service_name", "kn.service.name", "service_name", "function_name",
                    "configuration_name", "kn_configuration_name")
_VERSION_LABELS = ("kn_revision_name", "kn.revision.name", "revision_name")
_NAMESPACE_LABELS = ("k8s_namespace_name", "k8s.namespace.name", "namespace_name")
_RESOURCE_LABELS = set(_FUNCTION_LABELS + _VERSION_LABELS + _NAMESPACE_LABELS)


def _platform(metric: str, labels: dict[str, str]) -> str:
    if metric.startswith("gateway_") or "function_name" in labels:
        return semconv.PLATFORM_OPENFAAS
    return semconv.PLATFORM_KNATIVE


def _first(labels: dict[str, str], names: tuple[str, ...]) -> str | None:
    return next((labels[n] for n in names if labels.get(n)), None)


def _resource(metric: str, labels: dict[str, str]) -> dict[str, str]:
    resource = {semconv.CLOUD_PLATFORM: _platform(metric, labels)}
    function = _first(labels, _FUNCTION_LABELS)
    if function:
        # OpenFaaS names functions "name.namespace"
        resource[semconv.FAAS_NAME] = resource[semconv.SERVICE_NAME] = function
    if version := _first(labels, _VERSION_LABELS):
        resource[semconv.FAAS_VERSION] = version
    if namespace := _first(labels, _NAMESPACE_LABELS):
        resource["k8s.namespace.name"] = namespace
    return resource


def _point_labels(labels: dict[str, str]) -> dict[str, str]:
    return {k: v for k, v in labels.items() if k not in _RESOURCE_LABELS and k != "le"}


def exposition_to_metrics(text: str, start_ns: int, now_ns: int) -> tuple[MetricsBuilder, int]:
    """Parse Prometheus exposition text; returns the builder and the malformed-line count
    (a bad line is skipped, counted, and never stops the rest of the scrape)."""
    builder = MetricsBuilder()
    try:
        families = list(text_string_to_metric_families(text))
    except ValueError:
        return _line_by_line(text, start_ns, now_ns)
    for family in families:
        _add_family(builder, family, start_ns, now_ns)
    return builder, 0


def _line_by_line(text: str, start_ns: int, now_ns: int) -> tuple[MetricsBuilder, int]:
    """Fallback when the whole text does not parse: drop the lines that do not parse on
    their own, then parse the rest together (so histogram series stay grouped)."""
    kept, malformed = [], 0
    for line in text.splitlines():
        if line.startswith("#") or not line.strip():
            kept.append(line)
            continue
        try:
            list(text_string_to_metric_families(line + "\n"))
        except ValueError:
            malformed += 1
            continue
        kept.append(line)
    builder = MetricsBuilder()
    for family in text_string_to_metric_families("\n".join(kept) + "\n"):
        _add_family(builder, family, start_ns, now_ns)
    return builder, malformed


def _add_family(builder: MetricsBuilder, family, start_ns: int, now_ns: int) -> None:
    if family.type == "histogram":
        _add_histograms(builder, family, start_ns, now_ns)
        return
    for sample in family.samples:
        if math.isnan(sample.value):
            continue
        resource = _resource(sample.name, sample.labels)
        attributes = _point_labels(sample.labels)
        if family.type == "counter":  # the family name: without ``_total``, as OTel does
            builder.sum(resource, family.name, start_ns=start_ns, time_ns=now_ns,
                        value=sample.value, temporality=CUMULATIVE, attributes=attributes,
                        description=family.documentation)
        else:
            builder.gauge(resource, sample.name, time_ns=now_ns, value=sample.value,
                          attributes=attributes, description=family.documentation)


def _add_histograms(builder: MetricsBuilder, family, start_ns: int, now_ns: int) -> None:
    series: dict[tuple, dict] = {}
    for sample in family.samples:
        labels = {k: v for k, v in sample.labels.items() if k != "le"}
        entry = series.setdefault(tuple(sorted(labels.items())),
                                  {"labels": labels, "buckets": [], "sum": 0.0, "count": 0})
        if sample.name.endswith("_bucket"):
            entry["buckets"].append((float(sample.labels["le"]), sample.value))
        elif sample.name.endswith("_sum"):
            entry["sum"] = sample.value
        elif sample.name.endswith("_count"):
            entry["count"] = int(sample.value)
    for entry in series.values():
        buckets = sorted(entry["buckets"])
        bounds = [le for le, _ in buckets if not math.isinf(le)]
        cumulative = [count for _, count in buckets]
        if not buckets or not math.isinf(buckets[-1][0]):
            cumulative.append(entry["count"])
        counts = [int(c - p) for c, p in zip(cumulative, [0.0] + cumulative[:-1], strict=True)]
        builder.histogram(_resource(family.name, entry["labels"]), family.name,
                          start_ns=start_ns, time_ns=now_ns, bounds=bounds, counts=counts,
                          total=entry["sum"], count=entry["count"],
                          attributes=_point_labels(entry["labels"]),
                          description=family.documentation)


def _fetch(url: str, timeout: float) -> str:
    request = urllib.request.Request(url, headers={"Accept": "text/plain;version=0.0.4"})
    with urllib.request.urlopen(request, timeout=timeout) as response:  # noqa: S310 - configured URL
        return response.read().decode()


class PrometheusScraper:
    """Scrapes each target once per :meth:`poll_once`; counters keep the process start as
    their start time, which is what a cumulative sum from a scrape can honestly claim."""

    def __init__(self, targets: list[str], submit: Submit, *, timeout: float = 10.0,
                 sleep: Callable[[float], None] = time.sleep,
                 fetch: Callable[[str, float], str] = _fetch) -> None:
        self.targets = targets
        self.submit = submit
        self.timeout = timeout
        self.sleep = sleep
        self.fetch = fetch
        self.start_ns = time.time_ns()

    def poll_once(self) -> int:
        handed = 0
        for url in self.targets:
            text = with_backoff(partial(self.fetch, url, self.timeout), classify_http_error,
                                collector=COLLECTOR, attempts=3, sleep=self.sleep)
            selfmetrics.PAGES.labels(COLLECTOR).inc()
            builder, malformed = exposition_to_metrics(text, self.start_ns, time.time_ns())
            if malformed:
                selfmetrics.MALFORMED.labels(COLLECTOR).inc(malformed)
            if not builder.points:
                continue
            payload = builder.build().SerializeToString()
            with_backoff(partial(self.submit, "metrics", payload), submit_error,
                         collector=COLLECTOR, sleep=self.sleep)
            selfmetrics.EVENTS.labels(COLLECTOR).inc(builder.points)
            handed += builder.points
        return handed


def build(ctx: PullContext) -> list[Scheduled]:
    prometheus: PrometheusCollectorConfig = ctx.section
    return [Scheduled("prometheus", PrometheusScraper(prometheus.targets, ctx.submit),
                      prometheus.poll_interval_seconds)]


KIND = CollectorKind("prometheus", PrometheusCollectorConfig, build=build)
