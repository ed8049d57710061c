"""Every panel, variable and annotation query, with Grafana's macros and variables expanded,
runs on the embedded engine against seeded data and returns something besides zeros."""

import clickhouse_connect
import pytest
from panel_data import DETECTIONS_MISSING, detections_ddl, meaningful, panel_queries, seed, time_range, variable_values

from obsloop.dashboards.macros import expand


@pytest.fixture(scope="module")
def run(chdb_client):
    """A query function on its own engine session, using a freshly seeded database."""
    database = "t_dashboard_panels"
    chdb_client.command(f"DROP DATABASE IF EXISTS {database}")
    chdb_client.command(f"CREATE DATABASE {database}")
    seed(chdb_client, database)
    client = clickhouse_connect.get_client(dsn=f"chdb://{chdb_client.path}", database=database)
    yield lambda sql: client.query(sql).result_rows
    client.close()


def _params():
    for query in panel_queries():
        marks = [pytest.mark.xfail(reason=DETECTIONS_MISSING, strict=True)] if (
            query.needs_detections and detections_ddl is None) else []
        yield pytest.param(query, id=query.id, marks=marks)


@pytest.mark.parametrize("query", list(_params()))
def test_panel_query_returns_rows(run, query):
    sql = expand(query.sql, variable_values(run, query.dashboard), time_range())
    assert "$" not in sql, sql
    rows = run(sql)
    assert rows and meaningful(rows), f"{query.id} returned {rows!r}:\n{sql}"
