"""The command line as a user runs it: schema, query (alone and through a running server), demo."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path


def obsloop(*args: str, cwd: Path, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "obsloop", *args], cwd=cwd, capture_output=True,
                          text=True, timeout=timeout)


def test_schema_and_query_without_a_server(tmp_path: Path) -> None:
    applied = obsloop("schema", "apply", cwd=tmp_path)
    assert applied.returncode == 0, applied.stderr
    assert "schema applied" in applied.stdout
    listed = obsloop("query", "SELECT name FROM system.tables WHERE name LIKE 'otel_metrics%' ORDER BY name",
                     "--format", "csv", cwd=tmp_path)
    assert listed.returncode == 0, listed.stderr
    assert listed.stdout.splitlines()[0] == "name"
    assert "otel_metrics_summary" in listed.stdout
    refused = obsloop("query", "DROP TABLE otel_logs", cwd=tmp_path)
    assert refused.returncode != 0 and "pass --write" in refused.stderr
    bad = obsloop("query", "SELECT nope FROM otel_logs", cwd=tmp_path)
    assert bad.returncode != 0 and "UNKNOWN_IDENTIFIER" in bad.stderr


def test_query_goes_through_the_running_server(obsloop, tmp_path: Path) -> None:
    import urllib.request

    from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest  # noqa: F401

    from obsloop.demo.loadgen import ServerlessTraffic

    body = ServerlessTraffic(seed=9).logs(8).SerializeToString()
    urllib.request.urlopen(urllib.request.Request(f"{obsloop.http}/v1/logs", data=body,
                                                  headers={"Content-Type": "application/x-protobuf"}))
    obsloop.wait_for("SELECT count() FROM otel_logs", 8)
    result = obsloop_cli = obsloop_query(obsloop, "SELECT count() AS n FROM otel_logs")
    assert result.returncode == 0, result.stderr
    assert json.loads(obsloop_cli.stdout.splitlines()[0]) == {"n": 8}
    table = obsloop_query(obsloop, "SELECT ServiceName, count() FROM otel_logs GROUP BY ServiceName", "table")
    assert "fraud-scorer" in table.stdout


def obsloop_query(server, sql: str, fmt: str = "json") -> subprocess.CompletedProcess[str]:
    return obsloop("--config", str(server.config_path), "query", sql, "--format", fmt, cwd=server.workdir)


def test_bad_configuration_exits_with_a_message(tmp_path: Path) -> None:
    (tmp_path / "obsloop.yaml").write_text("receiver:\n  port: 1\n")
    result = obsloop("serve", cwd=tmp_path)
    assert result.returncode == 2
    assert "unknown key 'receiver.port'" in result.stderr


def test_a_port_in_use_is_explained(tmp_path: Path) -> None:
    import socket

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        (tmp_path / "obsloop.yaml").write_text(
            f"receiver: {{http_port: {port}, grpc_port: 0}}\nadmin: {{port: 0}}\nclickhouse_http: {{port: 0}}\n")
        result = obsloop("serve", "--duration", "1", cwd=tmp_path)
    assert result.returncode == 2
    assert "address already in use" in result.stderr and "receiver.http_port" in result.stderr
    assert "Traceback" not in result.stderr


def test_config_is_accepted_after_the_sub_command(tmp_path: Path) -> None:
    """``obsloop schema show --config F`` reads F as ``obsloop --config F schema show`` does."""
    config = tmp_path / "elsewhere.yaml"
    config.write_text("storage:\n  database: otel_elsewhere\n")
    after = obsloop("schema", "show", "--config", str(config), cwd=tmp_path)
    before = obsloop("--config", str(config), "schema", "show", cwd=tmp_path)
    assert after.returncode == 0, after.stderr
    assert "`otel_elsewhere`.otel_logs" in after.stdout
    assert after.stdout == before.stdout
    nested = obsloop("feedback", "audit", "-c", str(tmp_path / "missing.yaml"), cwd=tmp_path)
    assert nested.returncode == 2 and "missing.yaml" in nested.stderr


def test_config_after_the_sub_command_does_not_erase_the_one_before() -> None:
    from obsloop.cli import build_parser

    assert build_parser().parse_args(["--config", "a.yaml", "serve"]).config == "a.yaml"
    assert build_parser().parse_args(["serve", "-c", "b.yaml"]).config == "b.yaml"
    assert build_parser().parse_args(["serve"]).config is None
