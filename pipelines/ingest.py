"""The ingest pipeline: acknowledged requests → write-ahead segments → ClickHouse.

Receivers call :meth:`IngestPipeline.submit` (cheap: an append to the open segment); one
background thread closes segments by age and inserts closed ones, oldest first. When
ClickHouse falls behind, the segments waiting pile up until ``max_pending_bytes``, then
``submit`` raises :class:`PipelineFull`, which receivers turn into 503 + Retry-After:
the client keeps its data and retries, and nothing acknowledged is ever dropped.

A failed insert is retried with backoff for as long as ClickHouse fails, unless ClickHouse
says it cannot read the data (:mod:`obsloop.pipelines.storage_errors`): then the segment is
split, the rest stored and only the unreadable requests set aside
(:mod:`obsloop.pipelines.quarantine`), so one bad request never holds up the others.
"""

from __future__ import annotations

import logging
import threading
import time
from pathlib import Path

from obsloop.collectors.otlp_decode import SIGNALS, InvalidRequest, validate
from obsloop.pipelines.clickhouse_sink import ClickHouseSink
from obsloop.pipelines.quarantine import Quarantine
from obsloop.pipelines.storage_errors import Cause, classify
from obsloop.pipelines.wal import Segment, WriteAheadLog, iter_messages
from obsloop.retry import Retry, summary
from obsloop.selfmetrics import SelfMetrics

log = logging.getLogger(__name__)


def _name_os_thread(name: str) -> None:
    """Give the calling thread an OS-level name (Linux ``comm``, 15 bytes), so ``top -H`` and
    ``/proc/<pid>/task/*/stat`` tell the inserter (which runs the embedded engine's queries
    on itself) from the event loop; elsewhere a no-op."""
    try:
        import ctypes

        ctypes.CDLL(None).prctl(15, name.encode()[:15], 0, 0, 0)  # PR_SET_NAME
    except (OSError, AttributeError):
        pass


class PipelineFull(RuntimeError):
    """Too much acknowledged data is waiting for storage; retry later."""


def _items(signal: str, message: bytes) -> int:
    try:
        return validate(signal, message).items
    except InvalidRequest:  # ClickHouse read it (older versions stored bodies as received)
        return 0


def count_items(signal: str, path: Path) -> int:
    """Items in a segment recovered after a crash (its in-memory count was lost)."""
    return sum(_items(signal, message) for message in iter_messages(path.read_bytes()))


class IngestPipeline:
    def __init__(
        self,
        wal: WriteAheadLog,
        sink: ClickHouseSink,
        metrics: SelfMetrics,
        *,
        max_pending_bytes: int,
        rotate_interval: float = 0.2,
    ) -> None:
        self.wal = wal
        self.sink = sink
        self.metrics = metrics
        self.max_pending_bytes = max_pending_bytes
        self._rotate_interval = rotate_interval
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.quarantine = Quarantine(wal.directory / "quarantine", metrics)
        self._retry = Retry(log, "segments not stored (ClickHouse refused them or is unreachable); "
                                 "retrying with backoff, they stay in the write-ahead log",
                            "segments stored again", first_delay=0.5, max_delay=10.0)
        """An outage is logged when it starts and when it ends, not once per attempt."""
        self.storage_healthy = True
        """The last insert's outcome (a segment split around unreadable requests counts as stored)."""
        self.refresh_gauges()

    # -- receiving side ------------------------------------------------------------------
    def submit(self, signal: str, payload: bytes, items: int) -> None:
        """Append a validated request; raises :class:`PipelineFull` under backpressure."""
        pending = self.wal.pending_bytes()
        if pending + len(payload) > self.max_pending_bytes:
            raise PipelineFull(f"{pending} bytes waiting for storage")
        self.wal.append(signal, payload, items)
        self.metrics.items_received.labels(signal).inc(items)
        self.metrics.request_bytes.labels(signal).inc(len(payload))

    # -- storing side --------------------------------------------------------------------
    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="obsloop-inserter", daemon=True)
        self._thread.start()

    def stop(self, *, drain_timeout: float = 30.0) -> None:
        """Close open segments and insert what is pending (up to ``drain_timeout``)."""
        self.wal.rotate(force=True)
        deadline = time.monotonic() + drain_timeout
        while self.wal.pending_segments() and time.monotonic() < deadline and self.storage_healthy:
            time.sleep(0.05)
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=max(1.0, deadline - time.monotonic()))
        self.wal.rotate(force=True)  # anything appended while draining stays for the replay

    def _run(self) -> None:
        _name_os_thread("obsloop-insert")
        last_rotation = 0.0
        while not self._stop.is_set():
            now = time.monotonic()
            if now - last_rotation >= self._rotate_interval:
                self.wal.rotate()
                self._requeue_returned()
                last_rotation = now
            segment = self.wal.next_segment(timeout=self._rotate_interval)
            if segment is None:
                continue
            if not self._store(segment):
                self._stop.wait(self._retry.delay)
            self.refresh_gauges()

    def _store(self, segment: Segment) -> bool:
        started = time.perf_counter()
        try:
            items = self._insert(segment)
        except Exception as exc:  # noqa: BLE001 - retried with backoff, never dropped
            self.metrics.insert_errors.labels(segment.signal).inc()
            self.storage_healthy = False
            self._retry.failed(exc)
            log.debug("segment insert failed", extra={"segment": segment.path.name, "signal": segment.signal,
                                                      "error": summary(exc)})
            return False
        self.storage_healthy = True
        self._retry.succeeded()
        elapsed = time.perf_counter() - started
        self.metrics.insert_duration.labels(segment.signal).observe(elapsed)
        self.metrics.items_stored.labels(segment.signal).inc(items)
        self.metrics.segments_stored.labels(segment.signal).inc()
        self.wal.done(segment)
        log.debug("segment stored", extra={"segment": segment.path.name, "items": items,
                                           "seconds": round(elapsed, 4)})
        return True

    def _insert(self, segment: Segment) -> int:
        """Insert ``segment``, or what ClickHouse can read of it; returns the items stored."""
        try:
            self.sink.insert_file(segment.signal, segment.path, segment.token)
        except Exception as exc:
            if classify(exc) is not Cause.DATA:
                raise
            return self._split(segment, exc)
        return segment.items if segment.items is not None else count_items(segment.signal, segment.path)

    def _split(self, segment: Segment, error: Exception) -> int:
        """Store the readable requests of a refused segment under its own token, set the
        others aside (:meth:`Quarantine.store_readable`); returns the items stored."""
        messages = list(iter_messages(segment.path.read_bytes()))
        stored = self.quarantine.store_readable(self.sink, segment.signal, segment.path.stem, messages,
                                                segment.token, error)
        return sum(_items(segment.signal, message) for message in stored)

    def _requeue_returned(self) -> None:
        """Queue the set-aside files moved into a quarantine ``retry`` folder."""
        for signal, path in self.quarantine.returned(SIGNALS):
            segment = self.wal.adopt(signal, path)
            path.with_name(path.name + ".reason.json").unlink(missing_ok=True)
            log.info("set-aside segment queued again", extra={"segment": segment.path.name, "signal": signal})

    def refresh_gauges(self) -> None:
        self.metrics.wal_bytes.set(self.wal.pending_bytes())
        self.metrics.wal_segments.set(self.wal.pending_segments())
