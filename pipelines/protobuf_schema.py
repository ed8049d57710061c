"""Render the OTLP ``.proto`` files that ClickHouse's ``Protobuf`` input format needs.

The ``opentelemetry-proto`` wheel ships compiled descriptors but no ``.proto`` sources, and
ClickHouse reads a schema only from a ``.proto`` file. The files are therefore rendered
from the descriptors the service itself validates with, so the two can never disagree.
"""

from __future__ import annotations

from pathlib import Path

from google.protobuf import descriptor_pb2
from google.protobuf.descriptor import FileDescriptor
from opentelemetry.proto.collector.logs.v1 import logs_service_pb2
from opentelemetry.proto.collector.metrics.v1 import metrics_service_pb2
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2

_FDP = descriptor_pb2.FieldDescriptorProto
_SCALAR_NAMES = {
    _FDP.TYPE_DOUBLE: "double",
    _FDP.TYPE_FLOAT: "float",
    _FDP.TYPE_INT64: "int64",
    _FDP.TYPE_UINT64: "uint64",
    _FDP.TYPE_INT32: "int32",
    _FDP.TYPE_FIXED64: "fixed64",
    _FDP.TYPE_FIXED32: "fixed32",
    _FDP.TYPE_BOOL: "bool",
    _FDP.TYPE_STRING: "string",
    _FDP.TYPE_BYTES: "bytes",
    _FDP.TYPE_UINT32: "uint32",
    _FDP.TYPE_SFIXED32: "sfixed32",
    _FDP.TYPE_SFIXED64: "sfixed64",
    _FDP.TYPE_SINT32: "sint32",
    _FDP.TYPE_SINT64: "sint64",
}

#: The request message of each signal, as ``file.proto:package.Message`` for ``format_schema``.
ROOT_MESSAGES = {
    "traces": trace_service_pb2.ExportTraceServiceRequest,
    "logs": logs_service_pb2.ExportLogsServiceRequest,
    "metrics": metrics_service_pb2.ExportMetricsServiceRequest,
}


def _field_type(field: descriptor_pb2.FieldDescriptorProto) -> str:
    if field.type in (_FDP.TYPE_MESSAGE, _FDP.TYPE_ENUM):
        return field.type_name  # fully qualified, starts with "."
    return _SCALAR_NAMES[field.type]


def _render_enum(enum: descriptor_pb2.EnumDescriptorProto, indent: str) -> list[str]:
    lines = [f"{indent}enum {enum.name} {{"]
    lines += [f"{indent}  {value.name} = {value.number};" for value in enum.value]
    lines.append(f"{indent}}}")
    return lines


def _render_message(message: descriptor_pb2.DescriptorProto, indent: str) -> list[str]:
    lines = [f"{indent}message {message.name} {{"]
    inner = indent + "  "
    for enum in message.enum_type:
        lines += _render_enum(enum, inner)
    for nested in message.nested_type:
        lines += _render_message(nested, inner)
    real_oneofs: dict[int, list[str]] = {}
    for field in message.field:
        label = "repeated " if field.label == _FDP.LABEL_REPEATED else ""
        declaration = f"{label}{_field_type(field)} {field.name} = {field.number};"
        if field.HasField("oneof_index") and not field.proto3_optional:
            real_oneofs.setdefault(field.oneof_index, []).append(declaration)
        else:
            if field.proto3_optional:
                declaration = "optional " + declaration
            lines.append(inner + declaration)
    for index, declarations in real_oneofs.items():
        lines.append(f"{inner}oneof {message.oneof_decl[index].name} {{")
        lines += [f"{inner}  {d}" for d in declarations]
        lines.append(f"{inner}}}")
    lines.append(f"{indent}}}")
    return lines


def render_proto(file: FileDescriptor) -> str:
    """Return the ``.proto`` source of one compiled file descriptor."""
    proto = descriptor_pb2.FileDescriptorProto()
    file.CopyToProto(proto)
    lines = ['syntax = "proto3";', f"package {proto.package};"]
    lines += [f'import "{Path(dependency).name}";' for dependency in proto.dependency]
    for enum in proto.enum_type:
        lines += _render_enum(enum, "")
    for message in proto.message_type:
        lines += _render_message(message, "")
    return "\n".join(lines) + "\n"


def _with_dependencies(file: FileDescriptor) -> list[FileDescriptor]:
    seen: dict[str, FileDescriptor] = {}

    def visit(f: FileDescriptor) -> None:
        if f.name in seen:
            return
        for dependency in f.dependencies:
            visit(dependency)
        seen[f.name] = f

    visit(file)
    return list(seen.values())


def write_schemas(directory: Path) -> dict[str, str]:
    """Write every OTLP ``.proto`` file into the one folder ``directory``.

    The files are flattened (imports name a sibling file) because ClickHouse resolves
    imports against the schema file's own folder, whatever the process's working folder.

    Returns, per signal, the ``format_schema`` value naming its request message.
    """
    directory.mkdir(parents=True, exist_ok=True)
    schemas: dict[str, str] = {}
    for signal, message_class in ROOT_MESSAGES.items():
        root = message_class.DESCRIPTOR.file
        for file in _with_dependencies(root):
            target = directory / Path(file.name).name
            source = render_proto(file)
            if not target.exists() or target.read_text() != source:
                target.write_text(source)
        schemas[signal] = f"{directory / Path(root.name).name}:{message_class.DESCRIPTOR.full_name}"
    return schemas
