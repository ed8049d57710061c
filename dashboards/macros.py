"""Expand a panel's SQL the way Grafana and its ClickHouse plugin do before it runs.

Grafana replaces template variables (``$name``, ``${name}``, ``${name:singlequote}``) and
its own ``$__interval`` family; the plugin then rewrites its macros (``$__timeFilter``,
``$__timeInterval``, ``$__fromTime`` ...) into ClickHouse SQL. Doing the same here lets a
dashboard's SQL be run outside Grafana, against any ClickHouse: the tests run every panel
this way, on the embedded engine and through ``obsloop serve``'s ClickHouse HTTP interface.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

_VARIABLE = re.compile(r"\$\{(\w+)(?::(\w+))?\}|\$(\w+)")
_MACRO = re.compile(r"\$__(\w+)(\()?")
"""A plugin macro, with its arguments or without (``$__fromTime`` and ``$__fromTime()``)."""


@dataclass(frozen=True)
class TimeRange:
    """The dashboard's range in Unix seconds and the panel's interval (Grafana's ``$__interval``)."""

    start: int
    end: int
    interval_seconds: int = 60


def _quote(value: str) -> str:
    return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"


def _render(values: Sequence[str], option: str | None) -> str:
    if option == "singlequote":
        return ",".join(_quote(value) for value in values)
    if option == "sqlstring":  # Grafana doubles the quote here, where singlequote escapes it
        return ",".join("'" + value.replace("'", "''") + "'" for value in values)
    if option == "doublequote":
        return ",".join('"' + value.replace('"', '\\"') + '"' for value in values)
    if option in (None, "raw", "text", "csv"):
        return ",".join(values) if len(values) != 1 else values[0]
    raise ValueError(f"unsupported variable format :{option}")


def _date(seconds: int) -> str:
    return f"toDate('{datetime.fromtimestamp(seconds, UTC):%Y-%m-%d}')"


def _macros(time_range: TimeRange) -> dict[str, Callable[[list[str]], str]]:
    """The plugin's pkg/macros (macros.go), argument for argument."""
    start, end, step = time_range.start, time_range.end, time_range.interval_seconds
    date_filter = f">= {_date(start)} AND {{0}} <= {_date(end)}"
    time_filter = f">= toDateTime({start}) AND {{0}} <= toDateTime({end})"
    return {
        "fromTime": lambda a: f"toDateTime({start})",
        "toTime": lambda a: f"toDateTime({end})",
        "fromTime_ms": lambda a: f"fromUnixTimestamp64Milli({start * 1000})",
        "toTime_ms": lambda a: f"fromUnixTimestamp64Milli({end * 1000})",
        "interval_s": lambda a: str(step),
        "timeFilter": lambda a: f"{a[0]} >= toDateTime({start}) AND {a[0]} <= toDateTime({end})",
        "timeFilter_ms": lambda a: f"{a[0]} >= fromUnixTimestamp64Milli({start * 1000}) "
                                   f"AND {a[0]} <= fromUnixTimestamp64Milli({end * 1000})",
        "dateFilter": lambda a: f"{a[0]} " + date_filter.format(a[0]),
        "dateTimeFilter": lambda a: f"({a[0]} {date_filter.format(a[0])}) AND ({a[1]} {time_filter.format(a[1])})",
        "dt": lambda a: f"({a[0]} {date_filter.format(a[0])}) AND ({a[1]} {time_filter.format(a[1])})",
        "timeInterval": lambda a: f"toStartOfInterval(toDateTime({a[0]}), INTERVAL {step} second)",
        "timeInterval_ms": lambda a: f"toStartOfInterval(toDateTime64({a[0]}, 3), INTERVAL {step * 1000} millisecond)",
    }


def expand(sql: str, variables: Mapping[str, Sequence[str]], time_range: TimeRange) -> str:
    """``sql`` as the ClickHouse datasource would send it, with every variable holding ``values``."""
    builtins = {  # Grafana's own global variables; the from/to ones in epoch milliseconds
        "__interval": [f"{time_range.interval_seconds}s"],
        "__interval_ms": [str(time_range.interval_seconds * 1000)],
        "__from": [str(time_range.start * 1000)],
        "__to": [str(time_range.end * 1000)],
    }

    def variable(match: re.Match[str]) -> str:
        name = match.group(1) or match.group(3)
        if name.startswith("__") and name not in builtins:
            return match.group(0)  # a plugin macro, expanded below
        values = builtins.get(name, variables.get(name))
        if values is None:
            raise KeyError(f"undefined variable ${name}")
        return _render(list(values), match.group(2))

    return _expand_macros(_VARIABLE.sub(variable, sql), _macros(time_range))


def _arguments(sql: str, start: int) -> tuple[list[str], int]:
    """The comma-separated arguments of the call whose ``(`` is at ``start`` (arguments may
    hold calls of their own, as the plugin allows), and the index after its ``)``."""
    depth, arguments, current = 0, [], start + 1
    for index in range(start, len(sql)):
        if sql[index] == "(":
            depth += 1
        elif sql[index] == ")":
            depth -= 1
            if depth == 0:
                arguments.append(sql[current:index].strip())
                return arguments, index + 1
        elif sql[index] == "," and depth == 1:
            arguments.append(sql[current:index].strip())
            current = index + 1
    raise ValueError(f"unbalanced parentheses after {sql[:start]!r}")


def _expand_macros(sql: str, macros: Mapping[str, Callable[[list[str]], str]]) -> str:
    while match := _MACRO.search(sql):
        name = match.group(1)
        if name not in macros:
            raise ValueError(f"unknown macro $__{name}")
        arguments, end = _arguments(sql, match.end() - 1) if match.group(2) else ([], match.end())
        sql = sql[:match.start()] + macros[name](arguments) + sql[end:]
    return sql
