"""Benchmark obsloop-instrument against no instrumentation and against
opentelemetry-instrumentation-aws-lambda.

Measures, each in fresh processes: import + set-up of the handler module, the first (cold)
invocation including its flush, and the warm per-invocation time, with telemetry exported
over OTLP/HTTP to a sink on 127.0.0.1 and with exporters off (instrumentation cost alone).

``--compare REF`` also measures the library as it was at git revision REF (extracted with
``git archive`` into a temporary directory that goes first on ``PYTHONPATH``), in the same
run, so that before/after figures share the machine's load and are given as ratios.

The contrib instrumentation pins an older opentelemetry-api, so it runs from a throwaway
venv (created on first use, default /tmp/benchvenv).

Usage: .venv/bin/python bench/instrument/run.py [--runs 15] [--invocations 3000]
       [--compare REF]

The figures quoted in instrument/README.md (Cold start) come from
``.venv/bin/python bench/instrument/run.py --runs 21 --invocations 3000 --compare f36a179``
(f36a179: the library before its invocation span became its own): cold total over the
uninstrumented handler 48.2 -> 6.8 ms, warm with export 0.166 -> 0.106 ms per invocation.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent.parent
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


_OK = b"HTTP/1.1 200 OK\r\ncontent-type: application/x-protobuf\r\ncontent-length: 0\r\n\r\n"


def _serve_connection(conn: socket.socket) -> None:
    """Answer every OTLP/HTTP POST on one keep-alive connection with an empty 200.

    A stand-in for a collector that answers in microseconds (the OTel Collector, obsloop's
    receiver before storage): the bench measures the function's side, not ``http.server``'s
    request parsing, which took ~100 us per request and serialized the two signals' requests
    on this process's GIL.
    """
    buffer = b""
    with conn:
        while True:
            while (end := buffer.find(b"\r\n\r\n")) < 0:
                chunk = conn.recv(65536)
                if not chunk:
                    return
                buffer += chunk
            head, buffer = buffer[:end], buffer[end + 4 :]
            length = 0
            for line in head.split(b"\r\n")[1:]:
                name, _, value = line.partition(b":")
                if name.strip().lower() == b"content-length":
                    length = int(value)
            while len(buffer) < length:
                chunk = conn.recv(65536)
                if not chunk:
                    return
                buffer += chunk
            buffer = buffer[length:]
            conn.sendall(_OK)


def start_sink() -> tuple[socket.socket, str]:
    server = socket.create_server(("127.0.0.1", 0))

    def accept() -> None:
        while True:
            try:
                conn, _ = server.accept()
            except OSError:
                return
            conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            threading.Thread(target=_serve_connection, args=(conn,), daemon=True).start()

    threading.Thread(target=accept, daemon=True).start()
    return server, f"http://127.0.0.1:{server.getsockname()[1]}"


def library_at(ref: str) -> Path:
    """The ``instrument/`` folder as of git revision ``ref``, in a temporary directory."""
    target = Path(tempfile.mkdtemp(prefix="obsloop-instrument-"))
    archive = subprocess.run(
        ["git", "-C", str(REPO), "archive", ref, "instrument/obsloop_instrument"],
        check=True,
        capture_output=True,
    ).stdout
    subprocess.run(["tar", "-x", "-C", str(target)], input=archive, check=True)
    return target / "instrument"


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
    parser.add_argument(
        "--compare",
        metavar="REF",
        help="also measure obsloop-instrument as of this git revision, in the same run",
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
        # The application uses the OpenTelemetry API itself (its own span per invocation):
        # compared with the same application uninstrumented (the API's no-op tracer).
        "uninstrumented, app OTel": (MAIN_PYTHON, "handler_plain_otel", {}),
        "obsloop, app uses OTel": (MAIN_PYTHON, "handler_obsloop_otel", {}),
        "otel-contrib-aws-lambda": (
            contrib_python(args.contrib_venv),
            "handler_otel_contrib",
            {},
        ),
    }
    compared: list[str] = []
    if args.compare:
        old_library = f"{library_at(args.compare)}{os.pathsep}{HERE}"
        for name, extra in (
            (f"@{args.compare}", {}),
            (f"@{args.compare} (sync set-up)", {"OBSLOOP_BACKGROUND_SETUP": "false"}),
        ):
            variants[name] = (
                MAIN_PYTHON,
                "handler_obsloop",
                dict(extra, PYTHONPATH=old_library),
            )
            compared.append(name)
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
    print("  targets (overhead over the uninstrumented handler): cold total <= 30 ms,")
    print("  warm per invocation <= 0.3 ms")
    print("  cold total = import+setup + 1st call, per process, then the median")
    print(f"warm: {args.invocations} invocations after 200 warm-up, per-invocation time (median)")
    print("  and, with export, the calling thread's CPU time (mean): the rest is waiting")
    print("  for the sink's responses (a minimal HTTP/1.1 responder in this process)\n")
    header = (
        f"{'variant':26} {'import+setup':>13} {'1st call':>9} {'cold total':>11}"
        f" {'warm, export':>13} {'(its CPU)':>10} {'warm, no export':>16}"
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
            "warm_cpu_us": warm["cpu_mean_us"],
        }
        print(
            f"{name:26} {row['import_ms']:10.1f} ms {row['first_ms']:6.1f} ms"
            f" {row['total_ms']:8.1f} ms"
            f" {row['warm_us']:10.1f} us {row['warm_cpu_us']:7.1f} us {row['warm_off_us']:13.1f} us"
        )
    baselines = {"obsloop, app uses OTel": "uninstrumented, app OTel"}
    print(
        "\noverhead vs uninstrumented (the same application without obsloop-instrument)"
        "\n  import+setup / first call / cold total / warm export / warm no-export:"
    )
    for name in results:
        if name.startswith("uninstrumented"):
            continue
        r, base = results[name], results[baselines.get(name, "uninstrumented")]
        print(
            f"  {name:26} +{r['import_ms'] - base['import_ms']:.1f} ms"
            f" / +{r['first_ms'] - base['first_ms']:.1f} ms"
            f" / +{r['total_ms'] - base['total_ms']:.1f} ms"
            f" / +{(r['warm_us'] - base['warm_us']) / 1e3:.3f} ms"
            f" / +{(r['warm_off_us'] - base['warm_off_us']) / 1e3:.3f} ms"
        )
    base = results["uninstrumented"]
    if compared:
        print(f"\nthis tree against {args.compare}, same run (overhead over uninstrumented, before / after):")
        for before_name, after_name in zip(
            compared, ("obsloop-instrument", "obsloop (sync set-up)"), strict=True
        ):
            before, after = results[before_name], results[after_name]
            cells = []
            for key, label, scale, unit in (
                ("total_ms", "cold total", 1.0, "ms"),
                ("warm_us", "warm, export", 1e-3, "ms"),
                ("warm_off_us", "warm, no export", 1e-3, "ms"),
            ):
                b = (before[key] - base[key]) * scale
                a = (after[key] - base[key]) * scale
                ratio = f"{b / a:.1f}x less" if a > 0 else "n/a"
                digits = 1 if unit == "ms" and scale == 1.0 else 3
                cells.append(f"{label} {b:.{digits}f} -> {a:.{digits}f} {unit} ({ratio})")
            print(f"  {after_name:26} " + "; ".join(cells))
    sink.close()


if __name__ == "__main__":
    main()
