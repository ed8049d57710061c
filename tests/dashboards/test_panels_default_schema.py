"""Every panel, variable and annotation query runs without an error on an installation that
has only the schema obsloop creates by itself, before any data or feedback loop exists: on
the embedded engine after ``obsloop schema apply``'s statements, and through a default
``obsloop serve``'s ClickHouse HTTP interface (what Grafana queries when there is no
ClickHouse server). Queries are expanded as Grafana and its ClickHouse plugin expand them."""

import clickhouse_connect
import pytest
from obsloop_process import ObsloopProcess
from panel_data import panel_queries, seed, time_range, variable_values

from obsloop.dashboards.macros import expand
from obsloop.pipelines.schema import SchemaOptions
from obsloop.schema import ddl


def _run_every_query(run) -> dict[str, str]:
    """Every dashboard query's error, by query id (empty when all ran)."""
    errors = {}
    for query in panel_queries():
        try:
            sql = expand(query.sql, variable_values(run, query.dashboard), time_range())
            run(sql)
        except Exception as exc:  # noqa: BLE001 - collected, the test lists every failure
            errors[query.id] = str(exc).splitlines()[0][:300]
    return errors


def test_every_query_runs_on_the_applied_schema(chdb_client, chdb_database):
    for statement in ddl(SchemaOptions(database=chdb_database)):
        chdb_client.command(statement)
    client = clickhouse_connect.get_client(dsn=f"chdb://{chdb_client.path}", database=chdb_database)
    try:
        assert _run_every_query(lambda sql: client.query(sql).result_rows) == {}
    finally:
        client.close()


@pytest.mark.slow
def test_every_query_runs_on_a_default_obsloop_serve(tmp_path):
    server = ObsloopProcess(tmp_path).start()
    try:
        host, port = server.endpoints["clickhouse_http"].removeprefix("http://").split(":")
        client = clickhouse_connect.get_client(host=host, port=int(port), username="default")
        try:
            assert _run_every_query(lambda sql: client.query(sql).result_rows) == {}
        finally:
            client.close()
    finally:
        server.stop()


def test_spend_without_a_cost_center_is_shown_as_unassigned(chdb_client, chdb_database):
    """The per-cost-center panels add up to the total spend; the seed has a function without one."""
    seed(chdb_client, chdb_database)
    client = clickhouse_connect.get_client(dsn=f"chdb://{chdb_client.path}", database=chdb_database)
    queries = {q.title: q.sql for q in panel_queries() if q.dashboard == "obsloop-cost"}

    def run(sql):
        return client.query(sql).result_rows

    try:
        values = variable_values(run, "obsloop-cost")
        [(total,)] = run(expand(queries["Spend in range"], values, time_range()))
        per_center = run(expand(queries["Spend per cost center"], values, time_range()))
        table = run(expand(queries["Cost centers"], values, time_range()))
    finally:
        client.close()
    assert {row[1] for row in per_center} == {"risk", "media", "unassigned"}
    assert sum(row[2] for row in per_center) == pytest.approx(total)
    assert "unassigned" in {row[0] for row in table}
