"""``obsloop dashboards push`` through grafana-client against a local server that answers
like Grafana's folder and /api/dashboards/db endpoints."""

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from obsloop.cli import main
from obsloop.dashboards.boards import all_dashboards


class FakeGrafana(BaseHTTPRequestHandler):
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
        if self.path.startswith("/api/folders/") and uid in self.folders:
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
    FakeGrafana.folders, FakeGrafana.saved, FakeGrafana.authorizations, FakeGrafana.created = {}, [], [], []
    server = ThreadingHTTPServer(("127.0.0.1", 0), FakeGrafana)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()


def test_push_creates_the_folder_and_uploads_every_dashboard(grafana, capsys):
    assert main(["dashboards", "push", "--url", grafana, "--token", "glsa_test"]) == 0
    assert list(FakeGrafana.folders) == ["obsloop"]
    assert [body["dashboard"] for body in FakeGrafana.saved] == [board.json() for board in all_dashboards()]
    assert all(body["overwrite"] and body["folderUid"] == "obsloop" for body in FakeGrafana.saved)
    assert set(FakeGrafana.authorizations) == {"Bearer glsa_test"}
    assert "obsloop-fleet: success version 1 /d/obsloop-fleet" in capsys.readouterr().out


def test_push_again_reuses_the_folder(grafana):
    assert main(["dashboards", "push", "--url", grafana, "--token", "t"]) == 0
    assert main(["dashboards", "push", "--url", grafana, "--token", "t"]) == 0
    assert len(FakeGrafana.saved) == 2 * len(all_dashboards())
    assert FakeGrafana.created == ["obsloop"]
