"""How ClickHouse turns raw OTLP requests into clickhouseexporter rows, in SQL.

Each export request is one length-delimited ``Protobuf`` message. ClickHouse reads it into
the nested structure below and ``ARRAY JOIN`` unrolls resource → scope → item; the
projections reproduce the OpenTelemetry Collector exporter's row format: ids as lowercase
hex, ``SpanKind`` and ``StatusCode`` as pdata's names, attribute values as pdata's
``AsString()`` (int ``42`` → ``"42"``, bool → ``"true"``, bytes → base64, arrays and
key-value lists → JSON with sorted keys).

``AnyValue`` is recursive, which ClickHouse cannot infer, so the structure spells it out to
``ANY_VALUE_DEPTH`` levels: an attribute's array (or key-value list) of arrays is kept,
anything nested deeper is stored as JSON ``null``. The oneof-presence column ``value``
tells which member was set, so ``0``, ``false`` and ``""`` stay distinct from "unset".
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

ANY_VALUE_DEPTH = 2
_SCALARS = "string_value String, bool_value Bool, int_value Int64, double_value Float64, bytes_value String"
# AnyValue field numbers, as reported by the oneof-presence column.
_STRING, _BOOL, _INT, _DOUBLE, _ARRAY, _KVLIST, _BYTES = 1, 2, 3, 4, 5, 6, 7


def _any_value_type(depth: int) -> str:
    members = f"value UInt8, {_SCALARS}"
    if depth > 0:
        inner = _any_value_type(depth - 1)
        members += (
            f", array_value Tuple(values Array({inner}))"
            f", kvlist_value Tuple(values Array(Tuple(key String, value {inner})))"
        )
    return f"Tuple({members})"


ANY_VALUE = _any_value_type(ANY_VALUE_DEPTH)
SCALAR_ANY_VALUE = _any_value_type(0)
"""``AnyValue`` without its array and key-value list members, as the scalars-only
projection reads it: the oneof-presence column still names the member that was set, so an
array or key-value list value is still seen (and raises :data:`COMPLEX_VALUE_MARKER`).
Design: docs/design/scalar-projection.md."""
ATTRIBUTES = f"Array(Tuple(key String, value {ANY_VALUE}))"
RESOURCE = f"resource Tuple(attributes {ATTRIBUTES}, dropped_attributes_count UInt32)"
SCOPE = f"scope Tuple(name String, version String, attributes {ATTRIBUTES}, dropped_attributes_count UInt32)"


def _json(v: str, depth: int) -> str:
    """SQL for the JSON text of AnyValue expression ``v`` (as pdata's AsRaw + json)."""
    cases = [
        f"{v}.value = {_STRING}, toJSONString({v}.string_value)",
        f"{v}.value = {_BOOL}, if({v}.bool_value, 'true', 'false')",
        f"{v}.value = {_INT}, toString({v}.int_value)",
        f"{v}.value = {_DOUBLE}, toString({v}.double_value)",
        f"{v}.value = {_BYTES}, toJSONString(base64Encode({v}.bytes_value))",
    ]
    if depth > 0:
        x, kv = f"x{depth}", f"kv{depth}"
        cases += [
            f"{v}.value = {_ARRAY}, concat('[', arrayStringConcat(arrayMap({x} -> {_json(x, depth - 1)}, "
            f"{v}.array_value.values), ','), ']')",
            f"{v}.value = {_KVLIST}, concat('{{', arrayStringConcat(arrayMap({kv} -> concat("
            f"toJSONString({kv}.key), ':', {_json(f'{kv}.value', depth - 1)}), arraySort({kv} -> {kv}.key, "
            f"{v}.kvlist_value.values)), ','), '}}')",
        ]
    return f"multiIf({', '.join(cases)}, 'null')"


#: The error a scalars-only projection raises on an array or key-value list value: the
#: sink then inserts the segment again with the full projection (:class:`RowMapping`).
COMPLEX_VALUE_MARKER = "obsloop: array or kvlist AnyValue, use the full projection"


def _members_as_string(members: Sequence[str], scalars_only: bool = False) -> str:
    """``AsString()`` (pdata's) of an AnyValue given as its eight members: presence, the five
    scalars, the array's and the key-value list's elements. ``scalars_only`` replaces the
    JSON rendering of arrays and key-value lists by an error (:data:`COMPLEX_VALUE_MARKER`)."""
    t, s, b, i, d, y, arr, kv = members
    scalar = (
        f"{t} = {_STRING}, {s}, {t} = {_BOOL}, if({b}, 'true', 'false'), "
        f"{t} = {_INT}, toString({i}), {t} = {_DOUBLE}, toString({d}), {t} = {_BYTES}, base64Encode({y})"
    )
    if scalars_only:
        # Not a constant, or the analyzer would raise it while planning.
        return (f"multiIf({scalar}, {t} = {_ARRAY} OR {t} = {_KVLIST}, "
                f"toString(throwIf({t} >= {_ARRAY}, '{COMPLEX_VALUE_MARKER}')), '')")
    depth = ANY_VALUE_DEPTH - 1
    x, pair = f"x{ANY_VALUE_DEPTH}", f"kv{ANY_VALUE_DEPTH}"
    return (
        f"multiIf({scalar}, "
        f"{t} = {_ARRAY}, concat('[', arrayStringConcat(arrayMap({x} -> {_json(x, depth)}, {arr}), ','), ']'), "
        f"{t} = {_KVLIST}, concat('{{', arrayStringConcat(arrayMap({pair} -> concat(toJSONString({pair}.key), ':', "
        f"{_json(f'{pair}.value', depth)}), arraySort({pair} -> {pair}.key, {kv})), ','), '}}'), '')"
    )


_MEMBERS = ("value", "string_value", "bool_value", "int_value", "double_value", "bytes_value",
            "array_value.values", "kvlist_value.values")


def any_value_as_string(v: str, scalars_only: bool = False) -> str:
    """SQL for pdata's ``Value.AsString()`` of AnyValue expression ``v``."""
    return _members_as_string([f"{v}.{member}" for member in _MEMBERS], scalars_only=scalars_only)


def attributes_map(attrs: str, scalars_only: bool = False) -> str:
    """SQL for a ``Map(LowCardinality(String), String)`` of an attribute list expression.

    The lambda takes the value's members as separate arrays rather than the ``AnyValue``
    tuple, so each ``multiIf`` branch copies only the members it reads
    (docs/design/attribute-map-lambda.md).
    """
    members = ["vt", "vs", "vb", "vi", "vd", "vy", "va", "vk"]
    arguments = [f"{attrs}.value.{member}" for member in _MEMBERS]
    if scalars_only:
        members, arguments = members[:6], arguments[:6]
    return (
        f"CAST(mapFromArrays({attrs}.key, arrayMap(({', '.join(members)}) -> "
        f"{_members_as_string(members + ['', ''] if scalars_only else members, scalars_only=scalars_only)}, "
        f"{', '.join(arguments)})), 'Map(LowCardinality(String), String)')"
    )


def service_name(resource_attrs: str) -> str:
    return (
        f"arrayFirst(a -> a.key = 'service.name', {resource_attrs}).value.string_value"
    )


def hex_id(expr: str) -> str:
    return f"lower(hex({expr}))"


def nanos(expr: str) -> str:
    return f"fromUnixTimestamp64Nano(toInt64({expr}))"


@dataclass(frozen=True)
class RowMapping:
    """One target table: the input structure, the ``ARRAY JOIN`` path, the projections."""

    table: str
    structure: str
    array_join: str
    columns: dict[str, str]
    where: str = ""
    scalar_columns: dict[str, str] | None = None
    """The same projections where every ``AnyValue`` is a scalar (nearly always so): array
    and key-value list values raise :data:`COMPLEX_VALUE_MARKER` instead of being rendered as
    JSON. Much less SQL for ClickHouse to analyse (docs/design/scalar-projection.md)."""
    scalar_structure: str | None = None
    """``structure`` with scalar-only values (:data:`SCALAR_ANY_VALUE`), for ``scalar_columns``."""
    scalar_array_join: str | None = None
    """``array_join`` of the scalars-only projection, when it differs."""

    def input_structure(self, scalars_only: bool = False) -> str:
        """The ``Protobuf`` input structure the projection of ``select`` reads."""
        if scalars_only and self.scalar_structure is not None:
            return self.scalar_structure
        return self.structure

    def select(self, source: str, scalars_only: bool = False) -> str:
        columns, array_join = self.columns, self.array_join
        if scalars_only and self.scalar_columns is not None:
            columns, array_join = self.scalar_columns, self.scalar_array_join or self.array_join
        projections = ",\n  ".join(f"{sql} AS `{name}`" for name, sql in columns.items())
        where = f"\nWHERE {self.where}" if self.where else ""
        return f"SELECT\n  {projections}\nFROM {source}\n{array_join}{where}"

    def insert(self, database: str, source: str, scalars_only: bool = False) -> str:
        names = ", ".join(f"`{name}`" for name in self.columns)
        return f"INSERT INTO `{database}`.`{self.table}` ({names})\n{self.select(source, scalars_only)}"


def _mapping(table: str, structure: str, array_join: str | Callable[[bool], str],
             columns: Callable[[bool], dict[str, str]]) -> RowMapping:
    """A mapping with both projections, ``columns(scalars_only)`` (and ``array_join(…)``)
    building each."""
    scalar_structure = structure.replace(ANY_VALUE, SCALAR_ANY_VALUE)
    if isinstance(array_join, str):
        return RowMapping(table, structure, array_join, columns(False), scalar_columns=columns(True),
                          scalar_structure=scalar_structure)
    return RowMapping(table, structure, array_join(False), columns(False), scalar_columns=columns(True),
                      scalar_structure=scalar_structure, scalar_array_join=array_join(True))


_SPAN = (
    "trace_id String, span_id String, trace_state String, parent_span_id String, flags UInt32, "
    "name String, kind Int32, start_time_unix_nano UInt64, end_time_unix_nano UInt64, "
    f"attributes {ATTRIBUTES}, dropped_attributes_count UInt32, "
    f"events Array(Tuple(time_unix_nano UInt64, name String, attributes {ATTRIBUTES})), "
    f"links Array(Tuple(trace_id String, span_id String, trace_state String, attributes {ATTRIBUTES})), "
    "status Tuple(message String, code Int32)"
)

TRACES = _mapping(
    table="otel_traces",
    structure=(
        f"resource_spans Array(Tuple({RESOURCE}, scope_spans Array(Tuple({SCOPE}, "
        f"spans Array(Tuple({_SPAN})), schema_url String)), schema_url String))"
    ),
    array_join="ARRAY JOIN resource_spans AS rs ARRAY JOIN rs.scope_spans AS ss ARRAY JOIN ss.spans AS s",
    columns=lambda scalars_only: {
        "Timestamp": nanos("s.start_time_unix_nano"),
        "TraceId": hex_id("s.trace_id"),
        "SpanId": hex_id("s.span_id"),
        "ParentSpanId": hex_id("s.parent_span_id"),
        "TraceState": "s.trace_state",
        "SpanName": "s.name",
        "SpanKind": "['Unspecified', 'Internal', 'Server', 'Client', 'Producer', 'Consumer'][s.kind + 1]",
        "ServiceName": service_name("rs.resource.attributes"),
        "ResourceAttributes": attributes_map("rs.resource.attributes", scalars_only),
        "ScopeName": "ss.scope.name",
        "ScopeVersion": "ss.scope.version",
        "SpanAttributes": attributes_map("s.attributes", scalars_only),
        "Duration": "greatest(s.end_time_unix_nano, s.start_time_unix_nano) - s.start_time_unix_nano",
        "StatusCode": "['Unset', 'Ok', 'Error'][s.status.code + 1]",
        "StatusMessage": "s.status.message",
        "Events.Timestamp": f"arrayMap(e -> {nanos('e.time_unix_nano')}, s.events)",
        "Events.Name": "arrayMap(e -> e.name, s.events)",
        "Events.Attributes": f"arrayMap(e -> {attributes_map('e.attributes', scalars_only)}, s.events)",
        "Links.TraceId": f"arrayMap(l -> {hex_id('l.trace_id')}, s.links)",
        "Links.SpanId": f"arrayMap(l -> {hex_id('l.span_id')}, s.links)",
        "Links.TraceState": "arrayMap(l -> l.trace_state, s.links)",
        "Links.Attributes": f"arrayMap(l -> {attributes_map('l.attributes', scalars_only)}, s.links)",
    },
)

_LOG_RECORD = (
    "time_unix_nano UInt64, observed_time_unix_nano UInt64, severity_number Int32, severity_text String, "
    f"body {ANY_VALUE}, attributes {ATTRIBUTES}, dropped_attributes_count UInt32, flags UInt32, "
    "trace_id String, span_id String, event_name String"
)

def _logs_array_join(scalars_only: bool) -> str:
    """Unroll resource → scope → record, carrying down only what the rows need: the
    resource's and the scope's fields, their attribute maps computed once per resource or
    scope (not once per record), never the whole resource or scope tuple. Both the rows'
    cost and ClickHouse's analysis of the query (which grew with every reference to a
    subcolumn of the deep tuple types passed through three ARRAY JOINs) drop by about a third.
    """
    return (
        "ARRAY JOIN resource_logs.scope_logs AS rl_scopes, resource_logs.schema_url AS rl_schema_url, "
        f"arrayMap(x -> {attributes_map('x', scalars_only)}, resource_logs.resource.attributes) AS rl_attributes, "
        f"arrayMap(x -> {service_name('x')}, resource_logs.resource.attributes) AS rl_service_name\n"
        "ARRAY JOIN rl_scopes.log_records AS sl_records, rl_scopes.schema_url AS sl_schema_url, "
        "rl_scopes.scope.name AS sl_name, rl_scopes.scope.version AS sl_version, "
        f"arrayMap(x -> {attributes_map('x', scalars_only)}, rl_scopes.scope.attributes) AS sl_attributes\n"
        "ARRAY JOIN sl_records AS r"
    )


LOGS = _mapping(
    table="otel_logs",
    structure=(
        f"resource_logs Array(Tuple({RESOURCE}, scope_logs Array(Tuple({SCOPE}, "
        f"log_records Array(Tuple({_LOG_RECORD})), schema_url String)), schema_url String))"
    ),
    array_join=_logs_array_join,
    columns=lambda scalars_only: {
        "Timestamp": nanos("if(r.time_unix_nano != 0, r.time_unix_nano, r.observed_time_unix_nano)"),
        "TraceId": hex_id("r.trace_id"),
        "SpanId": hex_id("r.span_id"),
        "TraceFlags": "toUInt8(bitAnd(r.flags, 255))",
        "SeverityText": "r.severity_text",
        "SeverityNumber": "toUInt8(r.severity_number)",
        "ServiceName": "rl_service_name",
        "Body": any_value_as_string("r.body", scalars_only),
        "ResourceSchemaUrl": "rl_schema_url",
        "ResourceAttributes": "rl_attributes",
        "ScopeSchemaUrl": "sl_schema_url",
        "ScopeName": "sl_name",
        "ScopeVersion": "sl_version",
        "ScopeAttributes": "sl_attributes",
        "LogAttributes": attributes_map("r.attributes", scalars_only),
        "EventName": "r.event_name",
    },
)

_EXEMPLARS = (
    f"exemplars Array(Tuple(filtered_attributes {ATTRIBUTES}, time_unix_nano UInt64, "
    "as_double Float64, as_int Int64, value UInt8, span_id String, trace_id String))"
)
_POINT_COMMON = f"attributes {ATTRIBUTES}, start_time_unix_nano UInt64, time_unix_nano UInt64, flags UInt32"
_NUMBER_POINT = f"{_POINT_COMMON}, as_double Float64, as_int Int64, value UInt8, {_EXEMPLARS}"
_HISTOGRAM_POINT = (
    f"{_POINT_COMMON}, count UInt64, sum Float64, bucket_counts Array(UInt64), "
    f"explicit_bounds Array(Float64), min Float64, max Float64, {_EXEMPLARS}"
)
_EXP_HISTOGRAM_POINT = (
    f"{_POINT_COMMON}, count UInt64, sum Float64, scale Int32, zero_count UInt64, "
    "positive Tuple(offset Int32, bucket_counts Array(UInt64)), "
    "negative Tuple(offset Int32, bucket_counts Array(UInt64)), "
    f"min Float64, max Float64, {_EXEMPLARS}"
)
_SUMMARY_POINT = (
    f"{_POINT_COMMON}, count UInt64, sum Float64, "
    "quantile_values Array(Tuple(quantile Float64, value Float64))"
)
_METRIC_DATA = {
    "gauge": f"gauge Tuple(data_points Array(Tuple({_NUMBER_POINT})))",
    "sum": f"sum Tuple(data_points Array(Tuple({_NUMBER_POINT})), aggregation_temporality Int32, is_monotonic Bool)",
    "histogram": f"histogram Tuple(data_points Array(Tuple({_HISTOGRAM_POINT})), aggregation_temporality Int32)",
    "exponential_histogram": (
        f"exponential_histogram Tuple(data_points Array(Tuple({_EXP_HISTOGRAM_POINT})), "
        "aggregation_temporality Int32)"
    ),
    "summary": f"summary Tuple(data_points Array(Tuple({_SUMMARY_POINT})))",
}


def _metrics_structure(data_field: str) -> str:
    """The request structure with only one kind of metric data spelled out: ClickHouse skips
    the fields a structure leaves out, so each table's insert parses only its own points."""
    metric = f"name String, description String, unit String, {_METRIC_DATA[data_field]}, data UInt8"
    return (
        f"resource_metrics Array(Tuple({RESOURCE}, scope_metrics Array(Tuple({SCOPE}, "
        f"metrics Array(Tuple({metric})), schema_url String)), schema_url String))"
    )


# Metric.data oneof field numbers.
_GAUGE, _SUM, _HISTOGRAM, _EXP_HISTOGRAM, _SUMMARY = 5, 7, 9, 10, 11


def _number(p: str) -> str:
    """NumberDataPoint / Exemplar value as Float64, whichever of as_double / as_int is set."""
    return f"if({p}.value = 6, toFloat64({p}.as_int), {p}.as_double)"


def _metric_columns(point_kind: str, scalars_only: bool) -> dict[str, str]:
    return {
        "ResourceAttributes": attributes_map("rm.resource.attributes", scalars_only),
        "ResourceSchemaUrl": "rm.schema_url",
        "ScopeName": "sm.scope.name",
        "ScopeVersion": "sm.scope.version",
        "ScopeAttributes": attributes_map("sm.scope.attributes", scalars_only),
        "ScopeDroppedAttrCount": "sm.scope.dropped_attributes_count",
        "ScopeSchemaUrl": "sm.schema_url",
        "ServiceName": service_name("rm.resource.attributes"),
        "MetricName": "m.name",
        "MetricDescription": "m.description",
        "MetricUnit": "m.unit",
        "Attributes": attributes_map("p.attributes", scalars_only),
        "StartTimeUnix": nanos("p.start_time_unix_nano"),
        "TimeUnix": nanos("p.time_unix_nano"),
    }


def _exemplar_columns(scalars_only: bool) -> dict[str, str]:
    return {
        "Exemplars.FilteredAttributes": (
            f"arrayMap(x -> {attributes_map('x.filtered_attributes', scalars_only)}, p.exemplars)"
        ),
        "Exemplars.TimeUnix": f"arrayMap(x -> {nanos('x.time_unix_nano')}, p.exemplars)",
        "Exemplars.Value": f"arrayMap(x -> {_number('x')}, p.exemplars)",
        "Exemplars.SpanId": f"arrayMap(x -> {hex_id('x.span_id')}, p.exemplars)",
        "Exemplars.TraceId": f"arrayMap(x -> {hex_id('x.trace_id')}, p.exemplars)",
    }


def _metric_mapping(table: str, data_field: str, data_number: int,
                    columns: Callable[[bool], dict[str, str]]) -> RowMapping:
    return _mapping(
        table=table,
        structure=_metrics_structure(data_field),
        array_join=(
            "ARRAY JOIN resource_metrics AS rm ARRAY JOIN rm.scope_metrics AS sm "
            f"ARRAY JOIN arrayFilter(x -> x.data = {data_number}, sm.metrics) AS m "
            f"ARRAY JOIN m.{data_field}.data_points AS p"
        ),
        columns=lambda scalars_only: {**_metric_columns(data_field, scalars_only), **columns(scalars_only)},
    )


METRICS = (
    _metric_mapping(
        "otel_metrics_gauge", "gauge", _GAUGE,
        lambda scalars_only: {"Value": _number("p"), "Flags": "p.flags", **_exemplar_columns(scalars_only)},
    ),
    _metric_mapping(
        "otel_metrics_sum", "sum", _SUM,
        lambda scalars_only: {
            "Value": _number("p"),
            "Flags": "p.flags",
            **_exemplar_columns(scalars_only),
            "AggregationTemporality": "m.sum.aggregation_temporality",
            "IsMonotonic": "m.sum.is_monotonic",
        },
    ),
    _metric_mapping(
        "otel_metrics_histogram", "histogram", _HISTOGRAM,
        lambda scalars_only: {
            "Count": "p.count",
            "Sum": "p.sum",
            "BucketCounts": "p.bucket_counts",
            "ExplicitBounds": "p.explicit_bounds",
            **_exemplar_columns(scalars_only),
            "Flags": "p.flags",
            "Min": "p.min",
            "Max": "p.max",
            "AggregationTemporality": "m.histogram.aggregation_temporality",
        },
    ),
    _metric_mapping(
        "otel_metrics_exponential_histogram", "exponential_histogram", _EXP_HISTOGRAM,
        lambda scalars_only: {
            "Count": "p.count",
            "Sum": "p.sum",
            "Scale": "p.scale",
            "ZeroCount": "p.zero_count",
            "PositiveOffset": "p.positive.offset",
            "PositiveBucketCounts": "p.positive.bucket_counts",
            "NegativeOffset": "p.negative.offset",
            "NegativeBucketCounts": "p.negative.bucket_counts",
            **_exemplar_columns(scalars_only),
            "Flags": "p.flags",
            "Min": "p.min",
            "Max": "p.max",
            "AggregationTemporality": "m.exponential_histogram.aggregation_temporality",
        },
    ),
    _metric_mapping(
        "otel_metrics_summary", "summary", _SUMMARY,
        lambda scalars_only: {
            "Count": "p.count",
            "Sum": "p.sum",
            "ValueAtQuantiles.Quantile": "arrayMap(q -> q.quantile, p.quantile_values)",
            "ValueAtQuantiles.Value": "arrayMap(q -> q.value, p.quantile_values)",
            "Flags": "p.flags",
        },
    ),
)

#: The row mappings each signal's segments are inserted with.
MAPPINGS: dict[str, tuple[RowMapping, ...]] = {
    "traces": (TRACES,),
    "logs": (LOGS,),
    "metrics": METRICS,
}
