"""The invocation span, recorded and encoded without the OpenTelemetry API or SDK.

Why: importing ``opentelemetry.trace`` and the SDK tracer (with ``typing_extensions``,
``inspect``, ``dataclasses``, ``uuid``/``platform``, ``logging``, ``subprocess`` and
``concurrent.futures`` on their import chains) was about 30 ms of a 30 ms cold-start budget,
for one span per invocation whose behaviour the OpenTelemetry specification fixes. This
module does what the SDK's ``Tracer.start_span``/``Span`` do for that span: random
non-zero ids (``new_span_id``), the six built-in samplers of
``OTEL_TRACES_SAMPLER`` with the same decisions (``TraceIdRatioBased`` on the trace id's
low 64 bits; an unknown name falls back to ``parentbased_always_on``, as the SDK does), the
span limits of ``OTEL_SPAN_ATTRIBUTE_*``/``OTEL_ATTRIBUTE_*``, ``record_exception``'s event
attributes, and the ``Span`` protobuf bytes ``_encode.span`` writes for an SDK span
(tests/instrument/test_instrument_span.py compares the two byte for byte).

The OpenTelemetry API is still supported, not required: when the application has loaded
it, ``_otel`` makes the invocation span the current span so the handler's own spans join
the trace, recorded by the SDK and exported by the same flush.

Only the standard library is imported here (``traceback`` on an exception only).
"""

from __future__ import annotations

import os
import time
from os import urandom

from obsloop_instrument import _encode as enc

TYPE_CHECKING = False  # not ``typing.TYPE_CHECKING``: no ``typing`` import at set-up
if TYPE_CHECKING:
    from collections.abc import Callable, Mapping
    from typing import Any

SAMPLED = 0x01
SPAN_KIND_SERVER = 2  # opentelemetry.proto.trace.v1.Span.SpanKind (the SDK enum plus one)
STATUS_UNSET, STATUS_OK, STATUS_ERROR = 0, 1, 2
_TRACE_ID_LIMIT = (1 << 64) - 1
_DEFAULT_COUNT_LIMIT = 128


class Parent:
    """A remote parent span context, as the propagators extract it.

    ``trace_state`` is the ``tracestate`` already validated and re-serialized
    (``key=value`` pairs joined by commas, as the SDK's ``TraceState.to_header`` writes).
    """

    __slots__ = ("trace_id", "span_id", "flags", "trace_state", "is_remote")

    def __init__(
        self, trace_id: int, span_id: int, flags: int, trace_state: str = "", is_remote: bool = True
    ) -> None:
        self.trace_id, self.span_id, self.flags = trace_id, span_id, flags
        self.trace_state, self.is_remote = trace_state, is_remote

    @property
    def sampled(self) -> bool:
        return bool(self.flags & SAMPLED)

    def __repr__(self) -> str:
        return (
            f"Parent(trace_id={self.trace_id:032x}, span_id={self.span_id:016x},"
            f" flags={self.flags:02x}, trace_state={self.trace_state!r})"
        )


# --- sampling ------------------------------------------------------------------------------

def _always_on(trace_id: int, parent: Parent | None) -> bool:
    return True


def _always_off(trace_id: int, parent: Parent | None) -> bool:
    return False


def _ratio(rate: float) -> Callable[[int, Parent | None], bool]:
    """``TraceIdRatioBased``: sampled when the trace id's low 64 bits are below the bound."""
    bound = round(rate * (_TRACE_ID_LIMIT + 1))

    def sample(trace_id: int, parent: Parent | None) -> bool:
        return trace_id & _TRACE_ID_LIMIT < bound

    return sample


def _parent_based(
    root: Callable[[int, Parent | None], bool],
) -> Callable[[int, Parent | None], bool]:
    """``ParentBased(root)`` with the default delegates: a parent's sampled flag decides."""

    def sample(trace_id: int, parent: Parent | None) -> bool:
        if parent is None:
            return root(trace_id, parent)
        return parent.sampled

    return sample


def sampler_from_env(env: Mapping[str, str] | None = None) -> Callable[[int, Parent | None], bool]:
    """``OTEL_TRACES_SAMPLER``/``OTEL_TRACES_SAMPLER_ARG`` read as the SDK reads them."""
    env = os.environ if env is None else env
    name = env.get("OTEL_TRACES_SAMPLER", "parentbased_always_on").lower()
    if name in ("traceidratio", "parentbased_traceidratio"):
        try:
            rate = float(env.get("OTEL_TRACES_SAMPLER_ARG", ""))
            if not 0.0 <= rate <= 1.0:
                raise ValueError(rate)
        except (ValueError, TypeError):
            _warn("Could not convert TRACES_SAMPLER_ARG to float. Using default rate 1.0.")
            rate = 1.0
        ratio = _ratio(rate)
        return ratio if name == "traceidratio" else _parent_based(ratio)
    known = {
        "always_on": _always_on,
        "always_off": _always_off,
        "parentbased_always_on": _parent_based(_always_on),
        "parentbased_always_off": _parent_based(_always_off),
    }
    if name not in known:
        _warn(f"Couldn't recognize sampler {name}.")
        name = "parentbased_always_on"
    return known[name]


def _warn(message: str) -> None:
    import logging  # only on a misconfiguration: ``logging`` is ~5 ms of import

    logging.getLogger(__name__).warning(message)


# --- limits --------------------------------------------------------------------------------


def env_int(env: Mapping[str, str], *names: str) -> int | None:
    """The first of ``names`` set in ``env``, as an integer (a bad value is logged and skipped)."""
    for name in names:
        value = env.get(name)
        if value:
            try:
                return int(value)
            except ValueError:
                _warn(f"{name} must be an integer, got {value!r}")
    return None


class SpanLimits:
    """The span limits of the environment (the SDK's ``SpanLimits()`` defaults)."""

    __slots__ = ("max_attributes", "max_event_attributes", "max_value_length")

    def __init__(self, env: Mapping[str, str] | None = None) -> None:
        env = os.environ if env is None else env
        generic = env_int(env, "OTEL_ATTRIBUTE_COUNT_LIMIT")
        span = env_int(env, "OTEL_SPAN_ATTRIBUTE_COUNT_LIMIT")
        event = env_int(env, "OTEL_EVENT_ATTRIBUTE_COUNT_LIMIT")
        default = generic if generic is not None else _DEFAULT_COUNT_LIMIT
        self.max_attributes = span if span is not None else default
        self.max_event_attributes = event if event is not None else default
        self.max_value_length = env_int(
            env, "OTEL_SPAN_ATTRIBUTE_VALUE_LENGTH_LIMIT", "OTEL_ATTRIBUTE_VALUE_LENGTH_LIMIT"
        )


def _bounded(
    attributes: Mapping[str, Any], max_count: int, max_length: int | None
) -> tuple[dict[str, Any], int]:
    """(kept attributes, how many were dropped), as the SDK's ``BoundedAttributes``: past
    the count the oldest go; strings (also inside sequences) are cut at ``max_length``."""
    dropped = 0
    if len(attributes) > max_count:
        dropped = len(attributes) - max_count
        items = list(attributes.items())
        attributes = dict(items[dropped:]) if max_count else {}
    if max_length is not None:
        attributes = {k: _truncate(v, max_length) for k, v in attributes.items()}
    return dict(attributes), dropped


def _truncate(value: Any, limit: int) -> Any:
    if isinstance(value, str):
        return value[:limit]
    if isinstance(value, (tuple, list)):
        return tuple(v[:limit] if isinstance(v, str) else v for v in value)
    return value


# --- the span ------------------------------------------------------------------------------


def new_span_id() -> int:
    """A random non-zero span id.

    From ``os.urandom`` (one ``getrandom`` call, about a microsecond) rather than the
    ``random`` module the SDK's ``RandomIdGenerator`` uses: no import at set-up (~0.7 ms)
    and no shared generator state to reseed in forked workers. Either gives uniformly
    random ids, which is all the W3C ids and the ratio samplers need.
    """
    span_id = int.from_bytes(urandom(8), "big")
    while not span_id:
        span_id = int.from_bytes(urandom(8), "big")
    return span_id


def new_trace_id() -> int:
    """A random non-zero trace id (see ``new_span_id``)."""
    trace_id = int.from_bytes(urandom(16), "big")
    while not trace_id:
        trace_id = int.from_bytes(urandom(16), "big")
    return trace_id


class InvocationSpan:
    """One SERVER span: started when created, ended by ``end``, encoded by ``encode``.

    The attribute dict is the caller's and is kept (not copied): wrappers build a fresh one
    per invocation.
    """

    __slots__ = (
        "name",
        "trace_id",
        "span_id",
        "parent",
        "sampled",
        "attributes",
        "events",
        "status_code",
        "status_message",
        "start_ns",
        "end_ns",
    )

    def __init__(
        self,
        name: str,
        parent: Parent | None,
        attributes: dict[str, Any],
        sampler: Callable[[int, Parent | None], bool],
    ) -> None:
        self.name = name
        self.parent = parent
        self.trace_id = parent.trace_id if parent is not None else new_trace_id()
        self.span_id = new_span_id()
        self.sampled = sampler(self.trace_id, parent)
        self.attributes = attributes
        self.events: list[tuple[int, str, dict[str, Any]]] = []
        self.status_code = STATUS_UNSET
        self.status_message: str | None = None
        self.end_ns = 0
        self.start_ns = time.time_ns()

    @property
    def flags(self) -> int:
        """The W3C trace flags of this span (what its children inherit)."""
        return SAMPLED if self.sampled else 0

    @property
    def trace_state(self) -> str:
        """The parent's ``tracestate``, carried on (the built-in samplers keep it)."""
        return self.parent.trace_state if self.parent is not None else ""

    def set_attribute(self, key: str, value: Any) -> None:
        self.attributes[key] = value

    def set_error(self, description: str | None = None) -> None:
        self.status_code = STATUS_ERROR
        self.status_message = description

    def record_exception(self, exception: BaseException) -> None:
        """The ``exception`` event with the attributes ``Span.record_exception`` gives it."""
        import traceback  # only when a handler raised

        module = type(exception).__module__
        qualname = type(exception).__qualname__
        self.events.append(
            (
                time.time_ns(),
                "exception",
                {
                    "exception.type": (
                        f"{module}.{qualname}" if module and module != "builtins" else qualname
                    ),
                    "exception.message": str(exception),
                    "exception.stacktrace": "".join(traceback.format_exception(exception)),
                    "exception.escaped": "False",
                },
            )
        )

    def end(self) -> None:
        if not self.end_ns:
            self.end_ns = time.time_ns()

    def encode(self, limits: SpanLimits) -> bytes:
        """``Span`` message content, field for field as ``_encode.span`` writes an SDK span."""
        parent = self.parent
        attributes, dropped = _bounded(
            self.attributes, limits.max_attributes, limits.max_value_length
        )
        out = [
            b"\x0a\x10" + self.trace_id.to_bytes(16, "big"),
            b"\x12\x08" + self.span_id.to_bytes(8, "big"),
            enc.field_str(3, self.trace_state),
        ]
        if parent is not None:
            out.append(b"\x22\x08" + parent.span_id.to_bytes(8, "big"))
        out.append(enc.field_str(5, self.name))
        out.append(enc.field_varint(6, SPAN_KIND_SERVER))
        out.append(enc.field_fixed64(7, self.start_ns))
        out.append(enc.field_fixed64(8, self.end_ns))
        out.append(enc.key_values(9, attributes))
        out.append(enc.field_varint(10, dropped))
        for timestamp, name, event_attributes in self.events:
            kept, dropped_event_attributes = _bounded(
                event_attributes, limits.max_event_attributes, limits.max_value_length
            )
            out.append(
                enc.field_bytes(
                    11,
                    enc.field_fixed64(1, timestamp)
                    + enc.field_str(2, name)
                    + enc.key_values(3, kept)
                    + enc.field_varint(4, dropped_event_attributes),
                )
            )
        out.append(
            enc.field_bytes(
                15, enc.field_str(2, self.status_message) + enc.field_varint(3, self.status_code)
            )
        )
        flags = enc.FLAGS_HAS_IS_REMOTE
        if parent is not None and parent.is_remote:
            flags |= enc.FLAGS_IS_REMOTE
        out.append(enc.field_fixed32(16, flags))
        return b"".join(out)
