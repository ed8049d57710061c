"""The loop every checkpointed pull shares: read the checkpoint, read the page after it,
hand its records to the intake, save the checkpoint; again while there is more.

A subclass says only what differs: which sources it reads (:meth:`CursorPuller.sources`:
log groups, a project, a workspace) and how to read the page after a checkpoint
(:meth:`CursorPuller.next_page`). The checkpoint is saved only once the intake accepted the
page's records (durable), so a crash replays at most that page and never skips one.
"""

from __future__ import annotations

import time
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any, ClassVar, TypeVar

from obsloop.collectors import selfmetrics
from obsloop.collectors.checkpoint import CheckpointStore
from obsloop.collectors.forward import Submit
from obsloop.collectors.retry import submit_error, with_backoff

T = TypeVar("T")


@dataclass(frozen=True)
class Batch:
    """Encoded records for the intake: one OTLP export request."""

    signal: str
    payload: bytes
    count: int
    counted: bool = True
    """``count`` is what validation would count (the logs encoder's), so the intake may
    skip parsing it again; ``False`` has it validated and counted."""


@dataclass(frozen=True)
class Page:
    """What reading one page gives: records, and the checkpoint that follows them."""

    checkpoint: Any
    """Saved under the source once ``batch`` is accepted (JSON); the next page starts after it."""
    batch: Batch | None = None
    """``None``: the page held nothing new (the checkpoint still moves)."""
    more: bool = False
    """The next page can be read now (``False``: caught up until the next poll)."""
    newest: float | None = None
    """Unix seconds of the newest record the checkpoint covers, for the lag gauge."""
    reads: int = 1
    """API calls the page took (several when they must be accepted together)."""


class CursorPuller(ABC):
    """A pull that resumes from a checkpoint per source; ``collector`` labels its metrics."""

    collector: ClassVar[str]

    def __init__(self, checkpoints: CheckpointStore, submit: Submit, *,
                 sleep: Callable[[float], None] = time.sleep,
                 clock: Callable[[], float] = time.time) -> None:
        self.checkpoints = checkpoints
        self.submit = submit
        self.sleep = sleep
        self.clock = clock

    @abstractmethod
    def sources(self) -> Iterable[str]:
        """The checkpoint keys read in this poll, one cursor each."""

    @abstractmethod
    def next_page(self, source: str, saved: Any) -> Page | None:
        """The page after ``saved`` (the source's checkpoint, ``None`` before the first);
        ``None`` when there is nothing to read now. ``saved`` is the stored checkpoint until
        the page is accepted: copy it before changing it."""

    def begin(self, source: str) -> None:  # noqa: B027 - an optional hook, empty by default
        """Called before a source's first page in a poll (a pull fixes its horizon here)."""

    def classify(self, exc: Exception) -> str | None:
        """A retryable error's kind (``throttled``, ``5xx``, ``connection``); ``None``: not
        retryable (raised at once, the checkpoint stays)."""
        return None

    def retry(self, call: Callable[[], T]) -> T:
        """``call``, again after a retryable error (:meth:`classify`), with backoff."""
        return with_backoff(call, self.classify, collector=self.collector, sleep=self.sleep)

    def poll_once(self) -> int:
        """Catch every source up; returns the records handed over."""
        return sum(self.catch_up(source) for source in list(self.sources()))

    def catch_up(self, source: str) -> int:
        self.begin(source)
        handed = 0
        while (page := self.next_page(source, self.checkpoints.get(source))) is not None:
            selfmetrics.PAGES.labels(self.collector).inc(page.reads)
            if page.batch is not None and page.batch.count:
                handed += self._hand(page.batch)
            self.checkpoints.put(source, page.checkpoint)
            if page.newest is not None:
                selfmetrics.LAG.labels(self.collector).set(max(0.0, self.clock() - page.newest))
            if not page.more:
                break
        return handed

    def _hand(self, batch: Batch) -> int:
        items = batch.count if batch.counted else None
        with_backoff(lambda: self.submit(batch.signal, batch.payload, items), submit_error,
                     collector=self.collector, sleep=self.sleep)
        selfmetrics.EVENTS.labels(self.collector).inc(batch.count)
        return batch.count
