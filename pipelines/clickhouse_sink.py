"""Insert write-ahead segments into ClickHouse, which parses the OTLP bytes itself.

Python never flattens a span: the segment file (embedded engine) or its bytes as the
request body (a server) go to ``INSERT … SELECT`` over the ``Protobuf`` format with the
projections of :mod:`obsloop.pipelines.otlp_rows`. Each insert carries a deduplication
token derived from the segment, so a retry after a crash stores nothing twice.

With a cluster (``storage.cluster``) the tables inserted into are ``Distributed`` ones
(:mod:`obsloop.pipelines.schema`), which by default acknowledge an insert once the rows are
queued on the local disk of the node that received it and forward them to the shards later.
A caller that deletes a segment or commits a Kafka offset after the insert returned would
then count as stored what is only queued on one node. The sink therefore sets
``distributed_foreground_insert = 1`` (``insert_distributed_sync`` before ClickHouse 23.11,
which renamed it and kept the old name as an alias; a server older than that rejects the new
name): the insert returns only after every shard stored its rows (one replica of each, with
``internal_replication``), and the deduplication token goes with them to the replicated
local tables.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

from clickhouse_connect.driver.client import Client

from obsloop.pipelines.otlp_rows import MAPPINGS, RowMapping
from obsloop.pipelines.protobuf_schema import format_settings, write_schema_file
from obsloop.pipelines.wal import _VarintBytes

DISTRIBUTED_SYNC_SETTING = "distributed_foreground_insert"
"""Makes an ``INSERT`` into a ``Distributed`` table return after the shards stored it."""


def _sql_string(value: str) -> str:
    return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"


class ClickHouseSink:
    def __init__(
        self,
        client: Callable[[], Client],
        *,
        database: str,
        embedded: bool,
        ensure_schema: Callable[[], object] | None = None,
        schema_directory: Path | None = None,
        cluster: str | None = None,
    ) -> None:
        self._connect = client
        """Called for every use: connecting may fail while ClickHouse is down, and is retried."""
        self._database = database
        self._embedded = embedded
        self._ensure_schema = ensure_schema
        """Run before the first insert; the server starts even while ClickHouse is down."""
        self._cluster = cluster
        """Set: the tables are ``Distributed`` ones, inserted into synchronously."""
        self._schema_file = None
        if embedded:
            self._schema_file = write_schema_file(schema_directory or Path(tempfile.gettempdir()) / "obsloop")

    def insert_settings(self, mapping: RowMapping, signal: str, token: str) -> dict[str, Any]:
        """The settings of one table's insert: the Protobuf input format, the deduplication
        token of this batch and table, and with a cluster the synchronous Distributed insert."""
        settings: dict[str, Any] = {
            **format_settings(signal, self._schema_file),
            "insert_deduplication_token": f"{token}-{mapping.table}",
        }
        if self._cluster:
            settings[DISTRIBUTED_SYNC_SETTING] = 1
        return settings

    def _insert(self, mapping: RowMapping, signal: str, path: Path, token: str) -> None:
        settings = self.insert_settings(mapping, signal, token)
        if self._embedded:
            source = f"file({_sql_string(str(path))}, 'Protobuf', {_sql_string(mapping.structure)})"
            self._connect().command(mapping.insert(self._database, source), settings=settings)
        else:
            source = f"input({_sql_string(mapping.structure)})"
            sql = mapping.insert(self._database, source) + "\nFORMAT Protobuf"
            self._connect().command(sql, data=path.read_bytes(), settings=settings)

    def insert_file(self, signal: str, path: Path, token: str) -> None:
        """Insert one length-delimited segment into every table of its signal."""
        if self._ensure_schema is not None:
            self._ensure_schema()
            self._ensure_schema = None
        for mapping in MAPPINGS[signal]:
            self._insert(mapping, signal, path, token)

    def insert_payloads(self, signal: str, payloads: list[bytes], token: str) -> None:
        """Insert validated requests that are not in a segment yet (e.g. a consumed batch)."""
        fd, name = tempfile.mkstemp(prefix=f"obsloop-{signal}-", suffix=".seg")
        try:
            with os.fdopen(fd, "wb") as file:
                for payload in payloads:
                    file.write(_VarintBytes(len(payload)))
                    file.write(payload)
            self.insert_file(signal, Path(name), token)
        finally:
            os.unlink(name)

    def ping(self) -> bool:
        try:
            return self._connect().command("SELECT 1") == 1
        except Exception:  # noqa: BLE001 - any failure means "not reachable"
            return False
