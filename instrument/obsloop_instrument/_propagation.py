"""Incoming trace context: W3C ``traceparent`` first, the platform's own header otherwise.

The platform formats are parsed here rather than through the contrib propagator packages
to keep the dependency list to the OTel SDK and exporter. A parent taken from a platform
header is always marked sampled: AWS sets ``Sampled=0`` in ``_X_AMZN_TRACE_ID`` whenever
X-Ray active tracing is off, and a parent-based sampler would then drop every invocation
span obsloop's detectors depend on. An explicit W3C ``traceparent`` keeps its flags.

W3C parsing accepts and refuses exactly what the API's ``TraceContextTextMapPropagator``
does (tests/instrument/test_instrument_span.py runs both on the same headers), without
importing the API (see ``_span``) or ``re`` for ``traceparent``; ``tracestate``, rarer, is
validated with the API's own patterns.
"""

from __future__ import annotations

from collections.abc import Mapping

from obsloop_instrument._log import logger
from obsloop_instrument._span import SAMPLED, Parent

_logger = logger(__name__)
_HEX = frozenset("0123456789abcdef")
_TRACEPARENT_MAXIMUM_LENGTH = 512
_TRACESTATE_MAXIMUM_LENGTH = 8192
_TRACESTATE_MAXIMUM_KEYS = 32
_member = None  # the tracestate member pattern, compiled on first use


def _is_hex(value: str) -> bool:
    return _HEX.issuperset(value)


def from_traceparent(traceparent: str | None, tracestate: str | None = None) -> Parent | None:
    """Parent from a W3C ``traceparent`` (and ``tracestate``), or ``None`` if invalid.

    ``^[ \\t]*(hex2)-(hex32)-(hex16)-(hex2)(?:(-.*)|[ \\t]*)$``, version ``ff`` refused,
    version ``00`` with anything after the flags refused, all-zero ids refused.
    """
    if not traceparent or not isinstance(traceparent, str):
        return None
    if len(traceparent) > _TRACEPARENT_MAXIMUM_LENGTH:
        _logger.warning(
            "traceparent header exceeded the maximum length of %d characters",
            _TRACEPARENT_MAXIMUM_LENGTH,
        )
        return None
    value = traceparent.lstrip(" \t")
    if value.endswith("\n"):  # ``$`` also matches before one final newline
        value = value[:-1]
    version, trace_hex, span_hex, flags_hex = value[:2], value[3:35], value[36:52], value[53:55]
    if (
        len(value) < 55
        or value[2] != "-"
        or value[35] != "-"
        or value[52] != "-"
        or not _is_hex(version + trace_hex + span_hex + flags_hex)
    ):
        return None
    rest = value[55:]
    if rest and rest[0] != "-":
        if rest.strip(" \t"):
            return None
        rest = ""
    elif rest and "\n" in rest:  # ``.`` does not match a newline
        return None
    if version == "ff" or (version == "00" and rest):
        return None
    trace_id, span_id = int(trace_hex, 16), int(span_hex, 16)
    if not trace_id or not span_id:
        return None
    return Parent(trace_id, span_id, int(flags_hex, 16), _trace_state(tracestate))


def _trace_state(header: str | None) -> str:
    """``tracestate`` as the API's ``TraceState.from_header`` keeps it, re-serialized;
    ``""`` when absent, too long or invalid (one bad member discards all)."""
    global _member
    if header is None or not isinstance(header, str):
        return ""
    if len(header) > _TRACESTATE_MAXIMUM_LENGTH:
        _logger.warning(
            "tracestate header exceeded the maximum length of %d characters",
            _TRACESTATE_MAXIMUM_LENGTH,
        )
        return ""
    if _member is None:
        import re

        key = (
            r"[a-z][_0-9a-z\-\*\/]{0,255}|"
            r"[a-z0-9][_0-9a-z\-\*\/]{0,240}@[a-z][_0-9a-z\-\*\/]{0,13}"
        )
        value = r"[\x20-\x2b\x2d-\x3c\x3e-\x7e]{0,255}[\x21-\x2b\x2d-\x3c\x3e-\x7e]"
        _member = re.compile(f"({key})=({value})")
    pairs: dict[str, str] = {}
    for member in header.split(","):
        member = member.strip(" \t")
        if not member:
            continue
        match = _member.fullmatch(member)
        if not match:
            _logger.warning("Member doesn't match the w3c identifiers format %s", member)
            return ""
        key, value = match.groups()
        if key in pairs:
            return ""
        pairs[key] = value
    if len(pairs) > _TRACESTATE_MAXIMUM_KEYS:
        _logger.warning(
            "There can't be more than %s key/value pairs.", _TRACESTATE_MAXIMUM_KEYS
        )
        return ""
    return ",".join(f"{key}={value}" for key, value in pairs.items())


def _remote(trace_id: int, span_id: int) -> Parent | None:
    if not trace_id or not span_id:
        return None
    return Parent(trace_id, span_id, SAMPLED)


def from_xray(header: str | None) -> Parent | None:
    """Parent from an X-Ray trace header.

    Format: ``Root=1-5759e988-bd862e3fe1be46a994272793;Parent=53995c3f42cd8ad8;Sampled=1``;
    the trace id is the root's epoch and random parts concatenated.
    """
    if not header:
        return None
    fields = dict(part.strip().split("=", 1) for part in header.split(";") if "=" in part)
    root = fields.get("Root", "").split("-")
    parent = fields.get("Parent", "")
    if (
        len(root) != 3
        or root[0] != "1"
        or len(root[1]) != 8
        or len(root[2]) != 24
        or len(parent) != 16
    ):
        return None
    try:
        return _remote(int(root[1] + root[2], 16), int(parent, 16))
    except ValueError:
        return None


def from_cloud_trace(header: str | None) -> Parent | None:
    """Parent from GCP's ``X-Cloud-Trace-Context: TRACE_ID/SPAN_ID;o=1`` (span id in decimal)."""
    if not header or "/" not in header:
        return None
    trace_hex, rest = header.split("/", 1)
    span_dec = rest.split(";", 1)[0]
    if len(trace_hex) != 32:
        return None
    try:
        span_id = int(span_dec)
        trace_id = int(trace_hex, 16)
    except ValueError:
        return None
    if span_id >= 1 << 64:
        return None
    return _remote(trace_id, span_id)


def lower_keys(headers: Mapping[str, str] | None, *names: str) -> dict[str, str]:
    """The named headers, looked up case-insensitively (API Gateway v1 keeps the client's case)."""
    if not headers:
        return {}
    wanted = set(names)
    return {k.lower(): v for k, v in headers.items() if isinstance(k, str) and k.lower() in wanted}
