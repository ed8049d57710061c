"""The write-ahead log's recovery rules and the sink's deduplication, against embedded chDB."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import pytest

from obsloop.demo.loadgen import ServerlessTraffic
from obsloop.pipelines.clickhouse_sink import ClickHouseSink
from obsloop.pipelines.schema import SchemaOptions
from obsloop.pipelines.wal import WriteAheadLog, iter_messages
from obsloop.schema import apply, ddl


def _wal(directory: Path, **options) -> WriteAheadLog:
    return WriteAheadLog(directory, ("traces", "logs"), max_bytes=options.get("max_bytes", 1 << 20),
                         max_age=60, fsync="never")


def test_segments_rotate_by_size_and_keep_order(tmp_path: Path) -> None:
    wal = _wal(tmp_path, max_bytes=100)
    for n in range(5):
        wal.append("logs", bytes([n]) * 60, items=1)
    first = wal.next_segment(timeout=0)
    assert first is not None and first.signal == "logs" and first.items == 2
    assert [m[0] for m in iter_messages(first.path.read_bytes())] == [0, 1]
    wal.done(first)
    assert not first.path.exists()
    assert wal.pending_segments() == 1  # [2, 3]; [4] is still open
    assert wal.pending_bytes() == 61 * 3  # 1 length byte + 60 payload bytes each


def test_recovery_closes_open_segments_and_drops_a_torn_tail(tmp_path: Path) -> None:
    wal = _wal(tmp_path)
    wal.append("traces", b"a" * 10, items=1)
    wal.append("traces", b"b" * 10, items=1)
    open_file = next((tmp_path / "traces").glob("*.open"))
    with open(open_file, "ab") as file:  # a write cut short by kill -9: never acknowledged
        file.write(bytes([50]) + b"c" * 7)
    recovered = _wal(tmp_path)
    segment = recovered.next_segment(timeout=0)
    assert segment is not None and segment.items is None
    assert list(iter_messages(segment.path.read_bytes())) == [b"a" * 10, b"b" * 10]
    assert recovered.pending_bytes() == segment.size == 22
    recovered.append("traces", b"d", items=1)
    recovered.rotate(force=True)
    recovered.done(segment)
    later = recovered.next_segment(timeout=0)
    assert later is not None and later.sequence > segment.sequence


def test_an_open_segment_with_nothing_whole_is_discarded(tmp_path: Path) -> None:
    (tmp_path / "logs").mkdir(parents=True)
    (tmp_path / "logs" / "000000000007-x.open").write_bytes(bytes([200, 1]))
    wal = _wal(tmp_path)
    assert wal.pending_segments() == 0
    assert not list((tmp_path / "logs").iterdir())


@pytest.fixture
def database(chdb_client, chdb_database: str) -> str:
    for statement in ddl(SchemaOptions(database=chdb_database)):
        chdb_client.command(statement)
    return chdb_database


def test_reinserting_a_segment_with_its_token_stores_it_once(tmp_path: Path, chdb_client, database: str) -> None:
    wal = _wal(tmp_path)
    request = ServerlessTraffic(seed=5).traces(32)
    spans = sum(len(ss.spans) for rs in request.resource_spans for ss in rs.scope_spans)
    wal.append("traces", request.SerializeToString(), items=spans)
    wal.rotate(force=True)
    segment = wal.next_segment(timeout=0)
    assert segment is not None
    sink = ClickHouseSink(lambda: chdb_client, database=database, embedded=True, schema_directory=tmp_path)
    before = chdb_client.command(f"SELECT count() FROM {database}.otel_traces")
    sink.insert_file("traces", segment.path, segment.token)
    sink.insert_file("traces", segment.path, segment.token)  # the replay after a crash
    assert chdb_client.command(f"SELECT count() FROM {database}.otel_traces") == before + spans
    sink.insert_file("traces", segment.path, segment.token + "-other")
    assert chdb_client.command(f"SELECT count() FROM {database}.otel_traces") == before + 2 * spans


VIEW_TARGETS = ("faas_windows", "faas_invocations", "otel_traces_trace_id_ts", "quality_predictions",
                "quality_labels")
"""The tables the materialized views over ``otel_logs`` and ``otel_traces`` fill."""


def _quality_and_invocation_logs() -> bytes:
    """An invocation report (cost, duration), a prediction and its ground truth."""
    from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest

    from obsloop.core import semconv

    request = ExportLogsServiceRequest()
    resource = request.resource_logs.add()
    resource.resource.attributes.add(key="service.name").value.string_value = "scorer"
    records = resource.scope_logs.add().log_records
    for event, attributes in [
        (semconv.INVOCATION_REPORT_EVENT, {semconv.FAAS_INVOCATION_ID: "inv-1", semconv.COST_USD: "0.5",
                                           semconv.FAAS_DURATION_MS: "120", semconv.CLOUD_PLATFORM: "aws_lambda"}),
        (semconv.PREDICTION_EVENT, {semconv.PREDICTION_ID: "p-1", semconv.PREDICTION_VALUE: "1",
                                    semconv.MODEL_NAME: "m", semconv.MODEL_VERSION: "1"}),
        (semconv.GROUND_TRUTH_EVENT, {semconv.PREDICTION_ID: "p-1", semconv.PREDICTION_LABEL: "1"}),
    ]:
        record = records.add(time_unix_nano=1_764_217_000_000_000_000, event_name=event)
        for key, value in attributes.items():
            record.attributes.add(key=key).value.string_value = value
    return request.SerializeToString()


def _view_rows(client, db: str) -> dict[str, float]:
    """Rows stored in each view's table (merges stopped: every insert's rows stay apart, so a
    duplicate shows, in ``faas_windows`` a second duration digest), and the summed cost."""
    rows: dict[str, float] = {t: client.command(f"SELECT count() FROM {db}.{t}") for t in VIEW_TARGETS}
    rows["faas_windows cost_usd"] = float(client.command(f"SELECT sum(cost_usd) FROM {db}.faas_windows"))
    return rows


@pytest.fixture(params=[1, 0], ids=["views-dedup-default-on", "views-dedup-default-off"])
def views_dedup_default(request: pytest.FixtureRequest, chdb_client) -> Iterator[int]:
    """The engine's default of ``deduplicate_blocks_in_dependent_materialized_views``: on in
    chDB's, off in the ClickHouse releases from 24.7 until it was switched on."""
    setting = "deduplicate_blocks_in_dependent_materialized_views"
    before = chdb_client.command(f"SELECT value FROM system.settings WHERE name = '{setting}'")
    chdb_client.command(f"SET {setting} = {request.param}")
    yield request.param
    chdb_client.command(f"SET {setting} = {before}")


def test_a_replayed_segment_adds_nothing_to_the_views_tables_and_a_new_one_with_equal_rows_does(
        tmp_path: Path, chdb_client, database: str, views_dedup_default: int) -> None:
    """The source tables drop a replay by its token; the views' tables must drop what the
    views make of it too (ClickHouse runs a dropped block through the views): else a crash
    between insert and segment deletion doubles ``faas_windows``' cost and adds a label."""
    for table in VIEW_TARGETS:
        chdb_client.command(f"SYSTEM STOP MERGES {database}.{table}")
    wal = _wal(tmp_path)
    payloads = {"logs": _quality_and_invocation_logs(), "traces": ServerlessTraffic(seed=5).traces(8).SerializeToString()}
    sink = ClickHouseSink(lambda: chdb_client, database=database, embedded=True, schema_directory=tmp_path)

    def insert_new_segments() -> list[tuple[str, Path, str]]:
        """Insert a segment of each payload; (signal, a copy of the segment, token) of each."""
        for signal, payload in payloads.items():
            wal.append(signal, payload, items=1)
        wal.rotate(force=True)
        inserted = []
        while (segment := wal.next_segment(timeout=0)) is not None:
            sink.insert_file(segment.signal, segment.path, segment.token)
            copy = tmp_path / f"{segment.token}.kept"
            copy.write_bytes(segment.path.read_bytes())
            inserted.append((segment.signal, copy, segment.token))
            wal.done(segment)
        return inserted

    segments = insert_new_segments()
    once = _view_rows(chdb_client, database)
    assert all(once[t] > 0 for t in VIEW_TARGETS), once
    assert once["faas_windows cost_usd"] == pytest.approx(0.5)
    for signal, path, token in segments:  # the replay after a crash
        sink.insert_file(signal, path, token)
    assert _view_rows(chdb_client, database) == once
    insert_new_segments()  # the same requests sent again: new segments, new tokens
    twice = _view_rows(chdb_client, database)
    assert twice == pytest.approx({name: 2 * value for name, value in once.items()})


def test_the_schema_sets_the_window_on_view_tables_an_older_schema_created_without_it(
        chdb_client, chdb_database: str) -> None:
    """``CREATE … IF NOT EXISTS`` leaves an existing table alone; applying the schema must
    still give every view's table the deduplication window."""
    from obsloop.pipelines.schema import DEDUPLICATION_SETTING, DEDUPLICATION_WINDOW

    window = f"{DEDUPLICATION_SETTING} = {DEDUPLICATION_WINDOW}"
    options = SchemaOptions(database=chdb_database)
    for statement in ddl(options):
        if any(f".{table} " in statement for table in VIEW_TARGETS) and statement.startswith("CREATE TABLE"):
            statement = statement.replace(f"\nSETTINGS {window}", "").replace(f", {window}", "")
        chdb_client.command(statement)

    def view_tables_settings() -> dict[str, bool]:
        views = chdb_client.query(
            f"SELECT create_table_query FROM system.tables WHERE database = '{chdb_database}' "
            "AND engine = 'MaterializedView'").result_rows
        targets = {re.search(r" TO `?\w+`?\.`?(\w+)`?", query).group(1) for (query,) in views}
        assert set(VIEW_TARGETS) <= targets
        return {target: window in chdb_client.command(
            f"SELECT create_table_query FROM system.tables WHERE database = '{chdb_database}' AND name = '{target}'")
            for target in sorted(targets)}

    assert not any(view_tables_settings().values())  # the older schema, as it was
    statements_run = apply(chdb_client, options)
    assert all(view_tables_settings().values())
    assert statements_run == len(ddl(options)) + len(VIEW_TARGETS)
    assert apply(chdb_client, options) == len(ddl(options))  # at the next start: nothing to alter


def test_loading_the_same_labels_twice_stores_them_twice(chdb_client, database: str) -> None:
    """``obsloop labels load`` carries no token and is an ``INSERT … SELECT``, which ClickHouse
    deduplicates only with one: each load is kept, the window of ``quality_labels`` aside (a
    label loaded again counts as a relabel; the latest by time wins in the quality join)."""
    from datetime import UTC, datetime

    from obsloop.detectors.labels_load import Label, insert_statements

    labels = [Label("p-1", "1", 1_764_217_000_000), Label("p-2", "0", None)]
    now = datetime(2026, 12, 5, tzinfo=UTC)
    for _ in range(2):
        for statement in insert_statements(labels, database, now):
            chdb_client.command(statement)
    rows = chdb_client.query(
        f"SELECT prediction_id, label, count() FROM {database}.quality_labels GROUP BY ALL ORDER BY ALL").result_rows
    assert rows == [("p-1", "1", 2), ("p-2", "0", 2)]


def test_insert_payloads_writes_a_batch(tmp_path: Path, chdb_client, database: str) -> None:
    traffic = ServerlessTraffic(seed=6)
    payloads = [traffic.logs(16).SerializeToString() for _ in range(3)]
    sink = ClickHouseSink(lambda: chdb_client, database=database, embedded=True, schema_directory=tmp_path)
    before = chdb_client.command(f"SELECT count() FROM {database}.otel_logs")
    sink.insert_payloads("logs", payloads, "batch-1")
    sink.insert_payloads("logs", payloads, "batch-1")
    assert chdb_client.command(f"SELECT count() FROM {database}.otel_logs") == before + 48
    event = chdb_client.command(f"SELECT any(EventName) FROM {database}.otel_logs")
    assert event == "obsloop.model.prediction"


def _logs_with(value) -> bytes:
    """One log record whose attribute ``a`` holds ``value`` (an AnyValue), beside a string."""
    from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest
    from opentelemetry.proto.common.v1.common_pb2 import KeyValue

    request = ExportLogsServiceRequest()
    record = request.resource_logs.add().scope_logs.add().log_records.add()
    record.time_unix_nano = 1_700_000_000_000_000_000
    record.body.string_value = "hello"
    record.attributes.append(KeyValue(key="a", value=value))
    record.attributes.add(key="s").value.string_value = "plain"
    return request.SerializeToString()


def test_a_segment_with_a_kvlist_value_is_stored_once_with_the_full_projection(
        tmp_path: Path, chdb_client, database: str) -> None:
    """Inserts try a scalars-only projection first; a key-value list makes ClickHouse refuse
    it, and the segment goes again with the full one under the same token."""
    from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue, KeyValueList

    kvlist = AnyValue(kvlist_value=KeyValueList(values=[KeyValue(key="k", value=AnyValue(int_value=42))]))
    sink = ClickHouseSink(lambda: chdb_client, database=database, embedded=True, schema_directory=tmp_path)
    sink.insert_payloads("logs", [_logs_with(AnyValue(string_value="scalar"))], "scalar-batch")
    sink.insert_payloads("logs", [_logs_with(kvlist)], "kvlist-batch")
    sink.insert_payloads("logs", [_logs_with(kvlist)], "kvlist-batch")  # a replay: stored once
    rows = chdb_client.query(
        f"SELECT LogAttributes['a'], LogAttributes['s'] FROM {database}.otel_logs ORDER BY LogAttributes['a']"
    ).result_rows
    assert rows == [("scalar", "plain"), ('{"k":42}', "plain")]


def test_an_outage_is_logged_once_and_the_segments_wait_in_the_log(
        tmp_path: Path, chdb_client, database: str, caplog: pytest.LogCaptureFixture) -> None:
    """ClickHouse unreachable for several attempts: one warning when it starts, one line
    when it ends, the segment stored once after it."""
    import logging
    import time

    from obsloop.core.selfmetrics import SelfMetrics
    from obsloop.pipelines.ingest import IngestPipeline

    down = {"attempts": 0}

    def connect():
        if down["attempts"] < 4:
            down["attempts"] += 1
            raise ConnectionError("ClickHouse unreachable")
        return chdb_client

    wal = _wal(tmp_path / "wal")
    sink = ClickHouseSink(connect, database=database, embedded=True, schema_directory=tmp_path)
    pipeline = IngestPipeline(wal, sink, SelfMetrics(), max_pending_bytes=1 << 30, rotate_interval=0.05)
    request = ServerlessTraffic(seed=7).traces(8)
    spans = sum(len(ss.spans) for rs in request.resource_spans for ss in rs.scope_spans)
    caplog.set_level(logging.DEBUG, logger="obsloop.pipelines.ingest")
    pipeline.submit("traces", request.SerializeToString(), spans)
    wal.rotate(force=True)
    pipeline.start()
    try:
        deadline = time.monotonic() + 30
        while (chdb_client.command(f"SELECT count() FROM {database}.otel_traces") < spans
               and time.monotonic() < deadline):
            time.sleep(0.05)
    finally:
        pipeline.stop(drain_timeout=5)
    assert chdb_client.command(f"SELECT count() FROM {database}.otel_traces") == spans
    messages = [(r.levelname, r.getMessage()) for r in caplog.records if r.levelno >= logging.INFO]
    assert [level for level, _ in messages] == ["WARNING", "INFO"], messages
    assert "segments not stored" in messages[0][1] and "stored again" in messages[1][1]
