"""The statement gate through clickhouse-connect, the way admin ``/query`` and ``obsloop
query`` run against a ClickHouse server (:func:`obsloop.clickhouse.checked_query`): attacks
refused before anything runs, a read run with ``readonly=1`` and the limits as its settings."""

from __future__ import annotations

import json

import clickhouse_connect
import pytest

from obsloop import clickhouse
from obsloop.query_gate import Refused


@pytest.fixture
def client(chdb_client, chdb_database):
    """A client of its own: the settings of a read stay on an embedded session."""
    own = clickhouse_connect.get_client(dsn=f"chdb://{chdb_client.path}", database=chdb_database)
    own.command("CREATE TABLE kept (a Int8) ENGINE = Memory")
    yield own
    own.close()


def test_attacks_are_refused_before_they_run(client, tmp_path):
    written = tmp_path / "out.csv"
    for sql, writes in ((f"SELECT * FROM file('{tmp_path}/x', 'LineAsString')", False),
                        (f"SELECT 1 INTO OUTFILE '{written}'", False),
                        ("/* /* */ SELECT 1 */ DROP TABLE kept", False),
                        (f"INSERT INTO FUNCTION file('{written}', 'CSV') SELECT 1", True),
                        ("SYSTEM DROP MARK CACHE", True)):
        with pytest.raises(Refused):
            clickhouse.checked_query(client, sql, writes=writes, limits={}, fmt="JSONCompact")
    assert not written.exists()
    assert client.command("EXISTS TABLE kept") == 1


def test_a_read_runs_readonly_and_limited(client):
    document = json.loads(clickhouse.checked_query(
        client, "SELECT getSetting('readonly') AS r, getSetting('max_result_rows') AS m", writes=False,
        limits={"max_result_rows": 5}, fmt="JSONCompact"))
    assert document["data"] == [[1, 5]]
    with pytest.raises(Exception, match="TOO_MANY_ROWS_OR_BYTES"):
        clickhouse.checked_query(client, "SELECT number FROM numbers(10)", writes=False,
                                 limits={"max_result_rows": 5}, fmt="JSONCompact")
