"""Write-ahead segments: acknowledged OTLP requests, length-delimited, one file per batch.

A request is acknowledged only after its bytes are in a segment (``write(2)`` returned, and
``fsync`` too with ``fsync: always``), so ``kill -9`` loses nothing acknowledged. A closed
segment is exactly what ClickHouse reads with its ``Protobuf`` format (each message
preceded by its varint length), and the unit of replay: its unique name is the insert
deduplication token, so a segment inserted just before a crash is not stored twice when
it is inserted again after the restart.

Disk space is a limit like the pending bytes: the log refuses a request (``DiskFull``, a
503 for the client) while its filesystem is down to a reserve (``wal.min_free_bytes``), and
a write that runs out of space anyway is undone, so the open segment stays exactly the
acknowledged requests.
"""

from __future__ import annotations

import contextlib
import errno
import logging
import os
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

# protobuf's own varint codec; private, so types-protobuf leaves it out of the stubs.
from google.protobuf.internal.decoder import _DecodeVarint  # type: ignore[attr-defined]
from google.protobuf.internal.encoder import _VarintBytes  # type: ignore[attr-defined]

from obsloop.core.files import open_private, private_dir
from obsloop.pipelines.backpressure import DiskFull
from obsloop.pipelines.diskspace import SPACE_ERRNOS, FreeSpace

logger = logging.getLogger(__name__)

OPEN_SUFFIX = ".open"
CLOSED_SUFFIX = ".seg"


@dataclass
class Segment:
    """A closed segment, waiting to be inserted."""

    signal: str
    path: Path
    size: int
    items: int | None = None
    """Items (spans, log records, data points) in it; ``None`` when recovered after a crash."""

    @property
    def token(self) -> str:
        return f"{self.signal}-{self.path.stem}"

    @property
    def sequence(self) -> int:
        return int(self.path.stem.split("-", 1)[0])


def iter_messages(data: bytes) -> Iterator[bytes]:
    """Yield the messages of a length-delimited buffer; stops at a torn tail."""
    position, end = 0, len(data)
    while position < end:
        try:
            length, start = _DecodeVarint(data, position)
        except IndexError:
            return
        if start + length > end:
            return
        yield data[start : start + length]
        position = start + length


def _valid_prefix_length(data: bytes) -> int:
    position, end = 0, len(data)
    while position < end:
        try:
            length, start = _DecodeVarint(data, position)
        except IndexError:
            break
        if start + length > end:
            break
        position = start + length
    return position


@dataclass
class _OpenSegment:
    path: Path
    fd: int
    opened_at: float
    size: int = 0
    items: int = 0


@dataclass
class SignalLog:
    """The segments of one signal: one open for appends, the closed ones queued in order."""

    signal: str
    directory: Path
    max_bytes: int
    max_age: float
    fsync: str
    _next_sequence: int = 0
    _open: _OpenSegment | None = None
    _closed: list[Segment] = field(default_factory=list)

    def __post_init__(self) -> None:
        private_dir(self.directory)
        self._recover()

    def _recover(self) -> None:
        """Close what a previous process left open and queue every closed segment."""
        for path in sorted(self.directory.glob(f"*{OPEN_SUFFIX}")):
            data = path.read_bytes()
            valid = _valid_prefix_length(data)
            if valid < len(data):  # a torn final write: never acknowledged
                os.truncate(path, valid)
            if valid == 0:
                path.unlink()
                continue
            path.rename(path.with_suffix(CLOSED_SUFFIX))
        segments = [
            Segment(self.signal, path, path.stat().st_size)
            for path in self.directory.glob(f"*{CLOSED_SUFFIX}")
        ]
        self._closed = sorted(segments, key=lambda s: s.sequence)
        if self._closed:
            self._next_sequence = self._closed[-1].sequence + 1

    def append(self, payload: bytes, items: int) -> int:
        """Append one request; returns the bytes written. Raises ``OSError`` (``ENOSPC`` for
        a short write) with the segment as it was: a partial write is cut off again, so the
        segment replays exactly the acknowledged requests."""
        segment = self._open or self._open_new()
        header = _VarintBytes(len(payload))
        try:
            written = os.writev(segment.fd, (header, payload))  # no copy of the payload
            if written != len(header) + len(payload):  # a regular file's short write: the disk is full
                raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(segment.path))
            if self.fsync == "always":
                os.fsync(segment.fd)
        except OSError as exc:
            os.ftruncate(segment.fd, segment.size)
            exc.filename = exc.filename or str(segment.path)
            raise
        segment.size += written
        segment.items += items
        if segment.size >= self.max_bytes:
            with contextlib.suppress(OSError):  # acknowledged all the same: a rotation closes it by age
                self.close_open()
        return written

    def _open_new(self) -> _OpenSegment:
        name = f"{self._next_sequence:012d}-{uuid.uuid4().hex}{OPEN_SUFFIX}"
        self._next_sequence += 1
        path = self.directory / name
        fd = open_private(path, os.O_WRONLY | os.O_APPEND | os.O_EXCL)
        self._open = _OpenSegment(path, fd, time.monotonic())
        return self._open

    def close_open(self) -> Segment | None:
        """Close the open segment and queue it; when syncing or renaming it fails, it stays
        open (and is closed at the next try)."""
        segment = self._open
        if segment is None:
            return None
        if self.fsync != "never":
            os.fsync(segment.fd)
        closed_path = segment.path.with_suffix(CLOSED_SUFFIX)
        segment.path.rename(closed_path)
        os.close(segment.fd)
        self._open = None
        closed = Segment(self.signal, closed_path, segment.size, segment.items)
        self._closed.append(closed)
        return closed

    def adopt(self, path: Path) -> Segment:
        """Queue a closed segment file from elsewhere, renamed to this log's next name."""
        target = self.directory / f"{self._next_sequence:012d}-{uuid.uuid4().hex}{CLOSED_SUFFIX}"
        self._next_sequence += 1
        path.replace(target)
        segment = Segment(self.signal, target, target.stat().st_size)
        self._closed.append(segment)
        return segment

    def close_if_old(self, now: float) -> None:
        if self._open is not None and now - self._open.opened_at >= self.max_age:
            self.close_open()

    @property
    def open_bytes(self) -> int:
        return self._open.size if self._open else 0

    @property
    def closed(self) -> list[Segment]:
        return self._closed


class WriteAheadLog:
    """Segments of every signal, thread-safe: receivers append, the inserter drains."""

    def __init__(
        self,
        directory: Path,
        signals: tuple[str, ...],
        *,
        max_bytes: int,
        max_age: float,
        fsync: str = "segment",
        min_free_bytes: int = 0,
        watch: tuple[Path, ...] = (),
    ) -> None:
        """``min_free_bytes`` is the reserve left free on the filesystems of ``directory``
        and of the ``watch`` directories (the embedded ClickHouse's data)."""
        self.directory = directory
        self._lock = threading.Lock()
        self._logs = {
            signal: SignalLog(signal, directory / signal, max_bytes, max_age, fsync)
            for signal in signals
        }
        self._segment_ready = threading.Condition(self._lock)
        self._pending_bytes = sum(s.size for log in self._logs.values() for s in log.closed)
        """Bytes in open and closed segments, kept current so that the receivers' check on
        every request costs nothing (summing the segments took the lock for a walk)."""
        self._space = FreeSpace((directory, *watch), min_free_bytes)
        self._close_failing = False

    def append(self, signal: str, payload: bytes, items: int) -> None:
        """Append one request, or raise ``DiskFull`` (nothing appended)."""
        with self._lock:
            refused = self._space.refusal(len(payload))
            if refused is not None:
                raise refused
            log = self._logs[signal]
            before = len(log.closed)
            try:
                written = log.append(payload, items)
            except OSError as exc:
                if exc.errno not in SPACE_ERRNOS:
                    raise
                raise self._space.exhausted(exc) from exc
            self._space.wrote(written)
            self._pending_bytes += written
            if len(log.closed) != before:
                self._segment_ready.notify_all()

    def space_refusal(self) -> DiskFull | None:
        """Why :meth:`append` refuses requests now, or ``None`` (``/readyz``)."""
        with self._lock:
            return self._space.refusal(0)

    def rotate(self, *, force: bool = False) -> None:
        """Close open segments past their age (all of them with ``force``). One that cannot
        be closed (out of space to sync it) stays open and is tried again next time."""
        now = time.monotonic()
        with self._lock:
            errors = []
            for log in self._logs.values():
                try:
                    if force:
                        log.close_open()
                    else:
                        log.close_if_old(now)
                except OSError as exc:
                    errors.append(exc)
            if errors and not self._close_failing:
                logger.warning("cannot close a write-ahead segment; retrying", extra={"error": str(errors[0])})
            elif self._close_failing and not errors:
                logger.info("write-ahead segments close again")
            self._close_failing = bool(errors)
            if any(log.closed for log in self._logs.values()):
                self._segment_ready.notify_all()

    def adopt(self, signal: str, path: Path) -> Segment:
        """Queue ``path``, a segment set aside earlier and sent back (moved into this log's
        directory, on the same file system), after the segments already waiting."""
        with self._lock:
            segment = self._logs[signal].adopt(path)
            self._pending_bytes += segment.size
            self._segment_ready.notify_all()
        return segment

    def next_segment(self, timeout: float) -> Segment | None:
        """The oldest closed segment of any signal (left queued until :meth:`done`)."""
        with self._lock:
            if not any(log.closed for log in self._logs.values()):
                self._segment_ready.wait(timeout)
            candidates = [log.closed[0] for log in self._logs.values() if log.closed]
            if not candidates:
                return None
            return min(candidates, key=lambda s: (s.sequence, s.signal))

    def done(self, segment: Segment) -> None:
        """Forget a segment once it is stored."""
        with self._lock:
            self._logs[segment.signal].closed.remove(segment)
            self._pending_bytes -= segment.size
        segment.path.unlink(missing_ok=True)

    def pending_bytes(self) -> int:
        return self._pending_bytes

    def pending_segments(self) -> int:
        with self._lock:
            return sum(len(log.closed) for log in self._logs.values())
