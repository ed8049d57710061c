"""The two ways a collector hands OTLP to the one ingest path.

Inside ``obsloop serve`` the collectors call the pipeline directly; ``obsloop collect`` as
its own process posts to the running server's OTLP/HTTP receiver, because the embedded
ClickHouse admits one process per data directory and a second writer would be a second
path to storage.
"""

from __future__ import annotations

import asyncio
import inspect
import urllib.request
from concurrent.futures import Future
from typing import Protocol


class Submit(Protocol):
    """How a collector hands one serialized export request to the ingest path; raises
    when it was not accepted (the collector keeps its data and retries).

    ``items`` is the record count of a payload the collector encoded itself
    (:class:`~obsloop.collectors.encode.LogsBuilder` emits only what validation accepts);
    ``None`` asks for the payload to be parsed and counted.
    """

    def __call__(self, signal: str, payload: bytes, items: int | None = None) -> None: ...


class AsyncSubmit(Protocol):
    """:class:`Submit` for handlers on the event loop: awaiting durability must not block it."""

    async def __call__(self, signal: str, payload: bytes, items: int | None = None) -> None: ...


def _hand(intake, signal: str, payload: bytes, items: int | None) -> Future[None] | None:
    """Validate and count unless trusted, then hand to the intake (see :func:`intake_submit`)."""
    if items is None:
        from obsloop.pipelines.otlp_decode import validate

        valid = validate(signal, payload)
        payload, items = valid.payload, valid.items
    return intake.submit(signal, payload, items)


def intake_submit(intake) -> Submit:
    """Hand to the server's intake; returns once the data is durable (the write-ahead log,
    or Kafka's acknowledgement) and raises ``PipelineFull`` otherwise, so a collector never
    advances its checkpoint past data that could still be lost. For the pull collectors,
    which run in threads.

    A payload with its ``items`` count is trusted internal input, built by the collectors'
    own encoder in this process: parsing it again as the receivers parse untrusted
    requests cost a full protobuf parse per delivery (~10 % of the subscription path's CPU)
    and could not find anything to reject. Without a count it is validated and counted."""

    def submit(signal: str, payload: bytes, items: int | None = None) -> None:
        pending = _hand(intake, signal, payload, items)
        if pending is not None:
            pending.result()

    return submit


def intake_submit_async(intake) -> AsyncSubmit:
    """:func:`intake_submit` for the push handlers: with Kafka the acknowledgement is a
    future resolved by the producer's thread, and waiting for it synchronously would stop
    the event loop (every other request) for a broker round trip per delivery."""

    async def submit(signal: str, payload: bytes, items: int | None = None) -> None:
        pending = _hand(intake, signal, payload, items)
        if pending is not None:
            await asyncio.wrap_future(pending)

    return submit


async def deliver(submit: Submit | AsyncSubmit, signal: str, payload: bytes, items: int) -> None:
    """Call either kind of submit from a handler, awaiting it when it is asynchronous."""
    result = submit(signal, payload, items)
    if inspect.isawaitable(result):
        await result


def http_submit(endpoint: str, bearer_token: str | None = None, timeout: float = 30.0) -> Submit:
    """POST ``application/x-protobuf`` to ``<endpoint>/v1/<signal>``; any non-2xx raises
    (``urllib`` raises ``HTTPError``), which the collectors treat as "not accepted"."""

    def submit(signal: str, payload: bytes, items: int | None = None) -> None:
        # ``items`` is not needed: the receiver validates and counts what crosses a process
        headers = {"Content-Type": "application/x-protobuf"}
        if bearer_token:
            headers["Authorization"] = f"Bearer {bearer_token}"
        request = urllib.request.Request(f"{endpoint.rstrip('/')}/v1/{signal}", data=payload,
                                         headers=headers, method="POST")
        with urllib.request.urlopen(request, timeout=timeout):  # noqa: S310 - configured URL
            pass

    return submit
