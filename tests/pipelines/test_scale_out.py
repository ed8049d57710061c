"""Scale-out end to end: ``obsloop serve`` with a ``kafka:`` section publishes, real
``obsloop ingest-worker`` processes store into their own embedded ClickHouse."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
from scale_out import WorkerProcess, kafka_section, post, start_worker, traces_request

from obsloop.pipelines.kafka_config import KafkaConfig

pytestmark = pytest.mark.slow

SPANS_PER_REQUEST = 5


def test_published_spans_are_stored_exactly_once_and_publishing_survives_a_broker_restart(
    tansu, kafka_config: KafkaConfig, obsloop_factory, tmp_path: Path
) -> None:
    receiver = obsloop_factory("receiver", kafka=kafka_section(kafka_config))
    worker = start_worker(tmp_path / "worker", kafka_config)
    services = [f"svc-{n}" for n in range(6)]
    for n in range(30):
        status, _ = post(receiver.http, "traces", traces_request(services[n % 6], n * 100, SPANS_PER_REQUEST))
        assert status == 200
    worker.wait_for("SELECT count() FROM otel_traces", 150, timeout=60)
    per_service = worker.query("SELECT ServiceName AS s, count() AS n FROM otel_traces GROUP BY s ORDER BY s")
    assert per_service == [{"s": s, "n": 25} for s in services]
    assert worker.get("/readyz")[0] == 200
    assert receiver.get("/readyz")[0] == 200

    tansu.stop()
    status, headers = post(receiver.http, "traces", traces_request("svc-0", 10_000, SPANS_PER_REQUEST))
    assert status == 503
    assert headers["Retry-After"] == "1"
    assert receiver.get("/readyz")[0] == 503

    tansu.start()
    deadline = time.monotonic() + 30
    while post(receiver.http, "traces", traces_request("svc-1", 20_000, SPANS_PER_REQUEST))[0] != 200:
        assert time.monotonic() < deadline, "the receiver did not publish again after the restart"
        time.sleep(0.5)
    deadline = time.monotonic() + 10
    while receiver.get("/readyz")[0] != 200:
        assert time.monotonic() < deadline, "the receiver did not become ready again"
        time.sleep(0.2)
    # Storage after the restart is not checked here: tansu 0.6.0 restarted with memory
    # storage acknowledges produces but then serves empty fetches for them (seen with fresh
    # consumers too), so no consumer could read them; the crash test covers the workers.


DYING_WORKER = """
import os, sys
from obsloop.config import load_config
from obsloop.pipelines.ingest_worker import IngestWorker
from obsloop.pipelines.kafka_consumer import IngestConsumer

worker = IngestWorker(load_config(sys.argv[1]))

def insert_then_die(signal, payloads, token):
    worker.insert(signal, payloads, token)
    print(len(payloads), flush=True)
    os._exit(17)  # ClickHouse has the batch; the offset commit never happens

consumer = IngestConsumer(worker.kafka, worker.group_id, insert_then_die)
while True:
    consumer.poll_once(timeout_ms=200)
"""


def test_worker_killed_between_insert_and_commit_loses_nothing_and_doubles_nothing(
    kafka_config: KafkaConfig, obsloop_factory, tmp_path: Path
) -> None:
    receiver = obsloop_factory("receiver", kafka=kafka_section(kafka_config))
    for n in range(20):
        assert post(receiver.http, "traces", traces_request("svc", n * 100, SPANS_PER_REQUEST))[0] == 200

    workdir = tmp_path / "worker"
    workdir.mkdir()
    dying = WorkerProcess(workdir, kafka=kafka_section(kafka_config))
    script = tmp_path / "dying_worker.py"
    script.write_text(DYING_WORKER)
    crashed = subprocess.run([sys.executable, str(script), str(dying.config_path)], capture_output=True,
                             text=True, timeout=60, cwd=workdir, env={**os.environ, "PYTHONUNBUFFERED": "1"})
    assert crashed.returncode == 17, crashed.stderr[-3000:]
    inserted_before_crash = int(crashed.stdout.split()[-1])
    assert inserted_before_crash > 0

    # More arrives while no worker runs; the replay must still cut the same first batch.
    for n in range(20, 40):
        assert post(receiver.http, "traces", traces_request("svc", n * 100, SPANS_PER_REQUEST))[0] == 200
    worker = WorkerProcess(workdir, kafka=kafka_section(kafka_config)).start()  # same data directory
    worker.wait_for("SELECT count() FROM otel_traces", 40 * SPANS_PER_REQUEST, timeout=60)
    time.sleep(1.0)  # a duplicate would land now
    assert worker.scalar("SELECT count() FROM otel_traces") == 40 * SPANS_PER_REQUEST
    assert worker.scalar("SELECT uniqExact(SpanId) FROM otel_traces") == 40 * SPANS_PER_REQUEST
    worker.stop()
