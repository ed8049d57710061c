"""Run a real ``obsloop serve`` process for tests, on free loopback ports and its own data."""

from __future__ import annotations

import json
import os
import secrets
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import yaml


class ObsloopProcess:
    """An ``obsloop serve`` subprocess; reads back through its admin ``/query`` endpoint."""

    def __init__(self, workdir: Path, **config: Any) -> None:
        self.workdir = workdir
        self.data_dir = workdir / "data"
        document: dict[str, Any] = {
            "data_dir": str(self.data_dir),
            "receiver": {"http_port": 0, "grpc_port": 0},
            "admin": {"port": 0, "token": secrets.token_urlsafe(16)},
            "clickhouse_http": {"port": 0},
            "wal": {"segment_max_age_seconds": 0.3},
            "logging": {"format": "json"},
        }
        for section, values in config.items():
            if isinstance(values, dict):
                document.setdefault(section, {}).update(values)
            else:
                document[section] = values
        self.data_dir = Path(document["data_dir"])
        self.admin_token: str | None = document["admin"].get("token")
        """What :meth:`query` sends as the admin bearer token (``admin={"token": ...}`` sets it)."""
        self.config_path = workdir / "obsloop.yaml"
        self.config_path.write_text(yaml.safe_dump(document))
        self.environment: dict[str, str] = {}
        """``OBSLOOP_*`` variables the process gets on top of this one's (a secret's, say)."""
        self.process: subprocess.Popen[bytes] | None = None
        self.log_path = workdir / "serve.log"
        self.endpoints: dict[str, Any] = {}

    def start(self, timeout: float = 60.0) -> ObsloopProcess:
        state = self.data_dir / "serve.json"
        state.unlink(missing_ok=True)
        self._log = open(self.log_path, "ab")  # noqa: SIM115 - lives as long as the process
        self.process = subprocess.Popen(
            [sys.executable, "-m", "obsloop", "--config", str(self.config_path), "serve"],
            stdout=self._log, stderr=subprocess.STDOUT, cwd=self.workdir, env={**os.environ, **self.environment},
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"obsloop serve exited:\n{self.log_path.read_text()[-3000:]}")
            if state.exists():
                try:
                    self.endpoints = json.loads(state.read_text())
                    break
                except json.JSONDecodeError:
                    pass
            time.sleep(0.05)
        else:
            raise TimeoutError(f"obsloop serve did not start:\n{self.log_path.read_text()[-3000:]}")
        return self

    @property
    def http(self) -> str:
        return self.endpoints["http"]

    @property
    def grpc(self) -> str:
        return self.endpoints["grpc"]

    @property
    def admin(self) -> str:
        return self.endpoints["admin"]

    def query(self, sql: str) -> list[dict[str, Any]]:
        request = urllib.request.Request(f"{self.admin}/query?format=json", data=sql.encode(), method="POST",
                                         headers={"Authorization": f"Bearer {self.admin_token}"})
        try:
            with urllib.request.urlopen(request, timeout=60) as response:
                document = json.load(response)
        except urllib.error.HTTPError as exc:
            raise AssertionError(f"query failed: {exc.read().decode()}") from None
        names = [column["name"] for column in document["meta"]]
        return [dict(zip(names, row, strict=True)) for row in document["data"]]

    def command(self, sql: str) -> None:
        """Run a statement that writes (``/query?write=1``; the server needs
        ``admin={"allow_write_queries": True}``)."""
        request = urllib.request.Request(f"{self.admin}/query?write=1", data=sql.encode(), method="POST",
                                         headers={"Authorization": f"Bearer {self.admin_token}"})
        try:
            with urllib.request.urlopen(request, timeout=60):
                pass
        except urllib.error.HTTPError as exc:
            raise AssertionError(f"statement failed: {exc.read().decode()}") from None

    def scalar(self, sql: str) -> Any:
        rows = self.query(sql)
        return next(iter(rows[0].values()))

    def wait_for(self, sql: str, expected: Any, timeout: float = 30.0) -> Any:
        deadline = time.monotonic() + timeout
        value = None
        while time.monotonic() < deadline:
            value = self.scalar(sql)
            if value == expected:
                return value
            time.sleep(0.1)
        raise AssertionError(f"{sql!r} returned {value!r}, expected {expected!r}")

    def get(self, path: str) -> tuple[int, str]:
        try:
            with urllib.request.urlopen(f"{self.admin}{path}", timeout=10) as response:
                return response.status, response.read().decode()
        except urllib.error.HTTPError as exc:
            return exc.code, exc.read().decode()

    def stop(self, timeout: float = 60.0) -> int:
        if self.process is None or self.process.poll() is not None:
            return self.process.returncode if self.process else 0
        self.process.send_signal(signal.SIGTERM)
        return self.process.wait(timeout)

    def kill(self) -> None:
        assert self.process is not None
        os.kill(self.process.pid, signal.SIGKILL)
        self.process.wait(10)
