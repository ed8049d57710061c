"""A simulated serverless fleet that speaks OTLP: what a newcomer sees arrive in ``make run``,
and the payload of the ingest benchmark.

Each function runs on one platform with a model behind it; invocations are SERVER spans
with the FaaS semantic conventions and a child ``model.predict`` span, cold starts are
rarer than warm ones and slower, latency is log-normal, a few invocations fail. Logs carry
the model's prediction events; metrics carry the duration histogram and invocation count.
A model in ``ServerlessTraffic.labelled`` is a calibrated classifier whose predictions carry
an id and a score, and whose ground truth follows later as ``obsloop.model.ground_truth``
events (what ``obsloop_instrument.log_ground_truth`` sends).
"""

from __future__ import annotations

import asyncio
import contextlib
import heapq
import os
import random
import time
from collections.abc import Iterator
from dataclasses import dataclass

from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest
from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import ExportMetricsServiceRequest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue
from opentelemetry.proto.logs.v1.logs_pb2 import ScopeLogs
from opentelemetry.proto.trace.v1.trace_pb2 import Span, Status

from obsloop.collectors.encode_metrics import CUMULATIVE
from obsloop.core import semconv as sc


@dataclass(frozen=True)
class FunctionSpec:
    name: str
    provider: str
    platform: str
    region: str
    model: str
    model_version: str
    memory_mb: int
    trigger: str
    median_ms: float


FLEET = (
    FunctionSpec("fraud-scorer", "aws", sc.PLATFORM_AWS_LAMBDA, "us-east-1", "fraud-detection-model", "2.1.0", 4096, "http", 45),
    FunctionSpec("churn-predictor", "aws", sc.PLATFORM_AWS_LAMBDA, "eu-west-1", "churn-model", "1.4.2", 1024, "pubsub", 80),
    FunctionSpec("image-tagger", "gcp", sc.PLATFORM_GCP_CLOUD_RUN, "europe-west1", "vit-tagger", "3.0.1", 2048, "http", 120),
    FunctionSpec("sentiment", "gcp", sc.PLATFORM_GCP_CLOUD_FUNCTIONS, "us-central1", "sentiment-bert", "0.9.0", 512, "http", 60),
    FunctionSpec("doc-classifier", "azure", sc.PLATFORM_AZURE_FUNCTIONS, "westeurope", "doc-classifier", "5.2.0", 1536, "http", 95),
    FunctionSpec("recommender", "azure", sc.PLATFORM_AZURE_FUNCTIONS, "eastus", "two-tower-recs", "7.0.3", 2048, "timer", 70),
    FunctionSpec("anomaly-scorer", "", sc.PLATFORM_KNATIVE, "on-prem-1", "isolation-forest", "1.1.0", 256, "http", 25),
    FunctionSpec("embedder", "", sc.PLATFORM_OPENFAAS, "on-prem-1", "minilm-embedder", "2.0.0", 768, "http", 35),
)


def _kv(key: str, value: str | int | float | bool) -> KeyValue:
    if isinstance(value, bool):
        return KeyValue(key=key, value=AnyValue(bool_value=value))
    if isinstance(value, int):
        return KeyValue(key=key, value=AnyValue(int_value=value))
    if isinstance(value, float):
        return KeyValue(key=key, value=AnyValue(double_value=value))
    return KeyValue(key=key, value=AnyValue(string_value=value))


def _resource(fn: FunctionSpec) -> list[KeyValue]:
    attrs = [
        _kv(sc.SERVICE_NAME, fn.name),
        _kv(sc.CLOUD_PLATFORM, fn.platform),
        _kv(sc.CLOUD_REGION, fn.region),
        _kv(sc.FAAS_NAME, fn.name),
        _kv(sc.FAAS_VERSION, fn.model_version),
        _kv(sc.FAAS_MAX_MEMORY, fn.memory_mb * 1024 * 1024),
    ]
    if fn.provider:
        attrs.append(_kv(sc.CLOUD_PROVIDER, fn.provider))
    return attrs


@dataclass
class Canary:
    """A green model version beside the function's blue one."""

    version: str
    share: float
    """Fraction of the invocations the green version serves."""
    latency_factor: float = 1.0


@dataclass
class Labelled:
    """Ground truth for a model's predictions: ``coverage`` of them are labelled
    ``delay_seconds`` (event time) after the prediction."""

    delay_seconds: float = 30.0
    coverage: float = 0.8
    flip: float = 0.0
    """Share of the labels that follow another concept (the other class) while inputs and
    scores do not change: a concept drift. Right ``c (1 - flip) + (1 - c) flip`` of the time
    for confidence ``c`` (0.92 on average: 0.38 makes it 0.60)."""


class ServerlessTraffic:
    """Deterministic (seeded) generator of OTLP requests from the fleet."""

    def __init__(self, seed: int = 7, fleet: tuple[FunctionSpec, ...] = FLEET) -> None:
        self.random = random.Random(seed)
        self.fleet = fleet
        self.latency_factor: dict[str, float] = {}
        """Multiplier per function name, to inject a latency regression."""
        self.feature_shift: dict[str, float] = {}
        """Multiplier of the ``amount`` feature per model name, to inject a covariate drift."""
        self.canary: dict[str, Canary] = {}
        """Per function name, a second model version taking part of the traffic (blue/green)."""
        self.labelled: dict[str, Labelled] = {}
        """Per model name, its ground truth (the model then logs prediction ids and scores)."""
        self._truth: dict[str, list[tuple[int, str, int]]] = {}
        """Per labelled model, a heap of labels not sent yet: (event time, prediction id, label)."""

    def _invocation(self, fn: FunctionSpec, now_ns: int, factor: float = 1.0) -> tuple[int, int, bool, bool]:
        cold = self.random.random() < 0.03
        factor *= self.latency_factor.get(fn.name, 1.0)
        duration_ms = self.random.lognormvariate(0, 0.35) * fn.median_ms * factor
        if cold:
            duration_ms += self.random.uniform(300, 1200)
        error = self.random.random() < 0.01
        start = now_ns - int(duration_ms * 1e6) - self.random.randrange(0, 1_000_000_000)
        return start, int(duration_ms * 1e6), cold, error

    def traces(self, spans: int, now_ns: int | None = None) -> ExportTraceServiceRequest:
        """About ``spans`` spans: one SERVER span per invocation plus a ``model.predict`` child."""
        now_ns = now_ns or time.time_ns()
        request = ExportTraceServiceRequest()
        per_function = max(1, spans // (2 * len(self.fleet)))
        for fn in self.fleet:
            resource_spans = request.resource_spans.add()
            resource_spans.resource.attributes.extend(_resource(fn))
            scope = resource_spans.scope_spans.add()
            scope.scope.name = "obsloop-instrument"
            scope.scope.version = "0.1.0"
            for _ in range(per_function):
                canary = self.canary.get(fn.name)
                if canary is not None and self.random.random() < canary.share:
                    version, latency_factor = canary.version, canary.latency_factor
                else:
                    version, latency_factor = fn.model_version, 1.0
                start, duration, cold, error = self._invocation(fn, now_ns, latency_factor)
                trace_id, root_id = os.urandom(16), os.urandom(8)
                root = scope.spans.add(
                    trace_id=trace_id, span_id=root_id, name=f"{fn.name} invoke",
                    kind=Span.SPAN_KIND_SERVER, start_time_unix_nano=start,
                    end_time_unix_nano=start + duration,
                )
                root.attributes.extend([
                    _kv(sc.FAAS_TRIGGER, fn.trigger),
                    _kv(sc.FAAS_INVOCATION_ID, os.urandom(8).hex()),
                    _kv(sc.FAAS_COLDSTART, cold),
                    _kv(sc.MODEL_NAME, fn.model),
                    _kv(sc.MODEL_VERSION, version),
                    _kv("http.response.status_code", 500 if error else 200),
                ])
                if error:
                    root.status.CopyFrom(Status(code=Status.STATUS_CODE_ERROR, message="model inference failed"))
                    event = root.events.add(name="exception", time_unix_nano=start + duration)
                    event.attributes.extend([_kv("exception.type", "RuntimeError"),
                                             _kv("exception.message", "model inference failed")])
                child = scope.spans.add(
                    trace_id=trace_id, span_id=os.urandom(8), parent_span_id=root_id,
                    name="model.predict", kind=Span.SPAN_KIND_INTERNAL,
                    start_time_unix_nano=start + duration // 10,
                    end_time_unix_nano=start + duration * 9 // 10,
                )
                child.attributes.extend([_kv(sc.MODEL_NAME, fn.model), _kv("model.batch_size", 1),
                                         _kv("model.score", round(self.random.random(), 4))])
        return request

    def logs(self, records: int, now_ns: int | None = None, *, labelled_only: bool = False) -> ExportLogsServiceRequest:
        """Prediction events (``obsloop.model.prediction``), one per record, and the ground
        truth of the labelled models that is due by ``now_ns``; ``labelled_only`` leaves the
        other models out."""
        now_ns = now_ns or time.time_ns()
        request = ExportLogsServiceRequest()
        per_function = max(1, records // len(self.fleet))
        for fn in self.fleet:
            labelled = self.labelled.get(fn.model)
            if labelled_only and labelled is None:
                continue
            resource_logs = request.resource_logs.add()
            resource_logs.resource.attributes.extend(_resource(fn))
            scope = resource_logs.scope_logs.add()
            scope.scope.name = "obsloop-instrument"
            for _ in range(per_function):
                at = now_ns - self.random.randrange(0, 1_000_000_000)
                record = scope.log_records.add(
                    time_unix_nano=at, severity_number=9, severity_text="INFO", event_name=sc.PREDICTION_EVENT,
                    trace_id=os.urandom(16), span_id=os.urandom(8),
                )
                record.body.string_value = f"prediction for {fn.model}"
                record.attributes.extend([_kv(sc.MODEL_NAME, fn.model), _kv(sc.MODEL_VERSION, fn.model_version)])
                if labelled is None:
                    amount = round(self.random.lognormvariate(3, 1) * self.feature_shift.get(fn.model, 1.0), 2)
                    record.attributes.extend([
                        _kv(f"{sc.FEATURE_PREFIX}amount", amount),
                        _kv(f"{sc.FEATURE_PREFIX}country", self.random.choice(["DE", "FR", "US", "BR"])),
                        _kv(sc.PREDICTION_VALUE, round(min(1.0, amount / 200), 4)),
                    ])
                else:
                    record.attributes.extend(self._labelled_prediction(fn.model, labelled, at))
            if labelled is not None:
                self._ground_truth(scope, fn.model, now_ns)
        return request

    def _labelled_prediction(self, model: str, labelled: Labelled, at_ns: int) -> list[KeyValue]:
        """A calibrated classifier's prediction (right with probability ``max(score, 1 - score)``
        before a concept drift), its label queued for ``delay_seconds`` later."""
        confidence = self.random.uniform(0.84, 1.0)
        predicted = int(self.random.random() < 0.5)
        right = (self.random.random() < confidence) != (self.random.random() < labelled.flip)
        prediction_id = f"{self.random.getrandbits(64):016x}"
        if self.random.random() < labelled.coverage:
            due = at_ns + int(labelled.delay_seconds * 1e9)
            heapq.heappush(self._truth.setdefault(model, []),
                           (due, prediction_id, predicted if right else 1 - predicted))
        return [
            _kv(f"{sc.FEATURE_PREFIX}tokens", max(1, round(self.random.gauss(120, 25)))),
            _kv(f"{sc.FEATURE_PREFIX}language", self.random.choice(["en", "de", "fr", "es"])),
            _kv(sc.PREDICTION_ID, prediction_id),
            _kv(sc.PREDICTION_VALUE, predicted),
            _kv(sc.PREDICTION_SCORE, round(confidence if predicted else 1 - confidence, 4)),
        ]

    def _ground_truth(self, scope: ScopeLogs, model: str, now_ns: int) -> None:
        """The labels of ``model`` observed by ``now_ns``, as ``log_ground_truth`` sends them."""
        due = self._truth.get(model, [])
        while due and due[0][0] <= now_ns:
            at, prediction_id, label = heapq.heappop(due)
            record = scope.log_records.add(time_unix_nano=at, severity_number=9, severity_text="INFO",
                                           event_name=sc.GROUND_TRUTH_EVENT)
            record.body.string_value = f"ground truth for {model}"
            record.attributes.extend([_kv(sc.PREDICTION_ID, prediction_id), _kv(sc.PREDICTION_LABEL, label)])

    def metrics(self, now_ns: int | None = None) -> ExportMetricsServiceRequest:
        """Per function: an invocation counter and a duration histogram (cumulative)."""
        now_ns = now_ns or time.time_ns()
        request = ExportMetricsServiceRequest()
        bounds = [5.0, 10, 25, 50, 75, 100, 250, 500, 750, 1000, 2500, 5000]
        for fn in self.fleet:
            resource_metrics = request.resource_metrics.add()
            resource_metrics.resource.attributes.extend(_resource(fn))
            scope = resource_metrics.scope_metrics.add()
            scope.scope.name = "obsloop-instrument"
            durations = [self._invocation(fn, now_ns)[1] / 1e6 for _ in range(20)]
            counter = scope.metrics.add(name="faas.invocations", unit="{invocation}")
            counter.sum.aggregation_temporality = CUMULATIVE
            counter.sum.is_monotonic = True
            counter.sum.data_points.add(start_time_unix_nano=now_ns - 60_000_000_000,
                                        time_unix_nano=now_ns, as_int=len(durations))
            histogram = scope.metrics.add(name="faas.invoke_duration", unit="ms")
            histogram.histogram.aggregation_temporality = CUMULATIVE
            point = histogram.histogram.data_points.add(
                start_time_unix_nano=now_ns - 60_000_000_000, time_unix_nano=now_ns,
                count=len(durations), sum=sum(durations), min=min(durations), max=max(durations),
                explicit_bounds=bounds,
            )
            counts = [0] * (len(bounds) + 1)
            for value in durations:
                counts[sum(1 for b in bounds if value > b)] += 1
            point.bucket_counts.extend(counts)
        return request

    def payloads(self, spans_per_request: int) -> Iterator[tuple[str, bytes]]:
        """An endless mix: mostly traces, with logs and metrics alongside."""
        while True:
            yield "traces", self.traces(spans_per_request).SerializeToString()
            yield "logs", self.logs(max(8, spans_per_request // 4)).SerializeToString()
            yield "metrics", self.metrics().SerializeToString()


async def send_forever(
    endpoint: str,
    traffic: ServerlessTraffic,
    *,
    requests_per_second: float,
    spans_per_request: int = 50,
    headers: dict[str, str] | None = None,
    stop: asyncio.Event | None = None,
) -> dict[str, int]:
    """Post the fleet's traffic to an OTLP/HTTP ``endpoint`` until ``stop`` is set.

    Requests are paced on a schedule, not by a pause after each one: a pause would add the
    request's own latency to every interval, and the rate would fall short of
    ``requests_per_second`` by a few percent (the demo's detectors, trained on history at
    the nominal rate, saw that as a throughput drop on every function)."""
    import aiohttp

    stop = stop or asyncio.Event()
    sent = {"accepted": 0, "refused": 0, "failed": 0}
    interval = 1.0 / requests_per_second
    payloads = traffic.payloads(spans_per_request)
    clock = asyncio.get_running_loop().time
    due = clock()
    async with aiohttp.ClientSession(headers={"Content-Type": "application/x-protobuf", **(headers or {})}) as session:
        while not stop.is_set():
            signal, body = next(payloads)
            try:
                async with session.post(f"{endpoint}/v1/{signal}", data=body) as response:
                    await response.read()
                    sent["accepted" if response.status == 200 else "refused"] += 1
            except aiohttp.ClientError:
                sent["failed"] += 1
            due = max(due + interval, clock() - 1.0)  # more than a second behind: no burst to catch up
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), timeout=max(due - clock(), 0.0))
    return sent


async def send_history(
    endpoint: str,
    traffic: ServerlessTraffic,
    *,
    seconds: float,
    step_seconds: float,
    spans_per_step: int,
    records_per_step: int,
    labelled_per_step: int = 0,
    concurrency: int = 4,
) -> int:
    """Post ``seconds`` of past traffic (event times from ``now - seconds`` to now) at the live
    volume per step, in one large request per signal and step, so that detectors start from a
    learned normal instead of from zero; returns requests accepted. ``labelled_per_step``
    predictions per step of each labelled model, with their ground truth, give the quality
    detector its baseline."""
    import aiohttp

    now_ns = time.time_ns()
    steps = int(seconds / step_seconds)
    jobs: asyncio.Queue[tuple[str, bytes]] = asyncio.Queue()
    for step in range(steps, 0, -1):
        at = now_ns - int(step * step_seconds * 1e9)
        jobs.put_nowait(("traces", traffic.traces(spans_per_step, at).SerializeToString()))
        if records_per_step:
            jobs.put_nowait(("logs", traffic.logs(records_per_step, at).SerializeToString()))
        elif labelled_per_step and traffic.labelled:
            jobs.put_nowait(("logs", traffic.logs(labelled_per_step * len(traffic.fleet), at,
                                                  labelled_only=True).SerializeToString()))
    accepted = 0

    async def worker(session: aiohttp.ClientSession) -> None:
        nonlocal accepted
        while not jobs.empty():
            signal, body = jobs.get_nowait()
            async with session.post(f"{endpoint}/v1/{signal}", data=body) as response:
                await response.read()
                accepted += response.status == 200

    async with aiohttp.ClientSession(headers={"Content-Type": "application/x-protobuf"}) as session:
        await asyncio.gather(*(worker(session) for _ in range(concurrency)))
    return accepted
