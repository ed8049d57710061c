"""The feedback loop attached to a detection stream: ``obsloop serve`` and ``obsloop
detector-worker`` run it the same way.

Detections are published on a detector thread (a :class:`~obsloop.detectors.detection_bus.DetectionBus`
calls its subscribers there). The runner hops each one onto an asyncio event loop and handles
them one at a time, in the order they were published: two detections never edit the GitOps
checkout at once, and a clearing never overtakes the detection it clears. A detection that
fails is logged and the next one goes on.

The loop needs ClickHouse (its audit and dead-letter tables), but the process must start
while ClickHouse is down: the runner subscribes at once and queues what arrives, and its
task creates the tables, retrying with backoff (and as soon as a detection arrives, since a
detector just read ClickHouse to produce it) until ClickHouse answers; :attr:`ready` says
whether it has.

Stopping drains what is queued, with a bound (``drain_seconds``), so a commit or an alert in
flight is not cut off but a dead remote cannot hold a shutdown forever; then the HTTP
session of the deliveries is closed.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

from prometheus_client import REGISTRY, CollectorRegistry

from obsloop.core.retry import Retry
from obsloop.detectors.detection import Detection
from obsloop.feedback.build import LoopBuilder
from obsloop.feedback.config import FeedbackConfig
from obsloop.feedback.loop import FeedbackLoop

log = logging.getLogger(__name__)

Forecast = Callable[[Detection], "float | None"]
"""The month-end spend forecast of a detection's function, for the budget guardrail."""
Subscribe = Callable[[Callable[[Detection], None]], Callable[[], None]]
"""``DetectionBus.subscribe`` (or ``DetectorLoop.subscribe``): returns the unsubscriber."""


def no_forecast(detection: Detection) -> float | None:
    """No spend forecast: the budget guardrail refuses every scale-up of a budgeted deployment."""
    return None


class FeedbackRunner:
    """Queues detections from any thread and feeds them to a :class:`FeedbackLoop` in order."""

    def __init__(self, connect: Callable[[], FeedbackLoop], forecast: Forecast = no_forecast, *,
                 drain_seconds: float = 30.0, first_delay: float = 1.0, max_delay: float = 30.0) -> None:
        """``connect`` returns the loop or raises while ClickHouse does not answer; it runs
        in a thread, retried after ``first_delay`` seconds, doubling up to ``max_delay``."""
        self._connect = connect
        self.loop: FeedbackLoop | None = None
        """None until ``connect`` returned."""
        self.forecast = forecast
        self.drain_seconds = drain_seconds
        self._retry = Retry(log, "feedback waiting for ClickHouse (audit and dead-letter tables); "
                                 "detections are queued", "feedback connected to ClickHouse",
                            first_delay=first_delay, max_delay=max_delay)
        self._queue: asyncio.Queue[Detection] | None = None
        self._task: asyncio.Task[None] | None = None
        self._resender: asyncio.Task[None] | None = None
        self._unsubscribe: Callable[[], None] | None = None

    @classmethod
    def build(
        cls,
        config: FeedbackConfig,
        client: Callable[[], Any],
        data_dir: Path,
        database: str = "default",
        forecast: Forecast = no_forecast,
        registry: CollectorRegistry = REGISTRY,
    ) -> FeedbackRunner:
        """The runner of ``config`` (``feedback.enabled`` checked by the caller). A
        configuration error raises ``ValueError`` here; ``client`` (the process's ClickHouse
        client factory, which raises while ClickHouse is down) is called once started."""
        builder = LoopBuilder(config, data_dir, registry)
        return cls(lambda: builder.connect(client(), database), forecast)

    @property
    def ready(self) -> bool:
        """Whether the loop is connected to ClickHouse (detections are handled, not queued)."""
        return self.loop is not None

    def start(self, subscribe: Subscribe) -> None:
        """Subscribe and start handling; call on the event loop that is to run the feedback."""
        event_loop = asyncio.get_running_loop()
        queue: asyncio.Queue[Detection] = asyncio.Queue()
        arrived = asyncio.Event()
        self._queue = queue
        self._task = asyncio.create_task(self._handle(queue, arrived))

        def put(detection: Detection) -> None:
            queue.put_nowait(detection)
            arrived.set()

        def put_threadsafe(detection: Detection) -> None:
            event_loop.call_soon_threadsafe(put, detection)

        self._unsubscribe = subscribe(put_threadsafe)

    async def _connected(self, arrived: asyncio.Event) -> FeedbackLoop:
        """The loop, once ``connect`` returned; between attempts, wait out the backoff or
        until a detection arrives."""
        while True:
            try:
                loop = await asyncio.to_thread(self._connect)
            except Exception as exc:  # noqa: BLE001 - ClickHouse down; configuration errors raised in build
                arrived.clear()
                delay = self._retry.failed(exc)
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(arrived.wait(), timeout=delay)
                continue
            self._retry.succeeded()
            self.loop = loop
            return loop

    async def _resend(self, loop: FeedbackLoop) -> None:
        """Re-send the firing alerts every ``resend_interval`` to the notifiers that need it
        (Alertmanager's API), as long as the runner runs."""
        alerter = loop.alerter
        interval = alerter.resend_interval if alerter is not None else None
        if alerter is None or interval is None:
            return
        while True:
            await asyncio.sleep(interval.total_seconds())
            try:
                await alerter.resend()
            except Exception:  # noqa: BLE001 - the next interval tries again
                log.exception("re-sending the firing alerts failed")

    async def _handle(self, queue: asyncio.Queue[Detection], arrived: asyncio.Event) -> None:
        loop = await self._connected(arrived)
        self._resender = asyncio.create_task(self._resend(loop))
        while True:
            detection = await queue.get()
            try:
                await loop.handle(detection, self.forecast(detection))
            except Exception:  # noqa: BLE001 - one failed detection must not stop the loop
                log.exception("feedback failed for a detection", extra={"detection": detection.id})
            finally:
                queue.task_done()

    async def drained(self) -> None:
        """Wait until every detection queued so far has been handled (tests, shutdown)."""
        if self._queue is not None:
            await self._queue.join()

    async def stop(self) -> None:
        """Stop taking detections, handle the queued ones (at most ``drain_seconds``), close
        the deliveries' HTTP session. Stop the detectors first: what they publish after
        this is not handled."""
        if self._task is None:
            return
        if self._unsubscribe is not None:
            self._unsubscribe()
        if self.loop is None:  # ClickHouse never answered: nothing could be handled
            queued = self._queue.qsize() if self._queue is not None else 0
            if queued:
                log.warning("stopping before feedback reached ClickHouse; detections not handled",
                            extra={"detections": queued})
        else:
            try:
                await asyncio.wait_for(self.drained(), timeout=self.drain_seconds)
            except TimeoutError:
                log.warning("stopping with detections not yet handled by feedback")
        self._task.cancel()
        self._task = None
        if self._resender is not None:
            self._resender.cancel()
            self._resender = None
        if self.loop is not None and self.loop.alerter is not None:
            await self.loop.alerter.sender.close()
