"""CloudWatch Logs subscription payloads pushed over HTTP, raw or in Firehose envelopes.

A subscription filter delivers gzip-compressed JSON (``messageType`` ``DATA_MESSAGE`` with
``logGroup``, ``logStream``, ``owner`` and ``logEvents``), base64-encoded when it passes
through a Lambda (``{"awslogs": {"data": …}}``) or a Kinesis Data Firehose HTTP endpoint
(``{"requestId", "timestamp", "records": [{"data": …}]}``). ``CONTROL_MESSAGE`` payloads
are the service checking that the destination is reachable: acknowledged, never stored.

The handlers answer only after the ingest path accepted the records, and answer 503
otherwise: both Firehose and a forwarding Lambda retry, so nothing acknowledged is lost.
"""

from __future__ import annotations

import base64
import binascii
import hmac
import json
import logging
import time
import zlib
from collections.abc import Callable
from dataclasses import dataclass

import orjson
from aiohttp import web

from obsloop.collectors import selfmetrics
from obsloop.collectors.aws_lambda_logs import LambdaLogDecoder, LambdaSource
from obsloop.collectors.dedup import RecentDeliveries, body_key
from obsloop.collectors.encode import LogsBuilder
from obsloop.collectors.forward import AsyncSubmit, Submit, deliver
from obsloop.collectors.normalize import Invocation
from obsloop.pipelines.backpressure import PipelineFull

log = logging.getLogger(__name__)

_GZIP_MAGIC = b"\x1f\x8b"
_MAX_TIMESTAMP_MS = (1 << 64) // 1_000_000
"""Past it the time in nanoseconds no longer fits OTLP's ``fixed64``."""


class PayloadError(ValueError):
    """A body that is not a subscription payload at all (answered with 400)."""


def _json_documents(data: bytes) -> list:
    """One or more concatenated JSON documents (Firehose may join records).

    orjson parses about three times faster than ``json`` (the JSON was ~10 % of the event
    loop's CPU on this path) but has no ``raw_decode``. Two documents joined as ``}{`` are
    split at the last such pair when what precedes it parses alone (an object that parses
    ends exactly there, so this is where ``json`` would split too); otherwise see
    :func:`_orjson_documents`."""
    view = memoryview(data)
    boundary = data.rfind(b"}{") + 1
    if boundary > 0:
        try:
            head = orjson.loads(view[:boundary])
        except orjson.JSONDecodeError:
            pass  # more documents before it, or a "}{" inside a string: the general way
        else:
            return [head, *_orjson_documents(data[boundary:])]
    return _orjson_documents(data)


def _orjson_documents(data: bytes) -> list:
    """A concatenation fails in orjson with "unexpected content after document" at the
    next document's position, in characters, which are bytes when the payload is ASCII
    (as CloudWatch's escaped JSON nearly always is); that document is then parsed alone,
    and so on. Anything orjson refuses that ``json`` takes (a lone surrogate escape,
    ``NaN``) and a non-ASCII concatenation go through ``json``, so the result and the
    errors are ``json``'s."""
    documents: list = []
    view = memoryview(data)
    ascii_only: bool | None = None
    while True:
        try:
            documents.append(orjson.loads(view))
            return documents
        except orjson.JSONDecodeError as exc:
            if not exc.msg.startswith("unexpected content after document"):
                break
            if ascii_only is None:
                ascii_only = data.isascii()
            if not ascii_only or not 0 < exc.pos < len(view):
                break
            end = exc.pos
        try:
            documents.append(orjson.loads(view[:end]))
        except orjson.JSONDecodeError:
            break
        view = view[end:]
    return documents + _json_documents_slow(bytes(view))


def _json_documents_slow(text: bytes) -> list:
    decoder = json.JSONDecoder()
    source = text.decode()
    documents, index = [], 0
    while True:
        while index < len(source) and source[index] in " \t\r\n":
            index += 1
        if index >= len(source):
            return documents
        document, index = decoder.raw_decode(source, index)
        documents.append(document)


MAX_DECOMPRESSED_BYTES = 256 << 20
"""Far above any real delivery (a subscription batch holds at most 1 MB of events, a
Firehose request at most 64 MiB), far below what a few kilobytes of crafted gzip can
expand to: past it the body is refused (400) instead of exhausting the server's memory."""


def gunzip(data: bytes, limit: int = MAX_DECOMPRESSED_BYTES) -> bytes:
    """Every gzip member of ``data`` (members may be concatenated), at most ``limit`` bytes."""
    out: list[bytes] = []
    size = 0
    while data:
        inflater = zlib.decompressobj(wbits=31)
        chunk = inflater.decompress(data, limit - size + 1)
        size += len(chunk)
        if size > limit:
            raise PayloadError(f"decompressed payload exceeds {limit} bytes")
        if not inflater.eof:
            raise PayloadError("truncated gzip stream")
        out.append(chunk)
        data = inflater.unused_data.lstrip(b"\0")  # gzip allows zero padding between members
    return b"".join(out)


def decode_data(data: bytes) -> list[dict]:
    """Subscription messages from gzip bytes, base64 of gzip, or (Firehose with
    decompression enabled) plain JSON."""
    try:
        if data[:2] != _GZIP_MAGIC and data[:1] not in (b"{", b"["):
            data = base64.b64decode(data, validate=False)
        if data[:2] == _GZIP_MAGIC:
            data = gunzip(data)
        return [doc for doc in _json_documents(data) if isinstance(doc, dict)]
    except (binascii.Error, OSError, EOFError, zlib.error, ValueError, UnicodeDecodeError) as exc:
        raise PayloadError(f"not a CloudWatch Logs subscription payload: {exc}") from None


def decode_body(body: bytes) -> list[dict]:
    """The messages of a raw push body: gzip, base64, a ``{"awslogs": {"data"}}`` wrapper
    (the event a subscribed Lambda receives) or the JSON message itself."""
    messages = decode_data(body.strip())
    unwrapped: list[dict] = []
    for message in messages:
        awslogs = message.get("awslogs")
        if isinstance(awslogs, dict) and isinstance(awslogs.get("data"), str):
            unwrapped.extend(decode_data(awslogs["data"].encode()))
        else:
            unwrapped.append(message)
    return unwrapped


@dataclass(slots=True)
class Encoded:
    payload: bytes | None
    events: int
    control: int


class SubscriptionEncoder:
    """DATA_MESSAGEs into one serialized ExportLogsServiceRequest."""

    def __init__(self, enrich: Callable[[Invocation], Invocation], collector: str) -> None:
        self.decoder = LambdaLogDecoder(enrich, collector)
        self.collector = collector

    def encode(self, messages: list[dict], region: str | None) -> Encoded:
        builder = LogsBuilder()
        control = 0
        for message in messages:
            kind = message.get("messageType")
            if kind == "CONTROL_MESSAGE":
                control += 1
                continue
            if kind != "DATA_MESSAGE" or not isinstance(message.get("logEvents"), list):
                raise PayloadError(f"unexpected messageType {kind!r}")
            source = LambdaSource.from_log_stream(
                str(message.get("logGroup", "")),
                str(message.get("logStream", "")),
                message.get("owner"),
                region,
            )
            try:
                events = [(e["timestamp"], e["message"]) for e in message["logEvents"]]
            except (KeyError, TypeError) as exc:
                raise PayloadError(f"logEvents entry without {exc}") from None
            # Checked before use: a string timestamp would be repeated a million times by
            # the conversion to nanoseconds, an out-of-range one fails the encoding.
            for t, m in events:
                if type(t) is not int or not 0 <= t < _MAX_TIMESTAMP_MS or type(m) is not str:
                    raise PayloadError("logEvents entries need an integer timestamp in ms "
                                       "since the epoch and a string message")
            self.decoder.add_cloudwatch_events(builder, source, events)
        payload = builder.serialize() if builder.count else None
        return Encoded(payload, builder.count, control)


def _json_response(body: dict, status: int = 200) -> web.Response:
    """``web.json_response`` with orjson: its ``json.dumps`` showed in the profile."""
    return web.Response(body=orjson.dumps(body), status=status, content_type="application/json")


def _region_from_arn(arn: str | None) -> str | None:
    parts = (arn or "").split(":")
    return parts[3] if len(parts) > 4 and parts[3] else None


def subscription_handler(
    submit: Submit | AsyncSubmit,
    enrich: Callable[[Invocation], Invocation],
    region: str | None = None,
    collector: str = "aws.subscription",
    recent: RecentDeliveries | None = None,
):
    """``POST`` a raw subscription payload; ``?region=`` names the region (the payload
    does not), defaulting to ``region``. A re-post of a body accepted within the window of
    ``recent`` is acknowledged without being stored again."""
    encoder = SubscriptionEncoder(enrich, collector)
    recent = recent if recent is not None else RecentDeliveries()

    async def handler(request: web.Request) -> web.Response:
        body = await request.read()
        key = body_key(body)
        if recent.seen(key):
            selfmetrics.DUPLICATES.labels(collector).inc()
            return _json_response({"accepted": 0, "duplicate": True})
        try:
            encoded = encoder.encode(decode_body(body), request.query.get("region", region))
        except PayloadError as exc:
            selfmetrics.ERRORS.labels(collector, "bad_payload").inc()
            return _json_response({"error": str(exc)}, status=400)
        if not await _store(submit, encoded, collector):
            return _json_response({"error": "ingest path busy"}, status=503)
        recent.accepted(key)
        _count(collector, encoded, encoder)
        return _json_response({"accepted": encoded.events})

    return handler


def firehose_handler(
    submit: Submit | AsyncSubmit,
    enrich: Callable[[Invocation], Invocation],
    access_key: str | None = None,
    region: str | None = None,
    collector: str = "aws.firehose",
    recent: RecentDeliveries | None = None,
):
    """The Kinesis Data Firehose HTTP endpoint destination protocol: answer with the
    request's ``requestId`` and a ``timestamp``; any other status makes Firehose retry.
    A retry of a ``requestId`` accepted within the window of ``recent`` is acknowledged
    without being stored again."""
    encoder = SubscriptionEncoder(enrich, collector)
    recent = recent if recent is not None else RecentDeliveries()

    def answer(request_id: str, status: int, error: str | None = None) -> web.Response:
        body: dict = {"requestId": request_id, "timestamp": int(time.time() * 1000)}
        if error is not None:
            body["errorMessage"] = error
        return _json_response(body, status=status)

    async def handler(request: web.Request) -> web.Response:
        request_id = request.headers.get("X-Amz-Firehose-Request-Id", "")
        if access_key is not None and not hmac.compare_digest(
            request.headers.get("X-Amz-Firehose-Access-Key", ""), access_key
        ):
            selfmetrics.ERRORS.labels(collector, "unauthorized").inc()
            return answer(request_id, 401, "invalid access key")
        try:
            envelope = json.loads(await request.read())
            request_id = envelope.get("requestId", request_id)
            if request_id and recent.seen("firehose:" + str(request_id)):
                selfmetrics.DUPLICATES.labels(collector).inc()
                return answer(request_id, 200)
            messages: list[dict] = []
            for record in envelope["records"]:
                messages.extend(decode_data(record["data"].encode()))
            stream_region = _region_from_arn(request.headers.get("X-Amz-Firehose-Source-Arn"))
            encoded = encoder.encode(messages, stream_region or region)
        except (PayloadError, ValueError, KeyError, TypeError, AttributeError) as exc:
            selfmetrics.ERRORS.labels(collector, "bad_payload").inc()
            return answer(request_id, 400, f"malformed Firehose request: {exc}")
        if not await _store(submit, encoded, collector):
            return answer(request_id, 503, "ingest path busy, retry")
        if request_id:
            recent.accepted("firehose:" + str(request_id))
        _count(collector, encoded, encoder)
        return answer(request_id, 200)

    return handler


async def _store(submit: Submit | AsyncSubmit, encoded: Encoded, collector: str) -> bool:
    """Hand a delivery's records to the ingest path; ``False`` when it refused them (the
    sender is then answered 503 and retries: nothing was accepted)."""
    if encoded.payload is None:
        return True
    try:
        await deliver(submit, "logs", encoded.payload, encoded.events)
    except PipelineFull:  # backpressure: counted and logged (once per interval) by the pipeline
        selfmetrics.ERRORS.labels(collector, "ingest_refused").inc()
        return False
    except Exception:  # noqa: BLE001 - any sink failure means "not accepted"
        log.warning("ingest path refused a delivery", extra={"collector": collector}, exc_info=True)
        selfmetrics.ERRORS.labels(collector, "ingest_refused").inc()
        return False
    return True


def _count(collector: str, encoded: Encoded, encoder: SubscriptionEncoder) -> None:
    selfmetrics.PAGES.labels(collector).inc()
    selfmetrics.EVENTS.labels(collector).inc(encoded.events)
    malformed = encoder.decoder.malformed
    if malformed:
        selfmetrics.MALFORMED.labels(collector).inc(malformed)
        encoder.decoder.malformed = 0
