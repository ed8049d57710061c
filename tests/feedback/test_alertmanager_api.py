"""The ``alertmanager_api`` notifier against the real Alertmanager (Debian's
``prometheus-alertmanager``, see tests/debian_tools.py): obsloop's alert lands in two
Alertmanagers' API, routed and grouped by their configuration, stays active while the
feedback stage re-sends it, is silenced by a silence, and disappears when resolved."""

import asyncio
import json
import re
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import SimpleNamespace

import pytest
from polling import wait_until
from prometheus_client import CollectorRegistry

from feedback.alertmanager import Alertmanager
from obsloop.core import semconv
from obsloop.detectors.detection import NAMESPACE, Detection
from obsloop.feedback.alertmanager_api import ORIGINAL_LABELS, AlertmanagerApi, label_name
from obsloop.feedback.alerts import Alerter, alert_from
from obsloop.feedback.delivery import RetryPolicy, Sender
from obsloop.feedback.stage import FeedbackStage

LABEL = re.compile(r"^[a-zA-Z_][a-zA-Z0-9_]*$")
RESEND = timedelta(seconds=1)
ROUTING = {
    "route": {
        "receiver": "default", "group_by": ["alertname"], "group_wait": "1s", "group_interval": "5m",
        "routes": [{"matchers": ['faas_name="fraud-v2"'], "receiver": "fraud-team",
                    "group_by": ["alertname", "faas_name"]}],
    },
    "receivers": [{"name": "default"}, {"name": "fraud-team"}],
}


def detection(cleared=False, function="fraud-v2"):
    return Detection(
        id=f"{function}:latency:1", time=datetime.now(UTC), kind="latency", score=0.9, severity="critical",
        series={semconv.FAAS_NAME: function, NAMESPACE: "ai-production", semconv.MODEL_NAME: "fraud",
                semconv.MODEL_VERSION: "2.1.0", "2nd.label": "x"},
        observed={"p95_ms": 2400.0}, expected={"p95_ms": (200.0, 800.0)},
        evidence=("http://grafana.local/d/latency",), cleared=cleared,
    )


@pytest.fixture
def alertmanagers(tmp_path):
    started = [Alertmanager(tmp_path / f"am{i}", ROUTING).start() for i in range(2)]
    yield started
    for alertmanager in started:
        alertmanager.stop()


def obsloop_alerts(alertmanager):
    """obsloop's alerts in an Alertmanager's API."""
    return [a for a in alertmanager.api("alerts") if a["labels"].get("alertname") == "obsloop_latency"]


def test_label_names_are_sanitized_and_the_originals_kept():
    assert [label_name(n) for n in ("faas.name", "k8s.namespace.name", "2nd", "ok_1")] == [
        "faas_name", "k8s_namespace_name", "_2nd", "ok_1"]
    alert = alert_from(detection(), datetime.now(UTC))
    posted = AlertmanagerApi("am", ["http://127.0.0.1:1"]).postable(alert, datetime.now(UTC))
    assert all(LABEL.match(name) for name in [*posted["labels"], *posted["annotations"]])
    assert posted["labels"]["faas_name"] == "fraud-v2" and posted["labels"]["_2nd_label"] == "x"
    assert json.loads(posted["annotations"][ORIGINAL_LABELS])["faas.name"] == "fraud-v2"


@pytest.mark.slow
def test_alerts_in_real_alertmanagers_route_resend_silence_and_resolve(alertmanagers, tmp_path):
    first, second = alertmanagers
    sender = Sender(RetryPolicy(attempts=2, base_delay=0.05, max_delay=0.1), registry=CollectorRegistry())
    alerter = Alerter([AlertmanagerApi("team-am", [first.url, second.url], RESEND)], sender,
                      group_by=(NAMESPACE, semconv.FAAS_NAME))

    async def scenario():
        stage = FeedbackStage(lambda: SimpleNamespace(alerter=alerter, handle=None))
        stage.start(lambda subscriber: lambda: None)  # re-sends every RESEND from now on
        deliveries = await alerter.process(detection())
        assert [d.delivered for d in deliveries] == [True, True]

        for alertmanager in alertmanagers:  # every Alertmanager of the list has it
            [alert] = await asyncio.to_thread(
                wait_until, lambda am=alertmanager: obsloop_alerts(am), "the alert in Alertmanager", 10.0, 0.1)
            assert alert["labels"]["faas_name"] == "fraud-v2"
            assert alert["labels"]["k8s_namespace_name"] == "ai-production"
            assert json.loads(alert["annotations"][ORIGINAL_LABELS])["faas.name"] == "fraud-v2"
            assert [r["name"] for r in alert["receivers"]] == ["fraud-team"]
            assert alert["status"]["state"] == "active"
            assert alert["generatorURL"] == "http://grafana.local/d/latency"
        groups = [g for g in first.api("alerts/groups") if g["receiver"]["name"] == "fraud-team"]
        assert [g["labels"] for g in groups] == [{"alertname": "obsloop_latency", "faas_name": "fraud-v2"}]
        assert [a["fingerprint"] for a in groups[0]["alerts"]] == [alert["fingerprint"]]

        # Valid for four intervals only: still active well after that because it is re-sent.
        first_end = datetime.fromisoformat(obsloop_alerts(first)[0]["endsAt"])
        await asyncio.sleep(6 * RESEND.total_seconds())
        [alert] = obsloop_alerts(first)
        assert datetime.fromisoformat(alert["endsAt"]) > first_end + 4 * RESEND
        assert alert["status"]["state"] == "active"

        now = datetime.now(UTC)
        silence = first.api("silences", {
            "matchers": [{"name": "faas_name", "value": "fraud-v2", "isRegex": False, "isEqual": True}],
            "startsAt": now.isoformat(), "endsAt": (now + timedelta(hours=1)).isoformat(),
            "createdBy": "on-call", "comment": "known regression, rollback running"})
        [alert] = obsloop_alerts(first)
        assert alert["status"]["state"] == "suppressed"
        assert alert["status"]["silencedBy"] == [silence["silenceID"]]
        assert obsloop_alerts(second)[0]["status"]["state"] == "active"  # its own silences

        await alerter.process(detection(cleared=True))
        for alertmanager in alertmanagers:
            await asyncio.to_thread(
                wait_until, lambda am=alertmanager: not obsloop_alerts(am), "the alert resolved", 10.0, 0.1)
        await stage.stop()

    asyncio.run(scenario())


@pytest.mark.slow
def test_without_resends_alertmanager_expires_the_alert(alertmanagers):
    """The other side of re-sending: an alert nobody re-sends ends four intervals later (a
    dead obsloop does not leave a page open for ever)."""
    first, _ = alertmanagers
    sender = Sender(RetryPolicy(attempts=1), registry=CollectorRegistry())
    alerter = Alerter([AlertmanagerApi("team-am", [first.url], RESEND)], sender)

    async def fire():
        await alerter.process(detection())
        await sender.close()

    asyncio.run(fire())
    assert wait_until(lambda: obsloop_alerts(first), "the alert in Alertmanager", 10.0, 0.1)
    wait_until(lambda: not obsloop_alerts(first), "the alert expired", 4 * RESEND.total_seconds() + 5, 0.1)


def test_the_readme_configuration_builds_the_notifier():
    """The README's example: one notifier posting to both Alertmanagers of a cluster."""
    import yaml

    from obsloop.feedback.build import _notifier
    from obsloop.feedback.config import FeedbackConfig

    readme = (Path(__file__).parents[2] / "README.md").read_text()
    block = next(b for b in re.findall(r"```yaml\n(.*?)```", readme, re.S) if "alertmanager_api" in b)
    config = FeedbackConfig.model_validate(yaml.safe_load(block)["feedback"])
    notifier = _notifier(config.notifiers[0])
    assert isinstance(notifier, AlertmanagerApi) and notifier.resend_interval == timedelta(seconds=60)
    [request_0, request_1] = notifier.resend([alert_from(detection(), datetime.now(UTC))])
    assert (request_0.url, request_1.url) == ("http://alertmanager-0.monitoring:9093/api/v2/alerts",
                                              "http://alertmanager-1.monitoring:9093/api/v2/alerts")


def test_an_alertmanager_api_notifier_needs_a_url_and_keeps_credentials_out_of_repr():
    from obsloop.feedback.build import _notifier
    from obsloop.feedback.config import NotifierConfig

    with pytest.raises(ValueError, match=r"feedback.notifiers\[am\]: url or urls is required"):
        _notifier(NotifierConfig(name="am", type="alertmanager_api"))
    config = NotifierConfig(name="am", type="alertmanager_api", urls=["http://obsloop:s3cret@am-1:9093"])
    assert "s3cret" not in repr(config) and "s3cret" not in str(config.model_dump())
    assert _notifier(config).resend([alert_from(detection(), datetime.now(UTC))])[0].url == \
        "http://obsloop:s3cret@am-1:9093/api/v2/alerts"
