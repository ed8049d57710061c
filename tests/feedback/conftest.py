import re
from collections.abc import Iterator
from pathlib import Path

import pytest
from clickhouse_connect.driver.exceptions import ProgrammingError
from prometheus_client import CollectorRegistry

from obsloop import clickhouse as ch

from .receiver import Receiver


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    server = Receiver().start()
    yield server
    server.stop()


@pytest.fixture(scope="session")
def clickhouse(tmp_path_factory: pytest.TempPathFactory):
    """One embedded engine for the whole session: chDB allows one per data directory per
    process. Tests isolate themselves with their own database (see ``database``)."""
    try:
        return ch.connect(f"chdb://{tmp_path_factory.mktemp('chdb')}")
    except ProgrammingError as exc:
        # Another test folder opened the process's engine first: share its directory.
        match = re.search(r"already initialized with path '([^']+)'", str(exc))
        if match is None:
            raise
        return ch.connect(f"chdb://{match.group(1)}")


@pytest.fixture
def database(clickhouse, request: pytest.FixtureRequest) -> str:
    name = "t_" + "".join(c if c.isalnum() else "_" for c in request.node.name)[:60]
    clickhouse.command(f"DROP DATABASE IF EXISTS {name}")
    clickhouse.command(f"CREATE DATABASE {name}")
    return name


@pytest.fixture
def registry() -> CollectorRegistry:
    return CollectorRegistry()


@pytest.fixture
def workdir(tmp_path: Path) -> Path:
    return tmp_path
