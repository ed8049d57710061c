"""docs/extending.md, "A new feedback action": the example's blocks, run as written, give an
action that the responder plans, the policy permits (or refuses), the responder executes
against a real HTTP receiver and the audit table records; existing policy files still
validate, and one naming a permission nobody registered does not."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from extending_doc import python_blocks
from feedback.gitrepos import log, make_remote
from feedback.manifests_data import SEED
from feedback.receiver import Receiver
from prometheus_client import CollectorRegistry

from obsloop.core import semconv
from obsloop.core.manifests import parse_manifests
from obsloop.demo.scenario import POLICY as DEMO_POLICY
from obsloop.detectors.detection import NAMESPACE, VARIANT, Detection
from obsloop.feedback.actions import ACTIONS, plan, register
from obsloop.feedback.audit import AuditLog
from obsloop.feedback.delivery import RetryPolicy, Sender
from obsloop.feedback.gitops import GitOpsRepo
from obsloop.feedback.policy import parse_policy
from obsloop.feedback.responder import Responder

POLICY = """\
kind: FeedbackPolicy
defaults:
  allowedActions: [alert]
  cooldown: 30m
namespaces:
  ai-production:
    allowedActions: [alert, scale, rollback, retrain]
policies:
  data-privacy-compliance: {description: PII never leaves the region}
  model-explainability-required: {cooldown: 1h}
"""

T0 = datetime(2026, 11, 15, 12, 0, tzinfo=UTC)
TICKETS = POLICY.replace("allowedActions: [alert, scale, rollback, retrain]",
                         "allowedActions: [alert, scale, rollback, retrain, ticket]")
STAGING = SEED.replace("fraud-detection-model-v2", "fraud-staging").replace("ai-production", "ai-staging")
"""A deployment in a namespace whose policy grants no ticket."""


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    server = Receiver().start()
    yield server
    server.stop()


@pytest.fixture
def doc_action(receiver: Receiver, monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    """The doc's action, registered by the doc's own blocks; unregistered afterwards."""
    monkeypatch.setenv("OBSLOOP_TICKETS_URL", receiver.url("/tickets"))
    namespace: dict[str, Any] = {}
    try:
        for block in python_blocks("A new feedback action"):
            exec(compile(block, "docs/extending.md", "exec"), namespace)
        yield ACTIONS["open_ticket"]
    finally:
        ACTIONS.pop("open_ticket", None)


def errors(id_: str, function: str = "fraud-detection-model-v2", namespace: str = "ai-production",
           at: datetime = T0) -> Detection:
    return Detection(id=id_, time=at, kind="error_rate", score=0.8, severity="critical",
                     series={semconv.FAAS_NAME: function, NAMESPACE: namespace, VARIANT: "blue"},
                     observed={"error_rate": 0.09}, expected={"error_rate": (0.0, 0.02)},
                     summary="error rate 9% (expected at most 2%)")


def test_the_doc_action_is_planned_permitted_executed_and_audited(
    doc_action: Any, receiver: Receiver, tmp_path: Path, chdb_client: Any, chdb_database: str
) -> None:
    receiver.answer("/tickets", (201, {"key": "OPS-7"}))
    [manifest], _ = parse_manifests("apps/fraud.yaml", SEED)
    assert plan(errors("e0"), manifest).action == "open_ticket"
    assert plan(replace(errors("e0"), observed={"error_rate": 0.0}), manifest) is None  # below its range
    # The built-in actions plan as before: the canary's errors roll back, latency scales.
    assert plan(replace(errors("e0"), series={**errors("e0").series, VARIANT: "green"}), manifest).action == "rollback"
    assert plan(replace(errors("e0"), kind="latency"), manifest).action == "scale_up"

    remote = make_remote(tmp_path, {"apps/fraud.yaml": SEED, "apps/staging.yaml": STAGING,
                                    "obsloop-policy.yaml": TICKETS})
    sender = Sender(RetryPolicy(2, 0.01, 0.02), registry=CollectorRegistry())
    audit = AuditLog(chdb_client, chdb_database)
    now = [T0]
    responder = Responder(GitOpsRepo(str(remote), tmp_path / "clone"), audit, sender, clock=lambda: now[0])

    async def scenario() -> list[Any]:
        entries = []
        for detection in (errors("e1"), errors("e1"), errors("e2"), errors("e3", "fraud-staging", "ai-staging")):
            entries.append(await responder.handle(detection))
            now[0] += timedelta(minutes=1)
        await sender.close()
        return entries

    opened, again, cooled, staging = asyncio.run(scenario())
    assert (opened.action, opened.outcome, opened.reference) == ("open_ticket", "applied", "OPS-7")
    assert again.outcome == "noop" and "already acted on (OPS-7)" in again.reason
    assert cooled.outcome == "refused" and cooled.reason.startswith("cooldown")  # it counts like any action
    assert staging.outcome == "refused" and staging.reason == "'ticket' is not allowed for namespace ai-staging"
    [ticket] = [r.json() for r in receiver.at("/tickets")]
    assert ticket["title"].startswith("ai-production/fraud-detection-model-v2: ")
    assert ticket["manifest"] == "apps/fraud.yaml" and ticket["detection"]["id"] == "e1"
    rows = [(e.detection_id, e.action, e.outcome, e.reference) for e in audit.entries()]
    assert rows == [("e1", "open_ticket", "applied", "OPS-7"), ("e1", "open_ticket", "noop", ""),
                    ("e2", "open_ticket", "refused", ""), ("e3", "open_ticket", "refused", "")]
    assert log(remote) == ["initial manifests"]  # a ticket edits no manifest


def test_a_policy_naming_an_unregistered_permission_is_refused_with_its_line() -> None:
    parsed, error = parse_policy("obsloop-policy.yaml", TICKETS)
    assert parsed is None
    assert error.line == 7 and "unknown permission 'ticket'" in error.reason
    assert "namespaces.ai-production.allowedActions.4" in error.reason


@pytest.mark.parametrize("text", [POLICY, DEMO_POLICY])
def test_existing_policy_files_still_validate(text: str) -> None:
    policy, error = parse_policy("obsloop-policy.yaml", text)
    assert error is None
    [manifest], _ = parse_manifests("apps/fraud.yaml", SEED)
    assert policy.rules_for(manifest).allowed_actions == {"alert", "scale", "rollback", "retrain"}


def test_registration_refuses_clashes_and_the_alert_permission(doc_action: Any) -> None:
    with pytest.raises(ValueError, match="exists"):
        register(doc_action)
    everywhere = type("Everywhere", (), {"name": "page_twice", "permission": "alert", "cooldown": True})()
    with pytest.raises(ValueError, match="granted everywhere"):
        register(everywhere)
    assert "page_twice" not in ACTIONS
