"""The whole loop on one machine: a simulated fleet, a GitOps repository, an on-call receiver.

``obsloop demo --workdir DIR`` lays out

- ``DIR/gitops``: a bare Git repository holding one ``ServerlessModelDeployment`` per
  simulated function (one of them in a blue/green rollout) and the feedback policy;
  obsloop pushes its changes there;
- ``DIR/alerts.jsonl``: every request the local on-call receiver got (alerts, retraining
  triggers), with its headers;
- ``DIR/data``: the embedded ClickHouse data and the write-ahead log;

then runs a scenario against a real ``obsloop serve`` in this process: normal traffic while
the detectors learn, a concept drift on a model whose ground truth arrives 30 s after its
predictions, a latency regression on one function, a covariate drift on one model, a
regressing canary, the regression's recovery, and finally a story of what happened and why, read back
from the detections table, the audit table, the Git history and the receiver's log.
"""

from __future__ import annotations

import json
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

from aiohttp import web
from clickhouse_connect.driver.client import Client

from obsloop.config import Config
from obsloop.demo.loadgen import FLEET, FunctionSpec, ServerlessTraffic
from obsloop.runtime import bound_port

REGRESSED_FUNCTION = "fraud-scorer"
DRIFTED_MODEL = "churn-model"
CANARY_FUNCTION = "image-tagger"
CANARY_VERSION = "3.1.0"
CANARY_SHARE = 0.2
LABELLED_MODEL = "sentiment-bert"
"""The model whose predictions get ground truth, ``LABEL_DELAY_SECONDS`` later."""
LABEL_DELAY_SECONDS = 30.0
NAMESPACE = "ai-production"
POLICY = """\
# Guardrails for obsloop's feedback loop (see obsloop/feedback/policy.py). The cooldown is
# short because the demo lasts minutes; production policies say 10m or more.
kind: FeedbackPolicy
defaults:
  allowedActions: [alert]
  maxReplicaStep: 2
  maxMemoryStep: 4096MB
  cooldown: 20s
  maxActionsPerDay: 20
  minSeverity: critical  # act on confirmed anomalies only; a one-window blip just alerts
  retrainOn: [drift, quality]  # [quality] alone: retrain on measured accuracy drops only
  memory: {min: 128MB, max: 10240MB}
namespaces:
  ai-production:
    allowedActions: [alert, scale, rollback, retrain]
policies:
  data-privacy-compliance:
    description: PII never leaves the region
  model-explainability-required:
    description: every model version ships its explanation report
"""
_PLATFORMS = {"aws_lambda": "aws-lambda", "gcp_cloud_run": "gcp-cloud-run",
              "gcp_cloud_functions": "gcp-cloud-functions", "azure_functions": "azure-functions",
              "knative": "knative", "openfaas": "openfaas"}


def manifest(fn: FunctionSpec) -> str:
    """The seed article's manifest format, for one simulated function."""
    green = round(CANARY_SHARE * 100) if fn.name == CANARY_FUNCTION else 0
    return f"""\
apiVersion: ai.apexlogic.com/v1alpha1
kind: ServerlessModelDeployment
metadata:
  name: {fn.name}
  namespace: {NAMESPACE}
spec:
  modelRef:
    name: {fn.model}
    version: "{fn.model_version}"
  runtime:
    platform: "{_PLATFORMS[fn.platform]}"
    region: "{fn.region}"
    memory: "{fn.memory_mb}MB"
    timeout: "30s"
  trafficSplit:
    blue: "{100 - green}%"
    green: "{green}%" # For canary deployments
  autoscaling:
    minReplicas: 1
    maxReplicas: 10
    targetUtilization: 70
  finops:
    costCenter: "{fn.model.split('-')[0].title()}"
  policies:
    - "data-privacy-compliance"
    - "model-explainability-required"
"""


def _git(*args: str, cwd: Path) -> str:
    return subprocess.run(["git", *args], cwd=cwd, check=True, capture_output=True, text=True).stdout


def prepare_gitops(directory: Path) -> Path:
    """A bare repository with the fleet's manifests and the policy (kept if it exists)."""
    if (directory / "HEAD").exists():
        return directory
    directory.mkdir(parents=True, exist_ok=True)
    _git("init", "--bare", "--initial-branch=main", str(directory), cwd=directory.parent)
    with tempfile.TemporaryDirectory() as scratch:
        work = Path(scratch) / "work"
        _git("clone", "--quiet", str(directory), str(work), cwd=Path(scratch))
        (work / "deployments").mkdir()
        for fn in FLEET:
            (work / "deployments" / f"{fn.name}.yaml").write_text(manifest(fn))
        (work / "obsloop-policy.yaml").write_text(POLICY)
        _git("add", ".", cwd=work)
        _git("-c", "user.name=platform-team", "-c", "user.email=platform@example.com",
             "commit", "--quiet", "-m", "Declare the model fleet", cwd=work)
        _git("push", "--quiet", "origin", "HEAD:main", cwd=work)
    return directory


class OnCallReceiver:
    """A local HTTP receiver standing in for Alertmanager, a webhook and a CI trigger: it
    answers 200 and appends every request, headers included, to ``alerts.jsonl``."""

    def __init__(self, log_file: Path) -> None:
        self.log_file = log_file
        self.url = ""
        self._runner: web.AppRunner | None = None

    async def _record(self, request: web.Request) -> web.Response:
        body = await request.read()
        # The body exactly as received (as text), so that signatures can be checked later.
        entry = {"time": time.time(), "method": request.method, "path": request.path,
                 "headers": dict(request.headers), "body": body.decode(errors="replace")}
        with self.log_file.open("a", encoding="utf-8") as file:
            file.write(json.dumps(entry) + "\n")
        return web.json_response({"status": "received"})

    async def start(self) -> str:
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", self._record)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        self.url = f"http://127.0.0.1:{bound_port(site)}"
        return self.url

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()


def demo_config(base: Config, workdir: Path, receiver_url: str, *, window_seconds: int) -> Config:
    """``base`` with the demo's data directory, detectors tuned to a short scenario, and the
    feedback loop pointed at the local repository and receiver."""
    from obsloop.feedback.config import FeedbackConfig

    config = base.model_copy(deep=True)
    config.data_dir = workdir / "data"
    # Ten-second windows: an anomaly must last three of them (30 s) before the loop acts.
    # Two consecutive p95s lifted by cold starts do happen at this size: replaying eight
    # runs' windows, two windows in a row confirmed four blips on normal traffic (one of
    # them live: a churn-predictor memory commit), three windows none, while the injected
    # regressions confirmed in every run either way.
    config.detectors = base.detectors.model_copy(update={
        "window_seconds": window_seconds, "allowed_lateness_seconds": 2.0, "poll_seconds": 1.0,
        "idle_flush_seconds": 5.0, "warmup_windows": 5, "clear_after_windows": 3,
        "confirm_after_windows": 3, "checkpoint_seconds": 10.0,
        "drift": base.detectors.drift.model_copy(update={"reference_size": 200, "post_change": 100,
                                                         "cooldown": 300}),
        # Quality per detection window: a window holds ~65 predictions, ~50 of them labelled
        # (30 s later); 40 labels are enough to see 0.92 fall to 0.6 (p < 1e-6) and too few
        # to mistake normal noise for a drop (alpha 1e-3 against baseline - 0.03).
        "quality": base.detectors.quality.model_copy(update={"window_seconds": window_seconds,
                                                             "min_labels": 40, "settle_seconds": 60.0}),
    })
    config.feedback = FeedbackConfig.model_validate({
        "enabled": True,
        "dry_run": False,
        "git": {"remote": str(workdir / "gitops"), "branch": "main", "mode": "push",
                "author_name": "obsloop", "author_email": "obsloop@localhost"},
        "notifiers": [
            {"name": "oncall", "type": "alertmanager", "url": f"{receiver_url}/alertmanager"},
            {"name": "audit-webhook", "type": "webhook", "url": f"{receiver_url}/webhook",
             "hmac_key": "demo-signing-key"},
        ],
        "retrain": [{"name": "retrain-pipeline", "type": "webhook", "url": f"{receiver_url}/retrain"}],
        "repeat_interval_seconds": 3600,
        "retry_attempts": 3,
        "retry_base_delay_seconds": 0.2,
    })
    return config


@dataclass
class Scenario:
    """What is injected when, as fractions of the run."""

    duration: float
    concept_drift_at: float = 1 / 3
    regression_at: float = 0.35
    drift_at: float = 0.40
    canary_at: float = 0.45
    recovery_at: float = 0.65
    latency_factor: float = 8.0
    feature_shift: float = 6.0
    label_flip: float = 0.38
    """Share of the labelled model's labels that follow a new concept (accuracy 0.92 -> 0.60)."""
    events: list[tuple[float, str]] = field(default_factory=list)

    def apply(self, elapsed: float, traffic: ServerlessTraffic) -> str | None:
        """Change the traffic when a step is due; returns what happened, once."""
        done = {text for _, text in self.events}
        steps = [
            (self.concept_drift_at, f"injected a concept drift: {LABELLED_MODEL}'s labels change for "
                                    f"{self.label_flip:.0%} of its predictions; inputs and scores do not "
                                    "(no input drift, the CBPE estimate stays put: only the labels, "
                                    f"{LABEL_DELAY_SECONDS:g} s late, can tell)",
             lambda: setattr(traffic.labelled[LABELLED_MODEL], "flip", self.label_flip)),
            (self.regression_at, f"injected a latency regression: {REGRESSED_FUNCTION} runs "
                                 f"{self.latency_factor:g}x slower",
             lambda: traffic.latency_factor.__setitem__(REGRESSED_FUNCTION, self.latency_factor)),
            (self.drift_at, f"injected a covariate drift: {DRIFTED_MODEL}'s `amount` feature "
                            f"shifts {self.feature_shift:g}x",
             lambda: traffic.feature_shift.__setitem__(DRIFTED_MODEL, self.feature_shift)),
            (self.canary_at, f"the canary {CANARY_VERSION} of {CANARY_FUNCTION} ({CANARY_SHARE:.0%} of its "
                             f"traffic) becomes {self.latency_factor:g}x slower",
             lambda: setattr(traffic.canary[CANARY_FUNCTION], "latency_factor", self.latency_factor)),
            (self.recovery_at, f"the regression is fixed: {REGRESSED_FUNCTION} is fast again",
             lambda: traffic.latency_factor.pop(REGRESSED_FUNCTION, None)),
        ]
        for fraction, text, change in steps:
            if elapsed >= fraction * self.duration and text not in done:
                change()
                self.events.append((elapsed, text))
                return text
        return None


def told_key(detection_id: str, severity: str, cleared: bool) -> str:
    """A detection row's key in ``story``'s ``told_at``."""
    return f"{detection_id}|{severity}|{cleared}"


def story(workdir: Path, client: Client, scenario: Scenario, started: float,
          told_at: dict[str, float] | None = None) -> list[str]:
    """What happened and why, from the stored records, in time order (seconds since start).
    Detections of the replayed history (event times before the start) are counted, not told:
    the feedback loop did not act on them. A quality detection's time is the end of its
    window of prediction time, labelled only later: it is told when it was made, from
    ``told_at`` (wall clock per ``told_key``), so it does not seem to precede its labels."""
    told_at = told_at or {}
    timeline: list[tuple[float, str]] = list(scenario.events)
    opened_while_learning: set[str] = set()
    told: set[str] = set()
    learning = client.command(
        f"SELECT count() FROM detections WHERE toUnixTimestamp64Milli(time) / 1000 < {started} AND NOT cleared")
    for t, detection, kind, cleared, score, severity, summary in client.query(
        "SELECT toUnixTimestamp64Milli(time) / 1000, id, kind, cleared, score, severity, summary "
        "FROM detections ORDER BY time"
    ).result_rows:
        if t < started or detection in opened_while_learning:
            opened_while_learning.add(detection)
            continue
        # A later critical row of an open episode is its confirmation: it pages, and the
        # feedback loop acts on it. An extreme window pages at once, without acting.
        state = "cleared" if cleared else "confirmed" if detection in told and severity == "critical" \
            else "extreme" if summary.endswith("(extreme: paged at once)") else "detected"
        told.add(detection)
        what = state if cleared else f"{state} (score {score:.2f})"
        made = told_at.get(told_key(detection, severity, cleared)) if kind == "quality" else None
        if made is not None:
            summary += f" (predictions up to +{max(0.0, t - started):.0f}s, told once labelled)"
            t = made
        timeline.append((t - started, f"{kind} {what}: {summary}"))
    for t, deployment, action, outcome, reason, before, after in client.query(
        "SELECT toUnixTimestamp64Milli(time) / 1000, deployment, action, outcome, reason, before, after "
        "FROM feedback_audit ORDER BY time"
    ).result_rows:
        change = f" {before} -> {after}" if before not in ("", "{}") or after not in ("", "{}") else ""
        target = f" on {deployment}" if deployment else ""
        timeline.append((t - started, f"feedback {action}{target}: {outcome}{change} ({reason})"))
    log = workdir / "alerts.jsonl"
    if log.exists():
        for line in log.read_text().splitlines():
            entry = json.loads(line)
            try:
                body = json.loads(entry["body"])
            except ValueError:
                body = {}
            status = f" ({body['status']})" if isinstance(body, dict) and "status" in body else ""
            timeline.append((entry["time"] - started, f"on-call receiver got POST {entry['path']}{status}"))
    lines = [f"(while learning from the replayed history: {learning} detections, not acted on)"]
    lines += [f"+{max(0.0, t):5.0f}s  {text}" for t, text in sorted(timeline, key=lambda item: item[0])]
    lines.append("GitOps history (newest first):")
    history = _git("log", "--format=%h %s (%an)", "main", cwd=workdir / "gitops")
    lines += [f"  {commit}" for commit in history.splitlines()]
    return lines
