"""Model quality from delayed labels: detection, false alarms, estimate error, join cost.

Each scenario is a stream of a calibrated binary classifier's predictions (event time, a
fixed rate) written as ``obsloop.model.prediction`` log records into an embedded chDB
``otel_logs``, with ``obsloop.model.ground_truth`` records for a share of them (the
coverage) arriving a fixed delay later. Event time advances one quality window at a time:
the records that exist by then are inserted, then the service's own ``QualityWatch`` polls,
reading the join through ``QualityReader``, as ``obsloop serve`` does.

* ``concept``: halfway, the labels follow another concept (the model is right 70% of the
  time instead of ~90%) while scores, hence inputs, are unchanged: input drift cannot see it.
* ``covariate``: halfway, the class balance flips (70% of scores near 0.1 -> 70% near 0.9):
  the inputs and predictions drift, accuracy does not; a quality alarm there is false.

Reported per scenario: detection delay (windows and predictions from the change to the
window detected; hours from the first labels of changed predictions to the page), missed
changes, false realized/estimated alarms per 10,000 predictions, the CBPE estimate's mean
absolute error against realized accuracy (windows with at least ``--min-labels`` labels),
and at the end the join's throughput (labels joined per CPU second, reading every window)
and storage per prediction (both tables, after merges).

    .venv/bin/python bench/quality/run.py [--hours 48] [--rate 20] [--quick]
"""

from __future__ import annotations

import argparse
import random
import resource
import tempfile
import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from obsloop import clickhouse
from obsloop.core import semconv
from obsloop.detectors.config import QualityConfig
from obsloop.detectors.quality import QualityReader
from obsloop.detectors.quality_watch import QualityWatch
from obsloop.pipelines.schema import SchemaOptions
from obsloop.schema import ddl

T0 = datetime(2026, 6, 1, tzinfo=UTC)
WINDOW = 3600


@dataclass(frozen=True)
class Scenario:
    kind: str
    delay_s: float
    coverage: float


def _score(rng: random.Random, positive_share: float) -> float:
    """A confident score most of the time (0.1 or 0.9 region), sometimes anything."""
    if rng.random() < 0.85:
        centre = 0.9 if rng.random() < positive_share else 0.1
        return min(0.99, max(0.01, rng.gauss(centre, 0.04)))
    return rng.random()


def events(s: Scenario, hours: int, rate: int, seed: int):
    """``(time, prediction_id, score, label or None, label_time)`` in prediction order."""
    rng = random.Random(seed)
    change = T0 + timedelta(hours=hours / 2)
    for i in range(hours * 60 * rate):
        t = T0 + timedelta(seconds=i * 60 / rate)
        after = t >= change
        p = _score(rng, 0.7 if s.kind == "covariate" and after else 0.3)
        y = int(rng.random() < p)
        if s.kind == "concept" and after:
            right = rng.random() < 0.7
            y = int(p >= 0.5) if right else 1 - int(p >= 0.5)
        labelled = rng.random() < s.coverage
        yield t, f"p{i}", p, (y if labelled else None), t + timedelta(seconds=s.delay_s)


def _rows(batch):
    return [[t, semconv.PREDICTION_EVENT, {semconv.MODEL_NAME: "m", semconv.MODEL_VERSION: "1",
                                          semconv.PREDICTION_ID: pid, semconv.PREDICTION_VALUE: f"{p:.4f}"}]
            for t, pid, p in batch]


def _label_rows(batch):
    return [[t, semconv.GROUND_TRUTH_EVENT, {semconv.PREDICTION_ID: pid, semconv.PREDICTION_LABEL: str(y)}]
            for t, pid, y in batch]


def run(client, db: str, s: Scenario, hours: int, rate: int, config: QualityConfig) -> dict:
    stream = list(events(s, hours, rate, seed=hash((s.kind, s.delay_s, s.coverage)) & 0xFFFF))
    pending = sorted(((lt, pid, y) for _, pid, _, y, lt in stream if y is not None), key=lambda x: x[0])
    watch = QualityWatch(config)
    change = T0 + timedelta(hours=hours / 2)
    found, p, q = [], 0, 0
    cols = ["Timestamp", "EventName", "LogAttributes"]
    end = T0 + timedelta(hours=hours) + timedelta(seconds=s.delay_s + config.settle_seconds + 2 * WINDOW)
    now = T0
    while now < end:
        now += timedelta(seconds=WINDOW)
        batch = []
        while p < len(stream) and stream[p][0] < now:
            batch.append(stream[p][:3])
            p += 1
        if batch:
            client.insert(f"{db}.otel_logs", _rows(batch), column_names=cols)
        labels = []
        while q < len(pending) and pending[q][0] < now:
            labels.append(pending[q])
            q += 1
        if labels:
            client.insert(f"{db}.otel_logs", _label_rows(labels), column_names=cols)
        for d in watch.poll(client, db, now):
            if not d.cleared and d.severity in ("error", "critical"):
                found.append((now, d))
    opened = [(at, d) for at, d in found if d.severity == "error"]
    realized = [(at, d) for at, d in opened if not d.observed["estimated"]]
    estimated = [(at, d) for at, d in opened if d.observed["estimated"]]
    hit = [(at, d) for at, d in realized if s.kind == "concept" and d.time > change]
    false_realized = [x for x in realized if x not in hit]
    false_estimated = estimated  # no scenario changes the model's confidence
    n = len(stream)
    out = {"scenario": f"{s.kind:9s} delay={_human(s.delay_s):>4s} coverage={s.coverage:>4.0%}",
           "false_realized_per_10k": 1e4 * len(false_realized) / n,
           "false_estimated_per_10k": 1e4 * len(false_estimated) / n}
    if s.kind == "concept":
        if hit:
            at, d = hit[0]
            windows = round((d.time - change).total_seconds() / WINDOW)  # window end - change
            labels_from = change + timedelta(seconds=s.delay_s)
            out.update(missed=0, delay_windows=windows, delay_predictions=windows * WINDOW * rate // 60,
                       hours_after_labels=(at - labels_from).total_seconds() / 3600,
                       labels_in_window=int(d.observed["labelled"]))
        else:
            out.update(missed=1)
    # estimate error on the calibrated part (all of covariate, before the change for concept)
    reader = QualityReader(client, db, WINDOW, config.horizon_days * 86_400)
    errors = [abs(w.metrics["estimation_error"]) for w in reader.read(T0, change if s.kind == "concept" else end)
              if w.labelled >= config.min_labels and "estimation_error" in w.metrics]
    out["estimate_mae"] = sum(errors) / len(errors) if errors else float("nan")
    out["estimate_windows"] = len(errors)
    return out


def _human(seconds: float) -> str:
    if seconds < 3600:
        return f"{seconds:.0f}s"
    return f"{seconds / 3600:.0f}h" if seconds < 86_400 else f"{seconds / 86_400:.0f}d"


def join_cost(client, db: str, hours: int) -> tuple[float, float, int]:
    """Labels joined per CPU second (reading every window of the stream once) and bytes per
    prediction of the two quality tables after merges."""
    reader = QualityReader(client, db, WINDOW, 7 * 86_400)
    cpu = resource.getrusage(resource.RUSAGE_SELF)
    started = cpu.ru_utime + cpu.ru_stime
    windows = reader.read(T0, T0 + timedelta(hours=hours + 48))
    cpu = resource.getrusage(resource.RUSAGE_SELF)
    spent = cpu.ru_utime + cpu.ru_stime - started
    labels = sum(w.labelled for w in windows)
    predictions = sum(w.predictions for w in windows)
    for table in ("quality_predictions", "quality_labels"):
        client.command(f"OPTIMIZE TABLE {db}.{table} FINAL")
    size = int(client.command(f"SELECT sum(bytes_on_disk) FROM system.parts WHERE database = '{db}' "
                              "AND active AND table IN ('quality_predictions', 'quality_labels')"))
    return labels / spent, size / predictions, labels


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--hours", type=int, default=48)
    parser.add_argument("--rate", type=int, default=20, help="predictions per minute")
    parser.add_argument("--min-labels", type=int, default=100)
    parser.add_argument("--quick", action="store_true", help="one delay, two coverages")
    args = parser.parse_args()
    delays = [30.0] if args.quick else [30.0, 3600.0, 86_400.0]
    coverages = [0.05, 1.0] if args.quick else [0.05, 0.2, 1.0]
    scenarios = [Scenario("concept", d, c) for d in delays for c in coverages]
    scenarios += [Scenario("covariate", 3600.0, c) for c in coverages]
    client = clickhouse.connect(f"chdb://{tempfile.mkdtemp(prefix='bench-quality-')}")
    results = []
    for i, s in enumerate(scenarios):
        db = f"q{i}"
        client.command(f"CREATE DATABASE {db}")
        for statement in ddl(SchemaOptions(database=db)):
            client.command(statement)
        # A window is tested once it has min_labels labels, or once the delay has passed.
        config = QualityConfig(window_seconds=WINDOW, min_labels=args.min_labels, baseline_labels=500,
                               settle_seconds=s.delay_s + WINDOW, horizon_days=7)
        started = time.perf_counter()
        r = run(client, db, s, args.hours, args.rate, config)
        r["seconds"] = time.perf_counter() - started
        results.append(r)
        print(_line(r), flush=True)
    total = len(scenarios) * args.hours * 60 * args.rate
    false = sum(r["false_realized_per_10k"] for r in results) / len(results)
    missed = sum(r.get("missed", 0) for r in results)
    concept = [r for r in results if "missed" in r]
    maes = [r["estimate_mae"] for r in results if r["estimate_windows"]]
    print(f"summary: {len(concept)} concept drifts, {missed} missed; false quality alarms "
          f"{false:.2f} per 10k predictions ({total} predictions); estimate MAE "
          f"{sum(maes) / len(maes):.4f} (mean over scenarios)")
    rate, per_prediction, labels = join_cost(client, f"q{len(scenarios) - 1}", args.hours)
    print(f"join: {rate:,.0f} labels/s per core ({labels} labels, every window read once); "
          f"storage {per_prediction:.1f} bytes per prediction (predictions + labels tables)")
    clickhouse.close_all()


def _line(r: dict) -> str:
    head = f"{r['scenario']}: "
    if "missed" in r:
        head += ("MISSED; " if r["missed"] else
                 f"detected {r['delay_windows']} window(s) after the change ({r['delay_predictions']} predictions,"
                 f" {r['labels_in_window']} labels in the window), {r['hours_after_labels']:.1f} h after its "
                 "first labels; ")
    return (head + f"false alarms realized {r['false_realized_per_10k']:.2f}/10k estimated "
            f"{r['false_estimated_per_10k']:.2f}/10k; estimate MAE {r['estimate_mae']:.4f} over "
            f"{r['estimate_windows']} windows; {r['seconds']:.0f} s")


if __name__ == "__main__":
    main()
