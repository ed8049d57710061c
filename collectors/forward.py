"""The two ways a collector hands OTLP to the one ingest path.

Inside ``obsloop serve`` the collectors call the pipeline directly (validated like any
receiver request); ``obsloop collect`` as its own process posts to the running server's
OTLP/HTTP receiver, because the embedded ClickHouse admits one process per data directory
and a second writer would be a second path to storage.
"""

from __future__ import annotations

import urllib.request
from collections.abc import Callable

Submit = Callable[[str, bytes], None]


def pipeline_submit(pipeline) -> Submit:
    """Validate, then hand to the server's intake; returns once the data is durable (the
    write-ahead log, or Kafka's acknowledgement) and raises ``PipelineFull`` otherwise, so a
    collector never advances its checkpoint past data that could still be lost."""
    from obsloop.collectors.otlp_decode import validate

    def submit(signal: str, payload: bytes) -> None:
        valid = validate(signal, payload)
        pending = pipeline.submit(signal, valid.payload, valid.items)
        if pending is not None:
            pending.result()

    return submit


def http_submit(endpoint: str, bearer_token: str | None = None, timeout: float = 30.0) -> Submit:
    """POST ``application/x-protobuf`` to ``<endpoint>/v1/<signal>``; any non-2xx raises
    (``urllib`` raises ``HTTPError``), which the collectors treat as "not accepted"."""

    def submit(signal: str, payload: bytes) -> None:
        headers = {"Content-Type": "application/x-protobuf"}
        if bearer_token:
            headers["Authorization"] = f"Bearer {bearer_token}"
        request = urllib.request.Request(f"{endpoint.rstrip('/')}/v1/{signal}", data=payload,
                                         headers=headers, method="POST")
        with urllib.request.urlopen(request, timeout=timeout):  # noqa: S310 - configured URL
            pass

    return submit
