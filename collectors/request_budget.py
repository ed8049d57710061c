"""What one request on the OTLP/HTTP port may cost to decode, across every layer of it.

A push nests encodings: the HTTP ``Content-Encoding``, Firehose records in base64 of gzip,
``awslogs`` documents whose ``data`` is base64 of gzip again. A limit per layer multiplies
with the nesting (a few kilobytes of crafted input inflated to hundreds of megabytes), so
each request gets one :class:`Budget`: every byte any layer decodes is charged to it, and
documents and events are counted against caps of their own. Past a limit the request is
refused with 413 and a message naming the limit.

Parsed JSON costs Python objects many times its size (about 25x for ``[{},{},…]``), so no
JSON text may be larger than ``max_request_bytes``, and the push decoders parse and encode
one document at a time instead of holding them all.
"""

from __future__ import annotations

import base64
import zlib
from dataclasses import dataclass
from typing import Any

from aiohttp import web

from obsloop.collectors.config import ReceiverConfig
from obsloop.collectors.push_auth import Refused
from obsloop.pipelines.otlp_decode import MAX_JSON_DEPTH

ORJSON_MAX_DEPTH = 1024
"""orjson's own limit, the bound on the subscription and Firehose routes: their decoders
read a few fields at known depths and never walk a document, so deeper nesting costs
nothing but its bytes, and checking it would cost a fifth of their time."""


@dataclass(frozen=True)
class Limits:
    """The per-request limits, from ``receiver.*`` in the configuration (:meth:`of`)."""

    max_request_bytes: int
    """A body as received, and again after its ``Content-Encoding``; also any JSON text."""
    max_decompressed_bytes: int
    """Everything all decoding layers of one request produce, together."""
    max_documents: int
    """JSON documents and Firehose records in one request."""
    max_events: int
    """Log events (CloudWatch ``logEvents``, Telemetry API events) in one request."""

    @classmethod
    def of(cls, receiver: ReceiverConfig | None = None) -> Limits:
        """The limits ``receiver`` configures (the defaults without one)."""
        if receiver is None:
            receiver = ReceiverConfig()
        return cls(
            max_request_bytes=receiver.max_request_bytes,
            max_decompressed_bytes=receiver.max_request_bytes * receiver.max_decompressed_ratio,
            max_documents=receiver.max_documents_per_request,
            max_events=receiver.max_events_per_request,
        )


class BudgetExceeded(Refused):
    def __init__(self, message: str) -> None:
        super().__init__(413, message, "too_large")


class CorruptData(ValueError):
    """Compressed or encoded data that does not decode (the caller answers 400)."""


class Budget:
    """The decoding allowance of one request (not shared between requests)."""

    def __init__(self, limits: Limits) -> None:
        self.limits = limits
        self.decoded = 0
        self.documents = 0
        self.events = 0

    def charge(self, size: int, what: str) -> None:
        """Account for ``size`` decoded bytes."""
        self.decoded += size
        if self.decoded > self.limits.max_decompressed_bytes:
            raise BudgetExceeded(f"{what}: the request decodes to more than "
                                 f"{self.limits.max_decompressed_bytes} bytes")

    def count_documents(self, count: int) -> None:
        self.documents += count
        if self.documents > self.limits.max_documents:
            raise BudgetExceeded(f"more than {self.limits.max_documents} documents in one request")

    def count_events(self, count: int) -> None:
        self.events += count
        if self.events > self.limits.max_events:
            raise BudgetExceeded(f"more than {self.limits.max_events} events in one request")

    def check_json(self, text: bytes | str, what: str = "JSON document") -> None:
        """Refuse a JSON text too large to parse (before it becomes Python objects)."""
        if len(text) > self.limits.max_request_bytes:
            raise BudgetExceeded(f"{what} of {len(text)} bytes exceeds the "
                                 f"{self.limits.max_request_bytes}-byte limit")

    def inflate(self, data: bytes, *, gzip: bool = True, what: str = "decompressed data") -> bytes:
        """``data`` inflated (every member of a gzip stream, or one zlib stream), at most
        ``max_request_bytes`` and what is left of the budget."""
        remaining = self.limits.max_decompressed_bytes - self.decoded
        limit = min(self.limits.max_request_bytes, remaining)
        out: list[bytes] = []
        size = 0
        while True:
            inflater = zlib.decompressobj(wbits=31 if gzip else 15)
            try:
                chunk = inflater.decompress(data, limit - size + 1)
            except zlib.error as exc:
                raise CorruptData(str(exc)) from None
            size += len(chunk)
            if size > limit:
                if limit == self.limits.max_request_bytes:
                    raise BudgetExceeded(f"{what} exceeds the {limit}-byte limit")
                self.charge(size, what)
            if not inflater.eof:
                raise CorruptData("truncated stream")
            out.append(chunk)
            data = inflater.unused_data.lstrip(b"\0")  # gzip allows zero padding between members
            if not data or not gzip:
                break
        if data:
            raise CorruptData("data after the end of the stream")
        self.charge(size, what)
        return b"".join(out)

    def b64decode(self, data: bytes | str, what: str = "base64 data") -> bytes:
        """``data`` decoded from base64 (``binascii.Error`` when it is not), charged."""
        self.charge(len(data) * 3 // 4, what)  # before decoding: the output is at most this
        return base64.b64decode(data, validate=False)


async def read_body(request: web.Request, budget: Budget) -> bytes:
    """The request body, decoded from its ``Content-Encoding`` (gzip or deflate) within
    ``budget``; :class:`Refused` with 413, 415 or 400 otherwise."""
    limit = budget.limits.max_request_bytes
    if request.content_length is not None and request.content_length > limit:
        raise Refused(413, f"body of {request.content_length} bytes exceeds the {limit}-byte limit",
                      "too_large")
    try:
        body = await request.read()
    except web.HTTPRequestEntityTooLarge:
        raise Refused(413, f"body exceeds the {limit}-byte limit", "too_large") from None
    encoding = request.headers.get("Content-Encoding", "").lower().strip()
    if encoding in ("", "identity"):
        return body
    if encoding not in ("gzip", "deflate"):
        raise Refused(415, f"unsupported Content-Encoding {encoding!r} (use gzip)", "encoding")
    try:
        return budget.inflate(body, gzip=encoding == "gzip", what="decompressed body")
    except CorruptData as exc:
        raise Refused(400, f"invalid {encoding} body: {exc}", "bad_compression") from None


def too_deep(node: object, limit: int = MAX_JSON_DEPTH) -> bool:
    """Whether parsed JSON nests lists and objects more than ``limit`` levels (iterative:
    checking must not hit the recursion limit it protects)."""
    if not isinstance(node, dict | list):
        return False
    stack: list[tuple[dict[Any, Any] | list[Any], int]] = [(node, 1)]
    while stack:
        value, depth = stack.pop()
        children = value.values() if isinstance(value, dict) else value
        if depth > limit:
            return True
        stack.extend((child, depth + 1) for child in children if isinstance(child, dict | list))
    return False
