from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))

from obsloop_process import ObsloopProcess  # noqa: E402


@pytest.fixture(scope="session")
def chdb_client(tmp_path_factory):
    """The one embedded ClickHouse of the test session: chDB lets a process open a single
    data directory, whatever its path. Tests isolate themselves with a database each
    (``chdb_database``)."""
    from obsloop import clickhouse

    yield clickhouse.connect(f"chdb://{tmp_path_factory.mktemp('chdb')}")
    clickhouse.close_all()


@pytest.fixture
def chdb_database(chdb_client, request: pytest.FixtureRequest) -> str:
    """A fresh, empty database named after the test."""
    name = "t_" + "".join(c if c.isalnum() else "_" for c in request.node.name)[:60]
    chdb_client.command(f"DROP DATABASE IF EXISTS {name}")
    chdb_client.command(f"CREATE DATABASE {name}")
    return name


@pytest.fixture
def db(chdb_client, chdb_database: str) -> str:
    """The test's database in the session's chDB, with obsloop's tables."""
    from obsloop.pipelines.schema import SchemaOptions
    from obsloop.schema import ddl

    for statement in ddl(SchemaOptions(database=chdb_database)):
        chdb_client.command(statement)
    return chdb_database


@pytest.fixture
def obsloop_factory(tmp_path: Path) -> Iterator:
    """Start ``obsloop serve`` processes (config sections as keyword arguments)."""
    started: list[ObsloopProcess] = []

    def start(name: str = "obsloop", **config) -> ObsloopProcess:
        workdir = tmp_path / name
        workdir.mkdir(exist_ok=True)
        process = ObsloopProcess(workdir, **config).start()
        started.append(process)
        return process

    yield start
    for process in started:
        process.stop()


@pytest.fixture
def obsloop(obsloop_factory) -> ObsloopProcess:
    """A running ``obsloop serve`` on the embedded engine, free loopback ports."""
    return obsloop_factory()
