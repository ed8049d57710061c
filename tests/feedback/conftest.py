from collections.abc import Iterator
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry

from feedback.receiver import Receiver


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    server = Receiver().start()
    yield server
    server.stop()


@pytest.fixture
def clickhouse(chdb_client):
    """The session's embedded engine (see tests/conftest.py)."""
    return chdb_client


@pytest.fixture
def database(chdb_database: str) -> str:
    return chdb_database


@pytest.fixture
def registry() -> CollectorRegistry:
    return CollectorRegistry()


@pytest.fixture
def workdir(tmp_path: Path) -> Path:
    return tmp_path
