"""The whole loop, end to end, as ``obsloop demo`` runs it: OTLP traffic with an injected
latency regression, an injected drift and a concept drift seen only by delayed labels →
detections → a commit in the GitOps repository, retraining triggers, and an alert that
fires and later resolves."""

from __future__ import annotations

import hashlib
import hmac
import json
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml


@pytest.fixture(scope="module")
def demo(tmp_path_factory) -> tuple[Path, subprocess.CompletedProcess[str]]:
    workdir = tmp_path_factory.mktemp("demo")
    (workdir / "obsloop.yaml").write_text(yaml.safe_dump({
        "receiver": {"http_port": 0, "grpc_port": 0}, "admin": {"port": 0}, "clickhouse_http": {"port": 0},
    }))
    result = subprocess.run(
        [sys.executable, "-m", "obsloop", "demo", "--duration", "120", "--workdir", str(workdir / "run")],
        cwd=workdir, capture_output=True, text=True, timeout=600,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    return workdir / "run", result


def _requests(run: Path) -> list[dict]:
    return [json.loads(line) for line in (run / "alerts.jsonl").read_text().splitlines()]


def test_the_regression_becomes_a_commit_in_the_gitops_repository(demo) -> None:
    run, _ = demo
    git = ["git", "-C", str(run / "gitops")]
    log = subprocess.run([*git, "log", "--format=%an%x09%s", "main"], capture_output=True, text=True,
                         check=True).stdout.splitlines()
    assert log[-1] == "platform-team\tDeclare the model fleet"
    commits = [line for line in log if line.startswith("obsloop\t") and "fraud-scorer" in line]
    assert commits, log
    assert "runtime.memory 4096 -> 8192" in commits[0]
    manifest = subprocess.run([*git, "show", "main:deployments/fraud-scorer.yaml"], capture_output=True, text=True,
                              check=True).stdout
    assert 'memory: "8192MB"' in manifest
    assert 'green: "0%" # For canary deployments' in manifest  # comments and layout survive the edit
    message = subprocess.run([*git, "log", "-1", "--format=%B", "--grep=fraud-scorer", "main"],
                             capture_output=True, text=True, check=True).stdout
    assert "Obsloop-Detection: latency-" in message


def test_the_regressing_canary_is_rolled_back_to_blue(demo) -> None:
    run, _ = demo
    git = ["git", "-C", str(run / "gitops")]
    manifest = subprocess.run([*git, "show", "main:deployments/image-tagger.yaml"], capture_output=True, text=True,
                              check=True).stdout
    assert 'blue: "100%"' in manifest and 'green: "0%" # For canary deployments' in manifest
    log = subprocess.run([*git, "log", "--format=%s", "main"], capture_output=True, text=True, check=True).stdout
    assert any("image-tagger" in line and "roll" in line.lower() for line in log.splitlines()), log


def test_the_alert_fires_then_resolves_and_is_signed(demo) -> None:
    run, _ = demo
    alertmanager = [json.loads(r["body"]) for r in _requests(run) if r["path"] == "/alertmanager"]
    fraud = [p for p in alertmanager
             if any(a["labels"].get("faas.name") == "fraud-scorer" and a["labels"].get("kind") == "latency"
                    for a in p["alerts"])]
    assert [p["status"] for p in fraud][:1] == ["firing"]
    assert "resolved" in [p["status"] for p in fraud]
    assert all(p["version"] == "4" and p["groupKey"] for p in fraud)
    for request in (r for r in _requests(run) if r["path"] == "/webhook"):
        expected = hmac.new(b"demo-signing-key", request["body"].encode(), hashlib.sha256).hexdigest()
        assert request["headers"]["X-Obsloop-Signature-256"] == f"sha256={expected}"


def test_the_drift_triggers_retraining_with_its_evidence(demo) -> None:
    run, _ = demo
    retrains = [json.loads(r["body"]) for r in _requests(run) if r["path"] == "/retrain"]
    churn = [r for r in retrains if "churn-model" in json.dumps(r)]
    assert churn, retrains
    assert any(".html" in json.dumps(r) for r in churn)  # the Evidently report is linked


def test_the_story_explains_it(demo) -> None:
    _, result = demo
    story = result.stdout.split("what happened, and why", 1)[1]
    assert "injected a latency regression" in story
    assert "latency detected" in story and "fraud-scorer" in story
    assert "feedback scale_up on ai-production/fraud-scorer: applied" in story
    assert "latency cleared" in story


def test_the_concept_drift_is_caught_by_the_labels_pages_and_retrains(demo) -> None:
    run, result = demo
    story = result.stdout.split("what happened, and why", 1)[1]
    assert "injected a concept drift: sentiment-bert" in story
    # one entry per event (the console wraps long lines), with its whitespace collapsed
    entries = [" ".join(entry.split()) for entry in re.split(r"\n(?=\+\s*\d+s )", story)]
    quality = [entry for entry in entries if re.match(r"\+\s*\d+s quality ", entry)]
    assert any("quality confirmed" in line and "sentiment-bert" in line for line in quality), story
    confirmed = next(line for line in quality if "quality confirmed" in line)
    # the evidence: accuracy against its baseline, the unmoved estimate, the label coverage
    assert re.search(r"accuracy of sentiment-bert 0\.9\.0 0\.[0-7]\d\d vs baseline 0\.(8[7-9]|9)\d* "
                     r"\(estimated 0\.(8[7-9]|9)\d*\) over \d+ labels \(\d+% coverage\)", confirmed), confirmed
    assert "no input drift (concept drift?)" in confirmed
    assert "drift of sentiment-bert" not in story  # inputs unchanged: input drift stays quiet
    pages = [json.loads(r["body"]) for r in _requests(run) if r["path"] == "/alertmanager"]
    quality_pages = [p for p in pages if p["status"] == "firing"
                     and any(a["labels"].get("kind") == "quality" for a in p["alerts"])]
    assert len(quality_pages) == 1  # paged once, when confirmed
    retrains = [r["body"] for r in _requests(run) if r["path"] == "/retrain"]
    assert any("sentiment-bert" in body and '"kind": "quality"' in body and ".html" in body
               for body in retrains), retrains
    assert any(entry.endswith("feedback retrain on ai-production/sentiment: applied (retraining allowed)")
               for entry in entries), entries
