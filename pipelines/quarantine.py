"""Split a batch ClickHouse refuses: store what it can read, set aside only what it cannot.

When ClickHouse refuses a write-ahead segment (or a consumed Kafka batch) because some of it
cannot be read (:data:`~obsloop.pipelines.storage_errors.Cause.DATA`), :func:`split` bisects
it with :meth:`ClickHouseSink.check_payloads` (the insert into Null-engine copies, storing
nothing) down to the requests that fail on their own, tries each re-serialized, and sets
aside only what neither form reads. The rest is inserted under the batch's own deduplication
token, so nothing is lost or stored twice. Design: docs/design/quarantine-split.md.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Protocol

from prometheus_client import Counter

from obsloop.core.files import open_private, private_dir
from obsloop.core.retry import summary
from obsloop.pipelines.clickhouse_sink import ClickHouseSink
from obsloop.pipelines.otlp_decode import InvalidRequest, validate
from obsloop.pipelines.storage_errors import Cause, classify, error_name
from obsloop.pipelines.wal import _VarintBytes

log = logging.getLogger(__name__)

RETRY_DIRECTORY = "retry"
"""Under ``<quarantine>/<signal>/``: files moved there are queued again, no restart needed."""


@dataclass(frozen=True)
class Offender:
    """A request ClickHouse cannot read, and neither can protobuf or ClickHouse its canonical form."""

    index: int
    """Its position in the batch."""
    payload: bytes
    error: BaseException
    """What ClickHouse answered when it was inserted alone."""
    items: int
    """Items protobuf finds in it (0 when it cannot be parsed)."""

    @property
    def reason(self) -> str:
        return error_name(self.error)


@dataclass(frozen=True)
class Split:
    keep: list[bytes]
    """The requests to store, in their order; a salvaged one as its canonical bytes."""
    offenders: list[Offender]
    salvaged: int
    """Requests stored as re-serialized rather than as received."""


class _Search:
    def __init__(self, sink: ClickHouseSink, signal: str, messages: list[bytes]) -> None:
        self.sink = sink
        self.signal = signal
        self.messages = messages
        self.offenders: list[Offender] = []
        self.salvaged: dict[int, bytes] = {}

    def check(self, payloads: list[bytes]) -> BaseException | None:
        """ClickHouse's refusal of ``payloads`` as data, or None; raises any other failure."""
        try:
            self.sink.check_payloads(self.signal, payloads)
        except Exception as exc:  # noqa: BLE001 - classified: only data errors are answers
            if classify(exc) is not Cause.DATA:
                raise
            return exc
        return None

    def bisect(self, start: int, end: int, error: BaseException | None) -> bool:
        """Find the requests of ``messages[start:end]`` ClickHouse refuses on their own;
        False when there are none. ``error``: ClickHouse refused the range with it; None:
        the range was not tried alone, but its enclosing one was refused and the other half
        of that read, so the refusal should lie here (checked once down to one request).

        One check per level for a single offender: the left half is tried, and when it
        reads the right half is taken to be refused without trying it."""
        if end - start == 1:
            error = error or self.check(self.messages[start:end])
            if error is None:
                return False  # refused only together with its neighbours
            self.single(start, error)
            return True
        middle = (start + end) // 2
        left = self.check(self.messages[start:middle])
        if left is None:
            return self.bisect(middle, end, None)
        found = self.bisect(start, middle, left)
        right = self.check(self.messages[middle:end])
        return (right is not None and self.bisect(middle, end, right)) or found

    def single(self, index: int, error: BaseException) -> None:
        payload = self.messages[index]
        try:
            valid = validate(self.signal, payload)
        except InvalidRequest:
            self.offenders.append(Offender(index, payload, error, 0))
            return
        if self.check([valid.payload]) is None:
            self.salvaged[index] = valid.payload
        else:
            self.offenders.append(Offender(index, payload, error, valid.items))


def split(sink: ClickHouseSink, signal: str, messages: list[bytes], error: BaseException) -> Split | None:
    """The requests of a batch ClickHouse refused with ``error`` to store, and those to set
    aside; None when ClickHouse reads every request on its own (the refusal was not about
    any one request: retry the batch as it is).

    Raises when a check fails for a reason other than the data (ClickHouse went away)."""
    search = _Search(sink, signal, messages)
    if not messages or not search.bisect(0, len(messages), error):
        return None
    refused = {offender.index for offender in search.offenders}
    keep = [search.salvaged.get(i, m) for i, m in enumerate(messages) if i not in refused]
    return Split(keep, search.offenders, len(search.salvaged))


class QuarantineMetrics(Protocol):
    """The counters of a :class:`Quarantine` (``SelfMetrics``, an ingest worker's metrics)."""

    items_quarantined: Counter
    requests_quarantined: Counter
    segments_quarantined: Counter


class Quarantine:
    """The quarantine directory: one file per request set aside, with its reason beside it.

    ``<directory>/<signal>/<batch>-r<index>.seg`` holds the request as a one-request
    segment, ``….seg.reason.json`` ClickHouse's error, the signal and the time. Moved into
    ``<directory>/<signal>/retry/``, a file is queued again on the next rotation
    (:meth:`returned`).
    """

    def __init__(self, directory: Path, metrics: QuarantineMetrics) -> None:
        self.directory = directory
        self._metrics = metrics

    def store_readable(self, sink: ClickHouseSink, signal: str, batch: str, messages: list[bytes],
                       token: str, error: Exception) -> list[bytes]:
        """Store what ClickHouse can read of a batch it refused with ``error``, under the
        batch's ``token``, and set the rest aside; returns the requests stored. Raises
        ``error`` when ClickHouse reads every request on its own (the data is fine: retry the
        batch), and whatever else fails meanwhile (nothing is set aside before the check is
        complete, nor the batch forgotten before the rest is stored)."""
        parts = split(sink, signal, messages, error)
        if parts is None:
            raise error
        for offender in parts.offenders:
            self.put(signal, batch, offender)
        if parts.keep:
            sink.insert_payloads(signal, parts.keep, token)
        if parts.offenders:
            self._metrics.segments_quarantined.labels(signal).inc()
        log.warning("batch split: ClickHouse could not read all of it",
                    extra={"batch": batch, "signal": signal, "requests": len(messages),
                           "set_aside": len(parts.offenders), "reserialized": parts.salvaged})
        return parts.keep

    def put(self, signal: str, batch: str, offender: Offender) -> Path:
        """Write ``offender`` aside (durably: the batch it came from is deleted next)."""
        batch = batch.replace(os.sep, "_").replace(":", "_")
        target = self.directory / signal / f"{batch}-r{offender.index:06d}.seg"
        private_dir(target.parent)
        _write_durably(target, _VarintBytes(len(offender.payload)) + offender.payload)
        reason = {
            "signal": signal,
            "batch": batch,
            "request": offender.index,
            "items": offender.items,
            "reason": offender.reason,
            "error": str(offender.error)[:4000],
            "time": datetime.now(UTC).isoformat(timespec="seconds"),
        }
        _write_durably(target.with_name(target.name + ".reason.json"),
                       (json.dumps(reason, indent=2) + "\n").encode())
        self._metrics.items_quarantined.labels(signal, offender.reason).inc(offender.items)
        self._metrics.requests_quarantined.labels(signal, offender.reason).inc()
        log.error("request set aside: ClickHouse cannot read it",
                  extra={"path": str(target), "signal": signal, "items": offender.items,
                         "reason": offender.reason, "error": summary(offender.error)})
        return target

    def returned(self, signals: tuple[str, ...]) -> Iterator[tuple[str, Path]]:
        """(signal, file) of each file moved into a ``retry`` folder."""
        for signal in signals:
            folder = self.directory / signal / RETRY_DIRECTORY
            if folder.is_dir():
                for path in sorted(folder.glob("*.seg")):
                    yield signal, path


def _write_durably(path: Path, data: bytes) -> None:
    partial = path.with_name(path.name + ".partial")
    with os.fdopen(open_private(partial, os.O_WRONLY | os.O_TRUNC), "wb") as file:
        file.write(data)
        file.flush()
        os.fsync(file.fileno())
    os.replace(partial, path)
