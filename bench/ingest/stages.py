"""Where a span's storage time goes: one segment of realistic serverless spans through each
stage of the insert, in this process (pin it: ``taskset -c 0``).

    taskset -c 0 .venv/bin/python bench/ingest/stages.py --spans 200000

Stages, each measured on its own (best of ``--repeat``):
  python-upb-parse   the receivers' validation parse of the same requests
  ch-parse           ClickHouse reads the Protobuf segment (count only)
  ch-project         … plus the exporter-row projections (FORMAT Null)
  ch-null-table      … plus conversion to the table's column types (a Null-engine copy)
  ch-mergetree       the real insert into otel_traces (sort, compress, skip indexes, view)
"""

from __future__ import annotations

import argparse
import re
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from google.protobuf.internal.encoder import _VarintBytes  # noqa: E402
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest  # noqa: E402

from obsloop import clickhouse  # noqa: E402
from obsloop.loadgen import ServerlessTraffic  # noqa: E402
from obsloop.pipelines import otlp_rows, schema  # noqa: E402
from obsloop.pipelines.protobuf_schema import format_settings, write_schema_file  # noqa: E402


def best_of(repeat: int, action) -> float:
    best = float("inf")
    for _ in range(repeat):
        started = time.perf_counter()
        action()
        best = min(best, time.perf_counter() - started)
    return best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--spans", type=int, default=200_000)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()

    workdir = Path(tempfile.mkdtemp(prefix="obsloop-stages-"))
    traffic = ServerlessTraffic(seed=3)
    bodies = [traffic.traces(1000).SerializeToString() for _ in range(20)]
    body_spans = [sum(len(ss.spans) for rs in ExportTraceServiceRequest.FromString(b).resource_spans
                      for ss in rs.scope_spans) for b in bodies]
    segment = workdir / "traces.seg"
    spans = 0
    with segment.open("wb") as file:
        while spans < args.spans:
            for body, n in zip(bodies, body_spans, strict=True):
                file.write(_VarintBytes(len(body)))
                file.write(body)
                spans += n
    client = clickhouse.connect(f"chdb://{workdir / 'ch'}")
    options = schema.SchemaOptions()
    for statement in schema.ddl(options):
        client.command(statement)
    traces_ddl = schema._traces(options)[0]
    without_indexes = re.sub(r"\n    INDEX [^\n]*", "", traces_ddl).replace(
        "String) CODEC(ZSTD(1)),\n) ENGINE", "String) CODEC(ZSTD(1))\n) ENGINE")
    client.command(re.sub(r"\) ENGINE = .*", ") ENGINE = Null", without_indexes, flags=re.S)
                   .replace("`default`.otel_traces", "`default`.otel_traces_null"))
    settings = format_settings("traces", write_schema_file(workdir / "schemas"))
    mapping = otlp_rows.TRACES
    source = f"file('{segment}', 'Protobuf', '{mapping.structure}')"
    null_mapping = otlp_rows.RowMapping("otel_traces_null", mapping.structure, mapping.array_join, mapping.columns)


    stages = {
        "python-upb-parse": lambda: [ExportTraceServiceRequest.FromString(b) for b in bodies],
        "ch-parse": lambda: client.command(f"SELECT count() FROM {source} {mapping.array_join}", settings=settings),
        "ch-project": lambda: client.command(mapping.select(source) + " FORMAT Null", settings=settings),
        "ch-null-table": lambda: client.command(null_mapping.insert("default", source), settings=settings),
        "ch-mergetree": lambda: client.command(mapping.insert("default", source), settings=settings),
    }
    print(f"{spans} spans per segment, {segment.stat().st_size / 1e6:.1f} MB")
    for name, action in stages.items():
        seconds = best_of(args.repeat, action)
        items = sum(body_spans) if name == "python-upb-parse" else spans
        rate = items / seconds
        print(f"{name:18s} {seconds:7.3f} s  {rate / 1000:8.0f}k spans/s  {1e6 / rate:5.2f} us/span")
    clickhouse.close_all()


if __name__ == "__main__":
    main()
