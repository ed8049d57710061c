"""Pages on a simulated fleet: false pages per 10,000 series-windows, and per injected fault
class the share paged and the delay in windows.

The path is ``obsloop serve``'s: invocation reports (``obsloop.faas.invocation`` log records)
and prediction events are inserted into the embedded engine's ``otel_logs``, so the
``faas_windows`` view aggregates them; the real :class:`DetectorHost` reads the closed
windows and prediction events, and the real :class:`Alerter` decides what pages, posting to
a local Alertmanager-style receiver. A page is a firing notification the receiver got.

The fleet (``--functions``, default 60) over ``--warmup`` + ``--windows`` five-minute
windows: Poisson arrivals with daily and weekly seasonality (weekend traffic 50-80 %),
busy, ordinary and low-traffic functions (100-250, 15-50 and 2-6 invocations per window),
log-normal latency with a Pareto tail, 3 % cold starts (300-1500 ms extra), error rates of
1-3 %, deploys about once a day that step a function's latency and error rate by up to
12 % and 25 %. Into the measured windows it injects, on busy functions, six windows each
of: 2x p50, a tail regression (10 % of invocations 4x slower: p95 and p99 up, p50 barely),
3x error rate, throughput -50 %, a cold-start storm (25 %), an input drift (the ``amount``
feature 4x) and a cost spike (3x per invocation).

    .venv/bin/python bench/alerts/run.py [--functions 60] [--windows 200] [--seed 1]

A page during a fault, or within ``GRACE`` windows after it, on the faulty function (or its
model, or -- for a fault that raises its spend -- its cost center) is the fault's; every
other page is false.
"""

from __future__ import annotations

import argparse
import asyncio
import math
import sys
import tempfile
import time
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
from prometheus_client import CollectorRegistry

from obsloop import clickhouse
from obsloop.core import semconv
from obsloop.detectors.config import DetectorsConfig
from obsloop.detectors.detection import Detection
from obsloop.detectors.host import DetectorHost
from obsloop.feedback.alerts import Alerter
from obsloop.feedback.delivery import RetryPolicy, Sender
from obsloop.feedback.notifiers import AlertmanagerWebhook
from obsloop.pipelines.schema import SchemaOptions
from obsloop.schema import ddl

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "tests"))
from feedback.receiver import Receiver  # noqa: E402  (the test suite's recording receiver)

WINDOW = 300
T0 = datetime(2026, 11, 19, 12, 0, tzinfo=UTC)  # a Thursday: the measured windows span the weekend's start
GRACE = 12
FAULT_WINDOWS = 6
KINDS = ("latency", "error_rate", "cold_start", "throughput", "cost")
FAULTS = {
    "p50_2x": {"latency"},
    "tail_p95": {"latency"},
    "errors_3x": {"error_rate"},
    "throughput_half": {"throughput"},
    "cold_start_storm": {"cold_start"},
    "input_drift": {"drift"},
    "cost_spike": {"cost"},
}
SPEND_FAULTS = {"p50_2x", "tail_p95", "cold_start_storm", "cost_spike"}
"""Faults that raise the faulty function's spend (billed duration, cold starts, price): a
cost page of its cost center during one is the fault's."""
PREDICTIONS_PER_WINDOW = 100
MODELS_WITH_PREDICTIONS = 10


@dataclass
class Function:
    name: str
    traffic: float
    median_ms: float
    sigma: float
    error_rate: float
    memory_mb: int
    cost_center: str
    amplitude: float
    weekend: float
    deploys: list[tuple[int, float, float]] = field(default_factory=list)
    """(window, latency factor, error factor) from that window on."""

    @property
    def model(self) -> str:
        return f"model-{self.name}"


@dataclass
class Fault:
    kind: str
    function: int
    start: int
    """Window index (from T0) of its first window."""

    @property
    def end(self) -> int:
        return self.start + FAULT_WINDOWS


def fleet(n: int, total_windows: int, rng: np.random.Generator) -> list[Function]:
    functions = []
    for i in range(n):
        share = i / n
        traffic = rng.uniform(100, 250) if share < 1 / 3 else rng.uniform(15, 50) if share < 0.7 \
            else rng.uniform(2, 6)
        f = Function(f"fn-{i:03d}", traffic, rng.uniform(20, 200), rng.uniform(0.3, 0.6),
                     rng.uniform(0.01, 0.03), int(rng.choice([256, 512, 1024, 2048])),
                     f"center-{i % 6}", rng.uniform(0.3, 0.6), rng.uniform(0.5, 0.8))
        w = 0
        while True:
            w += int(rng.exponential(288))  # about once a day
            if w >= total_windows:
                break
            f.deploys.append((w, rng.uniform(0.88, 1.12), rng.uniform(0.8, 1.25)))
        functions.append(f)
    return functions


def plan_faults(functions: list[Function], warmup: int, windows: int, per_class: int,
                rng: np.random.Generator) -> list[Fault]:
    """``per_class`` faults of every class on busy functions, never overlapping (with their
    grace) on one function."""
    busy = [i for i, f in enumerate(functions) if f.traffic >= 100]
    taken: dict[int, list[tuple[int, int]]] = defaultdict(list)
    faults = []
    for kind in FAULTS:
        candidates = busy[:MODELS_WITH_PREDICTIONS] if kind == "input_drift" else busy
        placed = attempts = 0
        while placed < per_class:
            i = int(rng.choice(candidates))
            start = warmup + int(rng.integers(5, windows - FAULT_WINDOWS - GRACE))
            gap = 10 if kind == "input_drift" else 0
            attempts += 1
            if attempts > 10_000:
                raise SystemExit(f"no room for {per_class} {kind} faults: more --windows or --functions")
            span = (start - GRACE - gap, start + FAULT_WINDOWS + GRACE + gap)
            if any(a < span[1] and span[0] < b for a, b in taken[i]):
                continue
            taken[i].append(span)
            faults.append(Fault(kind, i, start))
            placed += 1
    return faults


def seasonal(f: Function, w: int) -> float:
    t = T0 + timedelta(seconds=w * WINDOW)
    hours = (t - t.replace(hour=0, minute=0, second=0)).total_seconds() / 3600
    daily = 1 + f.amplitude * math.sin(2 * math.pi * (hours - 9) / 24)
    # Smooth weekend: from Friday 22:00 to Saturday 02:00 traffic falls to f.weekend.
    saturday = datetime(2026, 11, 21, tzinfo=UTC)
    x = (t - saturday).total_seconds() / 3600
    weekend = 1 - (1 - f.weekend) / (1 + math.exp(-x))
    return daily * weekend


def generate(functions: list[Function], faults: list[Fault], total: int,
             rng: np.random.Generator):
    """Yield (window, rows) with the otel_logs rows of each window."""
    active: dict[tuple[int, int], str] = {}
    for fault in faults:
        for w in range(fault.start, fault.end):
            active[(fault.function, w)] = fault.kind
    for w in range(total):
        start_ns = int((T0.timestamp() + w * WINDOW) * 1e9)
        rows = []
        for i, f in enumerate(functions):
            fault = active.get((i, w))
            lat, err = 1.0, 1.0
            for at, lf, ef in f.deploys:
                if at <= w:
                    lat, err = lat * lf, err * ef
            lam = f.traffic * seasonal(f, w) * (0.5 if fault == "throughput_half" else 1.0)
            n = int(rng.poisson(lam))
            if n:
                median = f.median_ms * lat * (2.0 if fault == "p50_2x" else 1.0)
                duration = median * rng.lognormal(0.0, f.sigma, n)
                tail = rng.random(n) < 0.01
                duration[tail] *= 1 + rng.pareto(1.5, int(tail.sum()))
                if fault == "tail_p95":
                    duration[rng.random(n) < 0.10] *= 4
                cold = rng.random(n) < (0.25 if fault == "cold_start_storm" else 0.03)
                duration[cold] += rng.uniform(300, 1500, int(cold.sum()))
                error = rng.random(n) < min(1.0, f.error_rate * err * (3 if fault == "errors_3x" else 1))
                offsets = np.sort(rng.integers(0, WINDOW * 10**9, n))
                price = f.memory_mb / 1024 * 1.6667e-8 * (3 if fault == "cost_spike" else 1)
                for k in range(n):
                    billed = math.ceil(duration[k])
                    rows.append((start_ns + int(offsets[k]), f.name, {
                        semconv.FAAS_INVOCATION_ID: f"{f.name}-{w}-{k}",
                        semconv.FAAS_NAME: f.name,
                        semconv.CLOUD_PLATFORM: "aws_lambda",
                        semconv.MODEL_NAME: f.model,
                        semconv.MODEL_VERSION: "1.0.0",
                        semconv.FAAS_DURATION_MS: f"{duration[k]:.2f}",
                        semconv.FAAS_COLDSTART: "true" if cold[k] else "false",
                        semconv.FAAS_STATUS: "error" if error[k] else "ok",
                        semconv.COST_USD: f"{billed * price + 2e-7:.10f}",
                        semconv.COST_CENTER: f.cost_center,
                    }, semconv.INVOCATION_REPORT_EVENT))
            if i < MODELS_WITH_PREDICTIONS:
                shift = 4.0 if fault == "input_drift" else 1.0
                amounts = rng.lognormal(3, 1, PREDICTIONS_PER_WINDOW) * shift
                offsets = np.sort(rng.integers(0, WINDOW * 10**9, PREDICTIONS_PER_WINDOW))
                for k in range(PREDICTIONS_PER_WINDOW):
                    rows.append((start_ns + int(offsets[k]), f.name, {
                        semconv.MODEL_NAME: f.model, semconv.MODEL_VERSION: "1.0.0",
                        f"{semconv.FEATURE_PREFIX}amount": f"{amounts[k]:.2f}",
                        semconv.PREDICTION_VALUE: f"{min(1.0, amounts[k] / 200):.4f}",
                    }, semconv.PREDICTION_EVENT))
        yield w, rows


@dataclass
class Page:
    window: int
    kind: str
    function: str
    model: str
    cost_center: str
    severity: str
    summary: str


def window_of(d: Detection) -> int:
    """The window a detection is about: window detections carry their window's end."""
    return math.ceil((d.time - T0).total_seconds() / WINDOW) - 1


async def page(detections: list[Detection], receiver: Receiver, registry: CollectorRegistry,
               ) -> list[tuple[Page, Detection]]:
    """Run the detections through the real alerter, in order; return the pages."""
    now = [T0]
    sender = Sender(RetryPolicy(attempts=2, base_delay=0.01, max_delay=0.05), timeout_seconds=5,
                    registry=registry)
    alerter = Alerter([AlertmanagerWebhook("oncall", receiver.url("/alertmanager"))], sender,
                      clock=lambda: now[0])
    pages = []
    try:
        for d in detections:
            now[0] = d.time
            deliveries = await alerter.process(d)
            if deliveries and not d.cleared:
                pages.append((Page(window_of(d), d.kind, d.series.get(semconv.FAAS_NAME, ""),
                                   d.series.get(semconv.MODEL_NAME, ""),
                                   d.series.get(semconv.COST_CENTER, ""), d.severity,
                                   d.describe()), d))
    finally:
        await sender.close()
    return pages


def attribute(p: Page, faults: list[Fault], functions: list[Function]) -> Fault | None:
    for fault in faults:
        f = functions[fault.function]
        if not fault.start <= p.window < fault.end + GRACE:
            continue
        if p.function == f.name or p.model == f.model or (
                fault.kind in SPEND_FAULTS and p.cost_center == f.cost_center):
            return fault
    return None


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--functions", type=int, default=60)
    ap.add_argument("--warmup", type=int, default=330, help="windows learnt before measuring")
    ap.add_argument("--windows", type=int, default=200, help="measured windows")
    ap.add_argument("--faults-per-class", type=int, default=8)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--show", type=int, default=8, help="false pages to print")
    ap.add_argument("--keep", type=Path, default=None,
                    help="keep the generated data in this directory and reuse it next time "
                         "(same seed and sizes)")
    args = ap.parse_args(argv)
    rng = np.random.default_rng(args.seed)
    total = args.warmup + args.windows
    functions = fleet(args.functions, total, rng)
    faults = plan_faults(functions, args.warmup, args.windows, args.faults_per_class, rng)
    t0 = time.perf_counter()
    receiver = Receiver().start()
    with tempfile.TemporaryDirectory() as tmp:
        data = args.keep or Path(tmp)
        reuse = (data / "chdb").exists()
        client = clickhouse.connect(f"chdb://{data}/chdb")
        try:
            for statement in ddl(SchemaOptions(database="default")):
                client.command(statement)
            client.command("TRUNCATE TABLE detections")
            rows_total = int(client.command("SELECT count() FROM otel_logs")) if reuse else 0
            batch: list[list] = []
            columns = ["Timestamp", "ServiceName", "LogAttributes", "EventName"]
            for _, rows in ([] if reuse else generate(functions, faults, total, rng)):
                batch += [[datetime.fromtimestamp(r[0] / 1e9, UTC), r[1], r[2], r[3]] for r in rows]
                if len(batch) >= 200_000:
                    client.insert("otel_logs", batch, column_names=columns)
                    rows_total += len(batch)
                    batch = []
            if batch:
                client.insert("otel_logs", batch, column_names=columns)
                rows_total += len(batch)
            inserted = time.perf_counter() - t0
            config = DetectorsConfig(window_seconds=WINDOW, allowed_lateness_seconds=0,
                                     idle_flush_seconds=1, max_catchup_windows=100)
            clock = [0.0]
            end = T0 + timedelta(seconds=total * WINDOW)
            loop = DetectorHost(config, lambda: client, Path(tmp) / "data",
                                wall_clock=lambda: (end + timedelta(days=1)).timestamp(),
                                monotonic=lambda: clock[0])
            detections: list[Detection] = []
            loop.subscribe(detections.append)
            while loop.closed_until is None or loop.closed_until < end:
                loop.run_once()
                clock[0] += 10  # past idle_flush_seconds: the last window closes too
            scored = time.perf_counter() - t0 - inserted
        finally:
            clickhouse.close_all()
    pages = asyncio.run(page(detections, receiver, CollectorRegistry()))
    received = len(receiver.at("/alertmanager"))
    receiver.stop()
    measured = [p for p in pages if p[0].window >= args.warmup]
    false = [p for p in measured if attribute(p[0], faults, functions) is None]
    fault_windows = sum(1 for fault in faults for _ in range(fault.start, fault.end + GRACE))
    normal_fn_windows = args.functions * args.windows - fault_windows
    series_windows = normal_fn_windows * len(KINDS)
    print(f"fleet: {args.functions} functions, {args.warmup} + {args.windows} windows of "
          f"{WINDOW}s, {rows_total} log records (seed {args.seed}); inserted in {inserted:.0f}s, "
          f"scored in {scored:.0f}s")
    print(f"detections: {len(detections)} (opened {sum(not d.cleared for d in detections)}), "
          f"pages: {len(pages)} ({len(measured)} in measured windows), receiver got {received} requests")
    print(f"normal traffic: {normal_fn_windows} function-windows = {series_windows} series-windows "
          f"({len(KINDS)} kinds); false pages {len(false)} = "
          f"{len(false) / series_windows * 1e4:.2f} per 10,000 series-windows "
          f"({len(false) / normal_fn_windows * 1e4:.1f} per 10,000 function-windows)")
    by_kind = Counter(p.kind for p, _ in false)
    traffic = Counter("busy" if functions[int(p.function[3:])].traffic >= 100 else
                      "ordinary" if functions[int(p.function[3:])].traffic >= 15 else "low"
                      for p, _ in false if p.function.startswith("fn-"))
    print(f"  false pages by kind: {dict(by_kind)}; by function traffic: {dict(traffic)}")
    for p, _ in false[: args.show]:
        print(f"  window {p.window - args.warmup}: {p.severity} {p.summary}")
    print(f"{'fault':18} {'paged':>7} {'<=2 windows':>12}  delays (windows after the first faulty one)")
    ok = True
    for kind, wanted in FAULTS.items():
        ours = [f for f in faults if f.kind == kind]
        delays = []
        for fault in ours:
            hits = [p.window - fault.start for p, _ in pages
                    if p.kind in wanted and attribute(p, [fault], functions) is fault
                    and p.window < fault.end]
            delays.append(min(hits) if hits else None)
        paged = sum(d is not None for d in delays)
        quick = sum(d is not None and d <= 1 for d in delays)
        ok &= quick >= 0.95 * len(ours)
        print(f"{kind:18} {paged:>3}/{len(ours):<3} {quick:>6}/{len(ours):<5} "
              f"{['-' if d is None else d for d in delays]}")
    return 0 if ok and len(false) / series_windows * 1e4 <= 1 else 1


if __name__ == "__main__":
    raise SystemExit(main())
