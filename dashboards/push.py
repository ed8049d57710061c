"""Upload the dashboards to a running Grafana (``obsloop dashboards push``) with grafana-client.

For a Grafana that is not provisioned from files: the dashboards land in the ``obsloop``
folder (created when missing) and overwrite earlier versions with the same uid. Their
datasource references are rewritten to the target's own ClickHouse and Prometheus
datasources (:mod:`obsloop.dashboards.datasources`), so they work on a Grafana whose
datasources obsloop did not create.
"""

from __future__ import annotations

from typing import Any

from obsloop.dashboards.boards import all_dashboards
from obsloop.dashboards.build import FOLDER
from obsloop.dashboards.datasources import resolve, rewrite


def push(url: str, token: str | None = None, clickhouse_datasource: str | None = None,
         prometheus_datasource: str | None = None) -> list[dict[str, Any]]:
    """Create or update every dashboard; returns Grafana's answers (uid, url, version).
    Raises :class:`~obsloop.dashboards.datasources.DatasourceError` before uploading anything
    when the datasources cannot be chosen."""
    from grafana_client import GrafanaApi
    from grafana_client.client import GrafanaClientError

    api = GrafanaApi.from_url(url, credential=token)
    references = resolve(api.datasource.list_datasources(), clickhouse_datasource, prometheus_datasource)
    try:
        api.folder.get_folder(FOLDER)
    except GrafanaClientError as exc:
        if exc.status_code != 404:
            raise
        api.folder.create_folder("obsloop", uid=FOLDER)
    return [
        api.dashboard.update_dashboard({
            "dashboard": rewrite(board.json(), references), "folderUid": FOLDER, "overwrite": True,
            "message": "obsloop dashboards push",
        })
        for board in all_dashboards()
    ]
