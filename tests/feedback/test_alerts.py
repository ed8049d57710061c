import asyncio
import hashlib
import hmac
import json
from datetime import UTC, datetime, timedelta

import pytest
from prometheus_client import CollectorRegistry, generate_latest
from pydantic import SecretStr

from obsloop.core import semconv
from obsloop.detectors.detection import NAMESPACE, Detection
from obsloop.feedback.alerts import Alerter
from obsloop.feedback.deadletter import DeadLetters
from obsloop.feedback.delivery import DeliveryFailed, Request, RetryPolicy, Sender
from obsloop.feedback.notifiers import (
    SIGNATURE_HEADER,
    AlertmanagerWebhook,
    PagerDuty,
    SignedWebhook,
    Slack,
)

T0 = datetime(2026, 11, 15, 12, 0, tzinfo=UTC)
FAST = RetryPolicy(attempts=3, base_delay=0.01, max_delay=0.05)
ROUTING_KEY = "R0UTING-KEY-never-logged"
HMAC_KEY = "hmac-key-never-logged"
SLACK_PATH = "/services/T000/B000/slack-secret-path"


def detection(kind="latency", cleared=False, function="fraud-v2", at=T0, **extra):
    return Detection(
        id=f"{function}:{kind}:1",
        time=at,
        series={
            semconv.FAAS_NAME: function,
            NAMESPACE: "ai-production",
            semconv.MODEL_NAME: "fraud",
            semconv.MODEL_VERSION: "2.1.0",
        },
        kind=kind,
        score=0.9,
        severity="critical",
        observed={"p95_ms": 2400.0},
        expected={"p95_ms": (200.0, 800.0)},
        evidence=("http://grafana.local/d/latency",),
        cleared=cleared,
        **extra,
    )


class Clock:
    def __init__(self):
        self.now = T0

    def __call__(self):
        return self.now


def alerter(receiver, registry, clock, dead_letters=None, group_by=(NAMESPACE, "faas.name"), state_file=None):
    notifiers = [
        AlertmanagerWebhook("am", receiver.url("/am"), external_url="http://obsloop.local"),
        PagerDuty("pd", SecretStr(ROUTING_KEY), url=receiver.url("/v2/enqueue")),
        Slack("slack", SecretStr(receiver.url(SLACK_PATH))),
        SignedWebhook("hook", receiver.url("/hook"), SecretStr(HMAC_KEY)),
    ]
    sender = Sender(FAST, dead_letters, timeout_seconds=2, registry=registry)
    return Alerter(
        notifiers, sender, group_by=group_by, repeat_interval=timedelta(hours=1), clock=clock,
        state_file=state_file,
    )


def test_fire_group_dedup_and_resolve(receiver, registry):
    clock = Clock()

    async def scenario():
        a = alerter(receiver, registry, clock)
        first = await a.process(detection("latency"))
        assert sorted(d.target for d in first if d.delivered) == ["am", "hook", "pd", "slack"]
        clock.now += timedelta(minutes=5)
        assert await a.process(detection("latency")) == []  # deduplicated
        await a.process(detection("cold_start"))  # same group, second alert
        clock.now += timedelta(minutes=5)
        await a.process(detection("latency", cleared=True, at=clock.now))
        await a.process(detection("cold_start", cleared=True, at=clock.now))
        assert await a.process(detection("cold_start", cleared=True)) == []
        await a.sender.close()

    asyncio.run(scenario())
    am = [r.json() for r in receiver.at("/am")]
    assert [p["status"] for p in am] == ["firing", "firing", "firing", "resolved"]
    assert [len(p["alerts"]) for p in am] == [1, 2, 2, 1]
    first = am[0]
    assert first["version"] == "4"
    assert first["groupKey"] == '{}:{faas.name="fraud-v2", k8s.namespace.name="ai-production"}'
    assert first["groupLabels"] == {"faas.name": "fraud-v2", "k8s.namespace.name": "ai-production"}
    assert first["commonLabels"]["alertname"] == "obsloop_latency"
    assert first["externalURL"] == "http://obsloop.local"
    alert = first["alerts"][0]
    assert set(alert) == {
        "status",
        "labels",
        "annotations",
        "startsAt",
        "endsAt",
        "generatorURL",
        "fingerprint",
    }
    assert alert["startsAt"] == "2026-11-15T12:00:00Z"
    assert alert["endsAt"] == "0001-01-01T00:00:00Z"
    assert alert["annotations"]["expected_p95_ms"] == "200..800"
    assert alert["generatorURL"] == "http://grafana.local/d/latency"
    third = am[2]["alerts"]
    resolved = [x for x in third if x["status"] == "resolved"]
    assert len(resolved) == 1 and resolved[0]["endsAt"] == "2026-11-15T12:10:00Z"
    assert am[3]["alerts"][0]["labels"]["kind"] == "cold_start"

    pd = [r.json() for r in receiver.at("/v2/enqueue")]
    assert [(p["event_action"], p["routing_key"]) for p in pd] == [
        ("trigger", ROUTING_KEY),
        ("trigger", ROUTING_KEY),
        ("resolve", ROUTING_KEY),
        ("resolve", ROUTING_KEY),
    ]
    assert pd[0]["dedup_key"] == pd[2]["dedup_key"] == alert["fingerprint"]
    assert pd[0]["payload"]["severity"] == "critical"
    assert pd[0]["payload"]["source"] == "fraud-v2"
    assert pd[0]["links"] == [{"href": "http://grafana.local/d/latency", "text": "evidence"}]
    assert "payload" not in pd[2]

    slack = receiver.at(SLACK_PATH)
    assert len(slack) == 4 and "*FIRING* 1 alert(s)" in slack[0].json()["text"]
    assert slack[3].json()["text"].startswith(":white_check_mark: *RESOLVED*")

    for hook in receiver.at("/hook"):
        expected = "sha256=" + hmac.new(HMAC_KEY.encode(), hook.body, hashlib.sha256).hexdigest()
        assert hook.headers[SIGNATURE_HEADER] == expected
    assert len(receiver.at("/hook")) == 4


def test_repeat_interval_resends_a_still_firing_alert(receiver, registry):
    clock = Clock()

    async def scenario():
        a = alerter(receiver, registry, clock)
        a.notifiers = a.notifiers[:1]
        await a.process(detection())
        clock.now += timedelta(minutes=61)
        await a.process(detection())
        await a.sender.close()

    asyncio.run(scenario())
    sent = [r.json()["alerts"][0] for r in receiver.at("/am")]
    assert len(sent) == 2 and sent[0]["startsAt"] == sent[1]["startsAt"]


def test_a_pending_detection_and_its_clearing_send_nothing(receiver, registry):
    clock = Clock()

    async def scenario():
        a = alerter(receiver, registry, clock)
        sent = [await a.process(detection(pending=True)),
                await a.process(detection(pending=True, cleared=True))]
        await a.sender.close()
        return sent

    assert asyncio.run(scenario()) == [[], []]
    assert receiver.requests == []


def test_an_alert_fired_before_a_restart_is_resolved_after_it(receiver, registry, tmp_path):
    clock = Clock()
    state = tmp_path / "alerts-firing.json"

    async def before_restart():
        a = alerter(receiver, registry, clock, state_file=state)
        await a.process(detection("latency"))
        await a.sender.close()

    async def after_restart():
        a = alerter(receiver, CollectorRegistry(), clock, state_file=state)  # a new process
        assert [alert.labels["kind"] for alert in a.firing] == ["latency"]
        clock.now += timedelta(minutes=10)
        assert await a.process(detection("latency")) == []  # still deduplicated after the restart
        await a.process(detection("latency", cleared=True, at=clock.now))
        assert a.firing == []
        await a.sender.close()

    asyncio.run(before_restart())
    asyncio.run(after_restart())
    am = [r.json() for r in receiver.at("/am")]
    assert [p["status"] for p in am] == ["firing", "resolved"]
    assert am[1]["alerts"][0]["startsAt"] == am[0]["alerts"][0]["startsAt"]
    pd = [r.json()["event_action"] for r in receiver.at("/v2/enqueue")]
    assert pd == ["trigger", "resolve"]
    assert json.loads(state.read_text()) == []


def test_an_alert_fired_by_another_process_is_resolved_here(receiver, registry):
    """A detector worker that took a series over in a rebalance clears an episode whose
    alert the previous owner sent: the page must not stay open."""

    async def scenario():
        a = alerter(receiver, registry, Clock())
        first = await a.process(detection("latency", cleared=True))
        assert sorted(d.target for d in first if d.delivered) == ["am", "hook", "pd", "slack"]
        assert await a.process(detection("latency", cleared=True)) == []  # delivered twice, resolved once
        await a.sender.close()

    asyncio.run(scenario())
    assert [r.json()["status"] for r in receiver.at("/am")] == ["resolved"]
    assert [r.json()["event_action"] for r in receiver.at("/v2/enqueue")] == ["resolve"]


@pytest.mark.parametrize("text", [
    '[{"fingerprint": "abc"',  # cut short
    '{"fingerprint": "abc"}',  # not a list
    '[{"fingerprint": ["a"], "labels": {}, "annotations": {}, "starts_at": "2026-01-01T00:00:00+00:00",'
    ' "severity": "critical", "summary": "s", "links": [], "sent_at": "2026-01-01T00:00:00+00:00",'
    ' "group": "g"}]',  # a fingerprint that cannot be a key (it failed the start with TypeError)
])
def test_unreadable_alert_state_is_reported_and_alerting_goes_on(receiver, registry, tmp_path, caplog, text):
    state = tmp_path / "alerts-firing.json"
    state.write_text(text)
    a = alerter(receiver, registry, Clock(), state_file=state)
    assert a.firing == []
    assert "not restored" in caplog.text and str(state) in caplog.text

    async def fire():
        await a.process(detection("latency"))
        await a.sender.close()

    asyncio.run(fire())
    assert len(json.loads(state.read_text())) == 1


def test_retries_on_5xx_429_and_network_then_dead_letters(receiver, registry, clickhouse, database):
    receiver.answer("/flaky", (503, {}), (429, {}, {"Retry-After": "0"}), (202, {"ok": 1}))
    receiver.answer("/down", (500, {}))
    receiver.answer("/bad", (400, {"error": "invalid"}), (200, {}))
    dead = DeadLetters(clickhouse, database, registry)
    sender = Sender(FAST, dead, timeout_seconds=2, registry=registry)

    def request(path, url=None):
        return Request(
            "t" + path.strip("/"),
            url or receiver.url(path),
            b"{}",
            {"Authorization": "Bearer tok"},
            record={"k": path},
            key=path,
        )

    async def scenario():
        reply = await sender.send(request("/flaky"))
        assert (reply.status, json.loads(reply.text)) == (202, {"ok": 1})
        failures = []
        for req in (
            request("/down"),
            request("/bad"),
            request("/net", "http://127.0.0.1:9/nothing-listens"),
        ):
            with pytest.raises(DeliveryFailed) as info:
                await sender.send(req)
            failures.append(info.value)
        await sender.close()
        return failures

    down, bad, net = asyncio.run(scenario())
    assert len(receiver.at("/flaky")) == 3
    assert len(receiver.at("/down")) == 3 and down.attempts == 3 and down.status == 500
    assert len(receiver.at("/bad")) == 1 and bad.attempts == 1 and bad.status == 400
    assert net.attempts == 3 and net.reason.startswith("network error")
    assert str(bad) == "tbad: HTTP 400 after 1 attempt(s)"
    rows = dead.rows()
    assert [(r["target"], r["attempts"], r["error"]) for r in rows] == [
        ("tdown", 3, "HTTP 500"),
        ("tbad", 1, "HTTP 400"),
        ("tnet", 3, "network error (ClientConnectorError)"),
    ]
    assert rows[0]["payload"] == {"k": "/down"} and rows[0]["key"] == "/down"
    metrics = generate_latest(registry).decode()
    assert 'obsloop_feedback_dead_letters{target="tdown"} 1.0' in metrics
    assert 'obsloop_feedback_deliveries_total{outcome="delivered",target="tflaky"} 1.0' in metrics
    # A restart starts the gauge from the table.
    from prometheus_client import CollectorRegistry

    fresh = CollectorRegistry()
    DeadLetters(clickhouse, database, fresh)
    assert 'obsloop_feedback_dead_letters{target="tbad"} 1.0' in generate_latest(fresh).decode()


def test_secrets_stay_out_of_dead_letters_logs_and_errors(
    receiver, registry, clickhouse, database, caplog
):
    receiver.answer("/v2/enqueue", (400, {"status": "invalid event"}))
    receiver.answer(SLACK_PATH, (500, "no"))
    receiver.answer("/hook", (404, "gone"))
    dead = DeadLetters(clickhouse, database, registry)
    clock = Clock()

    async def scenario():
        a = alerter(receiver, registry, clock, dead_letters=dead)
        results = await a.process(detection())
        await a.sender.close()
        return results

    with caplog.at_level("DEBUG"):
        results = asyncio.run(scenario())
    assert {d.target: d.delivered for d in results} == {
        "am": True,
        "pd": False,
        "slack": False,
        "hook": False,
    }
    stored = json.dumps(dead.rows())
    assert {r["target"] for r in dead.rows()} == {"pd", "slack", "hook"}
    # Everything logged on the client side (the test receiver's access log is not ours).
    logged = "\n".join(r.getMessage() for r in caplog.records if r.name != "aiohttp.access")
    assert "delivery to slack failed (HTTP 500)" in logged
    text = stored + logged + repr(results)
    for secret in (ROUTING_KEY, HMAC_KEY, "slack-secret-path"):
        assert secret not in text
    assert "event_action" in stored  # the payload is kept, only without its secrets
