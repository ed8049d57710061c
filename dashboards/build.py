"""Write the dashboards' JSON and Grafana's provisioning files (``obsloop dashboards build``).

The generated files are committed under ``dashboards/json/`` and ``dashboards/provisioning/``
so that a Grafana can load them without running Python; the tests check that what is
committed is what this module builds.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import yaml

from obsloop.dashboards.boards import all_dashboards
from obsloop.dashboards.grafana import CLICKHOUSE, PROMETHEUS

PACKAGE_DIRECTORY = Path(__file__).parent
FOLDER = "obsloop"


@dataclass(frozen=True)
class Provisioning:
    """Where Grafana finds obsloop: the ClickHouse HTTP interface (obsloop's own over the
    embedded engine, or a ClickHouse server's), a Prometheus scraping ``/metrics``, and the
    directory the JSON files are mounted at."""

    clickhouse_url: str = "http://127.0.0.1:8123"
    clickhouse_database: str = "default"
    clickhouse_username: str = "default"
    prometheus_url: str = "http://127.0.0.1:9090"
    dashboards_path: str = "/var/lib/grafana/dashboards/obsloop"


def datasources(settings: Provisioning) -> dict[str, Any]:
    clickhouse = urlsplit(settings.clickhouse_url)
    return {
        "apiVersion": 1,
        "datasources": [
            {
                "name": "obsloop ClickHouse", "uid": CLICKHOUSE["uid"], "type": CLICKHOUSE["type"],
                "jsonData": {
                    "host": clickhouse.hostname, "port": clickhouse.port or 8123, "protocol": "http",
                    "secure": clickhouse.scheme == "https", "defaultDatabase": settings.clickhouse_database,
                    "username": settings.clickhouse_username,
                },
                # Grafana expands environment variables in provisioning files.
                "secureJsonData": {"password": "$OBSLOOP_CLICKHOUSE_PASSWORD"},
                "editable": False,
            },
            {
                "name": "obsloop Prometheus", "uid": PROMETHEUS["uid"], "type": PROMETHEUS["type"],
                "access": "proxy", "url": settings.prometheus_url, "editable": False,
            },
        ],
    }


def dashboard_provider(settings: Provisioning) -> dict[str, Any]:
    return {
        "apiVersion": 1,
        "providers": [{
            "name": "obsloop", "folder": FOLDER, "folderUid": FOLDER, "type": "file",
            "disableDeletion": False, "allowUiUpdates": False,
            "options": {"path": settings.dashboards_path, "foldersFromFilesStructure": False},
        }],
    }


def rendered(settings: Provisioning = Provisioning()) -> dict[str, str]:
    """Every generated file, relative path -> text."""
    files = {
        f"json/{board.uid}.json": json.dumps(board.json(), indent=2, sort_keys=True) + "\n"
        for board in all_dashboards()
    }
    files["provisioning/datasources/obsloop.yaml"] = yaml.safe_dump(datasources(settings), sort_keys=False)
    files["provisioning/dashboards/obsloop.yaml"] = yaml.safe_dump(dashboard_provider(settings), sort_keys=False)
    return files


def write(directory: Path = PACKAGE_DIRECTORY, settings: Provisioning = Provisioning()) -> list[Path]:
    written = []
    for relative, text in rendered(settings).items():
        path = directory / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
        written.append(path)
    return written
