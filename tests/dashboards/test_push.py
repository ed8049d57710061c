"""``obsloop dashboards push`` through grafana-client against a stand-in for Grafana (a real
Grafana cannot run here): a local server answering Grafana's /api/datasources, folder and
/api/dashboards/db endpoints with Grafana's shapes and status codes."""

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from obsloop.cli import main
from obsloop.dashboards.boards import all_dashboards
from obsloop.dashboards.datasources import rewrite


def datasource(uid: str, name: str, kind: str, default: bool = False) -> dict:
    """One entry of Grafana's GET /api/datasources."""
    return {"id": len(uid), "uid": uid, "orgId": 1, "name": name, "type": kind, "typeName": kind,
            "access": "proxy", "url": "http://db.internal", "basicAuth": False, "isDefault": default,
            "jsonData": {}, "readOnly": False}


TEAM_CLICKHOUSE = datasource("P7E099F39B84EA795", "ClickHouse", "grafana-clickhouse-datasource")
TEAM_PROMETHEUS = datasource("PBFA97CFB590B2093", "Prometheus", "prometheus", default=True)


class GrafanaStandIn(BaseHTTPRequestHandler):
    """Stand-in for Grafana's HTTP API (not Grafana): what a team's Grafana answers."""

    datasources: list[dict] = []
    folders: dict[str, dict] = {}
    saved: list[dict] = []
    authorizations: list[str] = []
    created: list[str] = []

    def _answer(self, status: int, body: dict) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self):  # noqa: N802 - http.server's naming
        self.authorizations.append(self.headers.get("Authorization", ""))
        uid = self.path.rsplit("/", 1)[-1]
        if self.path == "/api/datasources":
            self.send_response(200)
            body = json.dumps(self.datasources).encode()
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)
        elif self.path.startswith("/api/folders/") and uid in self.folders:
            self._answer(200, self.folders[uid])
        else:
            self._answer(404, {"message": "folder not found"})

    def do_POST(self):  # noqa: N802
        self.authorizations.append(self.headers.get("Authorization", ""))
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        if self.path == "/api/folders":
            self.created.append(body["uid"])
            self.folders[body["uid"]] = {"uid": body["uid"], "title": body["title"], "id": 1}
            self._answer(200, self.folders[body["uid"]])
        elif self.path == "/api/dashboards/db":
            if body.get("folderUid") not in self.folders:
                self._answer(400, {"message": "folder not found"})
                return
            self.saved.append(body)
            uid = body["dashboard"]["uid"]
            self._answer(200, {"id": len(self.saved), "uid": uid, "url": f"/d/{uid}", "status": "success",
                               "version": 1, "slug": uid})
        else:
            self._answer(404, {"message": "not found"})

    def log_message(self, *args):
        pass


@pytest.fixture
def grafana():
    GrafanaStandIn.folders, GrafanaStandIn.saved, GrafanaStandIn.authorizations, GrafanaStandIn.created = {}, [], [], []
    GrafanaStandIn.datasources = [TEAM_CLICKHOUSE, TEAM_PROMETHEUS]
    server = ThreadingHTTPServer(("127.0.0.1", 0), GrafanaStandIn)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()


def test_push_creates_the_folder_and_uploads_every_dashboard(grafana, capsys):
    assert main(["dashboards", "push", "--url", grafana, "--token", "glsa_test"]) == 0
    assert list(GrafanaStandIn.folders) == ["obsloop"]
    team = {"obsloop-clickhouse": {"type": "grafana-clickhouse-datasource", "uid": TEAM_CLICKHOUSE["uid"]},
            "obsloop-prometheus": {"type": "prometheus", "uid": TEAM_PROMETHEUS["uid"]}}
    assert [body["dashboard"] for body in GrafanaStandIn.saved] == [
        rewrite(board.json(), team) for board in all_dashboards()]
    assert all(body["overwrite"] and body["folderUid"] == "obsloop" for body in GrafanaStandIn.saved)
    assert set(GrafanaStandIn.authorizations) == {"Bearer glsa_test"}
    assert "obsloop-fleet: success version 1 /d/obsloop-fleet" in capsys.readouterr().out


def test_push_again_reuses_the_folder(grafana):
    assert main(["dashboards", "push", "--url", grafana, "--token", "t"]) == 0
    assert main(["dashboards", "push", "--url", grafana, "--token", "t"]) == 0
    assert len(GrafanaStandIn.saved) == 2 * len(all_dashboards())
    assert GrafanaStandIn.created == ["obsloop"]


def references(saved: list[dict]) -> set[tuple[str, str]]:
    """Every (type, uid) datasource reference of the uploaded dashboards."""
    found = set()

    def walk(node):
        if isinstance(node, dict):
            if isinstance(node.get("datasource"), dict):
                found.add((node["datasource"]["type"], node["datasource"]["uid"]))
            for value in node.values():
                walk(value)
        elif isinstance(node, list):
            for value in node:
                walk(value)

    walk([body["dashboard"] for body in saved])
    return found


def test_every_reference_points_at_a_datasource_of_the_target_grafana(grafana):
    assert main(["dashboards", "push", "--url", grafana]) == 0
    existing = {(d["type"], d["uid"]) for d in GrafanaStandIn.datasources} | {("grafana", "-- Grafana --")}
    assert references(GrafanaStandIn.saved) == existing


def test_several_clickhouse_datasources_are_chosen_by_name(grafana, capsys):
    analytics = datasource("ch-analytics", "analytics", "grafana-clickhouse-datasource")
    GrafanaStandIn.datasources.append(analytics)
    assert main(["dashboards", "push", "--url", grafana]) == 2
    error = capsys.readouterr().err
    assert "several ClickHouse datasources ('ClickHouse', 'analytics')" in error and "--clickhouse-datasource" in error
    assert GrafanaStandIn.saved == [] and GrafanaStandIn.created == []  # nothing half-uploaded
    assert main(["dashboards", "push", "--url", grafana, "--clickhouse-datasource", "analytics"]) == 0
    assert ("grafana-clickhouse-datasource", "ch-analytics") in references(GrafanaStandIn.saved)
    assert ("grafana-clickhouse-datasource", TEAM_CLICKHOUSE["uid"]) not in references(GrafanaStandIn.saved)


def test_missing_or_mistyped_datasources_are_refused_with_the_reason(grafana, capsys):
    assert main(["dashboards", "push", "--url", grafana, "--prometheus-datasource", "ClickHouse"]) == 2
    assert "'ClickHouse' is of type 'grafana-clickhouse-datasource', not 'prometheus'" in capsys.readouterr().err
    assert main(["dashboards", "push", "--url", grafana, "--clickhouse-datasource", "nope"]) == 2
    assert "no datasource named 'nope'" in capsys.readouterr().err
    GrafanaStandIn.datasources = [TEAM_CLICKHOUSE]
    assert main(["dashboards", "push", "--url", grafana]) == 2
    assert "no Prometheus datasource (type prometheus)" in capsys.readouterr().err
    assert GrafanaStandIn.saved == []
