"""HTTP delivery with retries, shared by alert notifiers, retraining triggers and forges.

Retries follow what every receiver in scope documents: 5xx, 429 and network errors are
transient (exponential backoff, ``Retry-After`` honoured up to the delay cap); any other 4xx
means the request itself is wrong and will be wrong again, so it fails at once. A request
that finally fails goes to the dead-letter table when the sender has one.

A :class:`Request` carries its secrets (Slack's webhook URL, a bearer token, a signature)
only in ``url`` and ``headers``, which are sent and never logged, stored or put in an
exception; ``record`` is the same payload with the secrets left out, for dead letters.
"""

from __future__ import annotations

import asyncio
import json as _json
import logging
from dataclasses import dataclass, field
from typing import Any

import aiohttp
from prometheus_client import REGISTRY, CollectorRegistry, Counter
from pydantic import SecretStr

from obsloop.feedback.deadletter import DeadLetters

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Request:
    target: str
    """The configured target name: the only identity that is logged."""
    url: str = field(repr=False)
    body: bytes = field(repr=False)
    headers: dict[str, str] = field(default_factory=dict, repr=False)
    record: Any = None
    """The payload without secrets, kept if the request ends up as a dead letter."""
    kind: str = "alert"
    key: str = ""
    """Deduplication key or fingerprint, so a dead letter can be matched to its alert."""

    @classmethod
    def json(cls, target: str, url: str, payload: Any, headers: dict[str, str] | None = None, *,
             kind: str, key: str = "") -> Request:
        """A JSON POST of ``payload``, which is also its dead-letter record: the secrets
        must be in ``url`` or ``headers`` only."""
        return cls(target, url, _json.dumps(payload).encode(), headers or {}, payload, kind, key)


def bearer(token: SecretStr | None) -> dict[str, str]:
    """The ``Authorization`` header for an optional bearer token."""
    return {"Authorization": f"Bearer {token.get_secret_value()}"} if token is not None else {}


@dataclass(frozen=True)
class Response:
    status: int
    text: str


@dataclass(frozen=True)
class RetryPolicy:
    attempts: int = 5
    base_delay: float = 0.5
    max_delay: float = 30.0


class DeliveryFailed(Exception):
    """Delivery stopped; the message names the target and status, never the URL."""

    def __init__(self, target: str, attempts: int, reason: str, status: int | None = None):
        super().__init__(f"{target}: {reason} after {attempts} attempt(s)")
        self.target, self.attempts, self.reason, self.status = target, attempts, reason, status


def _retry_after(value: str | None, cap: float) -> float | None:
    try:
        return min(float(value), cap) if value is not None else None
    except ValueError:
        return None


class Sender:
    def __init__(
        self,
        retry: RetryPolicy = RetryPolicy(),
        dead_letters: DeadLetters | None = None,
        timeout_seconds: float = 10.0,
        registry: CollectorRegistry = REGISTRY,
    ) -> None:
        self.retry = retry
        self.dead_letters = dead_letters
        self._timeout = aiohttp.ClientTimeout(total=timeout_seconds)
        self._session: aiohttp.ClientSession | None = None
        self._deliveries = Counter(
            "obsloop_feedback_deliveries",
            "Webhook, paging and trigger deliveries by target and outcome.",
            ["target", "outcome"],
            registry=registry,
        )

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def send(self, request: Request, dead_letter: bool = True) -> Response:
        if self._session is None:
            self._session = aiohttp.ClientSession(timeout=self._timeout)
        headers = {"Content-Type": "application/json", **request.headers}
        attempt, reason, status = 0, "", None
        while attempt < self.retry.attempts:
            attempt += 1
            delay = min(self.retry.base_delay * 2 ** (attempt - 1), self.retry.max_delay)
            try:
                async with self._session.post(
                    request.url, data=request.body, headers=headers
                ) as reply:
                    text = await reply.text()
                    status = reply.status
                    if status < 300:
                        self._deliveries.labels(request.target, "delivered").inc()
                        return Response(status, text)
                    reason = f"HTTP {status}"
                    if status < 500 and status != 429:
                        break
                    delay = (
                        _retry_after(reply.headers.get("Retry-After"), self.retry.max_delay)
                        or delay
                    )
            except (aiohttp.ClientError, TimeoutError) as exc:
                reason, status = f"network error ({type(exc).__name__})", None
            log.warning("delivery to %s failed (%s), attempt %d", request.target, reason, attempt)
            if attempt < self.retry.attempts:
                await asyncio.sleep(delay)
        self._deliveries.labels(request.target, "failed").inc()
        if dead_letter and self.dead_letters is not None:
            self.dead_letters.record(
                request.target, request.kind, request.key, attempt, reason, request.record
            )
        raise DeliveryFailed(request.target, attempt, reason, status)
