"""Benchmark obsloop-instrument against no instrumentation and against
opentelemetry-instrumentation-aws-lambda.

Measures, each in fresh processes: import + set-up of the handler module, the first (cold)
invocation including its flush, and the warm per-invocation time, with telemetry exported
over OTLP/HTTP to a sink on 127.0.0.1 and with exporters off (instrumentation cost alone).

The contrib instrumentation pins an older opentelemetry-api, so it runs from a throwaway
venv (created on first use, default /tmp/benchvenv).

Usage: .venv/bin/python bench/instrument/run.py [--runs 15] [--invocations 3000]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

HERE = Path(__file__).resolve().parent
MAIN_PYTHON = sys.executable
CONTRIB_PACKAGES = [
    "opentelemetry-instrumentation-aws-lambda",
    "opentelemetry-sdk",
    "opentelemetry-exporter-otlp-proto-http",
]


def contrib_python(venv: Path) -> str:
    python = venv / "bin" / "python"
    if not python.exists():
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
        subprocess.run([str(python), "-m", "pip", "install", "-q", *CONTRIB_PACKAGES], check=True)
    return str(python)


class _Sink(BaseHTTPRequestHandler):
    """Accepts any OTLP/HTTP export and answers 200, like a collector would."""

    protocol_version = "HTTP/1.1"

    def do_POST(self) -> None:  # noqa: N802
        self.rfile.read(int(self.headers.get("Content-Length", 0)))
        self.send_response(200)
        self.send_header("Content-Type", "application/x-protobuf")
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, format: str, *args: object) -> None:  # noqa: A002
        """Quiet."""


def start_sink() -> tuple[ThreadingHTTPServer, str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Sink)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server, f"http://127.0.0.1:{server.server_address[1]}"


def child(
    python: str, module: str, mode: str, env: dict[str, str], *extra: str
) -> dict[str, float]:
    out = subprocess.run(
        [python, str(HERE / "child.py"), module, mode, *extra],
        env=env,
        capture_output=True,
        text=True,
        check=True,
        cwd=HERE,
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--runs", type=int, default=15, help="fresh processes per cold-start figure"
    )
    parser.add_argument("--invocations", type=int, default=3000, help="timed warm invocations")
    parser.add_argument("--contrib-venv", type=Path, default=Path("/tmp/benchvenv"))
    parser.add_argument(
        "--pycache", type=Path, default=Path("/tmp/obsloop-instrument-bench-pycache")
    )
    args = parser.parse_args()

    sink, endpoint = start_sink()
    # obsloop-instrument builds its pipeline in a background thread from set-up on (the
    # first call waits for what is left of it); "(sync set-up)" builds it while decorating.
    variants = {
        "uninstrumented": (MAIN_PYTHON, "handler_plain", {}),
        "obsloop-instrument": (MAIN_PYTHON, "handler_obsloop", {}),
        "obsloop (sync set-up)": (
            MAIN_PYTHON,
            "handler_obsloop",
            {"OBSLOOP_BACKGROUND_SETUP": "false"},
        ),
        "otel-contrib-aws-lambda": (
            contrib_python(args.contrib_venv),
            "handler_otel_contrib",
            {},
        ),
    }
    base_env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("OTEL_", "OBSLOOP_", "AWS_")) and k != "PYTHONDONTWRITEBYTECODE"
    }
    base_env.update(
        PYTHONPATH=str(HERE),
        # Every variant's modules compiled once, by the warm-up run, as a pip install or a
        # deployment package with bytecode has them (PYTHONDONTWRITEBYTECODE would make
        # each cold start compile the editable package from source).
        PYTHONPYCACHEPREFIX=str(args.pycache),
        OTEL_EXPORTER_OTLP_ENDPOINT=endpoint,
        OTEL_SERVICE_NAME="bench",
        AWS_LAMBDA_FUNCTION_NAME="bench",
        AWS_REGION="eu-west-1",
        _HANDLER="handler_otel_contrib.handler",
    )
    off_env = dict(
        base_env,
        OTEL_TRACES_EXPORTER="none",
        OTEL_METRICS_EXPORTER="none",
        OTEL_LOGS_EXPORTER="none",
    )

    print(f"python {sys.version.split()[0]}, {os.cpu_count()} CPUs, sink {endpoint}")
    print(f"cold start: median of {args.runs} fresh processes (interpreter start-up excluded);")
    print("  cold total = import+setup + 1st call, per process, then the median")
    print(f"warm: {args.invocations} invocations after 200 warm-up, per-invocation time\n")
    header = (
        f"{'variant':26} {'import+setup':>13} {'1st call':>9} {'cold total':>11}"
        f" {'warm, export':>13} {'warm, no export':>16}"
    )
    print(header)
    print("-" * len(header))
    results: dict[str, dict[str, float]] = {}
    for name, (python, module, extra_env) in variants.items():
        env, env_off = dict(base_env, **extra_env), dict(off_env, **extra_env)
        child(python, module, "cold", env)  # write .pyc files first
        cold = [child(python, module, "cold", env) for _ in range(args.runs)]
        warm = child(python, module, "warm", env, str(args.invocations))
        warm_off = child(python, module, "warm", env_off, str(args.invocations))
        results[name] = row = {
            "import_ms": statistics.median(c["import_ms"] for c in cold),
            "first_ms": statistics.median(c["first_ms"] for c in cold),
            "total_ms": statistics.median(c["import_ms"] + c["first_ms"] for c in cold),
            "warm_us": warm["median_us"],
            "warm_off_us": warm_off["median_us"],
        }
        print(
            f"{name:26} {row['import_ms']:10.1f} ms {row['first_ms']:6.1f} ms"
            f" {row['total_ms']:8.1f} ms"
            f" {row['warm_us']:10.1f} us {row['warm_off_us']:13.1f} us"
        )
    base = results["uninstrumented"]
    print(
        "\noverhead vs uninstrumented"
        " (import+setup / first call / cold total / warm export / warm no-export):"
    )
    for name in ("obsloop-instrument", "obsloop (sync set-up)", "otel-contrib-aws-lambda"):
        r = results[name]
        print(
            f"  {name:26} +{r['import_ms'] - base['import_ms']:.1f} ms"
            f" / +{r['first_ms'] - base['first_ms']:.1f} ms"
            f" / +{r['total_ms'] - base['total_ms']:.1f} ms"
            f" / +{(r['warm_us'] - base['warm_us']) / 1e3:.3f} ms"
            f" / +{(r['warm_off_us'] - base['warm_off_us']) / 1e3:.3f} ms"
        )
    sink.shutdown()


if __name__ == "__main__":
    main()
