"""The target Grafana's own datasources in place of the uids obsloop's JSON is built with.

The committed dashboards reference ``obsloop-clickhouse`` and ``obsloop-prometheus``, the uids
obsloop's provisioning file creates. A Grafana a team already runs has its own ClickHouse
and Prometheus datasources with other uids; ``obsloop dashboards push`` picks them from
``GET /api/datasources``: by the name the user gives, else the only one of the type, else
the default one of the type, else the one obsloop provisioned. Anything else is ambiguous
and refused with the candidates' names.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from obsloop.dashboards.grafana import CLICKHOUSE, PROMETHEUS

KINDS = {"ClickHouse": CLICKHOUSE, "Prometheus": PROMETHEUS}
FLAGS = {"ClickHouse": "--clickhouse-datasource", "Prometheus": "--prometheus-datasource"}


class DatasourceError(ValueError):
    """No datasource, or no single one, fits; the message says what to pass."""


def _pick(kind: str, datasources: Sequence[dict[str, Any]], name: str | None) -> dict[str, str]:
    wanted = KINDS[kind]
    if name is not None:
        named = [d for d in datasources if d.get("name") == name]
        if not named:
            raise DatasourceError(f"Grafana has no datasource named {name!r} ({FLAGS[kind]})")
        if named[0].get("type") != wanted["type"]:
            raise DatasourceError(f"datasource {name!r} is of type {named[0].get('type')!r}, "
                                  f"not {wanted['type']!r} ({FLAGS[kind]})")
        return {"type": wanted["type"], "uid": named[0]["uid"]}
    candidates = [d for d in datasources if d.get("type") == wanted["type"]]
    if not candidates:
        raise DatasourceError(f"Grafana has no {kind} datasource (type {wanted['type']}): add one, "
                              f"or name it with {FLAGS[kind]}")
    chosen = (candidates if len(candidates) == 1 else
              [d for d in candidates if d.get("isDefault")] or [d for d in candidates if d["uid"] == wanted["uid"]])
    if len(chosen) != 1:
        names = ", ".join(sorted(repr(d.get("name")) for d in candidates))
        raise DatasourceError(f"Grafana has several {kind} datasources ({names}): choose one with {FLAGS[kind]}")
    return {"type": wanted["type"], "uid": chosen[0]["uid"]}


def resolve(datasources: Sequence[dict[str, Any]], clickhouse: str | None = None,
            prometheus: str | None = None) -> dict[str, dict[str, str]]:
    """obsloop's uid -> the reference to write instead, from Grafana's datasource list."""
    return {
        CLICKHOUSE["uid"]: _pick("ClickHouse", datasources, clickhouse),
        PROMETHEUS["uid"]: _pick("Prometheus", datasources, prometheus),
    }


def rewrite(document: Any, references: dict[str, dict[str, str]]) -> Any:
    """``document`` with every datasource reference to obsloop's uids replaced."""
    if isinstance(document, list):
        return [rewrite(item, references) for item in document]
    if not isinstance(document, dict):
        return document
    if set(document) == {"type", "uid"} and document["uid"] in references:
        return dict(references[document["uid"]])
    return {key: rewrite(value, references) for key, value in document.items()}
