"""Scale-out intake: receivers publish validated OTLP to Kafka instead of inserting locally.

Each request goes to its signal's topic keyed by the service name of its first resource,
and is acknowledged only once the brokers acknowledged it. When Kafka cannot take it,
``on_unavailable`` decides: ``reject`` (default) raises ``PipelineFull`` (503 + Retry-After,
the exporter retries); ``spill`` writes it to the local write-ahead log and republishes the
log in the background. ``storage_healthy`` (``/readyz``) follows the last publish and, while
Kafka is down, a TCP probe of the brokers. Design: docs/design/kafka-spill.md.
"""

from __future__ import annotations

import contextlib
import logging
import socket
import threading
import time
from collections.abc import Iterator
from concurrent.futures import Future

from obsloop.core.selfmetrics import SelfMetrics
from obsloop.pipelines.ingest import PipelineFull
from obsloop.pipelines.kafka_config import BusUnavailable, KafkaConfig, Signal
from obsloop.pipelines.kafka_publisher import OtlpPublisher
from obsloop.pipelines.wal import WriteAheadLog, iter_messages

log = logging.getLogger(__name__)

UNKNOWN_SERVICE = "unknown_service"
"""The key when the first resource has no ``service.name`` (the SDKs' own default)."""


def _varint(data: bytes, position: int) -> tuple[int, int]:
    value = shift = 0
    while True:
        byte = data[position]
        position += 1
        value |= (byte & 0x7F) << shift
        if byte < 0x80:
            return value, position
        shift += 7


def _fields(data: bytes, start: int, end: int, number: int) -> Iterator[tuple[int, int]]:
    """(start, end) of every length-delimited field ``number`` in ``data[start:end]``."""
    position = start
    while position < end:
        tag, position = _varint(data, position)
        wire_type = tag & 7
        if wire_type == 2:
            length, position = _varint(data, position)
            if tag >> 3 == number:
                yield position, position + length
            position += length
        elif wire_type == 0:
            _, position = _varint(data, position)
        elif wire_type == 1:
            position += 8
        elif wire_type == 5:
            position += 4
        else:  # groups (3, 4) do not occur in OTLP
            return


def _first(data: bytes, span: tuple[int, int], number: int) -> tuple[int, int] | None:
    return next(_fields(data, span[0], span[1], number), None)


def service_name(request: bytes) -> str:
    """``service.name`` of the first resource of a validated OTLP export request.

    Reads the protobuf wire format directly, touching only the first resource's attributes
    (a full parse would cost as much as validation again). The three request types share
    the layout: field 1 is the repeated ``Resource{Spans,Logs,Metrics}``, whose field 1 is
    the ``Resource``, whose field 1 are its attributes.

    >>> from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest
    >>> request = ExportLogsServiceRequest()
    >>> attribute = request.resource_logs.add().resource.attributes.add(key="service.name")
    >>> attribute.value.string_value = "checkout"
    >>> service_name(request.SerializeToString())
    'checkout'
    >>> service_name(b"")
    'unknown_service'
    """
    resource_group = _first(request, (0, len(request)), 1)
    resource = resource_group and _first(request, resource_group, 1)
    if not resource:
        return UNKNOWN_SERVICE
    for attribute in _fields(request, resource[0], resource[1], 1):
        key = _first(request, attribute, 1)
        if key is None or request[key[0] : key[1]] != b"service.name":
            continue
        value = _first(request, attribute, 2)
        text = value and _first(request, value, 1)
        return request[text[0] : text[1]].decode("utf-8", "replace") if text else UNKNOWN_SERVICE
    return UNKNOWN_SERVICE


class KafkaIntake:
    """The receivers' intake in scale-out mode (see the module docstring)."""

    def __init__(
        self,
        config: KafkaConfig,
        wal: WriteAheadLog,
        metrics: SelfMetrics,
        *,
        max_pending_bytes: int,
        probe_interval_s: float = 1.0,
    ) -> None:
        self._config = config
        self._spill = config.on_unavailable == "spill"
        self.wal = wal
        self.metrics = metrics
        self.max_pending_bytes = max_pending_bytes
        self.storage_healthy = True
        self._probe_interval_s = probe_interval_s
        self._publisher: OtlpPublisher | None = None
        self._mode = threading.Lock()
        # Segments left by a previous run are republished (in either mode); with ``spill``,
        # before anything new is published.
        self._spilling = self._spill and wal.pending_bytes() > 0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    # -- receiving side ------------------------------------------------------------------
    def submit(self, signal: str, payload: bytes, items: int) -> Future[None] | None:
        with self._mode:
            if self._spilling:
                self._append(signal, payload, items)
                return None
        publisher = self._publisher
        if publisher is None:
            self._unavailable(signal, payload, items, "no Kafka broker reachable")
            return None
        try:
            published = publisher.publish(_signal(signal), service_name(payload), payload)
        except BusUnavailable as exc:
            self._unavailable(signal, payload, items, str(exc))
            return None
        result: Future[None] = Future()
        published.add_done_callback(lambda done: self._settle(done, result, signal, payload, items))
        return result

    def _settle(self, published: Future[None], result: Future[None], signal: str, payload: bytes, items: int) -> None:
        """Runs on kafka-python's sender thread once the brokers answered (or timed out)."""
        error = published.exception()
        if error is None:
            self.storage_healthy = True
            self._count(signal, payload, items)
            result.set_result(None)
            return
        if not isinstance(error, BusUnavailable):
            result.set_exception(error)  # PayloadTooLarge: retrying cannot help
            return
        try:
            self._unavailable(signal, payload, items, str(error))
        except PipelineFull as full:
            result.set_exception(full)
            return
        result.set_result(None)

    def _unavailable(self, signal: str, payload: bytes, items: int, reason: str) -> None:
        """Spill the request (and every later one), or raise ``PipelineFull``."""
        if not self._spill:
            self.storage_healthy = False
            raise PipelineFull(reason)
        with self._mode:
            if not self._spilling:
                log.warning("Kafka unavailable: spilling to the write-ahead log", extra={"reason": reason[:300]})
            self._spilling = True
            self._append(signal, payload, items)

    def _append(self, signal: str, payload: bytes, items: int) -> None:
        pending = self.wal.pending_bytes()
        if pending + len(payload) > self.max_pending_bytes:
            raise PipelineFull(f"Kafka unavailable and {pending} bytes spilled")
        self.wal.append(signal, payload, items)
        self._count(signal, payload, items)

    def refusal(self) -> PipelineFull | None:
        """Why spilling refuses requests now (``/readyz``): the log at its limit or its disk
        at its reserve; while Kafka is down without spilling, ``storage_healthy`` says it."""
        pending = self.wal.pending_bytes()
        if pending >= self.max_pending_bytes:
            return PipelineFull(f"Kafka unavailable and {pending} bytes spilled")
        return self.wal.space_refusal()

    def _count(self, signal: str, payload: bytes, items: int) -> None:
        self.metrics.items_received.labels(signal).inc(items)
        self.metrics.request_bytes.labels(signal).inc(len(payload))

    # -- background: connect, probe, republish -------------------------------------------
    def start(self) -> None:
        """Connect now if Kafka is up (so the first requests are not refused), else later."""
        self._connect()
        self._thread = threading.Thread(target=self._run, name="obsloop-kafka-intake", daemon=True)
        self._thread.start()

    def stop(self, *, drain_timeout: float = 20.0) -> None:
        deadline = time.monotonic() + drain_timeout
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=min(self._config.publish_timeout_ms / 1000 + 5, drain_timeout))
        publisher, self._publisher = self._publisher, None
        if publisher is not None:
            publisher.flush(timeout_s=max(0.0, min(self._config.publish_timeout_ms / 1000,
                                                   deadline - time.monotonic())))
            publisher.close()
        self.wal.rotate(force=True)  # what is still spilled is republished after the restart

    def _connect(self) -> None:
        try:
            self._publisher = OtlpPublisher(self._config)
        except BusUnavailable as exc:
            if not self._spill:
                self.storage_healthy = False
            log.warning("Kafka unreachable; retrying", extra={"error": str(exc)[:300]})
            return
        self.storage_healthy = True

    def _run(self) -> None:
        while not self._stop.wait(self._probe_interval_s):
            if self._publisher is None:
                self._connect()
            elif self._spilling or self.wal.pending_bytes() > 0:
                self._republish(self._publisher)
            elif not self.storage_healthy:
                self.storage_healthy = self._reachable()
            self.refresh_gauges()

    def _reachable(self) -> bool:
        for server in self._config.bootstrap_servers:
            host, _, port = server.rpartition(":")
            with contextlib.suppress(OSError), socket.create_connection((host.strip("[]"), int(port)), timeout=1):
                return True
        return False

    def _republish(self, publisher: OtlpPublisher) -> None:
        """Publish spilled segments, oldest first; switch back to Kafka once none is left.

        Requests keep being spilled while it drains, so it drains again until, checked
        under the lock that ``submit`` takes, nothing is left: no request can slip into
        the log after the switch, and none is published out of the log's order.
        """
        timeout_s = self._config.publish_timeout_ms / 1000 + 1
        self.wal.rotate(force=True)
        while not self._stop.is_set():
            segment = self.wal.next_segment(timeout=0)
            if segment is None:
                with self._mode:
                    self.wal.rotate(force=True)
                    if self.wal.pending_segments() == 0:
                        if self._spilling:
                            log.info("spilled requests republished; publishing directly again")
                        self._spilling = False
                        return
                continue
            try:
                pending = [
                    publisher.publish(_signal(segment.signal), service_name(message), message)
                    for message in iter_messages(segment.path.read_bytes())
                ]
                for future in pending:
                    future.result(timeout=timeout_s)
            except (BusUnavailable, TimeoutError) as exc:
                log.info("republishing spilled segment failed; retrying", extra={"error": str(exc)[:300]})
                return
            self.wal.done(segment)

    def refresh_gauges(self) -> None:
        self.metrics.wal_bytes.set(self.wal.pending_bytes())
        self.metrics.wal_segments.set(self.wal.pending_segments())


def _signal(signal: str) -> Signal:
    if signal not in ("traces", "logs", "metrics"):
        raise ValueError(f"unknown signal {signal!r}")
    return signal  # type: ignore[return-value]
