"""Load of uniquely numbered spans against a running ``obsloop serve``, for counting.

Every span id is a fresh number, so what was acknowledged can be compared with what is
stored: an acknowledged id missing from ``otel_traces`` is a lost span, a count above the
distinct ids a duplicate. Clients post OTLP/HTTP (and, with a gRPC address, OTLP/gRPC) from
a few threads, and keep going through refusals and a server that is killed and restarted.
"""

from __future__ import annotations

import itertools
import random
import threading
import time
import urllib.error
import urllib.request
from collections import Counter
from collections.abc import Callable

import grpc
from google.protobuf.internal.encoder import _VarintBytes
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue
from opentelemetry.proto.trace.v1.trace_pb2 import Span

TRACE_EXPORT = "/opentelemetry.proto.collector.trace.v1.TraceService/Export"

def _field(number: int, payload: bytes) -> bytes:
    """A length-delimited protobuf field, written by hand to make what the SDKs never would."""
    return _VarintBytes(number << 3 | 2) + _VarintBytes(len(payload)) + payload


def _double_oneof_request() -> bytes:
    """One span whose attribute's ``AnyValue`` sets its oneof twice (string, then int)."""
    value = AnyValue(string_value="x").SerializeToString() + b"\x18\x02"  # int_value = 2
    attribute = KeyValue(key="a").SerializeToString() + _field(2, value)
    span = Span(trace_id=b"\xee" * 16, span_id=b"\xee" * 8, name="poison").SerializeToString() + _field(9, attribute)
    return _field(1, _field(2, _field(2, span)))


POISON_BODIES = (
    b"\x08\x01",  # field 1 (resource_spans) with the varint wire type
    b"\x0d\x01\x02\x03\x04",  # a fixed32 field 1: the wrong wire type again
    _double_oneof_request(),
)
"""Bodies the Python protobuf parser accepts and ClickHouse's ``Protobuf`` reader refuses
(issue 12); they carry no ``service.name``, so they are never counted with the load's spans."""


def traces_request(first_id: int, spans: int) -> tuple[bytes, list[str]]:
    """An export request of ``spans`` spans numbered from ``first_id``, and their span ids (hex)."""
    request = ExportTraceServiceRequest()
    resource_spans = request.resource_spans.add()
    resource_spans.resource.attributes.add(key="service.name").value.string_value = "span-load"
    scope = resource_spans.scope_spans.add()
    ids = []
    for n in range(first_id, first_id + spans):
        span_id = n.to_bytes(8, "big")
        scope.spans.add(trace_id=n.to_bytes(16, "big"), span_id=span_id, name="invoke",
                        start_time_unix_nano=1_700_000_000_000_000_000 + n,
                        end_time_unix_nano=1_700_000_000_000_100_000 + n)
        ids.append(span_id.hex())
    return request.SerializeToString(), ids


class SpanLoad:
    """Client threads posting numbered spans until :meth:`stop`; ``endpoints`` is called before
    every request, so a restarted server (new ports) is followed."""

    def __init__(
        self,
        endpoints: Callable[[], tuple[str, str | None]],
        *,
        threads: int = 2,
        spans_per_request: int = 200,
        first_id: int = 1,
        poison_rate: float = 0.0,
        seed: int = 0,
    ) -> None:
        self._endpoints = endpoints
        self._threads = threads
        self._spans = spans_per_request
        self._ids = itertools.count(first_id, spans_per_request)
        self._poison_rate = poison_rate
        self._random = random.Random(seed)
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._workers: list[threading.Thread] = []
        self.acknowledged: set[str] = set()
        self.outcomes: Counter[tuple[str, str]] = Counter()
        """(transport, status) → requests: ``("http", "503")``, ``("grpc", "UNAVAILABLE")``,
        ``("poison", "400")``, ``(…, "no connection")``."""

    def start(self) -> SpanLoad:
        for n in range(self._threads):
            transport = "grpc" if n % 2 and self._endpoints()[1] else "http"
            worker = threading.Thread(target=self._run, args=(transport,), name=f"span-load-{n}", daemon=True)
            worker.start()
            self._workers.append(worker)
        return self

    def stop(self) -> None:
        self._stop.set()
        for worker in self._workers:
            worker.join(30)

    def count(self, transport: str, *statuses: str) -> int:
        with self._lock:
            return sum(n for (t, s), n in self.outcomes.items() if t == transport and (not statuses or s in statuses))

    def _run(self, transport: str) -> None:
        channel: grpc.Channel | None = None
        channel_address = None
        while not self._stop.is_set():
            http, grpc_address = self._endpoints()
            with self._lock:
                poison = self._random.random() < self._poison_rate
                body = self._random.choice(POISON_BODIES) if poison else None
            if poison:
                self._record("poison", post_traces(http, body), [])
                continue
            body, ids = traces_request(next(self._ids), self._spans)
            if transport == "grpc" and grpc_address:
                if grpc_address != channel_address:
                    if channel is not None:
                        channel.close()
                    channel, channel_address = grpc.insecure_channel(grpc_address), grpc_address
                status = export_traces(channel, body)
                self._record("grpc", status, ids if status == "OK" else [])
            else:
                status = post_traces(http, body)
                self._record("http", status, ids if status == "200" else [])
            if status not in ("200", "OK"):
                time.sleep(0.05)  # what an exporter's retry backoff would do, shortened
        if channel is not None:
            channel.close()

    def _record(self, transport: str, status: str, ids: list[str]) -> None:
        with self._lock:
            self.outcomes[(transport, status)] += 1
            self.acknowledged.update(ids)


def post_traces(http: str, body: bytes) -> str:
    """POST an OTLP/HTTP traces body; the status as text (``"no connection"`` when down)."""
    request = urllib.request.Request(f"{http}/v1/traces", data=body,
                                     headers={"Content-Type": "application/x-protobuf"})
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return str(response.status)
    except urllib.error.HTTPError as exc:
        return str(exc.code)
    except (urllib.error.URLError, ConnectionError, OSError):
        return "no connection"


def export_traces(channel: grpc.Channel, body: bytes) -> str:
    """Call OTLP/gRPC ``Export`` with a raw body; the status code's name."""
    try:
        channel.unary_unary(TRACE_EXPORT)(body, timeout=10)
    except grpc.RpcError as exc:
        code = exc.code()
        return "no connection" if code is None else code.name
    return "OK"
