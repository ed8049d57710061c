"""A small typed model of the Grafana dashboard JSON that obsloop's dashboards use.

Dashboards are written as Python so that their SQL lives next to the schema it reads and
the tests can run every query; this module turns them into the JSON Grafana imports
(schema version 39) and lays panels out on the 24-column grid, so no two overlap.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

CLICKHOUSE_TYPE = "grafana-clickhouse-datasource"
PROMETHEUS_TYPE = "prometheus"
CLICKHOUSE = {"type": CLICKHOUSE_TYPE, "uid": "obsloop-clickhouse"}
PROMETHEUS = {"type": PROMETHEUS_TYPE, "uid": "obsloop-prometheus"}
"""Datasource references; the provisioning file creates datasources with these uids."""

GRID_WIDTH = 24
SCHEMA_VERSION = 39

#: The ClickHouse plugin's ``format`` values (its ``Format`` enum).
_CLICKHOUSE_FORMAT = {"time_series": 0, "table": 1}

PanelType = Literal["timeseries", "table", "stat", "barchart", "bargauge", "piechart"]


@dataclass(frozen=True)
class Sql:
    """A query for the ClickHouse datasource, with Grafana's macros and ``$variables``."""

    sql: str
    format: Literal["time_series", "table"] = "time_series"

    def target(self, ref_id: str) -> dict[str, Any]:
        return {
            "datasource": CLICKHOUSE, "refId": ref_id, "editorType": "sql", "rawSql": self.sql.strip(),
            "format": _CLICKHOUSE_FORMAT[self.format],
            "queryType": "timeseries" if self.format == "time_series" else "table",
        }


@dataclass(frozen=True)
class PromQL:
    """A query for the Prometheus datasource that scrapes obsloop's ``/metrics``."""

    expr: str
    legend: str = ""

    def target(self, ref_id: str) -> dict[str, Any]:
        return {"datasource": PROMETHEUS, "refId": ref_id, "expr": self.expr, "legendFormat": self.legend,
                "range": True}


Query = Sql | PromQL


@dataclass(frozen=True)
class Panel:
    title: str
    queries: tuple[Query, ...]
    kind: PanelType = "timeseries"
    width: int = 12
    height: int = 8
    unit: str | None = None
    description: str = ""
    options: dict[str, Any] = field(default_factory=dict)
    transformations: tuple[dict[str, Any], ...] = ()

    @property
    def datasource(self) -> dict[str, str]:
        kinds = {type(query) for query in self.queries}
        if len(kinds) != 1:
            raise ValueError(f"panel {self.title!r} mixes datasources")
        return CLICKHOUSE if kinds == {Sql} else PROMETHEUS


@dataclass(frozen=True)
class Row:
    """A collapsible heading; the panels after it belong to it."""

    title: str


@dataclass(frozen=True)
class Variable:
    """A multi-value template variable filled by a ClickHouse query (``All`` selected)."""

    name: str
    label: str
    sql: str

    def json(self) -> dict[str, Any]:
        return {
            "type": "query", "name": self.name, "label": self.label, "datasource": CLICKHOUSE,
            "query": self.sql, "definition": self.sql, "refresh": 2, "multi": True, "includeAll": True,
            "current": {"selected": True, "text": ["All"], "value": ["$__all"]}, "sort": 1,
        }


@dataclass(frozen=True)
class Constant:
    """A text-box variable with a default, such as a monthly budget."""

    name: str
    label: str
    default: str

    def json(self) -> dict[str, Any]:
        return {"type": "textbox", "name": self.name, "label": self.label, "query": self.default,
                "current": {"selected": False, "text": self.default, "value": self.default}}


@dataclass(frozen=True)
class Annotation:
    """Events drawn over every time series of a dashboard (``time``, ``text``, ``tags``)."""

    name: str
    sql: str
    color: str

    def json(self) -> dict[str, Any]:
        return {"name": self.name, "datasource": CLICKHOUSE, "enable": True, "iconColor": self.color,
                "target": Sql(self.sql, "table").target("Anno")}


@dataclass(frozen=True)
class Dashboard:
    uid: str
    title: str
    description: str
    items: tuple[Panel | Row, ...]
    variables: tuple[Variable | Constant, ...] = ()
    annotations: tuple[Annotation, ...] = ()
    tags: tuple[str, ...] = ("obsloop",)
    time_from: str = "now-6h"

    def panels(self) -> list[Panel]:
        return [item for item in self.items if isinstance(item, Panel)]

    def json(self) -> dict[str, Any]:
        return {
            "uid": self.uid, "title": self.title, "description": self.description, "tags": list(self.tags),
            "schemaVersion": SCHEMA_VERSION, "version": 1, "editable": True, "graphTooltip": 1,
            "time": {"from": self.time_from, "to": "now"}, "refresh": "1m", "timezone": "browser",
            "templating": {"list": [variable.json() for variable in self.variables]},
            "annotations": {"list": [_builtin_annotation()] + [a.json() for a in self.annotations]},
            "panels": _layout(self.items),
        }


def _builtin_annotation() -> dict[str, Any]:
    return {"builtIn": 1, "datasource": {"type": "grafana", "uid": "-- Grafana --"}, "enable": True,
            "hide": True, "iconColor": "rgba(0, 211, 255, 1)", "name": "Annotations & Alerts",
            "type": "dashboard"}


def _panel_json(panel: Panel, panel_id: int, grid: dict[str, int]) -> dict[str, Any]:
    defaults: dict[str, Any] = {}
    if panel.unit:
        defaults["unit"] = panel.unit
    return {
        "id": panel_id, "type": panel.kind, "title": panel.title, "description": panel.description,
        "datasource": panel.datasource, "gridPos": grid,
        "targets": [query.target(chr(ord("A") + index)) for index, query in enumerate(panel.queries)],
        "fieldConfig": {"defaults": defaults, "overrides": []}, "options": panel.options,
        "transformations": list(panel.transformations),
    }


def _layout(items: tuple[Panel | Row, ...]) -> list[dict[str, Any]]:
    """Left to right, wrapping at the grid's width; a row starts on a line of its own."""
    panels: list[dict[str, Any]] = []
    x = y = line_height = 0
    for panel_id, item in enumerate(items, start=1):
        if isinstance(item, Row):
            y += line_height
            panels.append({"id": panel_id, "type": "row", "title": item.title, "collapsed": False,
                           "gridPos": {"x": 0, "y": y, "w": GRID_WIDTH, "h": 1}, "panels": []})
            x, y, line_height = 0, y + 1, 0
            continue
        if not 0 < item.width <= GRID_WIDTH:
            raise ValueError(f"panel {item.title!r} is {item.width} columns wide")
        if x + item.width > GRID_WIDTH:
            x, y, line_height = 0, y + line_height, 0
        panels.append(_panel_json(item, panel_id, {"x": x, "y": y, "w": item.width, "h": item.height}))
        x += item.width
        line_height = max(line_height, item.height)
    return panels
