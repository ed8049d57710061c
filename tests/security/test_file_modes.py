"""What obsloop writes is its user's only: directories 0700, files 0600, whatever the umask."""

from __future__ import annotations

import os
import stat
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest

from obsloop.collectors.checkpoint import CheckpointStore
from obsloop.core.files import private_dir, write_private
from obsloop.core.selfmetrics import SelfMetrics
from obsloop.demo.loadgen import ServerlessTraffic
from obsloop.pipelines.clickhouse_sink import ClickHouseSink
from obsloop.pipelines.ingest import IngestPipeline
from obsloop.pipelines.protobuf_schema import write_schema_file
from obsloop.pipelines.schema import SchemaOptions
from obsloop.pipelines.wal import WriteAheadLog
from obsloop.schema import ddl

GROUP_OR_OTHER = stat.S_IRWXG | stat.S_IRWXO


@pytest.fixture
def open_umask() -> Iterator[None]:
    """The most permissive umask: modes then come from the code alone."""
    previous = os.umask(0)
    yield
    os.umask(previous)


def exposed(root: Path) -> list[str]:
    """Paths under ``root`` (itself included) that the group or others may use."""
    found = []
    for path in [root, *root.rglob("*")]:
        try:
            mode = path.lstat().st_mode
        except FileNotFoundError:  # a live server deletes stored segments while we walk
            continue
        if not stat.S_ISLNK(mode) and mode & GROUP_OR_OTHER:
            found.append(f"{oct(mode & 0o777)} {path.relative_to(root.parent)}")
    return found


def test_helpers_create_private_directories_and_files(tmp_path: Path, open_umask) -> None:
    target = private_dir(tmp_path / "a" / "b" / "c")
    write_private(target / "state.json", "{}")
    write_private(target / "state.json", "{}")  # rewriting keeps it private
    assert exposed(tmp_path / "a") == []
    existing = tmp_path / "shared"
    existing.mkdir(mode=0o750)
    os.chmod(existing, 0o750)
    private_dir(existing)
    assert stat.S_IMODE(existing.stat().st_mode) == 0o750  # an existing directory is its owner's call


def test_wal_checkpoints_and_format_schemas_are_private(tmp_path: Path, open_umask) -> None:
    wal = WriteAheadLog(tmp_path / "data" / "wal", ("logs",), max_bytes=1 << 20, max_age=60, fsync="never")
    wal.append("logs", ExportLogsServiceRequest().SerializeToString() + b"x", 1)
    wal.rotate(force=True)
    CheckpointStore(tmp_path / "data" / "checkpoints", "aws").put("group", {"token": "t"})
    write_schema_file(tmp_path / "data" / "format_schemas")
    assert len(list((tmp_path / "data").rglob("*.seg*"))) == 1
    assert exposed(tmp_path / "data") == []


def test_a_quarantined_segment_stays_private(tmp_path: Path, chdb_client, chdb_database: str,
                                            open_umask) -> None:
    """A segment ClickHouse keeps refusing (not Protobuf) is moved to ``quarantine/``."""
    for statement in ddl(SchemaOptions(database=chdb_database)):
        chdb_client.command(statement)
    wal = WriteAheadLog(tmp_path / "data" / "wal", ("traces",), max_bytes=1 << 20, max_age=60, fsync="never")
    sink = ClickHouseSink(lambda: chdb_client, database=chdb_database, embedded=True,
                          schema_directory=tmp_path / "data" / "format_schemas")
    pipeline = IngestPipeline(wal, sink, SelfMetrics(), max_pending_bytes=1 << 30, rotate_interval=0.05)
    wal.append("traces", b"\xff" * 64, 1)
    wal.rotate(force=True)
    pipeline.start()
    quarantine = tmp_path / "data" / "wal" / "quarantine"
    try:
        deadline = time.monotonic() + 60
        while not list(quarantine.rglob("*.seg")) and time.monotonic() < deadline:
            time.sleep(0.1)
    finally:
        pipeline.stop(drain_timeout=1)
    assert len(list(quarantine.rglob("*.seg"))) == 1
    assert exposed(tmp_path / "data") == []


def test_a_served_data_directory_is_private(obsloop_factory) -> None:
    """A real ``obsloop serve`` started under a permissive umask (002): the embedded engine's
    files, WAL segments, format schemas, state file, detector state: none group or other
    readable."""
    previous = os.umask(0o002)
    try:
        server = obsloop_factory()
    finally:
        os.umask(previous)
    body = ServerlessTraffic(seed=3).logs(8).SerializeToString()
    request = urllib.request.Request(f"{server.http}/v1/logs", data=body,
                                     headers={"Content-Type": "application/x-protobuf"})
    with urllib.request.urlopen(request, timeout=10) as response:
        assert response.status == 200
    server.wait_for("SELECT count() FROM otel_logs", 8)
    assert (server.data_dir / "serve.json").is_file() and (server.data_dir / "wal" / "logs").is_dir()
    assert any(path.is_file() for path in (server.data_dir / "clickhouse").rglob("*"))
    assert any((server.data_dir / "format_schemas").iterdir())
    found = exposed(server.data_dir)
    server.stop()
    assert found == [], found
