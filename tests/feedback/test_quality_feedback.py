"""Quality detections through the real feedback responder: a confirmed accuracy drop of the
declared version triggers retraining (a real local HTTP receiver), a worse canary is
rolled back in the GitOps repository, an estimated drop only alerts."""

from __future__ import annotations

import asyncio
from dataclasses import replace
from datetime import timedelta

from feedback.gitrepos import show
from feedback.test_responder import PATH, build, detection
from obsloop.core import semconv


def quality(id_, variant="blue", severity="critical", estimated=0.0):
    d = detection("quality", id_, variant=variant)
    return replace(d, severity=severity, observed={"accuracy": 0.61, "estimated": estimated,
                                                   "label_coverage": 0.4},
                   expected={"accuracy": (0.87, 1.0)},
                   series={**d.series, semconv.MODEL_NAME: "fraud-detection-model",
                           semconv.MODEL_VERSION: "2.1.0"})


def test_quality_drop_retrains_and_worse_canary_rolls_back(tmp_path, receiver, clickhouse, database):
    remote, responder, audit, clock, sender = build(tmp_path, receiver, clickhouse, database)

    async def scenario():
        estimated = await responder.handle(quality("q0", severity="error", estimated=1.0))
        retrain = await responder.handle(quality("q1"))
        clock.now += timedelta(hours=2)
        rollback = await responder.handle(quality("q2", variant="green"))
        await sender.close()
        return estimated, retrain, rollback

    estimated, retrain, rollback = asyncio.run(scenario())
    assert estimated.outcome != "applied"  # an estimate alone is never above minSeverity
    assert retrain.outcome == "applied" and retrain.reference == "train=webhook:q1"
    [event] = [r.json() for r in receiver.at("/train")]
    assert event["detection"]["kind"] == "quality"
    assert event["detection"]["observed"]["accuracy"] == 0.61
    assert rollback.action == "rollback" and rollback.outcome == "applied"
    assert 'green: "0%"' in show(remote, "main", PATH)


def test_policy_can_require_a_quality_drop_before_retraining():
    from feedback.test_policy import NOW, POLICY, manifest, policy
    from obsloop.feedback.actions import plan

    strict = policy(POLICY.replace("    allowedActions: [alert, scale, rollback, retrain]\n",
                                   "    allowedActions: [alert, scale, rollback, retrain]\n"
                                   "    retrainOn: [quality]\n"))
    m = manifest()
    drift_retrain = plan(detection("drift", "d1"), m)
    quality_retrain = plan(quality("q1"), m)
    assert drift_retrain.action == quality_retrain.action == "retrain"

    refused = strict.evaluate(m, drift_retrain, [], NOW)
    assert refused.outcome == "refused" and "retrainOn ['quality'] does not include drift" in refused.reason
    assert strict.evaluate(m, quality_retrain, [], NOW).allowed
    assert policy().evaluate(m, drift_retrain, [], NOW).allowed  # the default retrains on either
