"""The feedback responder end to end: a real bare remote, real HTTP receivers, the embedded audit table."""

import asyncio
from dataclasses import replace
from datetime import UTC, datetime, timedelta

from prometheus_client import CollectorRegistry
from pydantic import SecretStr

from feedback.gitrepos import git, log, make_remote, show
from feedback.manifests_data import SEED
from feedback.test_policy import POLICY
from obsloop.core import semconv
from obsloop.detectors.detection import NAMESPACE, VARIANT, Detection
from obsloop.feedback.alerts import Alerter
from obsloop.feedback.audit import AuditLog
from obsloop.feedback.delivery import RetryPolicy, Sender
from obsloop.feedback.forges import GitHub, GitLab
from obsloop.feedback.gitops import GitOpsRepo
from obsloop.feedback.notifiers import AlertmanagerWebhook
from obsloop.feedback.responder import Responder
from obsloop.feedback.retrain import ArgoWorkflowsTrigger, GitHubActionsTrigger, WebhookTrigger

T0 = datetime(2026, 11, 15, 12, 0, tzinfo=UTC)
PATH = "apps/fraud.yaml"
CANARY = SEED.replace('blue: "100%"', 'blue: "80%"').replace('green: "0%"', 'green: "20%"')


class Clock:
    def __init__(self):
        self.now = T0

    def __call__(self):
        return self.now


def detection(kind, id_, at=T0, variant="blue", **extra):
    return Detection(
        id=id_,
        time=at,
        kind=kind,
        score=1.0,
        severity="critical",
        series={
            semconv.FAAS_NAME: "fraud-detection-model-v2",
            NAMESPACE: "ai-production",
            VARIANT: variant,
        },
        observed={"value": 9.0},
        expected={"value": (0.0, 1.0)},
        evidence=("http://grafana.local/d/x",),
        **extra,
    )


def build(tmp_path, receiver, clickhouse, database, dry_run=False, mode="push", files=None):
    remote = make_remote(
        tmp_path,
        files
        or {
            PATH: CANARY,
            "obsloop-policy.yaml": POLICY,
            "apps/broken.yaml": SEED.replace("  modelRef:", "  model:"),
        },
    )
    sender = Sender(RetryPolicy(2, 0.01, 0.02), registry=CollectorRegistry())
    clock = Clock()
    alerter = Alerter([AlertmanagerWebhook("am", receiver.url("/am"))], sender, clock=clock)
    repo = GitOpsRepo(str(remote), tmp_path / "clone", mode=mode)
    forge = GitHub(sender, "acme/gitops", SecretStr("gh-token"), api_url=receiver.url())
    trigger = WebhookTrigger("train", sender, receiver.url("/train"))
    audit = AuditLog(clickhouse, database)
    responder = Responder(repo, audit, sender, alerter, [trigger], forge, dry_run=dry_run, clock=clock)
    return remote, responder, audit, clock, sender


def test_detections_become_commits_rollbacks_retraining_and_audit_rows(
    tmp_path, receiver, clickhouse, database
):
    remote, responder, audit, clock, sender = build(tmp_path, receiver, clickhouse, database)

    async def scenario():
        scaled = await responder.handle(detection("cold_start", "d1"), forecast_monthly_usd=100.0)
        again = await responder.handle(detection("cold_start", "d1"), forecast_monthly_usd=100.0)
        clock.now += timedelta(minutes=5)
        cooled = await responder.handle(detection("throughput", "d2"), forecast_monthly_usd=100.0)
        clock.now += timedelta(minutes=1)
        rollback = await responder.handle(detection("error_rate", "d3", variant="green"))
        clock.now += timedelta(hours=2)
        retrain = await responder.handle(detection("drift", "d4"))
        await sender.close()
        return scaled, again, cooled, rollback, retrain

    scaled, again, cooled, rollback, retrain = asyncio.run(scenario())
    assert (scaled.outcome, scaled.after) == ("applied", {"autoscaling.minReplicas": 3})
    assert again.outcome == "noop" and scaled.reference in again.reason
    assert cooled.outcome == "refused" and cooled.reason.startswith("cooldown")
    assert rollback.outcome == "applied"
    assert retrain.outcome == "applied" and retrain.reference == "train=webhook:d4"

    text = show(remote, "main", PATH)
    assert "minReplicas: 3" in text and 'blue: "100%"' in text and 'green: "0%" #' in text
    assert log(remote)[:2] == [
        "obsloop: rollback ai-production/fraud-detection-model-v2: trafficSplit.blue 80 -> 100, "
        "trafficSplit.green 20 -> 0",
        "obsloop: scale up ai-production/fraud-detection-model-v2: autoscaling.minReplicas 1 -> 3",
    ]
    body = git(remote, "log", "-1", "--format=%B", "main~1")
    assert "Observed: value=9 (expected 0..1)" in body
    assert "Evidence: http://grafana.local/d/x" in body
    assert "Obsloop-Detection: d1" in body
    event = receiver.at("/train")[0].json()
    assert event["report_url"] == "http://grafana.local/d/x"
    assert event["detection"]["id"] == "d4" and event["model"]["version"] == "2.1.0"

    rows = audit.entries()
    invalid = [r for r in rows if r.outcome == "invalid"]
    assert len(invalid) == 1 and invalid[0].manifest == "apps/broken.yaml:6"
    assert invalid[0].reason == "spec.modelRef is missing"
    assert show(remote, "main", "apps/broken.yaml") == SEED.replace("  modelRef:", "  model:")
    decisions = [
        (r.detection_id, r.action, r.outcome)
        for r in rows
        if r.action != "alert" and r.outcome != "invalid"
    ]
    assert decisions == [
        ("d1", "scale_up", "applied"),
        ("d1", "scale_up", "noop"),
        ("d2", "scale_up", "refused"),
        ("d3", "rollback", "applied"),
        ("d4", "retrain", "applied"),
    ]
    alerts = [r for r in rows if r.action == "alert"]
    assert len(alerts) == 4 and len(receiver.at("/am")) == 4  # d1 twice is deduplicated


def test_dry_run_decides_and_audits_but_changes_nothing(tmp_path, receiver, clickhouse, database):
    remote, responder, audit, clock, sender = build(
        tmp_path, receiver, clickhouse, database, dry_run=True
    )

    async def scenario():
        first = await responder.handle(detection("cold_start", "d1"), forecast_monthly_usd=0.0)
        second = await responder.handle(detection("latency", "d2"), forecast_monthly_usd=0.0)
        third = await responder.handle(detection("drift", "d3"))
        await sender.close()
        return first, second, third

    first, second, third = asyncio.run(scenario())
    assert first.outcome == "dry_run" and first.after == {"autoscaling.minReplicas": 3}
    assert second.outcome == "refused" and "cooldown" in second.reason  # dry runs count
    assert third.outcome == "refused"
    assert log(remote) == ["initial manifests"] and receiver.at("/train") == []


def test_pull_request_mode_opens_one_github_pull_request(tmp_path, receiver, clickhouse, database):
    receiver.answer(
        "/repos/acme/gitops/pulls",
        (201, {"html_url": "https://github.com/acme/gitops/pull/7"}),
        (422, {"message": "A pull request already exists"}),
    )
    remote, responder, audit, clock, sender = build(
        tmp_path, receiver, clickhouse, database, mode="pull_request"
    )

    async def scenario():
        entry = await responder.handle(detection("cold_start", "d1"), forecast_monthly_usd=0.0)
        await sender.close()
        return entry

    entry = asyncio.run(scenario())
    assert entry.outcome == "applied"
    assert entry.reference == "https://github.com/acme/gitops/pull/7"
    [call] = receiver.at("/repos/acme/gitops/pulls")
    assert call.headers["Authorization"] == "Bearer gh-token"
    payload = call.json()
    assert payload["base"] == "main" and payload["head"].startswith("obsloop/ai-production-")
    assert "minReplicas: 3" in show(remote, payload["head"], PATH)
    assert log(remote) == ["initial manifests"]
    assert "gh-token" not in str(audit.entries())


def test_gitlab_merge_request_and_existing_one(receiver):
    receiver.answer(
        "/api/v4/projects/acme%2Fgitops/merge_requests",
        (201, {"web_url": "https://gitlab.local/acme/gitops/-/merge_requests/3"}),
        (409, {"message": ["Another open merge request already exists"]}),
    )
    sender = Sender(RetryPolicy(2, 0.01, 0.02), registry=CollectorRegistry())
    gitlab = GitLab(sender, "acme/gitops", SecretStr("gl-token"), api_url=receiver.url("/api/v4"))

    async def scenario():
        first = await gitlab.open("obsloop/x", "main", "title", "body")
        second = await gitlab.open("obsloop/x", "main", "title", "body")
        await sender.close()
        return first, second

    assert asyncio.run(scenario()) == (
        "https://gitlab.local/acme/gitops/-/merge_requests/3",
        "acme/gitops:obsloop/x",
    )
    call = receiver.requests[0]
    assert call.path == "/api/v4/projects/acme%2Fgitops/merge_requests"
    assert call.headers["PRIVATE-TOKEN"] == "gl-token"
    assert call.json()["source_branch"] == "obsloop/x" and call.json()["target_branch"] == "main"


def test_github_actions_and_argo_triggers(receiver, tmp_path):
    receiver.answer("/repos/acme/ml/actions/workflows/retrain.yml/dispatches", (204, ""))
    receiver.answer("/api/v1/workflows/ml/submit", (200, {"metadata": {"name": "retrain-x7k"}}))
    sender = Sender(RetryPolicy(2, 0.01, 0.02), registry=CollectorRegistry())
    from obsloop.core.manifests import parse_manifests

    [manifest], _ = parse_manifests(PATH, SEED)
    gha = GitHubActionsTrigger(
        "gha", sender, "acme/ml", "retrain.yml", SecretStr("t1"), api_url=receiver.url()
    )
    argo = ArgoWorkflowsTrigger("argo", sender, receiver.url(), "ml", "retrain", SecretStr("t2"))

    async def scenario():
        refs = [await t.trigger(detection("drift", "d9"), manifest) for t in (gha, argo)]
        await sender.close()
        return refs

    assert asyncio.run(scenario()) == ["acme/ml:retrain.yml@main", "retrain-x7k"]
    dispatch, submit = receiver.requests
    inputs = dispatch.json()["inputs"]
    assert dispatch.json()["ref"] == "main" and all(isinstance(v, str) for v in inputs.values())
    assert inputs["report_url"] == "http://grafana.local/d/x" and inputs["detection_id"] == "d9"
    body = submit.json()
    assert (body["resourceKind"], body["resourceName"]) == ("WorkflowTemplate", "retrain")
    assert "detection-id=d9" in body["submitOptions"]["parameters"]
    assert submit.headers["Authorization"] == "Bearer t2"


def test_a_one_window_anomaly_alerts_and_only_its_confirmation_changes_the_manifest(
    tmp_path, receiver, clickhouse, database
):
    remote, responder, audit, clock, sender = build(tmp_path, receiver, clickhouse, database)
    # What the window scorer sends: the opening window (at most "error"), then, one window
    # later and with the same id, the confirmation ("critical").
    opened = replace(detection("latency", "ep1"), severity="error", observed={"p95_ms": 900.0},
                     expected={"p95_ms": (0.0, 300.0)})
    confirmed = replace(opened, severity="critical", time=opened.time + timedelta(minutes=1))
    blip = replace(opened, id="ep0", kind="cold_start", severity="warning")

    async def scenario():
        held = [await responder.handle(d, forecast_monthly_usd=0.0) for d in (blip, opened)]
        clock.now += timedelta(minutes=1)
        acted = await responder.handle(confirmed, forecast_monthly_usd=0.0)
        await sender.close()
        return held, acted

    held, acted = asyncio.run(scenario())
    assert [(e.action, e.outcome) for e in held] == [("scale_up", "refused"), ("scale_up", "refused")]
    assert all("below minSeverity critical" in e.reason for e in held)
    assert acted.outcome == "applied" and acted.after == {"runtime.memory": 6144}
    assert log(remote) == [
        "obsloop: scale up ai-production/fraud-detection-model-v2: runtime.memory 4096 -> 6144",
        "initial manifests",
    ]
    # On-call heard of both anomalies when they opened; the confirmation pages nobody again.
    firing = [r.json()["status"] for r in receiver.at("/am")]
    assert firing == ["firing", "firing"]
    # Nothing the blip did counts against the cooldown: the confirmation was not refused.
    assert [e.outcome for e in audit.entries() if e.action == "scale_up"] == ["refused", "refused", "applied"]


def test_a_window_anomaly_of_the_canary_version_rolls_back_instead_of_scaling(
    tmp_path, receiver, clickhouse, database
):
    remote, responder, audit, clock, sender = build(tmp_path, receiver, clickhouse, database)

    def of_version(kind, id_, version):
        # A window series of the canary's model version, as the window scorer labels it:
        # no deployment.variant, the version the invocations reported.
        return Detection(id=id_, time=T0, kind=kind, score=1.0, severity="critical",
                         series={semconv.FAAS_NAME: "fraud-detection-model-v2", NAMESPACE: "ai-production",
                                 semconv.MODEL_VERSION: version},
                         observed={"p95_ms": 900.0, "cold_start_rate": 0.2},
                         expected={"p95_ms": (0.0, 300.0), "cold_start_rate": (0.0, 0.05)})

    async def scenario():
        cold = await responder.handle(of_version("cold_start", "c1", "2.2.0"), forecast_monthly_usd=0.0)
        slow = await responder.handle(of_version("latency", "c2", "2.2.0"), forecast_monthly_usd=0.0)
        await sender.close()
        return cold, slow

    cold, slow = asyncio.run(scenario())
    assert cold is None  # the canary's cold starts say nothing about the deployment's replicas
    assert (slow.action, slow.outcome) == ("rollback", "applied")
    text = show(remote, "main", PATH)
    assert 'blue: "100%"' in text and 'memory: "4096MB"' in text and "minReplicas: 1" in text
