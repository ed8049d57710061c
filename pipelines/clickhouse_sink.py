"""Insert write-ahead segments into ClickHouse, which parses the OTLP bytes itself.

Python never flattens a span: the segment file (embedded engine) or its bytes as the
request body (a server) go to ``INSERT … SELECT`` over the ``Protobuf`` format with the
projections of :mod:`obsloop.pipelines.otlp_rows`. Each insert carries a deduplication
token derived from the segment, so a retry after a crash stores nothing twice, in the
materialized views' tables too: the sink asks for ``deduplicate_blocks_in_dependent_materialized_views``.
Inserts into a cluster's ``Distributed`` tables are synchronous, so what returned is stored on its shards.
Design: docs/design/view-deduplication.md, docs/design/distributed-foreground-insert.md,
docs/design/deferred-skip-indexes.md.
"""

from __future__ import annotations

import dataclasses
import os
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from clickhouse_connect.driver.client import Client

from obsloop.core.sql import quote
from obsloop.pipelines.otlp_rows import COMPLEX_VALUE_MARKER, MAPPINGS, RowMapping
from obsloop.pipelines.protobuf_schema import format_settings, write_schema_file
from obsloop.pipelines.wal import _VarintBytes

DISTRIBUTED_SYNC_SETTING = "distributed_foreground_insert"
"""Makes an ``INSERT`` into a ``Distributed`` table return after the shards stored it."""

DEPENDENT_VIEWS_DEDUP_SETTING = "deduplicate_blocks_in_dependent_materialized_views"
"""Makes the materialized views' target tables drop a replayed block as the source does."""


_SEGMENT_PATH = "\x00segment\x00"
"""Stands for the segment's path in a cached ``INSERT`` text (a NUL never occurs in SQL)."""


_INSERT_SQL: dict[tuple[int, str, bool, bool], tuple[RowMapping, str]] = {}


def _insert_sql(mapping: RowMapping, database: str, embedded: bool, scalars_only: bool) -> str:
    """One table's ``INSERT … SELECT`` text (3-14 KB of projections), built once per table:
    the embedded engine's with a placeholder for the segment file, a server's over ``input()``."""
    key = (id(mapping), database, embedded, scalars_only)
    cached = _INSERT_SQL.get(key)
    if cached is not None and cached[0] is mapping:
        return cached[1]
    structure = quote(mapping.input_structure(scalars_only))
    if embedded:
        sql = mapping.insert(database, f"file({_SEGMENT_PATH}, 'Protobuf', {structure})", scalars_only)
    else:
        sql = mapping.insert(database, f"input({structure})", scalars_only) + "\nFORMAT Protobuf"
    _INSERT_SQL[key] = (mapping, sql)
    return sql


DEFERRED_SKIP_INDEXES = (
    "idx_res_attr_key", "idx_res_attr_value", "idx_scope_attr_key", "idx_scope_attr_value",
    "idx_log_attr_key", "idx_log_attr_value", "idx_span_attr_key", "idx_span_attr_value",
    "idx_attr_key", "idx_attr_value",
)
"""The exporter's bloom filters over attribute map keys and values, built by the merges
rather than by the insert (embedded engine; ``exclude_materialize_skip_indexes_on_insert``):
a merge builds them again anyway, and they were the insert's largest cost after parsing.
Design: docs/design/deferred-skip-indexes.md."""

FULL_PROJECTION_SEGMENTS = 100
"""Segments a table is inserted with the full projection after one held an array or
key-value list value, before the scalars-only projection is tried again: a stream that often
carries such values parses at most one segment in a hundred twice."""


class ClickHouseSink:
    deferred_skip_indexes: tuple[str, ...] = DEFERRED_SKIP_INDEXES
    """Skip indexes left to the merges (:data:`DEFERRED_SKIP_INDEXES`); empty builds all on insert."""

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
        self._check_mappings: dict[str, RowMapping] = {}
        """Table → the same mapping into its Null-engine copy (see :meth:`check_payloads`)."""
        self._full_projection: dict[str, int] = {}
        """Table → segments still to insert with the full projection (see ``_insert``)."""
        self._schema_file = None
        if embedded:
            self._schema_file = write_schema_file(schema_directory or Path(tempfile.gettempdir()) / "obsloop")

    def insert_settings(self, mapping: RowMapping, signal: str, token: str) -> dict[str, Any]:
        """The settings of one table's insert: the Protobuf input format, the deduplication
        token of this batch and table (its views' tables deduplicate too), and with a cluster
        the synchronous Distributed insert."""
        settings: dict[str, Any] = {
            **format_settings(signal, self._schema_file),
            "insert_deduplication_token": f"{token}-{mapping.table}",
            DEPENDENT_VIEWS_DEDUP_SETTING: 1,
        }
        if self._cluster:
            settings[DISTRIBUTED_SYNC_SETTING] = 1
        if self._embedded and self.deferred_skip_indexes:
            settings["exclude_materialize_skip_indexes_on_insert"] = ", ".join(self.deferred_skip_indexes)
        return settings

    def _insert(self, mapping: RowMapping, signal: str, path: Path, token: str) -> None:
        """Insert with the scalars-only projection, or the full one when a value of the
        segment is an array or key-value list (rare: ClickHouse raises, the segment goes
        again). Both run under the same deduplication token, and the blocks a failed attempt
        may have stored (a segment past ``min_insert_block_size_rows``) hold the very rows the
        full projection makes of them, so the second attempt skips them: nothing twice."""
        settings = self.insert_settings(mapping, signal, token)
        remaining = self._full_projection.get(mapping.table, 0)
        if mapping.scalar_columns is not None and remaining == 0:
            try:
                self._command(_insert_sql(mapping, self._database, self._embedded, True), path, settings)
                return
            except Exception as exc:
                if COMPLEX_VALUE_MARKER not in str(exc):
                    raise
                remaining = FULL_PROJECTION_SEGMENTS
        self._command(_insert_sql(mapping, self._database, self._embedded, False), path, settings)
        self._full_projection[mapping.table] = max(remaining - 1, 0)

    def _command(self, sql: str, path: Path, settings: dict[str, Any]) -> None:
        if self._embedded:
            self._connect().command(sql.replace(_SEGMENT_PATH, quote(str(path)), 1), settings=settings)
        else:
            self._connect().command(sql, data=path.read_bytes(), settings=settings)

    def _schema_ready(self) -> None:
        if self._ensure_schema is not None:
            self._ensure_schema()
            self._ensure_schema = None

    def insert_file(self, signal: str, path: Path, token: str) -> None:
        """Insert one length-delimited segment into every table of its signal."""
        self._schema_ready()
        for mapping in MAPPINGS[signal]:
            self._insert(mapping, signal, path, token)

    def insert_payloads(self, signal: str, payloads: list[bytes], token: str) -> None:
        """Insert validated requests that are not in a segment yet (e.g. a consumed batch)."""
        with self._segment(signal, payloads) as path:
            self.insert_file(signal, path, token)

    def check_payloads(self, signal: str, payloads: list[bytes]) -> None:
        """Raise what inserting ``payloads`` raises, storing nothing: the same insert
        (projections, conversion to the column types) into a Null-engine copy of each table,
        ``<table>_insert_check``, created the first time (on the node that answers, with a
        cluster). How a refused segment is searched for the requests ClickHouse cannot read
        (:mod:`obsloop.pipelines.quarantine`)."""
        self._schema_ready()
        with self._segment(signal, payloads) as path:
            for mapping in MAPPINGS[signal]:
                self._insert(self._check_mapping(mapping), signal, path, "check")

    def _check_mapping(self, mapping: RowMapping) -> RowMapping:
        check = self._check_mappings.get(mapping.table)
        if check is None:
            check = dataclasses.replace(mapping, table=f"{mapping.table}_insert_check")
            self._connect().command(
                f"CREATE TABLE IF NOT EXISTS `{self._database}`.`{check.table}` "
                f"AS `{self._database}`.`{mapping.table}` ENGINE = Null")
            self._check_mappings[mapping.table] = check
        return check

    @contextmanager
    def _segment(self, signal: str, payloads: list[bytes]) -> Iterator[Path]:
        """``payloads`` as a temporary length-delimited segment file."""
        fd, name = tempfile.mkstemp(prefix=f"obsloop-{signal}-", suffix=".seg")
        try:
            with os.fdopen(fd, "wb") as file:
                for payload in payloads:
                    file.write(_VarintBytes(len(payload)))
                    file.write(payload)
            yield Path(name)
        finally:
            os.unlink(name)

    def ping(self) -> bool:
        try:
            return self._connect().command("SELECT 1") == 1
        except Exception:  # noqa: BLE001 - any failure means "not reachable"
            return False
