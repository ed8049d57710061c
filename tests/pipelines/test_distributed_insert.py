"""With ``storage.cluster`` set, the sink's inserts go to ``Distributed`` tables and must be
synchronous, or a worker would commit Kafka offsets for rows only queued on one node.

There is no ClickHouse cluster here: these tests check the statements and settings the sink
produces against the cluster DDL, and that the embedded engine (the same ClickHouse SQL)
accepts the setting on a real insert. Whether a cluster then waits for its shards is
ClickHouse's documented behaviour of the setting, not measured here.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from scale_out import traces_request

from obsloop.pipelines.clickhouse_sink import DISTRIBUTED_SYNC_SETTING, ClickHouseSink
from obsloop.pipelines.otlp_rows import MAPPINGS
from obsloop.pipelines.schema import SchemaOptions
from obsloop.schema import ddl


class RecordingClient:
    """The real chDB client, with the settings of every ``command`` noted on the way."""

    def __init__(self, client: Any) -> None:
        self._client = client
        self.settings: list[dict[str, Any]] = []

    def command(self, sql: str, **kwargs: Any) -> Any:
        self.settings.append(dict(kwargs.get("settings") or {}))
        return self._client.command(sql, **kwargs)


def distributed_tables(statements: list[str]) -> set[str]:
    return {m.group(1) for s in statements
            if (m := re.match(r"CREATE TABLE IF NOT EXISTS `[^`]+`\.(\w+) .*\nENGINE = Distributed\(", s))}


def test_with_a_cluster_every_table_the_sink_inserts_into_is_distributed_and_inserted_synchronously(
    tmp_path: Path,
) -> None:
    distributed = distributed_tables(ddl(SchemaOptions(database="otel", cluster="prod")))
    clustered = ClickHouseSink(lambda: None, database="otel", embedded=False, cluster="prod")
    single = ClickHouseSink(lambda: None, database="otel", embedded=False)
    for signal, mappings in MAPPINGS.items():
        for mapping in mappings:
            assert mapping.table in distributed, f"{mapping.table} is not a Distributed table"
            settings = clustered.insert_settings(mapping, signal, "token")
            assert settings[DISTRIBUTED_SYNC_SETTING] == 1
            assert settings["insert_deduplication_token"] == f"token-{mapping.table}"
            assert DISTRIBUTED_SYNC_SETTING not in single.insert_settings(mapping, signal, "token")


def test_the_engine_accepts_the_synchronous_insert_setting_on_a_real_insert(
    chdb_client: Any, chdb_database: str, tmp_path: Path
) -> None:
    for statement in ddl(SchemaOptions(database=chdb_database)):
        chdb_client.command(statement)
    recording = RecordingClient(chdb_client)
    sink = ClickHouseSink(lambda: recording, database=chdb_database, embedded=True, cluster="prod",
                          schema_directory=tmp_path / "format_schemas")
    batch = [traces_request("svc-a", 1, 5), traces_request("svc-b", 100, 3)]
    sink.insert_payloads("traces", batch, "batch-1")
    sink.insert_payloads("traces", batch, "batch-1")  # a replay: deduplicated as before
    assert [s[DISTRIBUTED_SYNC_SETTING] for s in recording.settings] == [1, 1]
    assert chdb_client.command(f"SELECT count() FROM {chdb_database}.otel_traces") == 8
