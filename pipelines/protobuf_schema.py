"""The OTLP protobuf schema as one ``.proto`` text, for ClickHouse's ``Protobuf`` format.

The ``opentelemetry-proto`` wheel ships compiled descriptors but no ``.proto`` sources, so
the schema is rendered from the very descriptors the receivers validate with: the two can
never disagree. Every OTLP file is merged into one package (OTLP's message names do not
collide). A remote server gets it inline (``format_schema_source = 'string'``): no schema
files to distribute. The embedded engine gets it as a file in the data directory, by
absolute path, because with an inline schema it writes a schema cache into the process's
working directory.
"""

from __future__ import annotations

from functools import cache
from pathlib import Path

from google.protobuf import descriptor_pb2
from google.protobuf.descriptor import FileDescriptor

from obsloop.core.files import private_dir, write_private
from obsloop.pipelines.otlp_decode import REQUEST_TYPES

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

PACKAGE = "otlp"


class _Renderer:
    def __init__(self, packages: list[str]) -> None:
        # Longest first, so that "a.b.c" wins over "a.b" when stripping prefixes.
        self._prefixes = sorted((f".{p}." for p in packages), key=len, reverse=True)

    def local_name(self, type_name: str) -> str:
        for prefix in self._prefixes:
            if type_name.startswith(prefix):
                return type_name[len(prefix) :]
        raise ValueError(f"type {type_name} is outside the OTLP packages")

    def field_type(self, field: descriptor_pb2.FieldDescriptorProto) -> str:
        if field.type in (_FDP.TYPE_MESSAGE, _FDP.TYPE_ENUM):
            return self.local_name(field.type_name)
        return _SCALAR_NAMES[field.type]

    def enum(self, enum: descriptor_pb2.EnumDescriptorProto, indent: str) -> list[str]:
        lines = [f"{indent}enum {enum.name} {{"]
        lines += [f"{indent}  {value.name} = {value.number};" for value in enum.value]
        return [*lines, f"{indent}}}"]

    def message(self, message: descriptor_pb2.DescriptorProto, indent: str) -> list[str]:
        lines = [f"{indent}message {message.name} {{"]
        inner = indent + "  "
        for enum in message.enum_type:
            lines += self.enum(enum, inner)
        for nested in message.nested_type:
            lines += self.message(nested, inner)
        oneofs: dict[int, list[str]] = {}
        for field in message.field:
            label = "repeated " if field.label == _FDP.LABEL_REPEATED else ""
            declaration = f"{label}{self.field_type(field)} {field.name} = {field.number};"
            if field.HasField("oneof_index") and not field.proto3_optional:
                oneofs.setdefault(field.oneof_index, []).append(declaration)
            elif field.proto3_optional:
                lines.append(f"{inner}optional {declaration}")
            else:
                lines.append(inner + declaration)
        for index, declarations in oneofs.items():
            lines.append(f"{inner}oneof {message.oneof_decl[index].name} {{")
            lines += [f"{inner}  {d}" for d in declarations]
            lines.append(f"{inner}}}")
        return [*lines, f"{indent}}}"]


def _files_in_dependency_order() -> list[FileDescriptor]:
    ordered: dict[str, FileDescriptor] = {}

    def visit(file: FileDescriptor) -> None:
        if file.name not in ordered:
            for dependency in file.dependencies:
                visit(dependency)
            ordered[file.name] = file

    for message_class in REQUEST_TYPES.values():
        visit(message_class.DESCRIPTOR.file)
    return list(ordered.values())


@cache
def otlp_schema() -> str:
    """Return every OTLP message (traces, logs, metrics) as one proto3 source text."""
    protos = []
    for file in _files_in_dependency_order():
        proto = descriptor_pb2.FileDescriptorProto()
        file.CopyToProto(proto)
        protos.append(proto)
    renderer = _Renderer([proto.package for proto in protos])
    lines = ['syntax = "proto3";', f"package {PACKAGE};"]
    for proto in protos:
        for enum in proto.enum_type:
            lines += renderer.enum(enum, "")
        for message in proto.message_type:
            lines += renderer.message(message, "")
    return "\n".join(lines) + "\n"


def write_schema_file(directory: Path) -> Path:
    """Write the schema as ``otlp.proto`` under ``directory`` (unchanged files are kept)."""
    private_dir(directory)
    path = (directory / "otlp.proto").resolve()
    if not path.exists() or path.read_text() != otlp_schema():
        write_private(path, otlp_schema())
    return path


def format_settings(signal: str, schema_file: Path | None = None) -> dict[str, str]:
    """ClickHouse settings that make the ``Protobuf`` format read ``signal``'s requests,
    from ``schema_file`` when given, else from the schema passed inline."""
    message = REQUEST_TYPES[signal].DESCRIPTOR.name
    if schema_file is not None:
        schema = {"format_schema": f"{schema_file}:{message}"}
    else:
        schema = {"format_schema_source": "string", "format_schema": otlp_schema(),
                  "format_schema_message_name": message}
    return {**schema, "input_format_protobuf_oneof_presence": "1"}
