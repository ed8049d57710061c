"""The library's own invocation span, propagation and samplers, checked against the real
OpenTelemetry SDK/API; and the cold path in fresh processes (what a new function instance
imports, what its first invocation exports before returning, and how long it may wait).

The invocation span is recorded without the OpenTelemetry SDK (``_span``): its bytes must be
those the OTLP exporter's encoder writes for the SDK span with the same ids, times and
attributes; its sampling decisions and parsed parents must be the SDK's and the API's.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import textwrap
import traceback
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from obsloop_instrument import _encode, _propagation
from obsloop_instrument._span import InvocationSpan, Parent, SpanLimits, sampler_from_env
from opentelemetry import trace
from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import SpanLimits as SdkSpanLimits
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace import sampling as sdk_sampling
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.sdk.trace.id_generator import IdGenerator
from opentelemetry.trace import SpanKind, Status, StatusCode
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator
from otlp_capture import OtlpCaptureReceiver, attributes

RESOURCE = {"service.name": "fraud-scorer", "cloud.provider": "aws", "faas.max_memory": 2**30}


class _FixedIds(IdGenerator):
    """Gives the SDK the ids the library's span drew, so that the bytes can be compared."""

    def __init__(self, trace_id: int, span_id: int) -> None:
        self._trace_id, self._span_id = trace_id, span_id

    def generate_span_id(self) -> int:
        return self._span_id

    def generate_trace_id(self) -> int:
        return self._trace_id


def _sdk_parent(parent: Parent | None) -> Any:
    if parent is None:
        return None
    carrier = {"traceparent": f"00-{parent.trace_id:032x}-{parent.span_id:016x}-{parent.flags:02x}"}
    if parent.trace_state:
        carrier["tracestate"] = parent.trace_state
    return TraceContextTextMapPropagator().extract(carrier)


def _raise_and_catch() -> BaseException:
    try:
        raise KeyError("amount")
    except KeyError as error:
        return error


def _sdk_bytes(own: InvocationSpan, limits: SdkSpanLimits, exception: BaseException | None) -> bytes:
    """The same span recorded by the SDK and encoded by the OTLP exporter's encoder."""
    exporter = InMemorySpanExporter()
    provider = TracerProvider(
        resource=Resource(RESOURCE),
        id_generator=_FixedIds(own.trace_id, own.span_id),
        span_limits=limits,
    )
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    sdk_span = provider.get_tracer("obsloop_instrument").start_span(
        own.name,
        context=_sdk_parent(own.parent),
        kind=SpanKind.SERVER,
        attributes=own.attributes,
        start_time=own.start_ns,
        record_exception=False,
        set_status_on_exception=False,
    )
    if exception is not None:
        sdk_span.record_exception(exception, timestamp=own.events[0][0])
    if own.status_code:
        sdk_span.set_status(Status(StatusCode.ERROR, own.status_message))
    sdk_span.end(end_time=own.end_ns)
    return encode_spans(exporter.get_finished_spans()).SerializeToString()


@pytest.mark.parametrize(
    "case", ["root", "w3c parent with tracestate", "exception", "5xx", "limits"]
)
def test_invocation_span_encodes_as_the_sdk_span_through_the_exporter(case: str) -> None:
    env: dict[str, str] = {}
    if case == "limits":
        env = {"OTEL_SPAN_ATTRIBUTE_COUNT_LIMIT": "3", "OTEL_ATTRIBUTE_VALUE_LENGTH_LIMIT": "4"}
    parent = None
    if case != "root":
        parent = _propagation.from_traceparent(
            "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01", "rojo=00f067aa0ba902b7,a=b"
        )
        assert parent is not None
    attrs = {
        "cloud.provider": "aws",
        "faas.trigger": "http",
        "faas.max_memory": 1 << 30,
        "model.name": "fraud-scorer",
        "faas.coldstart": True,
    }
    span = InvocationSpan("fraud-scorer", parent, attrs, sampler_from_env(env))
    span.set_attribute("faas.invocation_id", "req-1")
    exception = None
    if case == "exception":
        exception = _raise_and_catch()
        span.record_exception(exception)
        span.set_error(f"{type(exception).__name__}: {exception}")
    if case == "5xx":
        span.set_attribute("http.response.status_code", 503)
        span.set_error()
    span.end()

    own = _encode.export_trace_request(
        [],
        [span.encode(SpanLimits(env))],
        _encode.resource(RESOURCE),
        _encode.scope("obsloop_instrument"),
    )
    sdk_limits = SdkSpanLimits(
        max_span_attributes=int(env.get("OTEL_SPAN_ATTRIBUTE_COUNT_LIMIT", 128)),
        max_attribute_length=int(env["OTEL_ATTRIBUTE_VALUE_LENGTH_LIMIT"]) if env else None,
    )
    assert own == _sdk_bytes(span, sdk_limits, exception)
    if case == "exception":
        assert "KeyError" in "".join(traceback.format_exception(exception))  # a real traceback


def test_own_and_sdk_spans_share_one_resource_and_group_by_scope() -> None:
    """A handler's own SDK spans and the invocation span in one request: grouped as the
    exporter groups spans of one resource (identical bytes to all-SDK spans)."""
    exporter = InMemorySpanExporter()
    provider = TracerProvider(resource=Resource(RESOURCE))
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    with provider.get_tracer("model").start_as_current_span("inference"):
        pass
    [inference] = exporter.get_finished_spans()

    own = InvocationSpan("h", None, {"a": 1}, sampler_from_env({}))
    own.end()
    body = _encode.export_trace_request(
        [inference],
        [own.encode(SpanLimits({}))],
        _encode.resource(RESOURCE),
        _encode.scope("obsloop_instrument"),
    )
    from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
        ExportTraceServiceRequest,
    )

    request = ExportTraceServiceRequest.FromString(body)
    [resource_spans] = request.resource_spans
    assert attributes(resource_spans.resource.attributes) == RESOURCE
    scopes = {s.scope.name: [span.name for span in s.spans] for s in resource_spans.scope_spans}
    assert scopes == {"obsloop_instrument": ["h"], "model": ["inference"]}


# --- sampling ----------------------------------------------------------------------------

SAMPLERS = [
    {},
    {"OTEL_TRACES_SAMPLER": "always_on"},
    {"OTEL_TRACES_SAMPLER": "always_off"},
    {"OTEL_TRACES_SAMPLER": "parentbased_always_off"},
    {"OTEL_TRACES_SAMPLER": "traceidratio", "OTEL_TRACES_SAMPLER_ARG": "0.25"},
    {"OTEL_TRACES_SAMPLER": "parentbased_traceidratio", "OTEL_TRACES_SAMPLER_ARG": "0.5"},
    {"OTEL_TRACES_SAMPLER": "TraceIdRatio", "OTEL_TRACES_SAMPLER_ARG": "not a number"},
    {"OTEL_TRACES_SAMPLER": "traceidratio", "OTEL_TRACES_SAMPLER_ARG": "1.5"},
    {"OTEL_TRACES_SAMPLER": "no_such_sampler"},
]


@pytest.mark.parametrize("env", SAMPLERS, ids=lambda env: ",".join(env.values()) or "default")
def test_samplers_decide_as_the_sdk_samplers(
    env: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    for name in ("OTEL_TRACES_SAMPLER", "OTEL_TRACES_SAMPLER_ARG"):
        monkeypatch.delenv(name, raising=False)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    sdk = sdk_sampling._get_from_env_or_default()
    own = sampler_from_env(env)

    import random

    rng = random.Random(7)
    decisions = []
    for i in range(600):
        trace_id = rng.getrandbits(128) or 1
        parent = None
        if i % 3:
            parent = Parent(trace_id, rng.getrandbits(64) or 1, i % 3 - 1)  # unsampled, sampled
        sdk_decision = sdk.should_sample(_sdk_parent(parent), trace_id, "h").decision
        decisions.append(own(trace_id, parent))
        assert own(trace_id, parent) == sdk_decision.is_sampled(), (trace_id, parent)
    if env.get("OTEL_TRACES_SAMPLER_ARG") in ("0.25", "0.5"):
        assert set(decisions) == {True, False}  # the ratio is exercised both ways


# --- propagation -------------------------------------------------------------------------

TRACEPARENTS = [
    "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
    "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-00",
    " \t00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01 \t",
    "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01\n",
    "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01\n\n",
    "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01-extra",
    "01-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01-extra",
    "01-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01-ex\ntra",
    "01-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
    "01-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-09x",
    "ff-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
    "00-00000000000000000000000000000000-b7ad6b7169203331-01",
    "00-0af7651916cd43dd8448eb211c80319c-0000000000000000-01",
    "00-0AF7651916CD43DD8448EB211C80319C-B7AD6B7169203331-01",
    "00-0af7651916cd43dd8448eb211c80319c-b7ad6b716920333-01",
    "00_0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
    "0-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
    "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-1",
    "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01 x",
    "00-0af7651916cd43dd8448eb211c80319g-b7ad6b7169203331-01",
    "0" * 600,
    "",
]
TRACESTATES = [
    None,
    "",
    "rojo=00f067aa0ba902b7,congo=t61rcWkgMzE",
    " rojo=1 ,, congo=2\t",
    "tenant@vendor=x",
    "Upper=1",
    "a=1,a=2",
    "a=",
    "a=b=c",
    ",".join(f"k{i}=v" for i in range(33)),
    ",".join(f"k{i}=v" for i in range(32)),
    "k=" + "v" * 9000,
]


def _api_parent(traceparent: str, tracestate: str | None) -> tuple[Any, ...] | None:
    carrier = {"traceparent": traceparent}
    if tracestate is not None:
        carrier["tracestate"] = tracestate
    ctx = TraceContextTextMapPropagator().extract(carrier)
    sc = trace.get_current_span(ctx).get_span_context()
    if not sc.is_valid:
        return None
    state = sc.trace_state.to_header() if sc.trace_state is not None else ""
    return sc.trace_id, sc.span_id, int(sc.trace_flags), state


@pytest.mark.parametrize("traceparent", TRACEPARENTS)
def test_traceparent_is_accepted_and_refused_as_the_api_propagator_does(traceparent: str) -> None:
    parent = _propagation.from_traceparent(traceparent)
    own = None if parent is None else (parent.trace_id, parent.span_id, parent.flags, "")
    assert own == _api_parent(traceparent, None)


@pytest.mark.parametrize("tracestate", TRACESTATES)
def test_tracestate_is_kept_as_the_api_keeps_it(tracestate: str | None) -> None:
    traceparent = TRACEPARENTS[0]
    parent = _propagation.from_traceparent(traceparent, tracestate)
    assert parent is not None
    assert (parent.trace_id, parent.span_id, parent.flags, parent.trace_state) == _api_parent(
        traceparent, tracestate
    )


# --- fresh processes: a new function instance ------------------------------------------

CHILD = textwrap.dedent(
    """
    import json, os, sys, time
    from obsloop_instrument import instrument_lambda, log_prediction

    @instrument_lambda(model_name="m")
    def handler(event, context):
        log_prediction({"x": 1}, 0.5)
        if "opentelemetry.trace" in sys.modules:
            from opentelemetry import trace
            with trace.get_tracer("app").start_as_current_span("inference"):
                pass
        return {"statusCode": 200}

    if os.environ.get("LOAD_OTEL_AFTER_SETUP"):
        from opentelemetry import trace  # noqa: F401 - the application's own use of the API

    start = time.perf_counter()
    result = handler({"headers": {}}, None)
    elapsed = time.perf_counter() - start
    heavy = ["google.protobuf", "opentelemetry.proto", "opentelemetry.exporter",
             "opentelemetry.context", "opentelemetry.trace", "opentelemetry.metrics",
             "opentelemetry.sdk", "http.client", "dataclasses", "importlib.metadata",
             "typing", "logging", "socket", "random"]
    print(json.dumps({"result": result, "elapsed": elapsed,
                      "loaded": sorted(m for m in heavy if m in sys.modules)}), flush=True)
    os._exit(0)  # frozen right after the return: no atexit, no thread keeps running
    """
)


def _first_invocation(endpoint: str, **env: str) -> dict[str, Any]:
    clean = {
        k: v for k, v in os.environ.items() if not k.startswith(("OTEL_", "OBSLOOP_", "AWS_"))
    }
    out = subprocess.run(
        [sys.executable, "-c", CHILD],
        env=dict(clean, OTEL_EXPORTER_OTLP_ENDPOINT=endpoint, OTEL_SERVICE_NAME="s", **env),
        capture_output=True,
        text=True,
        check=True,
        cwd=Path(__file__).parent,
        timeout=60,
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


@pytest.mark.parametrize("background", ["true", "false"])
def test_a_new_instance_without_opentelemetry_in_the_app_exports_its_first_invocation(
    otlp: OtlpCaptureReceiver, background: str
) -> None:
    """Nothing of OpenTelemetry, protobuf, ``typing``, ``logging``, ``socket`` or ``random``
    is imported, and the span, metrics and prediction event are at the receiver when the
    handler returns."""
    child = _first_invocation(otlp.endpoint, OBSLOOP_BACKGROUND_SETUP=background)

    assert child["result"] == {"statusCode": 200}
    assert child["loaded"] == []
    [(resource, span)] = otlp.spans()
    assert attributes(span.attributes)["faas.coldstart"] is True
    assert resource["service.name"] == "s"
    [record] = otlp.log_records()
    assert (record.trace_id, record.span_id) == (span.trace_id, span.span_id)
    [invocations] = otlp.latest_metrics()["faas.invocations"].sum.data_points
    assert invocations.as_int == 1


def test_an_app_loading_the_api_after_setup_gets_its_spans_into_the_invocation_trace(
    otlp: OtlpCaptureReceiver,
) -> None:
    child = _first_invocation(otlp.endpoint, LOAD_OTEL_AFTER_SETUP="1")

    assert "opentelemetry.trace" in child["loaded"]
    assert "opentelemetry.sdk" in child["loaded"]  # built at the app's first get_tracer
    spans = {span.name: span for _, span in otlp.spans()}
    assert set(spans) == {"handler", "inference"}
    assert spans["inference"].parent_span_id == spans["handler"].span_id
    assert spans["inference"].trace_id == spans["handler"].trace_id


@pytest.fixture
def dropping_endpoint() -> Iterator[str]:
    """A port whose accept queue is full: further SYNs are dropped, as by a firewall that
    drops packets (connecting neither succeeds nor fails, it hangs)."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(0)
    address = server.getsockname()
    fillers = []
    for _ in range(8):
        filler = socket.socket()
        filler.settimeout(0.2)
        try:
            filler.connect(address)
        except OSError:
            filler.close()
            break
        fillers.append(filler)
    probe = socket.socket()
    probe.settimeout(0.3)
    try:
        probe.connect(address)
    except TimeoutError:
        pass
    else:  # pragma: no cover - a kernel that does not drop: nothing to test
        pytest.skip("this kernel completes connections past the accept queue")
    finally:
        probe.close()
    yield f"http://127.0.0.1:{address[1]}"
    for filler in fillers:
        filler.close()
    server.close()


@pytest.mark.parametrize("endpoint_kind", ["dropping", "silent", "refused"])
def test_a_first_invocation_to_an_unreachable_endpoint_returns_within_the_flush_bound(
    endpoint_kind: str, request: pytest.FixtureRequest
) -> None:
    """The background set-up's connection attempt is not waited for by the invocation; the
    flush waits for it within its own deadline: the handler's result, within the bound."""
    if endpoint_kind == "dropping":
        endpoint = request.getfixturevalue("dropping_endpoint")
    else:
        server = socket.socket()
        server.bind(("127.0.0.1", 0))
        if endpoint_kind == "silent":
            server.listen(16)  # accepts connections (the kernel does), never answers
            request.addfinalizer(server.close)
        endpoint = f"http://127.0.0.1:{server.getsockname()[1]}"
        if endpoint_kind == "refused":
            server.close()
    child = _first_invocation(endpoint, OBSLOOP_FLUSH_TIMEOUT_MS="600")

    assert child["result"] == {"statusCode": 200}
    # The bound plus start-up slack; without it the first call would wait for the set-up's
    # connection attempt and then each signal's own (about 3 x 200 ms here), or forever.
    assert child["elapsed"] < 0.6 + 0.25


FORKING = textwrap.dedent(
    """
    import os, threading, time
    from obsloop_instrument import _runtime, instrument_lambda

    class Context:
        def __init__(self, request_id):
            self.aws_request_id = request_id

    @instrument_lambda
    def handler(event, context):
        return "ok"

    handler({"headers": {}}, Context("parent"))  # the parent's connection is open
    exporter = _runtime.pipeline()._span_exporter
    held = threading.Event()

    def export_in_progress():  # as a warm-up connect or a flush of another thread
        exporter._lock.acquire()
        held.set()
        time.sleep(60)

    threading.Thread(target=export_in_progress, daemon=True).start()
    held.wait()
    pid = os.fork()
    if pid == 0:
        handler({"headers": {}}, Context("child"))
        os._exit(0)
    os.waitpid(pid, 0)
    """
)


def test_a_forked_worker_exports_on_its_own_connection_and_lock(
    otlp: OtlpCaptureReceiver,
) -> None:
    """A pre-forking server: the child process does not inherit a lock held by a thread
    that does not exist in it, nor share the parent's keep-alive connection."""
    clean = {
        k: v for k, v in os.environ.items() if not k.startswith(("OTEL_", "OBSLOOP_", "AWS_"))
    }
    subprocess.run(
        [sys.executable, "-c", FORKING],
        env=dict(
            clean,
            OTEL_EXPORTER_OTLP_ENDPOINT=otlp.endpoint,
            OTEL_SERVICE_NAME="s",
            OBSLOOP_FLUSH_TIMEOUT_MS="600",
        ),
        check=True,
        capture_output=True,
        cwd=Path(__file__).parent,
        timeout=60,
    )
    ids = [attributes(span.attributes)["faas.invocation_id"] for _, span in otlp.spans()]
    assert ids == ["parent", "child"]


def test_sdk_disabled_exports_no_span_and_the_handler_still_works(
    otlp: OtlpCaptureReceiver, monkeypatch: pytest.MonkeyPatch
) -> None:
    from obsloop_instrument import instrument_lambda

    monkeypatch.setenv("OTEL_SDK_DISABLED", "true")

    @instrument_lambda
    def handler(event: Any, context: Any) -> str:
        return "ok"

    assert handler({"headers": {}}, None) == "ok"
    assert otlp.spans() == []
    assert "faas.invocations" in otlp.latest_metrics()  # the library's metrics, as before
