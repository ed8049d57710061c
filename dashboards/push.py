"""Upload the dashboards to a running Grafana (``obsloop dashboards push``) with grafana-client.

For a Grafana that is not provisioned from files: the dashboards land in the ``obsloop``
folder (created when missing) and overwrite earlier versions with the same uid.
"""

from __future__ import annotations

from typing import Any

from obsloop.dashboards.boards import all_dashboards
from obsloop.dashboards.build import FOLDER


def push(url: str, token: str | None = None) -> list[dict[str, Any]]:
    """Create or update every dashboard; returns Grafana's answers (uid, url, version)."""
    from grafana_client import GrafanaApi
    from grafana_client.client import GrafanaClientError

    api = GrafanaApi.from_url(url, credential=token)
    try:
        api.folder.get_folder(FOLDER)
    except GrafanaClientError as exc:
        if exc.status_code != 404:
            raise
        api.folder.create_folder("obsloop", uid=FOLDER)
    return [
        api.dashboard.update_dashboard({
            "dashboard": board.json(), "folderUid": FOLDER, "overwrite": True,
            "message": "obsloop dashboards push",
        })
        for board in all_dashboards()
    ]
