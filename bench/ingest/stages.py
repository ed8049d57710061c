"""Where an item's storage time goes: one segment of realistic requests through each stage
of the insert, in this process (pin it: ``taskset -c 0``).

    taskset -c 0 .venv/bin/python bench/ingest/stages.py --signal traces --items 200000
    taskset -c 0 .venv/bin/python bench/ingest/stages.py --signal logs   # Lambda subscription logs

Traces are the load generator's serverless spans; logs are CloudWatch Logs subscription
deliveries run through the AWS collector (START / function lines / END / REPORT, the REPORT
records priced and carrying the invocation attributes), exactly what ``obsloop serve``
writes to the write-ahead log for ``POST /aws/cloudwatch-logs``.

Every insert runs with the sink's own settings (``ClickHouseSink.insert_settings``: the
attribute-map bloom filters left to the merges) and its scalars-only projection (the data
holds no array or key-value list values; ``--full-projection`` times the fallback).

Stages, each measured on its own (best of ``--repeat``, process CPU time, which counts
every ClickHouse thread, and wall time):
  python-upb-parse   the receivers' validation parse of the same requests
  ch-parse           ClickHouse reads the Protobuf segment (count only)
  ch-project         … plus the exporter-row projections (FORMAT Null)
  ch-null-table      … plus conversion to the table's column types (a Null-engine copy)
  ch-mergetree-bare  … into a MergeTree copy of the table without skip indexes or views
  ch-mergetree-idx   … into a MergeTree copy with the skip indexes (no views)
  ch-mergetree       the real insert (sort, compress, skip indexes, materialized views)
  merge-bare, merge  background merge cost: ``--merge-parts`` parts of one segment each,
                     merged into one (``OPTIMIZE … FINAL``), per item merged, without and
                     with the skip indexes (a merge builds the merged part's indexes anew)
"""

from __future__ import annotations

import argparse
import re
import resource
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench" / "collectors"))

from google.protobuf.internal.encoder import _VarintBytes  # noqa: E402
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest  # noqa: E402
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest  # noqa: E402

from obsloop import clickhouse  # noqa: E402
from obsloop.pipelines import otlp_rows, schema  # noqa: E402
from obsloop.pipelines.clickhouse_sink import ClickHouseSink  # noqa: E402


def cpu_now() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def best_of(repeat: int, action, before=None) -> tuple[float, float]:
    """(CPU seconds, wall seconds) of the fastest run (by CPU)."""
    best = (float("inf"), float("inf"))
    for _ in range(repeat):
        if before is not None:
            before()
        cpu, wall = cpu_now(), time.perf_counter()
        action()
        best = min(best, (cpu_now() - cpu, time.perf_counter() - wall))
    return best


def trace_bodies() -> list[bytes]:
    from obsloop.demo.loadgen import ServerlessTraffic

    traffic = ServerlessTraffic(seed=3)
    return [traffic.traces(1000).SerializeToString() for _ in range(20)]


def subscription_bodies(events: int = 2000) -> list[bytes]:
    """What the subscription receiver appends to the write-ahead log (bench_subscription's
    deliveries through the collector's decoder, normaliser and pricing)."""
    from bench_subscription import make_payload

    from obsloop.collectors.aws_subscription import SubscriptionEncoder, decode_data
    from obsloop.collectors.enrich import Enricher
    from obsloop.collectors.pricing import Pricing
    from obsloop.collectors.request_budget import Budget, Limits

    encoder = SubscriptionEncoder(Enricher(Pricing.load()).enrich, "bench")
    budgets = [Budget(Limits.of()) for _ in range(8)]
    return [encoder.encode(decode_data(make_payload(events, seed), budget), "us-east-1", budget).payload
            for seed, budget in enumerate(budgets)]


SIGNALS = {
    # signal: (table, request type, item path, bodies)
    "traces": ("otel_traces", ExportTraceServiceRequest, ("resource_spans", "scope_spans", "spans"), trace_bodies),
    "logs": ("otel_logs", ExportLogsServiceRequest, ("resource_logs", "scope_logs", "log_records"),
             subscription_bodies),
}


def count_items(message, path: tuple[str, str, str]) -> int:
    outer, middle, inner = path
    return sum(len(getattr(m, inner)) for o in getattr(message, outer) for m in getattr(o, middle))


def without_indexes(ddl: str) -> str:
    return re.sub(r",(\n    INDEX [^\n]*)+\n\) ENGINE", "\n) ENGINE", ddl)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--signal", choices=sorted(SIGNALS), default="traces")
    parser.add_argument("--items", type=int, default=200_000, help="items per segment")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--merge-parts", type=int, default=4)
    parser.add_argument("--full-projection", action="store_true",
                        help="the projection that renders arrays and key-value lists (the sink's fallback)")
    parser.add_argument("--setting", action="append", default=[], metavar="NAME=VALUE",
                        help="an extra insert setting (repeatable), e.g. max_threads=1")
    args = parser.parse_args()

    table, request_type, path, make_bodies = SIGNALS[args.signal]
    workdir = Path(tempfile.mkdtemp(prefix="obsloop-stages-"))
    bodies = make_bodies()
    body_items = [count_items(request_type.FromString(b), path) for b in bodies]
    segment = workdir / f"{args.signal}.seg"
    items = 0
    with segment.open("wb") as file:
        while items < args.items:
            for body, n in zip(bodies, body_items, strict=True):
                file.write(_VarintBytes(len(body)))
                file.write(body)
                items += n
    client = clickhouse.connect(f"chdb://{workdir / 'ch'}")
    options = schema.SchemaOptions()
    for statement in schema.ddl(options):
        client.command(statement)
    ddl = next(s for s in schema.ddl(options) if re.search(rf"\.{table}\s+\(", s))
    bare = without_indexes(ddl)

    def renamed(statement: str, name: str) -> str:
        return re.sub(rf"\.{table}\s+\(", f".{name} (", statement, count=1)

    client.command(renamed(re.sub(r"\) ENGINE = .*", ") ENGINE = Null", bare, flags=re.S), f"{table}_null"))
    client.command(renamed(bare, f"{table}_bare"))
    client.command(renamed(ddl, f"{table}_idx"))
    client.command(renamed(ddl, f"{table}_merge"))
    client.command(renamed(bare, f"{table}_merge_bare"))

    sink = ClickHouseSink(lambda: client, database="default", embedded=True,
                          schema_directory=workdir / "schemas")
    (mapping,) = otlp_rows.MAPPINGS[args.signal]
    extra = dict(s.split("=", 1) for s in args.setting)
    tokens = iter(range(1 << 30))

    def settings() -> dict:
        return {**sink.insert_settings(mapping, args.signal, f"stages-{next(tokens)}"), **extra}

    scalars_only = not args.full_projection  # what the sink runs first (the data is all scalars)
    source = f"file('{segment}', 'Protobuf', '{mapping.input_structure(scalars_only)}')"

    def insert_into(name: str):
        return lambda: client.command(mapping.insert("default", source, scalars_only).replace(
            f"`default`.`{table}`", f"`default`.`{name}`", 1), settings=settings())

    def truncate(name: str):
        return lambda: client.command(f"TRUNCATE TABLE `default`.`{name}`")

    array_join = (mapping.scalar_array_join or mapping.array_join) if scalars_only else mapping.array_join
    stages = {
        "python-upb-parse": (lambda: [request_type.FromString(b) for b in bodies], None),
        "ch-parse": (lambda: client.command(f"SELECT count() FROM {source} {array_join}",
                                            settings=settings()), None),
        "ch-project": (lambda: client.command(mapping.select(source, scalars_only) + " FORMAT Null",
                                              settings=settings()), None),
        "ch-null-table": (insert_into(f"{table}_null"), None),
        "ch-mergetree-bare": (insert_into(f"{table}_bare"), truncate(f"{table}_bare")),
        "ch-mergetree-idx": (insert_into(f"{table}_idx"), truncate(f"{table}_idx")),
        "ch-mergetree": (insert_into(table), truncate(table)),
    }
    print(f"{args.signal}: {items} items per segment, {segment.stat().st_size / 1e6:.1f} MB, "
          f"{'full' if args.full_projection else 'scalars-only'} projection, extra settings {extra or 'none'}")
    previous = 0.0
    for name, (action, before) in stages.items():
        cpu, wall = best_of(args.repeat, action, before)
        n = sum(body_items) if name == "python-upb-parse" else items
        step = "" if name == "python-upb-parse" else f"  (+{1e6 * cpu / n - previous:5.2f})"
        print(f"{name:18s} cpu {cpu:6.3f} s  wall {wall:6.3f} s  {n / cpu / 1000:7.0f}k/s per core  "
              f"{1e6 * cpu / n:5.2f} us/item{step}")
        if name != "python-upb-parse":
            previous = 1e6 * cpu / n

    for merge_table in (f"{table}_merge_bare", f"{table}_merge"):
        client.command(f"SYSTEM STOP MERGES `default`.`{merge_table}`")
        for _ in range(args.merge_parts):
            insert_into(merge_table)()
        client.command(f"SYSTEM START MERGES `default`.`{merge_table}`")
        cpu = cpu_now()
        client.command(f"OPTIMIZE TABLE `default`.`{merge_table}` FINAL")
        cpu = cpu_now() - cpu
        n = items * args.merge_parts
        name = "merge-bare" if merge_table.endswith("_bare") else "merge"
        print(f"{name:18s} cpu {cpu:6.3f} s  {args.merge_parts} parts -> 1: {1e6 * cpu / n:5.2f} us/item merged")
    clickhouse.close_all()


if __name__ == "__main__":
    main()
