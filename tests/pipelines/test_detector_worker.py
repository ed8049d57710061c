"""``obsloop detector-worker`` against a real tansu broker and the session's chDB: workers
split the functions by partition, a partition's whole detector state moves through its
checkpoint when its owner leaves, and detections land in the detections table."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from kafka import KafkaConsumer
from obsloop_process import ObsloopProcess
from scale_out import WorkerProcess, kafka_section, wait_for
from tansu_broker import free_port

from obsloop.config import Config, StorageConfig
from obsloop.detectors.builtin import SeriesScoring
from obsloop.detectors.config import DetectorsConfig, DriftConfig
from obsloop.pipelines.kafka_config import KafkaConfig
from obsloop.pipelines.kafka_consumer import OwnedPartition
from obsloop.pipelines.kafka_publisher import OtlpPublisher
from obsloop.workers.detector import DetectorWorker, PartitionHost
from obsloop.workers.detector_partitions import partition_of

T0 = datetime(2026, 3, 2, 12, 0, tzinfo=UTC)
FUNCTIONS = [f"model-fn-{n}" for n in range(8)]


def series_id(function: str, metric: str = "p95_ms") -> str:
    return f"aws_lambda|{function}|fraud|2.1.0#{metric}"


def insert_minutes(client: Any, db: str, functions: list[str], first: int, last: int,
                   slow: dict[str, int] | None = None) -> None:
    """20 SERVER spans per function in each minute ``first..last`` (at second 5), 40-60 ms;
    ``slow[function] = m`` makes that function 8x slower from minute ``m``. One INSERT, so a
    detector never sees some functions' minutes without the others' (which would be data
    arriving later than the allowed lateness, and read as a throughput drop)."""
    slow = slow or {}
    factor = " ".join(f"f = '{f}' AND m >= {m} ? 8 :" for f, m in slow.items()) + " 1"
    client.command(f"""
INSERT INTO {db}.otel_traces (Timestamp, TraceId, SpanId, SpanName, SpanKind, ServiceName,
    ResourceAttributes, SpanAttributes, Duration, StatusCode)
SELECT toDateTime64('{T0:%Y-%m-%d %H:%M:%S}', 9, 'UTC') + toIntervalMinute(m) + toIntervalSecond(5)
        + (number % 20) / 1000,
    hex(cityHash64(f, m, number)), toString(number), 'invoke', 'Server', f,
    map('faas.name', f, 'cloud.platform', 'aws_lambda'),
    map('model.name', 'fraud', 'model.version', '2.1.0', 'faas.trigger', 'http'),
    toUInt64((40 + cityHash64(f, m, number) % 21) * ({factor}) * 1e6), 'Unset'
FROM (SELECT arrayJoin({functions!r}) AS f, {first} + intDiv(number, 20) AS m, number
      FROM numbers({(last - first + 1) * 20}))""")


def traces_partitions(config: KafkaConfig) -> int:
    OtlpPublisher(config).close()  # creates the topics
    probe = KafkaConsumer(bootstrap_servers=config.bootstrap_servers)
    partitions = len(probe.partitions_for_topic("otlp_traces") or ())
    probe.close()
    return partitions


def worker_config(name: str, kafka: KafkaConfig, db: str, tmp_path: Path) -> Config:
    """A detector worker's configuration: its own data directory, the shared checkpoints."""
    return Config(
        data_dir=tmp_path / name,
        storage=StorageConfig(database=db),
        kafka=kafka.model_copy(update={"detector_checkpoint_dir": tmp_path / "checkpoints"}),
        detectors=DetectorsConfig(window_seconds=60, allowed_lateness_seconds=30, warmup_windows=20,
                                  poll_seconds=0.1, drift=DriftConfig(enabled=False)),
    )


class RunningWorker:
    """A :class:`DetectorWorker` stepping in its own thread, on the session's chDB."""

    def __init__(self, name: str, kafka: KafkaConfig, client: Any, db: str, tmp_path: Path,
                 config: Config | None = None) -> None:
        config = config or worker_config(name, kafka, db, tmp_path)
        self.worker = DetectorWorker(config, client=lambda: client)
        self.worker.join()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self.worker.run_until, args=(self._stop,))
        self._thread.start()

    def owned(self) -> set[OwnedPartition]:
        return self.worker.owned()

    def hosts(self) -> dict[OwnedPartition, PartitionHost]:
        return dict(self.worker.hosts.states)

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=30)
        self.worker.close()


def learned(host: PartitionHost, function: str) -> int:
    """Points the function's p95 model has seen (0: no model)."""
    scoring = host.detector(SeriesScoring)
    model = None if scoring is None else scoring.scorer.pool.get(series_id(function))
    return 0 if model is None else model.n


def test_two_workers_split_functions_and_a_leaving_workers_state_moves_through_its_checkpoint(
    kafka_config: KafkaConfig, chdb_client: Any, db: str, tmp_path: Path
) -> None:
    partitions = traces_partitions(kafka_config)
    every = {OwnedPartition("traces", p) for p in range(partitions)}
    home = {f: OwnedPartition("traces", partition_of(f, partitions)) for f in FUNCTIONS}
    assert len(set(home.values())) > 1, "the functions must span several partitions"
    # Minutes 0..50: event time reaches 50:10, the watermark 49:40: windows 0..48 close.
    insert_minutes(chdb_client, db, FUNCTIONS, 0, 50)
    closed = T0 + timedelta(minutes=49)

    first = RunningWorker("first", kafka_config, chdb_client, db, tmp_path)
    second: RunningWorker | None = None
    try:
        wait_for(lambda: first.owned() == every, what="the first worker owning every partition")
        wait_for(lambda: all(host.closed_until == closed for host in first.hosts().values()),
                 what="the first worker catching up")
        for function, partition in home.items():
            assert learned(first.hosts()[partition], function) == 49
            others = [host for p, host in first.hosts().items() if p != partition]
            assert all(learned(host, function) == 0 for host in others), "one owner per function"

        # From now on the learned history exists only in the workers' state and checkpoints:
        # a host that started afresh would find no window to learn from.
        chdb_client.command(f"TRUNCATE TABLE {db}.faas_windows")

        second = RunningWorker("second", kafka_config, chdb_client, db, tmp_path)
        wait_for(lambda: bool(first.owned()) and bool(second.owned())
                 and first.owned() | second.owned() == every, timeout_s=60,  # a rebalance: slower when loaded
                 what="the two workers sharing the partitions")
        assert not first.owned() & second.owned()
        for function, partition in home.items():
            owner = first if partition in first.owned() else second
            host = owner.hosts()[partition]
            assert host.closed_until == closed and learned(host, function) == 49
            assert host.restored or owner is first
        # Cooperative rebalancing: the first worker gave up only what moved, and kept the
        # rest in memory, never saved and reloaded.
        assert first.worker.metrics.assigned.labels("restored")._value.get() == 0

        first.stop()
        first = None
        wait_for(lambda: second.owned() == every, what="the second worker taking over every partition")
        for function, partition in home.items():
            host = second.hosts()[partition]
            assert host.restored, f"{partition} started afresh instead of from its checkpoint"
            assert host.closed_until == closed
            assert learned(host, function) == 49, "the restored model lost its learned history"
        restored = second.worker.metrics.assigned.labels("restored")._value.get()
        assert restored >= partitions and second.worker.metrics.assigned.labels("fresh")._value.get() == 0

        # The survivor scores on from where the history stopped: window 49 onwards, one
        # function 8x slower from minute 55; event time 70:10 closes windows up to 68.
        target = FUNCTIONS[3]
        insert_minutes(chdb_client, db, FUNCTIONS, 49, 70, slow={target: 55})
        query = (f"SELECT id, toUnixTimestamp(time), observed['p95_ms'] > expected_high['p95_ms'], cleared "
                 f"FROM {db}.detections WHERE kind = 'latency' AND series['faas.name'] = '{target}' "
                 f"AND time > '{T0 + timedelta(minutes=49):%Y-%m-%d %H:%M:%S}' ORDER BY time")
        wait_for(lambda: bool(chdb_client.query(query).result_rows), what="the slow function's detection")
        wait_for(lambda: all(host.closed_until == T0 + timedelta(minutes=69)
                             for host in second.hosts().values()), what="the survivor catching up")
        rows = chdb_client.query(query).result_rows
        # At the end of the first slow window (minute 55), above the expected range, and once
        # more, the same episode, when the next window confirms it (confirm_after_windows).
        opened = int((T0 + timedelta(minutes=56)).timestamp())
        assert rows == [(rows[0][0], opened, 1, False), (rows[0][0], opened + 60, 1, False)], rows
        throughput = chdb_client.command(
            f"SELECT count() FROM {db}.detections WHERE kind = 'throughput' AND time > '{closed:%Y-%m-%d %H:%M:%S}'")
        assert throughput == 0, "a window was read before all its data had arrived"
        assert learned(second.hosts()[home[target]], FUNCTIONS[3]) == 69
    finally:
        for running in (second, first):
            if running is not None:
                running.stop()


def test_checkpoint_of_another_partition_count_is_not_restored(
    kafka_config: KafkaConfig, chdb_client: Any, db: str, tmp_path: Path
) -> None:
    """After the topic gains partitions, functions hash elsewhere: old state must not load."""
    partitions = traces_partitions(kafka_config)
    insert_minutes(chdb_client, db, FUNCTIONS, 0, 10)
    stale = tmp_path / "checkpoints" / f"traces-0-of-{partitions + 1}.json"
    stale.parent.mkdir(parents=True)
    stale.write_text('{"version": 1}')
    running = RunningWorker("only", kafka_config, chdb_client, db, tmp_path)
    try:
        wait_for(lambda: len(running.owned()) == partitions, what="the worker owning every partition")
        assert not any(host.restored for host in running.hosts().values())
        assert running.worker.metrics.assigned.labels("fresh")._value.get() == partitions
    finally:
        running.stop()
    assert (tmp_path / "checkpoints" / f"traces-0-of-{partitions}.json").exists()


def test_an_evicted_worker_drops_its_partitions_unsaved(
    kafka_config: KafkaConfig, chdb_client: Any, db: str, tmp_path: Path
) -> None:
    """Missing the poll deadline gets a member evicted; the group may have handed its
    partitions on, so writing their checkpoints now could overwrite the new owner's."""
    partitions = traces_partitions(kafka_config)
    insert_minutes(chdb_client, db, FUNCTIONS, 0, 20)
    kafka = kafka_config.model_copy(update={"max_poll_interval_ms": 1_500})
    worker = DetectorWorker(worker_config("evicted", kafka, db, tmp_path), client=lambda: chdb_client)
    worker.join()
    try:
        deadline = time.monotonic() + 30
        while len(worker.owned()) < partitions or any(host.closed_until is None for host in worker.hosts.states.values()):
            assert time.monotonic() < deadline, "the worker did not own and score every partition"
            worker.step(poll_ms=100)
        assert worker.metrics.assigned.labels("fresh")._value.get() == partitions
        time.sleep(3)  # no poll for twice the poll deadline: the heartbeat thread leaves the group
        assigned = worker.metrics.assigned
        deadline = time.monotonic() + 30
        while assigned.labels("fresh")._value.get() + assigned.labels("restored")._value.get() < 2 * partitions:
            assert time.monotonic() < deadline, "the worker did not rejoin after its eviction"
            worker.step(poll_ms=100)
        assert not list((tmp_path / "checkpoints").glob("*.json")), "a lost partition was checkpointed"
        assert assigned.labels("restored")._value.get() == 0
    finally:
        worker.close()
    # A clean leave saves every partition, and the global state (this worker owned partition 0).
    assert len(list((tmp_path / "checkpoints").glob("traces-*.json"))) == partitions
    assert (tmp_path / "checkpoints" / "global.json").exists()


class DetectorWorkerProcess(WorkerProcess):
    command = "detector-worker"


def test_detector_worker_command_joins_serves_probes_and_checkpoints_on_sigterm(
    kafka_config: KafkaConfig, tmp_path: Path
) -> None:
    traces_partitions(kafka_config)
    workdir = tmp_path / "process"
    workdir.mkdir()
    checkpoints = tmp_path / "shared-checkpoints"
    process = DetectorWorkerProcess(
        workdir, kafka=kafka_section(kafka_config, detector_checkpoint_dir=str(checkpoints)),
        detectors={"poll_seconds": 0.2}).start()
    try:
        assert process.get("/healthz")[0] == 200
        wait_for(lambda: "obsloop_detector_worker_partitions 0.0" not in process.get("/metrics")[1]
                 and "obsloop_detector_worker_partitions" in process.get("/metrics")[1],
                 what="partitions assigned to the process")
        wait_for(lambda: process.get("/readyz")[0] == 200, what="/readyz answering 200")
    finally:
        assert process.stop() == 0
    assert sorted(p.name for p in checkpoints.glob("traces-*.json")), "no checkpoint written at stop"


def test_detector_worker_with_feedback_starts_while_clickhouse_is_down_and_connects_when_it_answers(
    kafka_config: KafkaConfig, tmp_path: Path
) -> None:
    """ClickHouse (a server over HTTP) does not answer at start: the worker stays up, joins
    the group, answers /readyz with 503 naming storage and feedback, and logs the outage
    once however often it retries. Then a ClickHouse-compatible endpoint comes up on that
    port (``obsloop serve``'s HTTP interface, writable): the worker creates its tables and
    the feedback loop's, and becomes ready, without a restart."""
    traces_partitions(kafka_config)
    port = free_port()  # nothing listens here until the endpoint below starts
    workdir = tmp_path / "worker"
    workdir.mkdir()
    worker = DetectorWorkerProcess(
        workdir, storage={"dsn": f"http://127.0.0.1:{port}/"},
        kafka=kafka_section(kafka_config, detector_checkpoint_dir=str(tmp_path / "checkpoints")),
        detectors={"poll_seconds": 0.2},
        feedback={"enabled": True, "git": {"remote": str(tmp_path / "gitops.git")}}).start()

    def readiness() -> tuple[int, dict[str, str]]:
        status, body = worker.get("/readyz")
        return status, json.loads(body)

    try:
        down = (503, {"storage": "unreachable", "kafka": "ok", "feedback": "connecting"})
        wait_for(lambda: readiness() == down, what="/readyz naming ClickHouse while the group is joined")
        time.sleep(4)  # retries after 1 s and 2 s, for the worker's steps and the feedback each
        assert worker.process is not None and worker.process.poll() is None
        assert readiness() == down
        log = worker.log_path.read_text()
        assert log.count("ClickHouse not answering; retrying with backoff") == 1, log[-3000:]
        assert log.count("feedback waiting for ClickHouse") == 1, log[-3000:]

        (tmp_path / "clickhouse").mkdir()
        clickhouse = ObsloopProcess(tmp_path / "clickhouse", clickhouse_http={"port": port, "read_only": False},
                                    detectors={"enabled": False}).start()
        try:
            # The backoff has grown to 4-8 s by now: ready within one more round of retries.
            wait_for(lambda: readiness() == (200, {"storage": "ok", "kafka": "ok", "feedback": "ok"}),
                     timeout_s=60, what="/readyz answering 200 once ClickHouse answers")
            tables = {row["name"] for row in clickhouse.query(
                "SELECT name FROM system.tables WHERE database = 'default'")}
            assert {"feedback_audit", "feedback_dead_letters"} <= tables  # created by the worker only
            log = worker.log_path.read_text()
            assert log.count("ClickHouse answering again") == 1, log[-3000:]
            assert log.count("feedback connected to ClickHouse") == 1, log[-3000:]
            assert worker.process.poll() is None
        finally:
            assert worker.stop() == 0
            clickhouse.stop()
    finally:
        worker.stop()


@pytest.mark.parametrize("command", ["ingest-worker", "detector-worker"])
def test_worker_commands_refuse_a_configuration_without_kafka(command: str, tmp_path: Path) -> None:
    config = tmp_path / "obsloop.yaml"
    config.write_text(f"data_dir: {tmp_path / 'data'}\n")
    result = subprocess.run([sys.executable, "-m", "obsloop", "--config", str(config), command],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 2
    assert f"obsloop {command}: {config} has no kafka: section" in result.stderr.strip()


@pytest.mark.parametrize("command", ["ingest-worker", "detector-worker"])
@pytest.mark.parametrize(("flags", "message"), [
    (["--duration", "0"], "--duration must be positive"),
    (["--group", " "], "--group must name a consumer group"),
])
def test_worker_commands_refuse_bad_flags(command: str, flags: list[str], message: str, tmp_path: Path) -> None:
    config = tmp_path / "obsloop.yaml"
    config.write_text(f"data_dir: {tmp_path / 'data'}\nkafka: {{}}\n")
    result = subprocess.run([sys.executable, "-m", "obsloop", "--config", str(config), command, *flags],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 2
    assert f"obsloop {command}: {message}" in result.stderr


def test_detector_worker_refuses_disabled_detectors_bad_flags_and_an_empty_group(tmp_path: Path) -> None:
    config = tmp_path / "obsloop.yaml"
    config.write_text(f"data_dir: {tmp_path / 'data'}\nkafka: {{}}\ndetectors: {{enabled: false}}\n")
    command = [sys.executable, "-m", "obsloop", "--config", str(config), "detector-worker"]
    result = subprocess.run(command, capture_output=True, text=True, timeout=60)
    assert result.returncode == 2 and "detectors.enabled is false" in result.stderr
    config.write_text(f"data_dir: {tmp_path / 'data'}\nkafka: {{}}\n")
    result = subprocess.run([*command, "--duration", "0"], capture_output=True, text=True, timeout=60)
    assert result.returncode == 2 and "--duration must be positive" in result.stderr
    result = subprocess.run([*command, "--group", " "], capture_output=True, text=True, timeout=60)
    assert result.returncode == 2 and "--group must name a consumer group" in result.stderr
    config.write_text(f"data_dir: {tmp_path / 'data'}\nkafka: {{detector_group: ''}}\n")
    result = subprocess.run(command, capture_output=True, text=True, timeout=60)
    assert result.returncode == 2 and "kafka.detector_group" in result.stderr
    for feedback in ("{enabled: true}", "{enabled: true, git: {remote: ''}}"):
        config.write_text(f"data_dir: {tmp_path / 'data'}\nkafka: {{}}\nfeedback: {feedback}\n")
        result = subprocess.run(command, capture_output=True, text=True, timeout=60)
        assert result.returncode == 2, result.stderr
        assert result.stderr.strip() == (f"obsloop detector-worker: feedback.enabled needs feedback.git.remote "
                                         f"(the GitOps repository, a URL or a path) ({config})"), result.stderr
