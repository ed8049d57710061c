"""The feedback stage of a process (``obsloop serve``, ``obsloop detector-worker``): the
:class:`~obsloop.feedback.responder.Responder` attached to a detection stream.

Detections arrive on a detector thread; the stage hops each onto an asyncio event loop and
hands them to the responder one at a time, in the order they were published, so two
detections never edit the GitOps checkout at once and a clearing never overtakes the
detection it clears. It starts while ClickHouse is down (detections queue until the
responder's tables exist) and drains, with a bound, on stop.
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
from obsloop.feedback.build import ResponderBuilder
from obsloop.feedback.config import FeedbackConfig
from obsloop.feedback.responder import Responder

log = logging.getLogger(__name__)

Forecast = Callable[[Detection], "float | None"]
"""The month-end spend forecast of a detection's function, for the budget guardrail."""
Subscribe = Callable[[Callable[[Detection], None]], Callable[[], None]]
"""``DetectionBus.subscribe`` (or ``DetectorHost.subscribe``): returns the unsubscriber."""


def no_forecast(detection: Detection) -> float | None:
    """No spend forecast: the budget guardrail refuses every scale-up of a budgeted deployment."""
    return None


class FeedbackStage:
    """Queues detections from any thread and feeds them to a :class:`Responder` in order."""

    def __init__(self, connect: Callable[[], Responder], forecast: Forecast = no_forecast, *,
                 drain_seconds: float = 30.0, first_delay: float = 1.0, max_delay: float = 30.0) -> None:
        """``connect`` returns the responder or raises while ClickHouse does not answer; it runs
        in a thread, retried after ``first_delay`` seconds, doubling up to ``max_delay``."""
        self._connect = connect
        self.responder: Responder | None = None
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
    ) -> FeedbackStage:
        """The stage of ``config`` (``feedback.enabled`` checked by the caller). A
        configuration error raises ``ValueError`` here; ``client`` (the process's ClickHouse
        client factory, which raises while ClickHouse is down) is called once started."""
        builder = ResponderBuilder(config, data_dir, registry)
        return cls(lambda: builder.connect(client(), database), forecast)

    @property
    def ready(self) -> bool:
        """Whether the responder is connected to ClickHouse (detections are handled, not queued)."""
        return self.responder is not None

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

    async def _connected(self, arrived: asyncio.Event) -> Responder:
        """The responder, once ``connect`` returned; between attempts, wait out the backoff or
        until a detection arrives."""
        while True:
            try:
                responder = await asyncio.to_thread(self._connect)
            except Exception as exc:  # noqa: BLE001 - ClickHouse down; configuration errors raised in build
                arrived.clear()
                delay = self._retry.failed(exc)
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(arrived.wait(), timeout=delay)
                continue
            self._retry.succeeded()
            self.responder = responder
            return responder

    async def _resend(self, responder: Responder) -> None:
        """Re-send the firing alerts every ``resend_interval`` to the notifiers that need it
        (Alertmanager's API), as long as the stage runs."""
        alerter = responder.alerter
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
        responder = await self._connected(arrived)
        self._resender = asyncio.create_task(self._resend(responder))
        while True:
            detection = await queue.get()
            try:
                await responder.handle(detection, self.forecast(detection))
            except Exception:  # noqa: BLE001 - one failed detection must not stop the stage
                log.exception("feedback failed for a detection", extra={"detection": detection.id})
            finally:
                queue.task_done()

    async def drained(self) -> None:
        """Wait until every detection queued so far has been handled (tests, shutdown)."""
        if self._queue is not None:
            await self._queue.join()

    async def stop(self) -> None:
        """Stop taking detections, handle the queued ones (at most ``drain_seconds``, so a
        commit or an alert in flight is not cut off but a dead remote cannot hold a shutdown
        forever), close the deliveries' HTTP session. Stop the detectors first: what they publish after
        this is not handled."""
        if self._task is None:
            return
        if self._unsubscribe is not None:
            self._unsubscribe()
        if self.responder is None:  # ClickHouse never answered: nothing could be handled
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
        if self.responder is not None and self.responder.alerter is not None:
            await self.responder.alerter.sender.close()
