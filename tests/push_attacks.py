"""Requests an attacker sends to the OTLP/HTTP port's push routes, and what tests read back.

Builders for CloudWatch Logs subscription messages, Firehose envelopes and the crafted
payloads of the security tests (nested gzip, oversized ids, deep JSON), plus a POST that
sends header values as raw bytes and the server's memory from ``/proc``.
"""

from __future__ import annotations

import base64
import gzip
import json
import urllib.error
import urllib.request
import zlib
from pathlib import Path

from obsloop_process import ObsloopProcess

TOKEN = "push-route-token"
FIREHOSE_KEY = "firehose-access-key"


def serve(workdir: Path, **receiver: object) -> ObsloopProcess:
    """A started ``obsloop serve`` with the bearer token, the Firehose key and ``receiver``
    settings (stop it when done)."""
    return ObsloopProcess(workdir, receiver={"bearer_token": TOKEN, **receiver},
                          collectors={"aws": {"firehose_access_key": FIREHOSE_KEY}}).start()


def post(url: str, body: bytes, headers: dict[str, str | bytes] | None = None,
         content_type: str = "application/json") -> tuple[int, bytes]:
    """POST ``body``; header values that are ``bytes`` go on the wire as they are."""
    request = urllib.request.Request(url, data=body, method="POST",
                                     headers={"Content-Type": content_type, **(headers or {})})
    try:
        with urllib.request.urlopen(request, timeout=120) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


def bearer(token: str = TOKEN) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def data_message(function: str, lines: list[str], **extra: object) -> dict:
    """A CloudWatch Logs subscription DATA_MESSAGE for ``/aws/lambda/<function>``."""
    return {"messageType": "DATA_MESSAGE", "owner": "123456789012", "logGroup": f"/aws/lambda/{function}",
            "logStream": "2026/11/27/[$LATEST]abc", "subscriptionFilters": ["obsloop"],
            "logEvents": [{"id": str(i), "timestamp": 1764217000000 + i, "message": line}
                          for i, line in enumerate(lines)], **extra}


def gz(data: bytes) -> bytes:
    return gzip.compress(data, compresslevel=9)


def record(message: dict) -> dict:
    """A Firehose record carrying a subscription message (base64 of gzip)."""
    return {"data": base64.b64encode(gz(json.dumps(message).encode())).decode()}


def envelope(request_id: str, records: list[dict]) -> bytes:
    return json.dumps({"requestId": request_id, "timestamp": 1764217000000, "records": records}).encode()


def firehose_headers(request_id: str, key: str | bytes = FIREHOSE_KEY) -> dict[str, str | bytes]:
    return {"X-Amz-Firehose-Request-Id": request_id, "X-Amz-Firehose-Access-Key": key}


def padded_message(function: str, pad_bytes: int) -> bytes:
    """A valid DATA_MESSAGE whose JSON text is ``pad_bytes`` long (a long unused field),
    gzip-compressed: about 1,000 times smaller than what it inflates to."""
    head = json.dumps(data_message(function, ["padded"]))[:-1].encode() + b', "pad": "'
    body = zlib.compressobj(9, zlib.DEFLATED, 31)
    out = [body.compress(head)]
    chunk = b"A" * (1 << 20)
    for start in range(0, pad_bytes, len(chunk)):
        out.append(body.compress(chunk[: pad_bytes - start]))
    out.append(body.compress(b'"}'))
    out.append(body.flush())
    return b"".join(out)


def nested_awslogs_body(function: str, documents: int, pad_bytes: int) -> bytes:
    """A raw subscription push: gzip of ``documents`` ``{"awslogs": {"data"}}`` wrappers,
    each wrapping a message that inflates to ``pad_bytes``."""
    inner = base64.b64encode(padded_message(function, pad_bytes)).decode()
    wrappers = "".join(json.dumps({"awslogs": {"data": inner}}) for _ in range(documents))
    return gz(wrappers.encode())


def object_flood(function: str, objects: int) -> bytes:
    """gzip of a DATA_MESSAGE with ``objects`` empty JSON objects in an unused field: three
    bytes of JSON each, about 25 times that as Python objects."""
    head = json.dumps(data_message(function, ["flood"]))[:-1].encode() + b', "junk": ['
    return gz(head + b",".join([b"{}"] * objects) + b"]}")


def memory_kib(pid: int) -> dict[str, int]:
    """``VmRSS`` and ``VmHWM`` (peak) of a process, in KiB."""
    fields = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        name, _, value = line.partition(":")
        if name in ("VmRSS", "VmHWM"):
            fields[name] = int(value.split()[0])
    return fields
