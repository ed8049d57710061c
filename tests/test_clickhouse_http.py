"""obsloop serve's ClickHouse HTTP interface with its defaults (read-only) plus a password:
clickhouse-connect's HTTP client, and raw HTTP for the parts of the protocol it does not show."""

import gzip
import json
import struct
import urllib.error
import urllib.parse
import urllib.request
from base64 import b64encode
from datetime import datetime

import clickhouse_connect
import pytest
from clickhouse_connect.driver.exceptions import DatabaseError
from obsloop_process import ObsloopProcess

PASSWORD = "grafana-pw"
AUTH = {"Authorization": "Basic " + b64encode(f"default:{PASSWORD}".encode()).decode()}


@pytest.fixture(scope="module")
def url(tmp_path_factory):
    server = ObsloopProcess(tmp_path_factory.mktemp("clickhouse_http"),
                            clickhouse_http={"port": 0, "password": PASSWORD}).start()
    yield server.endpoints["clickhouse_http"]
    server.stop()


@pytest.fixture(scope="module")
def client(url):
    host, port = url.removeprefix("http://").split(":")
    client = clickhouse_connect.get_client(host=host, port=int(port), username="default", password=PASSWORD)
    yield client
    client.close()


def _http(url, params=None, body=None, headers=None, method=None):
    request = urllib.request.Request(f"{url}/?{urllib.parse.urlencode(params or {})}", data=body,
                                     headers={**AUTH, **(headers or {})}, method=method)
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, dict(response.headers), response.read()
    except urllib.error.HTTPError as error:
        return error.code, dict(error.headers), error.read()


def test_clickhouse_connect_reads_native_types(client):
    assert client.server_version.startswith("26.")
    rows = client.query(
        "SELECT toDateTime('2026-01-02 03:04:05', 'UTC') AS t, map('a', 'b') AS m, [1, 2] AS a, "
        "CAST(NULL AS Nullable(Float64)) AS n, toLowCardinality('x') AS lc, {name:String} AS p",
        parameters={"name": "it's"}).result_rows
    assert rows == [(datetime(2026, 1, 2, 3, 4, 5), {"a": "b"}, [1, 2], None, "x", "it's")]
    assert client.query("SELECT count() FROM otel_traces").result_rows == [(0,)]


def test_write_is_refused_with_readonly(client):
    with pytest.raises(DatabaseError) as refused:
        client.command("CREATE TABLE t_written (a Int8) ENGINE = Memory")
    assert "Code: 164" in str(refused.value) and "(READONLY)" in str(refused.value)
    assert client.query("EXISTS TABLE t_written").result_rows == [(0,)]


def test_malformed_query_gets_the_engines_own_exception(url, chdb_client):
    import chdb

    status, headers, body = _http(url, body=b"SELEC 1")
    session = chdb.connect(chdb_client.path)
    try:
        with pytest.raises(Exception) as direct:
            session.query("SELEC 1", "TabSeparated")
    finally:
        session.close()
    assert (status, headers["X-ClickHouse-Exception-Code"]) == (400, "62")
    assert body.decode().strip() == str(direct.value).strip()


def test_unknown_table_and_setting_map_to_not_found(url):
    status, headers, body = _http(url, body=b"SELECT * FROM no_such_table")
    assert (status, headers["X-ClickHouse-Exception-Code"]) == (404, "60")
    assert b"(UNKNOWN_TABLE)" in body
    status, headers, _ = _http(url, {"no_such_setting": "1"}, b"SELECT 1")
    assert (status, headers["X-ClickHouse-Exception-Code"]) == (404, "115")


def test_authentication(url):
    status, headers, body = _http(url, body=b"SELECT 1", headers={"Authorization": ""})
    assert (status, headers["X-ClickHouse-Exception-Code"]) == (403, "516")
    assert b"Authentication failed" in body
    assert _http(url, body=b"SELECT 1", headers={"Authorization": "", "X-ClickHouse-User": "default",
                                                  "X-ClickHouse-Key": PASSWORD})[0] == 200
    assert _http(url, {"user": "default", "password": PASSWORD}, b"SELECT 1", headers={"Authorization": ""})[0] == 200


def test_query_parameter_formats_and_headers(url):
    status, headers, body = _http(url, {"query": "SELECT number FROM numbers(3)", "default_format": "JSONCompact"})
    assert status == 200 and json.loads(body)["data"] == [[0], [1], [2]]
    assert headers["X-ClickHouse-Format"] == "JSONCompact"
    assert json.loads(headers["X-ClickHouse-Summary"])["read_rows"] == "3"
    status, headers, body = _http(url, body=b"SELECT toUInt32(number) FROM numbers(2) FORMAT RowBinary")
    assert body == struct.pack("<II", 0, 1) and headers["X-ClickHouse-Format"] == "RowBinary"
    assert _http(url, body=b"SELECT 1 + 1")[2] == b"2\n"  # TabSeparated by default


def test_database_and_settings_do_not_leak_between_requests(url):
    assert _http(url, {"database": "system"}, b"SELECT currentDatabase()")[2] == b"system\n"
    status, headers, _ = _http(url, {"max_result_rows": "1", "result_overflow_mode": "throw"},
                               b"SELECT number FROM numbers(5)")
    assert headers["X-ClickHouse-Exception-Code"] == "396"
    assert _http(url, body=b"SELECT currentDatabase(), count() FROM numbers(5)")[2] == b"default\t5\n"


def test_http_compression_both_ways(url):
    status, headers, body = _http(url, {"enable_http_compression": "1"}, gzip.compress(b"SELECT 42"),
                                  {"Content-Encoding": "gzip", "Accept-Encoding": "gzip"})
    assert status == 200 and headers["Content-Encoding"] == "gzip" and gzip.decompress(body) == b"42\n"
    status, headers, body = _http(url, {"compress": "1"}, b"SELECT 1")
    assert (status, headers["X-ClickHouse-Exception-Code"]) == (501, "48")


def test_ping(url):
    with urllib.request.urlopen(f"{url}/ping", timeout=10) as response:
        assert response.read() == b"Ok.\n"


def test_the_shared_server_client_takes_queries_from_several_threads_at_once(url):
    """obsloop shares one client per process between threads (inserter, detectors, feedback):
    with clickhouse-connect's default session id, a second query while one runs is refused."""
    from concurrent.futures import ThreadPoolExecutor

    from obsloop import clickhouse

    client = clickhouse.connect(url, username="default", password=PASSWORD)
    try:
        with ThreadPoolExecutor(4) as pool:
            results = list(pool.map(lambda n: client.command(f"SELECT sleep(0.3) + {n}"), range(4)))
        assert results == [0, 1, 2, 3]
    finally:
        client.close()  # only this one: close_all would close the suite's embedded engine too
