"""The feedback loop attached to a detection stream: ``obsloop serve`` and ``obsloop
detector-worker`` run it the same way.

Detections are published on a detector thread (a :class:`~obsloop.detectors.detections.DetectionBus`
calls its subscribers there). The runner hops each one onto an asyncio event loop and handles
them one at a time, in the order they were published: two detections never edit the GitOps
checkout at once, and a clearing never overtakes the detection it clears. A detection that
fails is logged and the next one goes on.

Stopping drains what is queued, with a bound (``drain_seconds``), so a commit or an alert in
flight is not cut off but a dead remote cannot hold a shutdown forever; then the HTTP
session of the deliveries is closed.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

from prometheus_client import REGISTRY, CollectorRegistry

from .build import build_loop
from .config import FeedbackConfig
from .detection import Detection
from .loop import FeedbackLoop

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

    def __init__(self, loop: FeedbackLoop, forecast: Forecast = no_forecast, *,
                 drain_seconds: float = 30.0) -> None:
        self.loop = loop
        self.forecast = forecast
        self.drain_seconds = drain_seconds
        self._queue: asyncio.Queue[Detection] | None = None
        self._task: asyncio.Task[None] | None = None
        self._unsubscribe: Callable[[], None] | None = None

    @classmethod
    def build(
        cls,
        config: FeedbackConfig,
        client: Any,
        data_dir: Path,
        database: str = "default",
        forecast: Forecast = no_forecast,
        registry: CollectorRegistry = REGISTRY,
    ) -> FeedbackRunner:
        """The runner of ``config`` (``feedback.enabled`` checked by the caller); creates the
        audit and dead-letter tables, so ClickHouse must answer."""
        return cls(build_loop(config, client, data_dir, database, registry), forecast)

    def start(self, subscribe: Subscribe) -> None:
        """Subscribe and start handling; call on the event loop that is to run the feedback."""
        event_loop = asyncio.get_running_loop()
        queue: asyncio.Queue[Detection] = asyncio.Queue()
        self._queue = queue
        self._task = asyncio.create_task(self._handle(queue))
        self._unsubscribe = subscribe(lambda detection: event_loop.call_soon_threadsafe(queue.put_nowait, detection))

    async def _handle(self, queue: asyncio.Queue[Detection]) -> None:
        while True:
            detection = await queue.get()
            try:
                await self.loop.handle(detection, self.forecast(detection))
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
        try:
            await asyncio.wait_for(self.drained(), timeout=self.drain_seconds)
        except TimeoutError:
            log.warning("stopping with detections not yet handled by feedback")
        self._task.cancel()
        self._task = None
        if self.loop.alerter is not None:
            await self.loop.alerter.sender.close()
