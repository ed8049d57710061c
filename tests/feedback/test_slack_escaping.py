"""Slack messages built from data: control characters escaped, blocks within Slack's limits.
Posted to a real local HTTP receiver standing in for the incoming webhook."""

from __future__ import annotations

import asyncio
import re
from datetime import timedelta

from pydantic import SecretStr

from feedback.test_alerts import FAST, SLACK_PATH, T0, Clock, detection
from obsloop.detectors.detection import NAMESPACE
from obsloop.feedback.alerts import Alerter, GroupChange, alert_from
from obsloop.feedback.delivery import Sender
from obsloop.feedback.notifiers import Slack

SLACK_SECTION_CHARS = 3000
"""Slack's documented limits (Block Kit reference): a section's text, blocks per message."""
SLACK_MAX_BLOCKS = 50
HOSTILE = "<!channel> & <https://evil.example|click here> <@U123>"


def slack_texts(receiver) -> list[list[str]]:
    return [[block["text"]["text"] for block in r.json()["blocks"]] for r in receiver.at(SLACK_PATH)]


def test_data_in_a_message_can_neither_ping_nor_link(receiver, registry) -> None:
    async def scenario() -> None:
        sender = Sender(FAST, None, timeout_seconds=2, registry=registry)
        alerter = Alerter([Slack("slack", SecretStr(receiver.url(SLACK_PATH)))], sender,
                          group_by=(NAMESPACE,), repeat_interval=timedelta(hours=1), clock=Clock())
        await alerter.process(detection("latency", function=HOSTILE))
        await sender.close()

    asyncio.run(scenario())
    [[heading, section]] = slack_texts(receiver)
    assert "&lt;!channel&gt; &amp; &lt;https://evil.example|click here&gt; &lt;@U123&gt;" in section
    # the only mrkdwn control sequence left is obsloop's own evidence link
    assert re.findall(r"<[^>]*>", section) == ["<http://grafana.local/d/latency|evidence>"]
    assert "<" not in heading


def test_a_large_group_is_split_within_slack_limits(receiver, registry) -> None:
    count = 400
    alerts = tuple(
        alert_from(detection("latency", function=f"fn-{i}-" + "<&>" * (40 + i * 7)), T0)
        for i in range(count)
    )
    change = GroupChange("{}:{}", {}, "firing", alerts, alerts)
    requests = Slack("slack", SecretStr(receiver.url(SLACK_PATH))).requests(change)

    async def post() -> None:
        sender = Sender(FAST, None, timeout_seconds=2, registry=registry)
        for request in requests:
            assert (await sender.send(request)).status == 200
        await sender.close()

    asyncio.run(post())
    messages = slack_texts(receiver)
    assert len(messages) == len(requests) > 1
    for number, texts in enumerate(messages, 1):
        assert len(texts) <= SLACK_MAX_BLOCKS
        assert texts[0].endswith(f"400 alert(s) ({number}/{len(messages)})")
        assert all(len(text) <= SLACK_SECTION_CHARS for text in texts)
    lines = [line for texts in messages for text in texts[1:] for line in text.split("\n")]
    assert len(lines) == count  # every alert once, in order
    assert [line.split("-")[1] for line in lines] == [str(i) for i in range(count)]
    shortened = [line for line in lines if "…" in line]
    assert shortened, "some summaries are longer than a section and must be shortened"
    for line in lines:  # shortening never leaves half an escape behind
        assert re.fullmatch(r"[^&<>]*((&amp;|&lt;|&gt;)[^&<>]*)*<http://grafana.local/d/latency\|evidence>",
                            line.split(" ", 2)[2]), line[:120]
