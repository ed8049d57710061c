"""A seeded slice of ``bench/fuzz/decoders.py``: every generated request to the OTLP/HTTP
application ``serve`` builds and to the OTLP/gRPC server is answered below 500, nothing
the server logs is an error, and everything acknowledged validates again."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

HARNESS = Path(__file__).parents[2] / "bench" / "fuzz" / "decoders.py"


def test_a_seeded_fuzz_slice_finds_nothing() -> None:
    spec = importlib.util.spec_from_file_location("fuzz_decoders", HARNESS)
    assert spec is not None and spec.loader is not None
    fuzz = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = fuzz  # dataclasses look their module up there
    spec.loader.exec_module(fuzz)
    summary, intake, errors, _ = fuzz.run(inputs=600, seed=20261204)
    assert summary.inputs == 600
    assert summary.failures == [] and intake.invalid == [] and errors == []
    # the slice reaches past authentication into every decoder, and some of it is stored
    assert intake.accepted > 0 and summary.statuses[400] > 0 and summary.statuses["INVALID_ARGUMENT"] > 0
    assert {"/v1/traces", "/v1/logs", "/v1/metrics", "/aws/cloudwatch-logs", "/aws/firehose",
            "/aws/telemetry", "grpc/traces", "grpc/logs", "grpc/metrics"} <= set(summary.by_target)
