"""Fuzz every decoder behind the OTLP ports: 0 crashes, 0 5xx, peak memory reported.

    python bench/fuzz/decoders.py --inputs 100000 --seed 1

Hypothesis generates requests from valid ones (OTLP protobuf and JSON for the three
signals, CloudWatch Logs subscription payloads raw, in base64, in ``awslogs`` wrappers,
Firehose envelopes, Telemetry API batches) by mutating their bytes, their JSON values and
nesting, their compression layers and their headers (odd bytes in ``Authorization`` and
the Firehose headers included). Each goes over a real socket on 127.0.0.1 to the OTLP/HTTP
application ``serve`` builds (:func:`obsloop.server.otlp_http_app`), or to a real OTLP/gRPC
server. What is acknowledged reaches :class:`RecordingIntake`, which stands in for the
write-ahead log and checks that it would validate again.

A failure is an answer of 500 or more (gRPC ``UNKNOWN``/``INTERNAL``), a connection the
server dropped without an answer, an error the server logged, or an acknowledged payload
that does not validate. The summary line ends the output; the exit status is 1 on any.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import collections
import gzip
import json
import logging
import resource
import sys
import tempfile
import time
import zlib
from dataclasses import dataclass, field
from typing import Any

import grpc
from google.protobuf import json_format
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import seed as hypothesis_seed
from hypothesis import strategies as st

from obsloop.collectors.otlp_grpc import SERVICES, OtlpGrpcReceiver
from obsloop.config import Config
from obsloop.core.selfmetrics import SelfMetrics
from obsloop.demo.loadgen import ServerlessTraffic
from obsloop.pipelines.otlp_decode import SIGNALS, validate
from obsloop.server import otlp_http_app

TOKEN = "fuzz-token"
FIREHOSE_KEY = "fuzz-firehose-key"
MAX_REQUEST_BYTES = 1 << 20
OK_GRPC = {grpc.StatusCode.OK, grpc.StatusCode.INVALID_ARGUMENT, grpc.StatusCode.UNAUTHENTICATED,
           grpc.StatusCode.RESOURCE_EXHAUSTED}


class RecordingIntake:
    """Stands in for the write-ahead log (the fuzz is about decoding, not storage): counts
    what it is handed and records any payload that would not validate again."""

    storage_healthy = True
    max_pending_bytes = 1 << 30

    def __init__(self) -> None:
        self.accepted = 0
        self.invalid: list[str] = []

    def submit(self, signal: str, payload: bytes, items: int) -> None:
        try:
            valid = validate(signal, payload)
            assert (valid.items, valid.rejected) == (items, 0), (valid.items, valid.rejected, items)
        except Exception as exc:  # noqa: BLE001 - any failure is a finding
            self.invalid.append(f"{signal}: {exc!r}"[:300])
        self.accepted += 1

    def start(self) -> None: ...

    def stop(self) -> None: ...

    def refresh_gauges(self) -> None: ...


class ErrorLog(logging.Handler):
    """Errors the server logs (aiohttp's "Error handling request" is a crash)."""

    def __init__(self) -> None:
        super().__init__(logging.ERROR)
        self.records: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(f"{record.name}: {record.getMessage()}"[:300])


# -- the corpus: valid requests the mutations start from ---------------------------------

def _otlp_json(message: Any) -> dict:
    """OTLP/JSON as exporters send it: trace and span ids in hex."""
    document = json_format.MessageToDict(message)

    def hexify(node: Any) -> Any:
        if isinstance(node, dict):
            return {k: (base64.b64decode(v).hex() if k in ("traceId", "spanId", "parentSpanId") else hexify(v))
                    for k, v in node.items()}
        if isinstance(node, list):
            return [hexify(item) for item in node]
        return node

    return hexify(document)


def _corpus() -> dict[str, Any]:
    traffic = ServerlessTraffic(seed=7)
    messages = {"traces": traffic.traces(3), "logs": traffic.logs(3), "metrics": traffic.metrics()}
    rid = "6f2d4c1e-1111-2222-3333-444455556666"
    subscription = {
        "messageType": "DATA_MESSAGE", "owner": "123456789012", "logGroup": "/aws/lambda/fuzz",
        "logStream": "2026/11/27/[$LATEST]abc", "subscriptionFilters": ["obsloop"],
        "logEvents": [
            {"id": "1", "timestamp": 1764217000000, "message": f"START RequestId: {rid} Version: $LATEST\n"},
            {"id": "2", "timestamp": 1764217000001, "message": f"2026-11-27T10:00:00.001Z\t{rid}\tINFO\thi"},
            {"id": "3", "timestamp": 1764217000150,
             "message": f"REPORT RequestId: {rid}\tDuration: 102.25 ms\tBilled Duration: 103 ms\t"
                        "Memory Size: 1024 MB\tMax Memory Used: 80 MB\tInit Duration: 200.10 ms\t\n"},
            {"id": "4", "timestamp": 1764217000200,
             "message": json.dumps({"time": "2026-11-27T10:00:00.250Z", "type": "platform.report",
                                    "record": {"requestId": rid, "metrics": {"durationMs": 4.5}}})}],
    }
    telemetry = [
        {"time": "2026-11-27T10:00:00.000Z", "type": "platform.initStart",
         "record": {"functionName": "fuzz", "functionVersion": "$LATEST"}},
        {"time": "2026-11-27T10:00:00.200Z", "type": "platform.start", "record": {"requestId": rid}},
        {"time": "2026-11-27T10:00:00.210Z", "type": "function", "record": f"x\t{rid}\tINFO\tpredicting"},
        {"time": "2026-11-27T10:00:00.310Z", "type": "platform.report",
         "record": {"requestId": rid, "status": "success",
                    "metrics": {"durationMs": 99.0, "billedDurationMs": 100, "memorySizeMB": 128}}},
    ]
    return {
        "protobuf": {signal: message.SerializeToString() for signal, message in messages.items()},
        "json": {signal: _otlp_json(message) for signal, message in messages.items()},
        "subscription": subscription,
        "control": {**subscription, "messageType": "CONTROL_MESSAGE", "logEvents": []},
        "telemetry": telemetry,
    }


CORPUS = _corpus()

# -- strategies ------------------------------------------------------------------------------

JSON_LEAVES = st.one_of(st.none(), st.booleans(), st.integers(min_value=-(2**70), max_value=2**70),
                        st.floats(allow_nan=False), st.text(max_size=20))
JSON_VALUES = st.recursive(JSON_LEAVES, lambda inner: st.one_of(
    st.lists(inner, max_size=4), st.dictionaries(st.text(max_size=8), inner, max_size=4)), max_leaves=12)
ODD_BYTES = st.binary(min_size=1, max_size=12).map(lambda b: bytes(c | 0x80 if c < 0x20 or c == 0x7f else c for c in b))


@st.composite
def mutated_bytes(draw: st.DrawFn, base: bytes) -> bytes:
    """``base`` after up to three byte-level edits (flip, cut, insert, duplicate, replace)."""
    data = bytearray(base)
    for _ in range(draw(st.integers(0, 3))):
        op = draw(st.sampled_from(("flip", "cut", "insert", "duplicate", "replace")))
        at = draw(st.integers(0, len(data)))
        if op == "flip" and data:
            data[min(at, len(data) - 1)] ^= 1 << draw(st.integers(0, 7))
        elif op == "cut":
            del data[at:at + draw(st.integers(1, 64))]
        elif op == "insert":
            data[at:at] = draw(st.binary(max_size=16))
        elif op == "duplicate":
            data[at:at] = data[at:at + draw(st.integers(1, 256))]
        elif op == "replace":
            data = bytearray(draw(st.binary(max_size=64)))
    return bytes(data)


def _nested(depth: int) -> list:
    value: list = []
    for _ in range(depth - 1):
        value = [value]
    return value


@st.composite
def mutated_json(draw: st.DrawFn, base: Any) -> Any:
    """``base`` with some values replaced by arbitrary JSON, or wrapped in deep nesting."""
    document = json.loads(json.dumps(base))
    for _ in range(draw(st.integers(0, 3))):
        node, path = document, []
        while isinstance(node, dict | list) and node and draw(st.booleans()):
            key = draw(st.sampled_from(sorted(node) if isinstance(node, dict) else range(len(node))))
            path.append((node, key))
            node = node[key]
        replacement = draw(st.integers(1, 3000).map(_nested) if draw(st.integers(0, 9)) == 0 else JSON_VALUES)
        if path:
            parent, key = path[-1]
            parent[key] = replacement
        else:
            document = replacement
    return document


def _dumps(document: Any) -> bytes:
    try:
        return json.dumps(document).encode()
    except RecursionError:  # nesting past what json.dumps writes: write it flat
        return b"[" * 5000 + b"]" * 5000


@st.composite
def layered(draw: st.DrawFn, data: bytes) -> bytes:
    """``data`` in up to three subscription layers (gzip, base64, ``awslogs`` wrapper)."""
    for layer in draw(st.lists(st.sampled_from(("gzip", "base64", "awslogs")), max_size=3)):
        if layer == "gzip":
            data = gzip.compress(data, compresslevel=1, mtime=0)
        elif layer == "base64":
            data = base64.b64encode(data)
        else:
            data = json.dumps({"awslogs": {"data": base64.b64encode(gzip.compress(data, mtime=0)).decode()}}).encode()
    return data


@st.composite
def credential(draw: st.DrawFn, correct: bytes) -> bytes | None:
    """Mostly ``correct`` (so that the decoders behind the check run), else a wrong one."""
    if draw(st.integers(0, 9)) < 8:
        return correct
    return draw(st.one_of(st.none(), st.just(b"Bearer wrong"), ODD_BYTES, ODD_BYTES.map(lambda b: correct + b)))


@dataclass
class Case:
    target: str
    path: str = ""
    body: bytes = b""
    headers: dict[str, bytes] = field(default_factory=dict)
    signal: str = ""


@st.composite
def content_encoding(draw: st.DrawFn, body: bytes, headers: dict[str, bytes]) -> bytes:
    encoding = draw(st.sampled_from(("", "", "gzip", "deflate", "identity", "br")))
    if encoding:
        headers["Content-Encoding"] = encoding.encode()
    if encoding == "gzip":
        body = gzip.compress(body, compresslevel=1, mtime=0)
    elif encoding == "deflate":
        body = zlib.compress(body, 1)
    if encoding and draw(st.integers(0, 4)) == 0:
        body = draw(mutated_bytes(body))
    return body


@st.composite
def otlp_http(draw: st.DrawFn) -> Case:
    signal = draw(st.sampled_from(SIGNALS))
    as_json = draw(st.booleans())
    body = _dumps(draw(mutated_json(CORPUS["json"][signal]))) if as_json else CORPUS["protobuf"][signal]
    body = draw(mutated_bytes(body))
    content_type = (b"application/json" if as_json else b"application/x-protobuf")
    content_type = draw(st.sampled_from((content_type,) * 6 + (b"text/plain", b"application/json; charset=utf-8")))
    headers = {"Content-Type": content_type}
    auth = draw(credential(f"Bearer {TOKEN}".encode()))
    if auth is not None:
        headers["Authorization"] = auth
    body = draw(content_encoding(body, headers))
    return Case("http", f"/v1/{signal}", body, headers, signal)


@st.composite
def subscription(draw: st.DrawFn) -> Case:
    message = draw(mutated_json(CORPUS[draw(st.sampled_from(("subscription", "subscription", "control")))]))
    body = draw(layered(_dumps(message)))
    body = draw(mutated_bytes(body)) if draw(st.integers(0, 2)) == 0 else body
    headers = {"Content-Type": b"application/octet-stream"}
    auth = draw(credential(f"Bearer {TOKEN}".encode()))
    if auth is not None:
        headers["Authorization"] = auth
    body = draw(content_encoding(body, headers))
    region = draw(st.sampled_from(("", "?region=eu-west-1", "?region=%FF%FE", "?region=" + "r" * 300)))
    return Case("http", "/aws/cloudwatch-logs" + region, body, headers)


@st.composite
def firehose(draw: st.DrawFn) -> Case:
    records = []
    for _ in range(draw(st.integers(0, 3))):
        data = draw(layered(_dumps(draw(mutated_json(CORPUS["subscription"])))))
        records.append({"data": base64.b64encode(data).decode() if draw(st.booleans()) else data.decode("latin-1")})
    envelope: Any = {"requestId": "9c1d2e3f-1111-2222-3333-444455556666", "timestamp": 1764217000000,
                     "records": records}
    if draw(st.integers(0, 2)) == 0:
        envelope = draw(mutated_json(envelope))
    body = draw(mutated_bytes(_dumps(envelope))) if draw(st.integers(0, 3)) == 0 else _dumps(envelope)
    headers = {"Content-Type": b"application/json"}
    key = draw(credential(FIREHOSE_KEY.encode()))
    if key is not None:
        headers["X-Amz-Firehose-Access-Key"] = key
    headers["X-Amz-Firehose-Request-Id"] = draw(st.one_of(st.just(b"req-1"), ODD_BYTES))
    if draw(st.booleans()):
        headers["X-Amz-Firehose-Source-Arn"] = draw(st.one_of(
            st.just(b"arn:aws:firehose:eu-west-1:123456789012:deliverystream/x"), ODD_BYTES))
    if draw(st.booleans()):
        headers["Authorization"] = f"Bearer {TOKEN}".encode()
    body = draw(content_encoding(body, headers))
    return Case("http", "/aws/firehose", body, headers)


@st.composite
def telemetry(draw: st.DrawFn) -> Case:
    body = draw(mutated_bytes(_dumps(draw(mutated_json(CORPUS["telemetry"])))))
    headers = {"Content-Type": b"application/json"}
    auth = draw(credential(f"Bearer {TOKEN}".encode()))
    if auth is not None:
        headers["Authorization"] = auth
    body = draw(content_encoding(body, headers))
    query = draw(st.sampled_from(("", "?function=fuzz&region=us-east-1&account=1", "?function=%FF&version=%00")))
    return Case("http", "/aws/telemetry" + query, body, headers)


@st.composite
def otlp_grpc(draw: st.DrawFn) -> Case:
    signal = draw(st.sampled_from(SIGNALS))
    body = draw(mutated_bytes(CORPUS["protobuf"][signal]))
    token = draw(st.sampled_from((f"Bearer {TOKEN}",) * 8 + ("", "Bearer wrong", f"Bearer {TOKEN}x")))
    return Case("grpc", body=body, headers={"authorization": token.encode()}, signal=signal)


CASES = st.one_of(otlp_http(), otlp_http(), subscription(), firehose(), telemetry(), otlp_grpc())

# -- the servers and the clients -----------------------------------------------------------


class HttpConnection:
    """HTTP/1.1 over one keep-alive socket, header bytes sent exactly as given."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.streams: tuple[asyncio.StreamReader, asyncio.StreamWriter] | None = None

    async def request(self, path: str, headers: dict[str, bytes], body: bytes) -> int | None:
        """The status, or ``None`` when the server closed the connection without one."""
        if self.streams is None:
            self.streams = await asyncio.open_connection("127.0.0.1", self.port)
        reader, writer = self.streams
        head = [f"POST {path} HTTP/1.1".encode(), b"Host: 127.0.0.1", b"Content-Length: %d" % len(body)]
        head += [name.encode() + b": " + value for name, value in headers.items()]
        writer.write(b"\r\n".join(head) + b"\r\n\r\n" + body)
        try:
            status_line = await reader.readuntil(b"\r\n")
            length, close = 0, False
            while (line := await reader.readuntil(b"\r\n")) != b"\r\n":
                name, _, value = line.partition(b":")
                if name.strip().lower() == b"content-length":
                    length = int(value)
                elif name.strip().lower() == b"connection" and value.strip().lower() == b"close":
                    close = True
            await reader.readexactly(length)
        except (asyncio.IncompleteReadError, ConnectionError):
            await self.close()
            return None
        if close:
            await self.close()
        return int(status_line.split()[1])

    async def close(self) -> None:
        if self.streams is not None:
            self.streams[1].close()
            self.streams = None


@dataclass
class Summary:
    inputs: int = 0
    by_target: collections.Counter = field(default_factory=collections.Counter)
    statuses: collections.Counter = field(default_factory=collections.Counter)
    failures: list[str] = field(default_factory=list)

    def line(self, seconds: float, accepted: int) -> str:
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        statuses = ",".join(f"{k}:{v}" for k, v in sorted(self.statuses.items(), key=str))
        targets = ",".join(f"{k}:{v}" for k, v in sorted(self.by_target.items()))
        return (f"fuzz decoders: inputs={self.inputs} crashes_and_5xx={len(self.failures)} "
                f"acknowledged={accepted} targets={targets} statuses={statuses} "
                f"peak_rss_mib={peak:.0f} seconds={seconds:.0f} inputs_per_s={self.inputs / seconds:.0f}")


class Harness:
    """The OTLP/HTTP application and an OTLP/gRPC server on 127.0.0.1, and their clients."""

    def __init__(self, data_dir: str) -> None:
        self.config = Config.model_validate({
            "data_dir": data_dir,
            "receiver": {"bearer_token": TOKEN, "max_request_bytes": MAX_REQUEST_BYTES},
            "collectors": {"aws": {"firehose_access_key": FIREHOSE_KEY}},
        })
        self.intake = RecordingIntake()
        self.summary = Summary()

    async def start(self) -> None:
        from aiohttp import web

        app = otlp_http_app(self.config, self.intake, SelfMetrics())
        self.runner = web.AppRunner(app, access_log=None, auto_decompress=False)
        await self.runner.setup()
        site = web.TCPSite(self.runner, "127.0.0.1", 0)
        await site.start()
        self.http = HttpConnection(site._server.sockets[0].getsockname()[1])  # type: ignore[union-attr]
        receiver = OtlpGrpcReceiver(self.intake, SelfMetrics(), max_request_bytes=MAX_REQUEST_BYTES,
                                    bearer_token=TOKEN)
        self.grpc_server, port = receiver.server("127.0.0.1:0")
        await self.grpc_server.start()
        self.channel = grpc.aio.insecure_channel(f"127.0.0.1:{port}")
        self.exports = {signal: self.channel.unary_unary(f"/{service}/Export")
                        for signal, service in SERVICES.items()}

    async def stop(self) -> None:
        await self.http.close()
        await self.channel.close()
        await self.grpc_server.stop(None)
        await self.runner.cleanup()

    async def send(self, case: Case) -> None:
        self.summary.inputs += 1
        if case.target == "grpc":
            metadata = (("authorization", case.headers["authorization"].decode()),)
            try:
                await self.exports[case.signal](case.body, metadata=metadata, timeout=30)
                code = grpc.StatusCode.OK
            except grpc.aio.AioRpcError as exc:
                code = exc.code()
            self.summary.by_target[f"grpc/{case.signal}"] += 1
            self.summary.statuses[code.name] += 1
            if code not in OK_GRPC:
                self.summary.failures.append(f"gRPC {case.signal} {code.name}: {case.body[:200]!r}")
            return
        status = await self.http.request(case.path, case.headers, case.body)
        self.summary.by_target[case.path.split("?")[0]] += 1
        self.summary.statuses[status] += 1
        if status is None or status >= 500:
            self.summary.failures.append(f"{case.path} -> {status}: headers={case.headers!r} "
                                         f"body={case.body[:300]!r}")


def run(inputs: int, seed: int, progress: int = 0) -> tuple[Summary, RecordingIntake, list[str], float]:
    """Send ``inputs`` generated requests; the summary, the intake, the errors the server
    logged and the seconds it took (a line on stderr every ``progress`` inputs)."""
    errors = ErrorLog()
    logging.getLogger().addHandler(errors)
    loop = asyncio.new_event_loop()
    with tempfile.TemporaryDirectory(prefix="obsloop-fuzz-") as data_dir:
        harness = Harness(data_dir)
        loop.run_until_complete(harness.start())
        started = time.monotonic()

        @hypothesis_seed(seed)
        @settings(max_examples=inputs, database=None, deadline=None, phases=[Phase.generate],
                  suppress_health_check=list(HealthCheck))
        @given(CASES)
        def fuzz(case: Case) -> None:
            loop.run_until_complete(harness.send(case))
            if progress and harness.summary.inputs % progress == 0:
                print(harness.summary.line(time.monotonic() - started, harness.intake.accepted),
                      file=sys.stderr, flush=True)

        try:
            fuzz()
        finally:
            seconds = time.monotonic() - started
            loop.run_until_complete(harness.stop())
            loop.close()
            logging.getLogger().removeHandler(errors)
    return harness.summary, harness.intake, errors.records, seconds


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--inputs", type=int, default=2000, help="requests to generate (100000 for the full run)")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--progress", type=int, default=10_000, help="a line on stderr every N inputs (0: none)")
    args = parser.parse_args()
    summary, intake, errors, seconds = run(args.inputs, args.seed, args.progress)
    findings = summary.failures + intake.invalid + errors
    for finding in findings[:20]:
        print("FINDING", finding)
    print(summary.line(seconds, intake.accepted).replace("crashes_and_5xx=", f"findings={len(findings)} "
                                                                              "crashes_and_5xx="))
    return 1 if findings else 0


if __name__ == "__main__":
    sys.exit(main())
