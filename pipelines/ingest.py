"""The ingest pipeline: acknowledged requests → write-ahead segments → ClickHouse.

Receivers call :meth:`IngestPipeline.submit` (an append to the open segment); one
background thread inserts closed segments, oldest first. When ClickHouse falls behind,
``submit`` raises :class:`PipelineFull` (503 + Retry-After) rather than drop anything
acknowledged, until the backlog is a tenth under the limit. A failed insert is retried
while ClickHouse fails; unreadable data is split off (:mod:`obsloop.pipelines.quarantine`).
Design: docs/design/ingest-backpressure.md.
"""

from __future__ import annotations

import logging
import threading
import time
from pathlib import Path

from obsloop.core.retry import Retry, summary
from obsloop.core.selfmetrics import SelfMetrics
from obsloop.pipelines.backpressure import PipelineFull, RefusalLog
from obsloop.pipelines.clickhouse_sink import ClickHouseSink
from obsloop.pipelines.otlp_decode import SIGNALS, InvalidRequest, validate
from obsloop.pipelines.quarantine import Quarantine
from obsloop.pipelines.storage_errors import Cause, classify
from obsloop.pipelines.wal import Segment, WriteAheadLog, iter_messages

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
        self._full = False
        self._refusals = RefusalLog(metrics.refused)
        self._stop = threading.Event()
        self._draining = threading.Event()
        self._seconds_per_byte = 0.0
        """Of the last insert: the drain starts no insert it cannot finish by its deadline."""
        self._drain_deadline = float("inf")
        self._thread: threading.Thread | None = None
        self.quarantine = Quarantine(wal.directory / "quarantine", metrics)
        self._retry = Retry(log, "segments not stored (ClickHouse refused them or is unreachable); "
                                 "retrying with backoff, they stay in the write-ahead log",
                            "segments stored again", first_delay=0.5, max_delay=10.0)
        """An outage is logged when it starts and when it ends, not once per attempt."""
        self.storage_healthy = True
        """The last insert's outcome (``/readyz``; a segment split around unreadable requests
        counts as stored): answering ``SELECT 1`` is not storing."""
        self.refresh_gauges()

    # -- receiving side ------------------------------------------------------------------
    def submit(self, signal: str, payload: bytes, items: int) -> None:
        """Append a validated request; raises :class:`PipelineFull` under backpressure
        (:class:`~obsloop.pipelines.backpressure.DiskFull` when the disk is the limit)."""
        try:
            full = self._pending_refusal(len(payload))
            if full is not None:
                raise full
            self.wal.append(signal, payload, items)
        except PipelineFull as refused:
            self._refusals.refused(signal, refused)
            raise
        self.metrics.items_received.labels(signal).inc(items)
        self.metrics.request_bytes.labels(signal).inc(len(payload))

    def refusal(self) -> PipelineFull | None:
        """Why :meth:`submit` refuses requests now, or ``None`` when it accepts them."""
        return self._pending_refusal(0) or self.wal.space_refusal()

    def _pending_refusal(self, size: int) -> PipelineFull | None:
        pending = self.wal.pending_bytes()
        limit = self.max_pending_bytes - (self.max_pending_bytes // 10 if self._full else 0)
        self._full = pending + size > limit
        if not self._full:
            return None
        return PipelineFull(f"{pending} bytes waiting for storage, at the limit of "
                            f"{self.max_pending_bytes} (wal.max_pending_bytes)")

    # -- storing side --------------------------------------------------------------------
    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="obsloop-inserter", daemon=True)
        self._thread.start()

    def stop(self, *, drain_timeout: float = 20.0) -> None:
        """Insert what is pending for up to ``drain_timeout`` seconds, then stop. The drain
        ends at the first failed insert (nothing is retried while shutting down) and starts
        no insert it cannot finish in time; what is left stays in the write-ahead log and is
        inserted at the next start. Call it after the receivers stopped."""
        self._drain_deadline = time.monotonic() + drain_timeout
        self.wal.rotate(force=True)
        if not self.storage_healthy:  # inserts are failing: the drain would only retry them
            self._stop.set()
        self._draining.set()
        if self._thread is not None:
            self._thread.join(timeout=drain_timeout)
        self._stop.set()
        self.wal.rotate(force=True)
        left = self.wal.pending_segments()
        if left:
            log.info("segments left in the write-ahead log for the next start",
                     extra={"segments": left, "bytes": self.wal.pending_bytes()})

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
                if self._draining.is_set():
                    return
                if not self.storage_healthy and not self.wal.pending_segments():
                    # No insert to learn from: whether ClickHouse answers is all there is to know.
                    self.storage_healthy = self.sink.ping()
                    if not self.storage_healthy:
                        self._stop.wait(self._retry.delay)
                continue
            if self._draining.is_set() and not self._finishes_in_time(segment):
                log.info("drain deadline: leaving the rest for the next start")
                return
            started = time.monotonic()
            self.storage_healthy = self._store(segment)
            self.refresh_gauges()
            if self.storage_healthy:
                self._seconds_per_byte = (time.monotonic() - started) / max(segment.size, 1)
            elif self._draining.is_set():
                log.warning("insert failed while draining: the rest stays in the write-ahead log "
                            "for the next start")
                return
            else:
                self._stop.wait(self._retry.delay)

    def _finishes_in_time(self, segment: Segment) -> bool:
        """Whether ``segment``'s insert, at the last insert's pace, ends before the drain deadline."""
        return time.monotonic() + segment.size * self._seconds_per_byte < self._drain_deadline

    def _store(self, segment: Segment) -> bool:
        started = time.perf_counter()
        try:
            items = self._insert(segment)
        except Exception as exc:  # noqa: BLE001 - retried with backoff, never dropped
            self.metrics.insert_errors.labels(segment.signal).inc()
            self._retry.failed(exc)
            log.debug("segment insert failed", extra={"segment": segment.path.name, "signal": segment.signal,
                                                      "error": summary(exc)})
            return False
        self._retry.succeeded()
        elapsed = time.perf_counter() - started
        self.metrics.insert_duration.labels(segment.signal).observe(elapsed)
        replayed = segment.items is None  # recovered at start-up: stored before the crash, perhaps
        (self.metrics.items_replayed if replayed else self.metrics.items_stored).labels(segment.signal).inc(items)
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
