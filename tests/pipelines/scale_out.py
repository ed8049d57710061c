"""Helpers for the scale-out tests: OTLP requests, posting them, an ingest-worker process,
waiting for a condition."""

from __future__ import annotations

import json
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

from obsloop_process import ObsloopProcess
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

from obsloop.pipelines.kafka_config import KafkaConfig


def wait_for(condition: Callable[[], bool], timeout_s: float = 30, what: str = "condition") -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, f"{what} not reached in {timeout_s} s"
        time.sleep(0.05)


def traces_request(service: str, first_id: int, spans: int, *, attributes: dict[str, str] | None = None,
                   duration_ns: int = 100_000) -> bytes:
    """An export request of ``spans`` spans with ids from ``first_id`` (unique per test),
    each with ``attributes`` (the benchmark's spans carry a model name, like real ones)."""
    request = ExportTraceServiceRequest()
    resource_spans = request.resource_spans.add()
    resource_spans.resource.attributes.add(key="service.name").value.string_value = service
    scope = resource_spans.scope_spans.add()
    for n in range(first_id, first_id + spans):
        span = scope.spans.add(trace_id=n.to_bytes(16, "big"), span_id=n.to_bytes(8, "big"), name="predict",
                               start_time_unix_nano=1_700_000_000_000_000_000 + n,
                               end_time_unix_nano=1_700_000_000_000_000_000 + n + duration_ns)
        for key, value in (attributes or {}).items():
            span.attributes.add(key=key).value.string_value = value
    return request.SerializeToString()


def post(http: str, signal: str, body: bytes, timeout: float = 10) -> tuple[int, dict[str, str]]:
    request = urllib.request.Request(f"{http}/v1/{signal}", data=body,
                                     headers={"Content-Type": "application/x-protobuf"})
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return response.status, dict(response.headers)
    except urllib.error.HTTPError as exc:
        return exc.code, dict(exc.headers)


def kafka_section(config: KafkaConfig, **overrides: Any) -> dict[str, Any]:
    """The ``kafka:`` section of a YAML configuration for ``config``."""
    return {**json.loads(config.model_dump_json()), **overrides}


class WorkerProcess(ObsloopProcess):
    """An ``obsloop ingest-worker`` (or ``command``) subprocess on its own data directory;
    reads back through its admin ``/query`` endpoint (the same helpers as a ``serve`` process)."""

    command = "ingest-worker"

    def start(self, timeout: float = 60.0) -> WorkerProcess:
        state = self.data_dir / "serve.json"
        state.unlink(missing_ok=True)
        self._log = open(self.log_path, "ab")  # noqa: SIM115 - lives as long as the process
        self.process = subprocess.Popen(
            [sys.executable, "-m", "obsloop", "--config", str(self.config_path), self.command],
            stdout=self._log, stderr=subprocess.STDOUT, cwd=self.workdir,
        )
        deadline = time.monotonic() + timeout
        while not state.exists() or not state.read_text().endswith("}"):
            if self.process.poll() is not None:
                raise RuntimeError(f"{self.command} exited:\n{self.log_path.read_text()[-3000:]}")
            if time.monotonic() > deadline:
                raise TimeoutError(f"{self.command} did not start:\n{self.log_path.read_text()[-3000:]}")
            time.sleep(0.05)
        self.endpoints = json.loads(state.read_text())
        return self


def start_worker(workdir: Path, config: KafkaConfig, **sections: Any) -> WorkerProcess:
    workdir.mkdir(exist_ok=True)
    return WorkerProcess(workdir, kafka=kafka_section(config), **sections).start()
