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

import binascii
import json
import logging
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import Any

import orjson
from aiohttp import web

from obsloop.collectors import selfmetrics
from obsloop.collectors.aws_lambda_logs import LambdaLogDecoder, LambdaSource
from obsloop.collectors.dedup import MAX_DELIVERY_ID_CHARS, RecentDeliveries, body_key, delivery_key
from obsloop.collectors.encode import LogsBuilder
from obsloop.collectors.forward import AsyncSubmit, Submit, deliver
from obsloop.collectors.normalize import Invocation
from obsloop.collectors.push_auth import Credential, Handler, PortGuard, Refused
from obsloop.collectors.request_budget import ORJSON_MAX_DEPTH, Budget, BudgetExceeded, CorruptData, Limits, read_body
from obsloop.pipelines.backpressure import PipelineFull

log = logging.getLogger(__name__)

_GZIP_MAGIC = b"\x1f\x8b"
_MAX_TIMESTAMP_MS = (1 << 64) // 1_000_000
"""Past it the time in nanoseconds no longer fits OTLP's ``fixed64``."""


class PayloadError(ValueError):
    """A body that is not a subscription payload at all (answered with 400)."""


def _json_documents(data: bytes, budget: Budget) -> list:
    """One or more concatenated JSON documents (Firehose may join records).

    orjson parses about three times faster than ``json`` (the JSON was ~10 % of the event
    loop's CPU on this path) but has no ``raw_decode``. Two documents joined as ``}{`` are
    split at the last such pair when what precedes it parses alone (an object that parses
    ends exactly there, so this is where ``json`` would split too); otherwise see
    :func:`_orjson_documents`. Each document is counted in ``budget`` as it is parsed."""
    view = memoryview(data)
    boundary = data.rfind(b"}{") + 1
    if boundary > 0:
        try:
            head = orjson.loads(view[:boundary])
        except orjson.JSONDecodeError:
            pass  # more documents before it, or a "}{" inside a string: the general way
        else:
            budget.count_documents(1)
            return [head, *_orjson_documents(data[boundary:], budget)]
    return _orjson_documents(data, budget)


def _orjson_documents(data: bytes, budget: Budget) -> list:
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
            budget.count_documents(1)
            return documents
        except orjson.JSONDecodeError as exc:
            if exc.msg.startswith("depth limit exceeded"):  # json would recurse past Python's limit too
                raise RecursionError from None
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
        budget.count_documents(1)
        view = view[end:]
    return documents + _json_documents_slow(bytes(view), budget)


def _json_documents_slow(text: bytes, budget: Budget) -> list[Any]:
    decoder = json.JSONDecoder()
    source = text.decode()
    documents: list[Any] = []
    index = 0
    while True:
        while index < len(source) and source[index] in " \t\r\n":
            index += 1
        if index >= len(source):
            return documents
        document, index = decoder.raw_decode(source, index)
        budget.count_documents(1)
        documents.append(document)


def decode_data(data: bytes | str, budget: Budget) -> list[dict]:
    """Subscription messages from gzip bytes, base64 of gzip, or (Firehose with
    decompression enabled) plain JSON; every decoded byte and document is charged to
    ``budget``."""
    try:
        if isinstance(data, str):
            data = data.encode()
        if data[:2] != _GZIP_MAGIC and data[:1] not in (b"{", b"["):
            data = budget.b64decode(data)
        if data[:2] == _GZIP_MAGIC:
            data = budget.inflate(data, what="decompressed record")
        budget.check_json(data)
        documents = _json_documents(data, budget)
    except RecursionError:
        raise PayloadError(f"JSON nested deeper than {ORJSON_MAX_DEPTH} levels") from None
    except (binascii.Error, CorruptData, ValueError) as exc:
        raise PayloadError(f"not a CloudWatch Logs subscription payload: {exc}") from None
    if not all(isinstance(document, dict) for document in documents):
        raise PayloadError("not a CloudWatch Logs subscription payload: expected JSON objects")
    return documents


def decode_body(body: bytes, budget: Budget) -> Iterator[dict]:
    """The messages of a raw push body: gzip, base64, a ``{"awslogs": {"data"}}`` wrapper
    (the event a subscribed Lambda receives) or the JSON message itself. A generator: each
    wrapped document is decoded only when the one before it was encoded."""
    for message in decode_data(body.strip(), budget):
        awslogs = message.get("awslogs")
        if isinstance(awslogs, dict) and isinstance(awslogs.get("data"), str):
            yield from decode_data(awslogs["data"], budget)
        else:
            yield message


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

    def encode(self, messages: Iterable[dict], region: str | None, budget: Budget) -> Encoded:
        """``messages`` (consumed one at a time, so a generator keeps only one decoded
        document alive) as one request; their events are counted in ``budget``."""
        builder = LogsBuilder()
        control = 0
        for message in messages:
            kind = message.get("messageType")
            if kind == "CONTROL_MESSAGE":
                control += 1
                continue
            if kind != "DATA_MESSAGE" or not isinstance(message.get("logEvents"), list):
                shown = repr(kind[:64]) if isinstance(kind, str) else f"of type {type(kind).__name__}"
                raise PayloadError(f"unexpected messageType {shown}")
            group, stream, owner = (message.get(key, default) for key, default in
                                    (("logGroup", ""), ("logStream", ""), ("owner", None)))
            if not isinstance(group, str) or not isinstance(stream, str) or not isinstance(owner, str | None):
                raise PayloadError("logGroup, logStream and owner must be strings")
            budget.count_events(len(message["logEvents"]))
            source = LambdaSource.from_log_stream(group, stream, owner, region)
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


def _printable(value: str | None) -> str | None:
    """``value`` when it is short printable ASCII (what AWS sends), else ``None``: header
    and query values are echoed in answers and stored, and may hold any bytes."""
    if value is None or len(value) > MAX_DELIVERY_ID_CHARS or not (value.isascii() and value.isprintable()):
        return None
    return value


def _region_from_arn(arn: str | None) -> str | None:
    parts = (_printable(arn) or "").split(":")
    return parts[3] if len(parts) > 4 and parts[3] else None


def subscription_handler(
    submit: Submit | AsyncSubmit,
    enrich: Callable[[Invocation], Invocation],
    region: str | None = None,
    collector: str = "aws.subscription",
    recent: RecentDeliveries | None = None,
    limits: Limits | None = None,
):
    """``POST`` a raw subscription payload; ``?region=`` names the region (the payload
    does not), defaulting to ``region``. A re-post of a body accepted within the window of
    ``recent`` is acknowledged without being stored again. Authentication is the port's
    (:class:`obsloop.collectors.push_auth.PortGuard`): the bearer token."""
    encoder = SubscriptionEncoder(enrich, collector)
    recent = recent if recent is not None else RecentDeliveries()
    limits = limits or Limits.of()

    async def handler(request: web.Request) -> web.Response:
        budget = Budget(limits)
        body = await read_body(request, budget)
        key = body_key(body)
        if recent.seen(key):
            selfmetrics.DUPLICATES.labels(collector).inc()
            return _json_response({"accepted": 0, "duplicate": True})
        try:
            encoded = encoder.encode(decode_body(body, budget), _printable(request.query.get("region")) or region,
                                     budget)
        except PayloadError as exc:
            selfmetrics.ERRORS.labels(collector, "bad_payload").inc()
            return _json_response({"error": str(exc)}, status=400)
        if not await _store(submit, encoded, collector):
            return _json_response({"error": "ingest path busy"}, status=503)
        recent.accepted(key)
        _count(collector, encoded, encoder)
        return _json_response({"accepted": encoded.events})

    return handler


FIREHOSE_ACCESS_KEY_HEADER = "X-Amz-Firehose-Access-Key"


def _firehose_answer(request_id: str, status: int, error: str | None = None) -> web.Response:
    body: dict = {"requestId": request_id, "timestamp": int(time.time() * 1000)}
    if error is not None:
        body["errorMessage"] = error
    return _json_response(body, status=status)


def firehose_refusal(request: web.Request, refused: Refused) -> web.Response:
    """A refusal (401, 413, …) in the Firehose response format."""
    request_id = _printable(request.headers.get("X-Amz-Firehose-Request-Id")) or ""
    return _firehose_answer(request_id, refused.status, refused.message)


def mount_firehose(app: web.Application, guard: PortGuard, path: str, access_key: str, handler: Handler) -> None:
    """Serve ``handler`` at ``path``, authenticated by the Firehose access key instead of
    the bearer token (Firehose cannot send ``Authorization``)."""
    if not access_key:
        raise ValueError("the Firehose endpoint needs an access key")
    guard.use(path, Credential.header_secret(FIREHOSE_ACCESS_KEY_HEADER, access_key, "Firehose access key"))
    guard.render(path, firehose_refusal)
    app.router.add_post(path, handler)


def _firehose_records(body: bytes, budget: Budget, header_id: str) -> tuple[str, list[dict]]:
    """The envelope's ``requestId`` and ``records``, checked before any record is decoded."""
    budget.check_json(body, "Firehose request")
    # One object per record (their data is base64, without braces): counted before parsing,
    # so that a flood of tiny records is refused before it becomes Python objects. The
    # documents inside the records are counted as they are decoded.
    if body.count(b"{") > budget.limits.max_documents + 1:
        raise BudgetExceeded(f"more than {budget.limits.max_documents} documents in one request")
    try:
        envelope = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise PayloadError(f"not JSON: {exc}") from None
    if not isinstance(envelope, dict):
        raise PayloadError("the request must be a JSON object")
    request_id, records = envelope.get("requestId", header_id), envelope.get("records")
    if not isinstance(request_id, str) or _printable(request_id) != request_id:
        raise PayloadError(f"requestId must be a string of at most {MAX_DELIVERY_ID_CHARS} printable "
                           "ASCII characters")
    if not isinstance(records, list) or not all(
            isinstance(record, dict) and isinstance(record.get("data"), str) for record in records):
        raise PayloadError('records must be a list of {"data": "<base64>"} objects')
    return request_id, records


def firehose_handler(
    submit: Submit | AsyncSubmit,
    enrich: Callable[[Invocation], Invocation],
    region: str | None = None,
    collector: str = "aws.firehose",
    recent: RecentDeliveries | None = None,
    limits: Limits | None = None,
):
    """The Kinesis Data Firehose HTTP endpoint destination protocol: answer with the
    request's ``requestId`` and a ``timestamp``; any other status makes Firehose retry.
    A retry of a ``requestId`` accepted within the window of ``recent`` is acknowledged
    without being stored again. Mount it with :func:`mount_firehose`, which makes the
    port check the access key."""
    encoder = SubscriptionEncoder(enrich, collector)
    recent = recent if recent is not None else RecentDeliveries()
    limits = limits or Limits.of()

    async def handler(request: web.Request) -> web.Response:
        request_id = _printable(request.headers.get("X-Amz-Firehose-Request-Id")) or ""
        budget = Budget(limits)
        body = await read_body(request, budget)
        try:
            request_id, records = _firehose_records(body, budget, request_id)
            key = delivery_key("firehose", request_id)
            if request_id and recent.seen(key):
                selfmetrics.DUPLICATES.labels(collector).inc()
                return _firehose_answer(request_id, 200)
            messages = (message for record in records for message in decode_data(record["data"], budget))
            stream_region = _region_from_arn(request.headers.get("X-Amz-Firehose-Source-Arn"))
            encoded = encoder.encode(messages, stream_region or region, budget)
        except PayloadError as exc:
            selfmetrics.ERRORS.labels(collector, "bad_payload").inc()
            return _firehose_answer(request_id, 400, f"malformed Firehose request: {exc}")
        if not await _store(submit, encoded, collector):
            return _firehose_answer(request_id, 503, "ingest path busy, retry")
        if request_id:
            recent.accepted(key)
        _count(collector, encoded, encoder)
        return _firehose_answer(request_id, 200)

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
