"""One normalized shape for a serverless invocation, and W3C trace ids from every platform.

Each platform names the same facts differently (X-Ray ``1-5759e988-bd86…``, Cloud Logging
``projects/P/traces/…``, Application Insights ``operation_Id``). Converting them all to the
16-byte W3C trace id and 8-byte span id at the edge is what lets a Lambda REPORT line, a
Telemetry API event and an in-function span of one invocation join on ``TraceId``.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass

from obsloop.core import semconv

_HEX32 = re.compile(r"[0-9a-fA-F]{32}")
_HEX16 = re.compile(r"[0-9a-fA-F]{16}")
_XRAY = re.compile(r"1-([0-9a-fA-F]{8})-([0-9a-fA-F]{24})")


def _digest(text: str, size: int) -> bytes:
    """A stable id for a non-W3C identifier, so every row carrying it still joins."""
    return hashlib.sha256(text.encode()).digest()[:size]


def xray_trace_id(value: str) -> bytes | None:
    """``1-5759e988-bd862e3fe1be46a994272793`` or a full ``Root=…;Parent=…`` header."""
    match = _XRAY.search(value)
    if match is None:
        return None
    return bytes.fromhex(match.group(1) + match.group(2))


def xray_parent_id(header: str) -> bytes | None:
    """The ``Parent=`` segment id of an X-Amzn-Trace-Id header: the W3C span id."""
    for part in header.split(";"):
        key, _, value = part.strip().partition("=")
        if key == "Parent" and _HEX16.fullmatch(value):
            return bytes.fromhex(value)
    return None


def gcp_trace_id(value: str) -> bytes | None:
    """``projects/P/traces/<32 hex>`` (Cloud Logging ``trace``) or the bare hex id."""
    tail = value.rsplit("/", 1)[-1]
    return bytes.fromhex(tail) if _HEX32.fullmatch(tail) else None


def span_id(value: str) -> bytes | None:
    """16 hex digits, or the decimal uint64 that Cloud Trace v1 and old agents write."""
    if _HEX16.fullmatch(value):
        return bytes.fromhex(value)
    if value.isdigit() and int(value) < 2**64:
        return int(value).to_bytes(8, "big")
    return None


def azure_trace_id(operation_id: str) -> bytes | None:
    """Application Insights ``operation_Id``: W3C hex, a GUID, or a legacy free-form id."""
    if not operation_id:
        return None
    compact = operation_id.replace("-", "")
    if _HEX32.fullmatch(compact):
        return bytes.fromhex(compact)
    return _digest(operation_id, 16)


def azure_span_id(request_id: str) -> bytes | None:
    """``Id`` of a request: 16 hex digits (W3C) or the legacy hierarchical ``|op.span.``."""
    if not request_id:
        return None
    if _HEX16.fullmatch(request_id):
        return bytes.fromhex(request_id)
    legacy = request_id.strip("|.").rsplit(".", 1)[-1]
    if _HEX16.fullmatch(legacy):
        return bytes.fromhex(legacy)
    return _digest(request_id, 8)


@dataclass(slots=True)
class Invocation:
    """What any source knows about one invocation; unknown facts stay ``None`` so that the
    ``faas_invocations`` merge can take each field from whichever source saw it."""

    platform: str
    function: str
    invocation_id: str
    time_ns: int
    source: str
    provider: str | None = None
    region: str | None = None
    account_id: str | None = None
    version: str | None = None
    duration_ms: float | None = None
    billed_duration_ms: float | None = None
    memory_mb: int | None = None
    memory_used_mb: float | None = None
    init_duration_ms: float | None = None
    coldstart: bool | None = None
    status: str | None = None
    error_type: str | None = None
    trigger: str | None = None
    http_status: int | None = None
    trace_id: bytes | None = None
    span_id: bytes | None = None
    model_name: str | None = None
    model_version: str | None = None
    cost_usd: float | None = None
    cost_center: str | None = None
    pricing_version: str | None = None
    arch: str | None = None

    def attributes(self) -> dict[str, str | int | float | bool]:
        """The record's attributes under their semantic-convention names, ``None`` left out."""
        out: dict[str, str | int | float | bool] = {}
        for name, key in ATTRIBUTE_FIELDS:
            value = getattr(self, name)
            if value is not None:
                out[key] = value
        if self.memory_mb is not None:  # the semantic convention counts bytes
            out[semconv.FAAS_MAX_MEMORY] = self.memory_mb * 1024 * 1024
        return out

    def resource(self) -> dict[str, str]:
        """Resource attributes: the function as a service, where it runs."""
        resource = {
            semconv.SERVICE_NAME: self.function,
            semconv.CLOUD_PLATFORM: self.platform,
            semconv.FAAS_NAME: self.function,
        }
        for key, value in (
            (semconv.CLOUD_PROVIDER, self.provider),
            (semconv.CLOUD_REGION, self.region),
            (semconv.CLOUD_ACCOUNT_ID, self.account_id),
            (semconv.FAAS_VERSION, self.version),
        ):
            if value:
                resource[key] = value
        return resource


ATTRIBUTE_FIELDS: tuple[tuple[str, str], ...] = (
    ("platform", semconv.CLOUD_PLATFORM),
    ("provider", semconv.CLOUD_PROVIDER),
    ("region", semconv.CLOUD_REGION),
    ("account_id", semconv.CLOUD_ACCOUNT_ID),
    ("function", semconv.FAAS_NAME),
    ("version", semconv.FAAS_VERSION),
    ("invocation_id", semconv.FAAS_INVOCATION_ID),
    ("source", semconv.INVOCATION_SOURCE),
    ("duration_ms", semconv.FAAS_DURATION_MS),
    ("billed_duration_ms", semconv.FAAS_BILLED_DURATION_MS),
    ("memory_used_mb", semconv.FAAS_MEMORY_USED_MB),
    ("init_duration_ms", semconv.FAAS_INIT_DURATION_MS),
    ("coldstart", semconv.FAAS_COLDSTART),
    ("status", semconv.FAAS_STATUS),
    ("error_type", semconv.FAAS_ERROR_TYPE),
    ("trigger", semconv.FAAS_TRIGGER),
    ("http_status", semconv.HTTP_RESPONSE_STATUS_CODE),
    ("model_name", semconv.MODEL_NAME),
    ("model_version", semconv.MODEL_VERSION),
    ("cost_usd", semconv.COST_USD),
    ("cost_center", semconv.COST_CENTER),
    ("pricing_version", semconv.COST_PRICING_VERSION),
    ("arch", semconv.HOST_ARCH),
)
"""(field, attribute key) of every :class:`Invocation` fact that becomes a record attribute;
``memory_mb`` is added separately, in bytes."""
