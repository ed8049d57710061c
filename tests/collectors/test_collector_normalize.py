"""Trace ids from every platform become the same W3C bytes."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from obsloop.collectors.normalize import (
    Invocation,
    azure_span_id,
    azure_trace_id,
    gcp_trace_id,
    span_id,
    xray_parent_id,
    xray_trace_id,
)
from obsloop.core import semconv

W3C = "5759e988bd862e3fe1be46a994272793"


def test_each_platform_form_converts_to_the_same_trace_id():
    expected = bytes.fromhex(W3C)
    assert xray_trace_id("1-5759e988-bd862e3fe1be46a994272793") == expected
    assert xray_trace_id("Root=1-5759e988-bd862e3fe1be46a994272793;Parent=53995c3f42cd8ad8;"
                         "Sampled=1") == expected
    assert gcp_trace_id(f"projects/my-project/traces/{W3C}") == expected
    assert azure_trace_id(W3C.upper()) == expected
    assert azure_trace_id("5759e988-bd86-2e3f-e1be-46a994272793") == expected


def test_span_ids_and_fallbacks():
    assert xray_parent_id("Root=1-5759e988-bd862e3fe1be46a994272793;Parent=53995c3f42cd8ad8") \
        == bytes.fromhex("53995c3f42cd8ad8")
    assert span_id("53995c3f42cd8ad8") == bytes.fromhex("53995c3f42cd8ad8")
    assert span_id("12345") == (12345).to_bytes(8, "big")
    assert span_id("not-a-span") is None
    assert xray_trace_id("garbage") is None
    assert gcp_trace_id("projects/p/traces/short") is None
    assert azure_span_id("|5759e988bd862e3fe1be46a994272793.53995c3f42cd8ad8.") == \
        bytes.fromhex("53995c3f42cd8ad8")
    legacy = azure_trace_id("legacy-op-id")
    assert legacy is not None and len(legacy) == 16 and legacy == azure_trace_id("legacy-op-id")


@given(st.binary(min_size=16, max_size=16))
def test_xray_round_trip(raw):
    text = raw.hex()
    assert xray_trace_id(f"1-{text[:8]}-{text[8:]}") == raw


def test_attributes_use_semantic_convention_names_and_bytes():
    inv = Invocation(platform=semconv.PLATFORM_AWS_LAMBDA, function="f", invocation_id="id",
                     time_ns=1, source="aws.logs", memory_mb=128, coldstart=False)
    attributes = inv.attributes()
    assert attributes[semconv.FAAS_MAX_MEMORY] == 128 * 1024 * 1024
    assert attributes[semconv.FAAS_COLDSTART] is False
    assert attributes[semconv.FAAS_INVOCATION_ID] == "id"
    assert semconv.FAAS_DURATION_MS not in attributes
