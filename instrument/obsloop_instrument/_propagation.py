"""Incoming trace context: W3C ``traceparent`` first, the platform's own header otherwise.

The platform formats are parsed here rather than through the contrib propagator packages
to keep the dependency list to the OTel SDK and exporter. A parent taken from a platform
header is always marked sampled: AWS sets ``Sampled=0`` in ``_X_AMZN_TRACE_ID`` whenever
X-Ray active tracing is off, and a parent-based sampler would then drop every invocation
span obsloop's detectors depend on. An explicit W3C ``traceparent`` keeps its flags.
"""

from __future__ import annotations

from collections.abc import Mapping

from opentelemetry import trace
from opentelemetry.context import Context
from opentelemetry.trace import NonRecordingSpan, SpanContext, TraceFlags
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

_W3C = TraceContextTextMapPropagator()
_SAMPLED = TraceFlags(TraceFlags.SAMPLED)


def from_traceparent(traceparent: str | None, tracestate: str | None = None) -> Context | None:
    """Context from a W3C ``traceparent`` (and ``tracestate``), or ``None`` if invalid."""
    if not traceparent:
        return None
    carrier = {"traceparent": traceparent}
    if tracestate:
        carrier["tracestate"] = tracestate
    ctx = _W3C.extract(carrier)
    return ctx if trace.get_current_span(ctx).get_span_context().is_valid else None


def _remote(trace_id: int, span_id: int) -> Context | None:
    if not trace_id or not span_id:
        return None
    span_context = SpanContext(trace_id, span_id, is_remote=True, trace_flags=_SAMPLED)
    return trace.set_span_in_context(NonRecordingSpan(span_context))


def from_xray(header: str | None) -> Context | None:
    """Context from an X-Ray trace header.

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


def from_cloud_trace(header: str | None) -> Context | None:
    """Context from GCP's ``X-Cloud-Trace-Context: TRACE_ID/SPAN_ID;o=1`` (span id in decimal)."""
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
