"""Protobuf wire-level variations of valid OTLP requests, as hypothesis strategies.

A request is taken apart into its wire fields, guided by the OTLP descriptors (a
length-delimited field of message type is taken apart too), changed at one or more places
at any depth, and put together again. The changes are those on which protobuf's parsers and
ClickHouse's ``Protobuf`` reader may disagree: a wrong wire type on a known field, a oneof
set twice, a singular field repeated, truncated fields, unknown fields, repeated scalars
packed or not, fields out of order, overlong varints.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

from google.protobuf.descriptor import Descriptor, FieldDescriptor
from google.protobuf.internal.decoder import _DecodeVarint
from google.protobuf.internal.encoder import _VarintBytes
from hypothesis import strategies as st

VARINT, FIXED64, LENGTH, FIXED32 = 0, 1, 2, 5


@dataclass
class WireField:
    number: int
    wire: int
    value: int | bytes | list[WireField]
    """A varint, fixed bytes, length-delimited bytes, or the fields of a sub-message."""
    message: Descriptor | None = None
    """The sub-message's type, when ``value`` is its fields."""


def decode(data: bytes, descriptor: Descriptor | None) -> list[WireField]:
    fields, position = [], 0
    while position < len(data):
        key, position = _DecodeVarint(data, position)
        number, wire = key >> 3, key & 7
        field = descriptor.fields_by_number.get(number) if descriptor is not None else None
        if wire == VARINT:
            value, position = _DecodeVarint(data, position)
            fields.append(WireField(number, wire, value))
        elif wire in (FIXED64, FIXED32):
            size = 8 if wire == FIXED64 else 4
            fields.append(WireField(number, wire, data[position:position + size]))
            position += size
        elif wire == LENGTH:
            length, position = _DecodeVarint(data, position)
            chunk = data[position:position + length]
            position += length
            if field is not None and field.type == FieldDescriptor.TYPE_MESSAGE:
                fields.append(WireField(number, wire, decode(chunk, field.message_type), field.message_type))
            else:
                fields.append(WireField(number, wire, chunk))
        else:
            raise ValueError(f"wire type {wire}")
    return fields


def encode(fields: list[WireField]) -> bytes:
    out = []
    for field in fields:
        out.append(_VarintBytes(field.number << 3 | field.wire))
        value = field.value
        if field.wire == VARINT:
            out.append(value if isinstance(value, bytes) else _VarintBytes(value))  # bytes: overlong
        elif field.wire in (FIXED64, FIXED32):
            out.append(value)
        else:
            chunk = encode(value) if isinstance(value, list) else value
            out.append(_VarintBytes(len(chunk)) + chunk)
    return b"".join(out)


def _copy(value):
    """A deep copy (descriptors shared: they cannot be copied)."""
    if isinstance(value, list):
        return [_copy(field) for field in value]
    return WireField(value.number, value.wire, _copy(value.value) if isinstance(value.value, list) else value.value,
                     value.message)


def messages(fields: list[WireField]) -> list[tuple[Descriptor | None, list[WireField]]]:
    """Every (type, fields) message in ``fields``, the outermost first."""
    found = []
    for field in fields:
        if isinstance(field.value, list):
            found.append((field.message, field.value))
            found += messages(field.value)
    return found


def _overlong(value: int) -> bytes:
    encoded = bytearray(_VarintBytes(value))
    encoded[-1] |= 0x80
    return bytes(encoded) + b"\x00"  # one more byte, value unchanged


def _any_value_member(draw) -> WireField:
    number = draw(st.sampled_from([1, 2, 3, 4, 7]))
    if number in (1, 7):
        return WireField(number, LENGTH, draw(st.text(max_size=5)).encode())
    if number == 4:
        return WireField(number, FIXED64, struct.pack("<d", draw(st.floats(allow_nan=False))))
    return WireField(number, VARINT, draw(st.integers(0, 1 << 20)))


@st.composite
def mutate(draw, fields: list[WireField], top: Descriptor) -> list[WireField]:
    """Change ``fields`` (a request) at one place; returns the changed copy."""
    fields = _copy(fields)
    targets = [(top, fields), *messages(fields)]
    descriptor, target = draw(st.sampled_from(targets))
    real = [f for f in target if f.number >= 0]  # not the raw bytes of an earlier truncation
    kind = draw(st.sampled_from([
        "wrong_wire_type", "duplicate_oneof", "repeat_singular", "truncate_inside", "truncate_end",
        "unknown_field", "unpack", "shuffle", "overlong_varint", "drop",
    ]))
    if kind == "duplicate_oneof" and descriptor is not None and descriptor.name == "AnyValue":
        target.append(_any_value_member(draw))
    elif kind == "wrong_wire_type" and real:
        field = draw(st.sampled_from(real))
        wire = draw(st.sampled_from([w for w in (VARINT, FIXED64, LENGTH, FIXED32) if w != field.wire]))
        value = {VARINT: 1, FIXED64: b"\x01" * 8, FIXED32: b"\x01\x02\x03\x04", LENGTH: b"\x01"}[wire]
        target.insert(draw(st.integers(0, len(target))), WireField(field.number, wire, value))
    elif kind == "repeat_singular" and real:
        field = draw(st.sampled_from(real))
        target.insert(draw(st.integers(0, len(target))), _copy(field))
    elif kind == "truncate_inside" and real:
        index = target.index(draw(st.sampled_from(real)))
        chunk = render([target[index]])
        target[index] = WireField(-1, -1, chunk[: -draw(st.integers(1, len(chunk)))])
    elif kind == "truncate_end":
        data = render(fields)
        return [WireField(-1, -1, data[: draw(st.integers(0, max(len(data) - 1, 0)))])]
    elif kind == "unknown_field":
        number = draw(st.integers(16, 1 << 20))
        wire = draw(st.sampled_from([VARINT, FIXED64, LENGTH, FIXED32]))
        value = {VARINT: draw(st.integers(0, 1 << 62)), FIXED64: b"\x07" * 8, FIXED32: b"\x07" * 4,
                 LENGTH: draw(st.binary(max_size=8))}[wire]
        target.insert(draw(st.integers(0, len(target))), WireField(number, wire, value))
    elif kind == "unpack":
        for i, field in enumerate(list(target)):
            declared = descriptor.fields_by_number.get(field.number) if descriptor is not None else None
            if (declared is not None and declared.is_repeated
                    and declared.type != FieldDescriptor.TYPE_MESSAGE and field.wire == LENGTH
                    and declared.type not in (FieldDescriptor.TYPE_STRING, FieldDescriptor.TYPE_BYTES)):
                target[i:i + 1] = _unpacked(field, declared)
                break
    elif kind == "shuffle":
        target[:] = draw(st.permutations(target))
    elif kind == "overlong_varint":
        varints = [f for f in real if f.wire == VARINT and isinstance(f.value, int)]
        if varints:
            field = draw(st.sampled_from(varints))
            field.value = _overlong(field.value)
    elif kind == "drop" and target:
        del target[draw(st.integers(0, len(target) - 1))]
    return fields


def _unpacked(field: WireField, declared: FieldDescriptor) -> list[WireField]:
    data, position, out = field.value, 0, []
    fixed = {FieldDescriptor.TYPE_DOUBLE: 8, FieldDescriptor.TYPE_FIXED64: 8, FieldDescriptor.TYPE_SFIXED64: 8,
             FieldDescriptor.TYPE_FLOAT: 4, FieldDescriptor.TYPE_FIXED32: 4, FieldDescriptor.TYPE_SFIXED32: 4}
    size = fixed.get(declared.type)
    while position < len(data):
        if size:
            out.append(WireField(field.number, FIXED64 if size == 8 else FIXED32, data[position:position + size]))
            position += size
        else:
            value, position = _DecodeVarint(data, position)
            out.append(WireField(field.number, VARINT, value))
    return out


def render(fields: list[WireField]) -> bytes:
    """The bytes of ``fields``, where a ``(-1, -1)`` field stands for raw bytes."""
    out = []
    for field in fields:
        if field.number == -1:
            out.append(field.value)
        elif isinstance(field.value, list):
            chunk = render(field.value)
            out.append(_VarintBytes(field.number << 3 | field.wire) + _VarintBytes(len(chunk)) + chunk)
        else:
            out.append(encode([field]))
    return b"".join(out)


@st.composite
def variations(draw, request: bytes, top: Descriptor, max_changes: int = 3) -> bytes:
    """``request`` changed at one to ``max_changes`` places."""
    fields = decode(request, top)
    for _ in range(draw(st.integers(1, max_changes))):
        fields = draw(mutate(fields, top))
    return render(fields)
