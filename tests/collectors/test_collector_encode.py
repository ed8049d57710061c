"""The hand-serialized OTLP of :mod:`obsloop.collectors.encode` against upb.

The collectors' payloads skip the receiver's validation inside ``obsloop serve``
(``forward.intake_submit`` trusts the count), so the bytes must parse to exactly the
message upb would build for the same records, and validate to the same count with
nothing rejected.
"""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest

from obsloop.collectors.encode import SCOPE_NAME, LogsBuilder, add_attributes, varint
from obsloop.collectors.normalize import Invocation
from obsloop.core import semconv
from obsloop.pipelines.otlp_decode import validate

_text = st.text(max_size=40)
_attribute_value = st.one_of(
    _text, st.booleans(), st.integers(min_value=-(2**63), max_value=2**63 - 1),
    st.floats(allow_nan=False),
)
_record = st.fixed_dictionaries({
    "resource": st.dictionaries(st.sampled_from(["service.name", "cloud.region", "faas.name"]),
                                st.text(min_size=1, max_size=8), min_size=1),
    "time_ns": st.integers(min_value=0, max_value=2**64 - 1),
    "body": _text,
    "attributes": st.dictionaries(st.text(min_size=1, max_size=12), _attribute_value, max_size=5),
    "event_name": _text,
    "severity_text": st.sampled_from(["", "INFO", "WARN"]),
    "severity_number": st.integers(min_value=0, max_value=24),
    "trace_id": st.one_of(st.none(), st.binary(min_size=16, max_size=16), st.binary(max_size=20)),
    "span_id": st.one_of(st.none(), st.binary(min_size=8, max_size=8), st.binary(max_size=10)),
})


def _upb_reference(records: list[dict]) -> ExportLogsServiceRequest:
    """The same records built the slow way, with upb messages (the encoder before hand
    serialization), ids of the wrong length left out as the encoder does."""
    request = ExportLogsServiceRequest()
    scopes = {}
    for r in records:
        key = tuple(sorted(r["resource"].items()))
        if key not in scopes:
            resource_logs = request.resource_logs.add()
            add_attributes(resource_logs.resource.attributes, r["resource"])
            scopes[key] = resource_logs.scope_logs.add()
            scopes[key].scope.name = SCOPE_NAME
        record = scopes[key].log_records.add()
        record.time_unix_nano = r["time_ns"]
        record.body.string_value = r["body"]
        add_attributes(record.attributes, r["attributes"])
        record.event_name = r["event_name"]
        if r["severity_text"]:
            record.severity_text = r["severity_text"]
        record.severity_number = r["severity_number"]
        if r["trace_id"] is not None and len(r["trace_id"]) == 16:
            record.trace_id = r["trace_id"]
        if r["span_id"] is not None and len(r["span_id"]) == 8:
            record.span_id = r["span_id"]
    return request


@settings(max_examples=200, deadline=None)
@given(st.lists(_record, min_size=1, max_size=8))
def test_hand_serialized_records_parse_to_what_upb_builds(records: list[dict]) -> None:
    builder = LogsBuilder()
    for r in records:
        builder.add(r["resource"], time_ns=r["time_ns"], body=r["body"], attributes=r["attributes"],
                    event_name=r["event_name"], severity_text=r["severity_text"],
                    severity_number=r["severity_number"], trace_id=r["trace_id"], span_id=r["span_id"])
    payload = builder.serialize()
    assert ExportLogsServiceRequest.FromString(payload) == _upb_reference(records)
    valid = validate("logs", payload)
    assert (valid.items, valid.rejected) == (len(records), 0)
    # What a receiver writes for the same request: upb's bytes. The encoder's differ at most
    # by an explicit zero time_unix_nano (proto3 leaves zeros out), which ClickHouse reads as 0.
    assert valid.payload == _upb_reference(records).SerializeToString()


def test_a_lone_surrogate_is_replaced_not_a_failed_delivery() -> None:
    builder = LogsBuilder()
    builder.add({"service.name": "f"}, time_ns=1, body="bad \ud800 text")
    request = ExportLogsServiceRequest.FromString(builder.serialize())
    assert request.resource_logs[0].scope_logs[0].log_records[0].body.string_value == "bad \ufffd text"


def test_varint_matches_protobuf_for_negative_and_large_values() -> None:
    from google.protobuf.internal.encoder import _VarintBytes

    for value in (0, 1, 127, 128, 16383, 16384, 2**63 - 1, 2**64 - 1):
        assert varint(value) == _VarintBytes(value)
    assert varint(-1) == _VarintBytes(2**64 - 1)


def test_an_integer_past_int64_becomes_a_double_not_a_wrapped_integer() -> None:
    builder = LogsBuilder()
    builder.add({"service.name": "f"}, time_ns=1, body="", attributes={"big": 2**70, "small": -5})
    record = ExportLogsServiceRequest.FromString(builder.serialize()).resource_logs[0].scope_logs[0].log_records[0]
    values = {kv.key: kv.value for kv in record.attributes}
    assert values["big"].double_value == float(2**70) and values["small"].int_value == -5


def test_a_time_outside_fixed64_is_unknown_not_a_failed_delivery() -> None:
    builder = LogsBuilder()
    builder.add({"service.name": "f"}, time_ns=2**64 + 5, body="year 9999")
    builder.add({"service.name": "f"}, time_ns=-1, body="before 1970")
    records = ExportLogsServiceRequest.FromString(builder.serialize()).resource_logs[0].scope_logs[0].log_records
    assert [(r.time_unix_nano, r.body.string_value) for r in records] == [(0, "year 9999"), (0, "before 1970")]


def _attributes(payload: bytes) -> dict:
    record = ExportLogsServiceRequest.FromString(payload).resource_logs[0].scope_logs[0].log_records[0]
    return {kv.key: getattr(kv.value, kv.value.WhichOneof("value")) for kv in record.attributes}


def _resource(payload: bytes) -> dict:
    resource = ExportLogsServiceRequest.FromString(payload).resource_logs[0].resource
    return {kv.key: getattr(kv.value, kv.value.WhichOneof("value")) for kv in resource.attributes}


def test_an_invocation_fact_the_resource_says_otherwise_stays_on_the_record() -> None:
    invocation = Invocation(platform="aws_lambda", function="f", invocation_id="r1", time_ns=5,
                            source="s", provider="aws", region="us-east-1", version="7")
    builder = LogsBuilder()
    builder.add_invocation(invocation, "", {"service.name": "f", "faas.name": "f",
                                            "cloud.region": "eu-west-1", "cloud.provider": "aws"})
    builder.add_invocation(invocation, "", {"service.name": "f"})
    request = ExportLogsServiceRequest.FromString(builder.serialize())
    first, second = ([{kv.key: kv.value.string_value for kv in r.attributes}
                      for r in group.scope_logs[0].log_records] for group in request.resource_logs)
    assert first[0]["cloud.region"] == "us-east-1" and first[0]["faas.version"] == "7"
    assert "faas.name" not in first[0] and "cloud.provider" not in first[0]
    assert second[0]["faas.name"] == "f" and second[0]["cloud.region"] == "us-east-1"


def test_invocation_record_carries_exactly_the_invocation_attributes() -> None:
    seen: set[int] = set()

    def builder_count(invocation: Invocation) -> bool:
        """False the first time an invocation comes, True the second."""
        first = id(invocation) not in seen
        seen.add(id(invocation))
        return not first

    invocations = [
        Invocation(platform="aws_lambda", function="f", invocation_id="r1", time_ns=5, source="s",
                   provider="aws", region="us-east-1", duration_ms=10.5, billed_duration_ms=11.0,
                   memory_mb=1024, memory_used_mb=80.0, coldstart=True, status="success",
                   cost_usd=1.5e-06, http_status=200, trace_id=bytes(range(16)), span_id=bytes(8)),
        # same repeating fields, other values: the cached part must not leak the first one's
        Invocation(platform="aws_lambda", function="f", invocation_id="r2", time_ns=6, source="s",
                   provider="aws", region="us-east-1", duration_ms=3.0, memory_mb=1024,
                   coldstart=False, status="error", error_type="Runtime.ExitError"),
        # a cold start: the init duration between the memory used and the cost
        Invocation(platform="aws_lambda", function="f", invocation_id="r4", time_ns=8, source="s",
                   duration_ms=10.5, billed_duration_ms=11.0, memory_used_mb=80.0,
                   init_duration_ms=250.25, cost_usd=2.5e-06, coldstart=True),
        # an int where the others had floats (a source reporting whole milliseconds)
        Invocation(platform="gcp_cloud_run", function="g", invocation_id="r3", time_ns=7,
                   source="s", duration_ms=12, http_status=503),  # type: ignore[arg-type]
    ]
    from obsloop.collectors.encode import line_record

    # each twice: after a line of another invocation, and after a line of its own (the
    # invocation id's encoding is then reused from line_record's cache)
    for invocation in [inv for inv in invocations for _ in range(2)]:
        line_record(1, "END", invocation.invocation_id if builder_count(invocation) else "other")
        builder = LogsBuilder()
        builder.add_invocation(invocation, "body")
        payload = builder.serialize()
        expected = invocation.attributes()
        got = _attributes(payload)
        resource = _resource(payload)
        # what the resource already says is not repeated on the record; together they
        # carry every attribute, and a reader's record-then-resource lookup finds each
        assert not got.keys() & resource.keys()
        assert got.keys() | (resource.keys() & expected.keys()) == expected.keys()
        for key, value in expected.items():
            found = got.get(key, resource.get(key))
            assert found == value and type(found) is type(value), key
        record = ExportLogsServiceRequest.FromString(payload).resource_logs[0].scope_logs[0].log_records[0]
        assert record.event_name == semconv.INVOCATION_REPORT_EVENT
        assert record.time_unix_nano == invocation.time_ns
