"""What no partition sees whole, in ``obsloop detector-worker``: the owner of partition 0
scores model drift and cost-center spend, and hands that state over through its checkpoint;
and a worker with ``feedback.enabled`` alerts and commits on the detections it produces.
Against a real tansu broker, the session's chDB, a real bare Git remote and a real HTTP
receiver on 127.0.0.1."""

from __future__ import annotations

import asyncio
import sys
import time
from datetime import timedelta
from pathlib import Path
from typing import Any

from scale_out import wait_for
from test_detector_worker import (
    FUNCTIONS,
    T0,
    RunningWorker,
    insert_minutes,
    traces_partitions,
    worker_config,
)

from obsloop.collectors.config import CollectorsConfig
from obsloop.config import AdminConfig, Config
from obsloop.detectors.builtin import ModelQuality, SeriesScoring
from obsloop.detectors.config import DetectorsConfig, DriftConfig
from obsloop.detectors.host import DetectorHost
from obsloop.detectors.model_drift import ModelDrift
from obsloop.detectors.scoring import COST_CENTER_PREFIX
from obsloop.detectors.window_detector import Scope
from obsloop.feedback.config import FeedbackConfig, GitConfig, NotifierConfig
from obsloop.pipelines.kafka_config import KafkaConfig
from obsloop.pipelines.kafka_consumer import OwnedPartition
from obsloop.workers.detector import DetectorWorker

# The feedback tests' Git and HTTP fixtures; appended, so `conftest` stays this directory's.
sys.path.append(str(Path(__file__).resolve().parent.parent / "feedback"))

from gitrepos import git, log, make_remote, show  # noqa: E402
from manifests_data import SEED  # noqa: E402
from receiver import Receiver  # noqa: E402

MODEL = ("fraud", "2.1.0")


def insert_predictions(client: Any, db: str, normal: int, shifted: int, shift_minute: int = 1) -> None:
    """``normal`` prediction events from T0, 100 a second, ``amount`` around 10; then
    ``shifted`` ones from ``shift_minute`` with ``amount`` around 13 (a covariate shift)."""
    client.command(f"""
INSERT INTO {db}.otel_logs (Timestamp, ServiceName, ResourceAttributes, LogAttributes, EventName)
SELECT toDateTime64('{T0:%Y-%m-%d %H:%M:%S}', 9, 'UTC') + if(n < {normal}, n / 100, {shift_minute * 60} + (n - {normal}) / 100),
    'model-fn-0', map('faas.name', 'model-fn-0'),
    map('model.name', '{MODEL[0]}', 'model.version', '{MODEL[1]}', 'prediction', toString((cityHash64(n, 7) % 100) / 100.0),
        'feature.amount', toString(if(n < {normal}, 10, 13) + (cityHash64(n, 3) % 1000) / 500.0)),
    'obsloop.model.prediction'
FROM (SELECT number AS n FROM numbers({normal + shifted}))""")


def drift_rows(client: Any, db: str) -> list[tuple[str, str]]:
    return client.query(f"SELECT id, series['model.version'] FROM {db}.detections WHERE kind = 'drift'").result_rows


def seen(host: DetectorHost | None) -> int:
    """Prediction events the model version's drift monitor has learned (0: none)."""
    drift = None if host is None else host.detector(ModelDrift)
    monitor = None if drift is None else drift.tracker.monitors.get(MODEL)
    return 0 if monitor is None else monitor.seen


def test_the_owner_of_partition_0_scores_drift_and_its_successor_resumes_from_the_checkpoint(
    kafka_config: KafkaConfig, chdb_client: Any, db: str, tmp_path: Path
) -> None:
    every = {OwnedPartition("traces", p) for p in range(traces_partitions(kafka_config))}
    drift = DriftConfig(reference_size=300, post_change=200)

    def start(name: str) -> RunningWorker:
        config = worker_config(name, kafka_config, db, tmp_path)
        config.detectors.drift = drift  # the workers' own setting; partition hosts have no drift
        return RunningWorker(name, kafka_config, chdb_client, db, tmp_path, config=config)

    first, second = start("first"), start("second")
    running = [first, second]
    try:
        wait_for(lambda: bool(first.owned()) and bool(second.owned())
                 and first.owned() | second.owned() == every, what="the two workers sharing the partitions")
        leader, other = (first, second) if OwnedPartition("traces", 0) in first.owned() else (second, first)
        assert leader.worker.fleet_host is not None and other.worker.fleet_host is None
        assert leader.worker.metrics.leader._value.get() == 1 and other.worker.metrics.leader._value.get() == 0

        # 45 s of predictions, the shift from minute 1; the fleet's spans up to 3:10 put the
        # watermark at 2:40, so minutes 0 and 1 close and every prediction is read.
        insert_predictions(chdb_client, db, 3000, 1500)
        insert_minutes(chdb_client, db, FUNCTIONS, 0, 3)
        closed = T0 + timedelta(minutes=2)
        wait_for(lambda: bool(drift_rows(chdb_client, db)), what="a drift detection", timeout_s=60)
        fleet_host = leader.worker.fleet_host
        assert fleet_host is not None
        wait_for(lambda: fleet_host.closed_until == closed, what="the leader reading both minutes")
        [(drift_id, version)] = drift_rows(chdb_client, db)
        assert version == MODEL[1] and drift_id.startswith("drift-fraud-2.1.0-")
        assert seen(fleet_host) == 4500
        # Only the leader scored it: the other worker has no fleet host, and no partition
        # host of either worker runs a drift detector.
        assert all(host.detector(ModelDrift) is None and host.detector(ModelQuality) is None
                   for w in (leader, other) for host in w.hosts().values())
        assert fleet_host.detector(ModelQuality) is not None  # model quality too: once, in the leader
        assert (leader.worker.config.data_dir / "reports" / f"{drift_id}.html").exists(), "no drift report"

        running.remove(leader)
        leader.stop()
        assert (tmp_path / "checkpoints" / "global.json").exists()
        wait_for(lambda: other.owned() == every and other.worker.fleet_host is not None,
                 what="the other worker taking over partition 0")
        successor = other.worker.fleet_host
        assert successor is not None and successor.restored, "the global state started afresh"
        assert successor.closed_until == closed and seen(successor) == 4500
        assert other.worker.metrics.leader._value.get() == 1

        # It goes on from there: 600 more predictions of the new regime, in minute 2, are
        # learned once, on top of the restored count, and are no new drift.
        insert_predictions(chdb_client, db, 0, 600, shift_minute=2)
        insert_minutes(chdb_client, db, FUNCTIONS, 4, 5)
        wait_for(lambda: successor.closed_until == T0 + timedelta(minutes=4), what="the successor reading on")
        assert seen(successor) == 5100, "predictions were read twice or skipped across the handover"
        assert len(drift_rows(chdb_client, db)) == 1
    finally:
        for worker in running:
            worker.stop()


def insert_reports(client: Any, db: str, functions: list[str], minutes: int, spike: int) -> None:
    """10 invocation reports per function and minute, each about $0.01, in cost center
    ``FraudDetection``; from minute ``spike`` on, 40 times the spend."""
    client.command(f"""
INSERT INTO {db}.otel_logs (Timestamp, ServiceName, ResourceAttributes, LogAttributes, EventName)
SELECT toDateTime64('{T0:%Y-%m-%d %H:%M:%S}', 9, 'UTC') + toIntervalMinute(m) + toIntervalSecond(5 + number % 10),
    f, map('cloud.platform', 'aws_lambda'),
    map('faas.name', f, 'faas.invocation_id', concat(f, toString(m), '-', toString(number)),
        'faas.duration_ms', '50', 'obsloop.cost_center', 'FraudDetection',
        'obsloop.cost.usd', toString((0.01 + (cityHash64(f, m, number) % 100) / 10000) * if(m >= {spike}, 10, 1))),
    'obsloop.faas.invocation'
FROM (SELECT arrayJoin({functions!r}) AS f, intDiv(number, 10) AS m, number FROM numbers({minutes * 10}))""")


def test_the_fleet_host_scores_cost_centers_as_serve_does_and_nothing_per_function(
    chdb_client: Any, db: str, tmp_path: Path
) -> None:
    insert_reports(chdb_client, db, FUNCTIONS[:3], 60, spike=50)
    settings = DetectorsConfig(window_seconds=60, allowed_lateness_seconds=30, warmup_windows=20,
                               drift=DriftConfig(enabled=False))

    serve = DetectorHost(settings, lambda: chdb_client, tmp_path / "serve", db).run_once()
    fleet_host = DetectorHost(settings, lambda: chdb_client, tmp_path / "global", db, scope=Scope.FLEET)
    global_found = fleet_host.run_once()
    by_center = [d for d in serve if "obsloop.cost_center" in d.series]
    # Whatever serve's scorer makes of the cost center's spend, the fleet host makes the same.
    assert any(d.kind == "cost" and not d.cleared for d in by_center), serve
    assert [(d.id, d.series, d.observed) for d in global_found] == [(d.id, d.series, d.observed) for d in by_center]
    assert len(serve) > len(by_center), "serve scores the functions' own spend too"
    scoring = fleet_host.detector(SeriesScoring)
    assert scoring is not None
    assert scoring.scorer.pool and all(sid.startswith(COST_CENTER_PREFIX) for sid in scoring.scorer.ranges)


POLICY_FILE = "obsloop-policy.yaml"
POLICY = """\
kind: FeedbackPolicy
defaults: {allowedActions: [alert], maxMemoryStep: 2048MB, memory: {min: 128MB, max: 8192MB}}
namespaces:
  ai-production: {allowedActions: [alert, scale]}
policies:
  data-privacy-compliance: {}
  model-explainability-required: {}
"""
FUNCTION = "fraud-detection-model-v2"  # SEED's metadata.name: 4096 MB, a $5000/month budget


def insert_invocations(client: Any, db: str, first: int, last: int, slow_from: int) -> None:
    """20 invocation reports of FUNCTION a minute, 40-60 ms and $0.001 each; 8x slower from
    ``slow_from``. The spend gives its partition host a month-end forecast."""
    client.command(f"""
INSERT INTO {db}.otel_logs (Timestamp, ServiceName, ResourceAttributes, LogAttributes, EventName)
SELECT toDateTime64('{T0:%Y-%m-%d %H:%M:%S}', 9, 'UTC') + toIntervalMinute(m) + toIntervalSecond(5 + number % 20),
    '{FUNCTION}', map('cloud.platform', 'aws_lambda'),
    map('faas.name', '{FUNCTION}', 'faas.invocation_id', concat(toString(m), '-', toString(number)),
        'model.name', 'fraud-detection-model', 'model.version', '2.1.0', 'obsloop.cost.usd', '0.001',
        'faas.duration_ms', toString((40 + cityHash64(m, number) % 21) * if(m >= {slow_from}, 8, 1))),
    'obsloop.faas.invocation'
FROM (SELECT {first} + intDiv(number, 20) AS m, number FROM numbers({(last - first + 1) * 20}))""")


def test_a_worker_with_feedback_alerts_on_call_and_commits_to_the_gitops_repository(
    kafka_config: KafkaConfig, chdb_client: Any, db: str, tmp_path: Path
) -> None:
    traces_partitions(kafka_config)
    remote = make_remote(tmp_path, {"apps/fraud.yaml": SEED, POLICY_FILE: POLICY})
    manifests = tmp_path / "manifests"
    manifests.mkdir()
    (manifests / "fraud.yaml").write_text(SEED)
    receiver = Receiver().start()
    base = worker_config("feedback", kafka_config, db, tmp_path)
    config = Config(
        data_dir=base.data_dir, storage=base.storage, kafka=base.kafka, admin=AdminConfig(port=0),
        detectors=base.detectors.model_copy(update={"forecast_check_seconds": 600}),
        collectors=CollectorsConfig(manifests_dir=manifests),
        feedback=FeedbackConfig(
            enabled=True, dry_run=False,
            git=GitConfig(remote=str(remote), author_name="obsloop-worker", author_email="worker@example.com"),
            notifiers=[NotifierConfig(name="oncall", type="alertmanager", url=receiver.url("/am"))],
            retry_attempts=2, retry_base_delay_seconds=0.01),
    )
    worker = DetectorWorker(config, client=lambda: chdb_client)

    async def scenario() -> None:
        await worker.start()
        try:
            # Minutes 0..45, slow from 40: event time 45:25, windows up to 44 close.
            insert_invocations(chdb_client, db, 0, 45, slow_from=40)
            deadline = time.monotonic() + 90
            while not [c for c in log(remote) if c.startswith("obsloop: scale up")]:
                assert time.monotonic() < deadline, f"no commit; audit: {audit_rows()}"
                await asyncio.sleep(0.2)
            assert worker.feedback is not None
            await worker.feedback.drained()
        finally:
            await worker.stop()

    def audit_rows() -> list[tuple[Any, ...]]:
        return chdb_client.query(f"SELECT action, outcome, reason FROM {db}.feedback_audit").result_rows

    try:
        asyncio.run(scenario())
    finally:
        receiver.stop()

    # One episode: its opening and, a window later, its confirmation (the same id), on which
    # the feedback acts.
    detection_ids = [row[0] for row in chdb_client.query(
        f"SELECT DISTINCT id FROM {db}.detections WHERE kind = 'latency' AND series['faas.name'] = '{FUNCTION}'"
        f" AND NOT cleared AND observed['p95_ms'] > expected_high['p95_ms']").result_rows]
    assert len(detection_ids) == 1, detection_ids
    # The commit: the manifest's memory doubled within the policy's step, with the
    # detection's id; allowed only because the function's partition host priced it.
    assert "memory: \"6144MB\"" in show(remote, "main", "apps/fraud.yaml")
    body = git(remote, "log", "-1", "--format=%an%n%B", "main")
    assert body.startswith("obsloop-worker\nobsloop: scale up ai-production/fraud-detection-model-v2")
    assert f"Detection-Id: {detection_ids[0]}" in body
    # The alert: an Alertmanager v4 webhook, firing, for this function's latency.
    payloads = [r.json() for r in receiver.at("/am")]
    assert payloads and payloads[0]["version"] == "4" and payloads[0]["status"] == "firing"
    assert any(a["labels"].get("faas.name") == FUNCTION and a["labels"].get("kind") == "latency"
               for p in payloads for a in p["alerts"]), payloads
    assert (config.data_dir / "alerts-firing.json").exists()
    # Deliveries are counted on the worker's own registry, which its /metrics serves.
    delivered = worker.registry.get_sample_value("obsloop_feedback_deliveries_total",
                                                 {"target": "oncall", "outcome": "delivered"})
    assert delivered is not None and delivered >= 1
