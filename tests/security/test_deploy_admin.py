"""``obsloop serve`` started with the settings the compose and Kubernetes files ship
(storage switched to the embedded engine, no Kafka, loopback and free ports): its admin
port refuses unauthenticated ``/query``, with the token secret absent and present, while
Prometheus' ``/metrics`` and the probes keep working under the shipped ``allowed_hosts``."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import pytest
import yaml
from obsloop_process import ObsloopProcess

sys.path.insert(0, str(Path(__file__).parent))

from query_attacks import send  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]


def _shipped(source: str) -> tuple[dict[str, Any], str]:
    """The shipped configuration and a host name it lists in ``admin.allowed_hosts``."""
    if source == "compose":
        return yaml.safe_load((ROOT / "deploy" / "obsloop.yaml").read_text()), "receiver"
    configmap = yaml.safe_load((ROOT / "deploy" / "kubernetes" / "configmap.yaml").read_text())
    return yaml.safe_load(configmap["data"]["obsloop.yaml"]), "obsloop-receiver"


def _embedded(document: dict[str, Any]) -> dict[str, Any]:
    """The shipped sections for a local run: embedded storage, no Kafka, loopback, port 0."""
    sections = {key: value for key, value in document.items() if key not in ("kafka", "data_dir", "storage")}
    sections["receiver"] = {**sections["receiver"], "host": "127.0.0.1", "http_port": 0, "grpc_port": 0}
    sections["admin"] = {**sections["admin"], "host": "127.0.0.1", "port": 0, "token": None}
    return sections


@pytest.mark.parametrize("source", ["compose", "kubernetes"])
def test_shipped_admin_port_refuses_unauthenticated_query(source, tmp_path):
    document, service_name = _shipped(source)
    assert document["admin"]["host"] == "0.0.0.0" and "token" not in document["admin"]
    (tmp_path / "no-secret").mkdir()
    server = ObsloopProcess(tmp_path / "no-secret", **_embedded(document)).start()
    try:
        port = server.admin.rsplit(":", 1)[1]
        assert send(server.admin, path="/query?write=1", body=b"DROP TABLE otel_logs")[0] == 403
        assert send(server.admin, path="/query", body=b"SELECT 1", headers={"Authorization": "Bearer "})[0] == 403
        assert send(server.admin, "GET", "/metrics", headers={"Host": f"{service_name}:{port}"})[0] == 200
        assert send(server.admin, "GET", "/readyz")[0] == 200
        assert send(server.admin, "GET", "/metrics", headers={"Host": f"rebound.example:{port}"})[0] == 403
    finally:
        server.stop()

    # The Secret (k8s) or the shell (compose) gives the token as OBSLOOP_ADMIN__TOKEN.
    (tmp_path / "secret").mkdir()
    server = ObsloopProcess(tmp_path / "secret", **_embedded(document))
    server.environment = {"OBSLOOP_ADMIN__TOKEN": "shipped-admin-token"}
    server.start()
    try:
        assert send(server.admin, path="/query", body=b"SELECT 1")[0] == 401
        assert send(server.admin, path="/query", body=b"SELECT 1", headers={"Authorization": "Bearer nope"})[0] == 401
        authorized = {"Authorization": "Bearer shipped-admin-token"}
        assert send(server.admin, path="/query", body=b"SELECT 1", headers=authorized)[0] == 200
        status, body = send(server.admin, path="/query?write=1", body=b"DROP TABLE otel_logs", headers=authorized)
        assert status == 403 and b"allow_write_queries" in body
        server.admin_token = "shipped-admin-token"
        assert server.scalar("EXISTS TABLE otel_logs") == 1
    finally:
        server.stop()
