"""On-call receivers: how one group change is written for each of them.

- :class:`AlertmanagerWebhook`: the Alertmanager webhook payload, version 4, so anything
  that accepts Alertmanager (Grafana OnCall, Opsgenie, custom receivers) accepts obsloop;
- :class:`PagerDuty`: Events API v2, one trigger or resolve per changed alert, with the
  alert fingerprint as ``dedup_key`` so PagerDuty folds repeats into one incident;
- :class:`Slack`: an incoming webhook message (the URL itself is the secret);
- :class:`SignedWebhook`: generic JSON with ``X-Obsloop-Signature-256: sha256=<hex>``, the
  HMAC-SHA256 of the raw body under a shared key (verify before parsing).
"""

from __future__ import annotations

import hashlib
import hmac
import json
from datetime import UTC, datetime
from typing import Any

from pydantic import SecretStr

from obsloop.feedback.alerts import Alert, GroupChange
from obsloop.feedback.delivery import Request

SIGNATURE_HEADER = "X-Obsloop-Signature-256"
PAGERDUTY_URL = "https://events.pagerduty.com/v2/enqueue"
_ZERO_TIME = "0001-01-01T00:00:00Z"
_PD_SEVERITY = {"critical": "critical", "error": "error", "warning": "warning", "info": "info"}


def _time(value: datetime | None) -> str:
    if value is None:
        return _ZERO_TIME
    return value.astimezone(UTC).isoformat().replace("+00:00", "Z")


def _json(payload: Any) -> bytes:
    return json.dumps(payload, separators=(",", ":"), sort_keys=True).encode()


def sign(key: str, body: bytes) -> str:
    return "sha256=" + hmac.new(key.encode(), body, hashlib.sha256).hexdigest()


def alertmanager_payload(change: GroupChange, receiver: str, external_url: str) -> dict:
    def alert(a: Alert) -> dict:
        return {
            "status": a.status,
            "labels": a.labels,
            "annotations": a.annotations,
            "startsAt": _time(a.starts_at),
            "endsAt": _time(a.ends_at),
            "generatorURL": a.links[0] if a.links else external_url,
            "fingerprint": a.fingerprint,
        }

    return {
        "version": "4",
        "groupKey": change.group_key,
        "truncatedAlerts": 0,
        "status": change.status,
        "receiver": receiver,
        "groupLabels": change.group_labels,
        "commonLabels": change.common_labels,
        "commonAnnotations": change.common_annotations,
        "externalURL": external_url,
        "alerts": [alert(a) for a in change.alerts],
    }


class AlertmanagerWebhook:
    def __init__(
        self, name: str, url: str, receiver: str = "obsloop", external_url: str = ""
    ) -> None:
        self.name, self._url, self.receiver, self.external_url = name, url, receiver, external_url

    def requests(self, change: GroupChange) -> list[Request]:
        payload = alertmanager_payload(change, self.receiver, self.external_url)
        return [Request(self.name, self._url, _json(payload), record=payload, key=change.group_key)]


class PagerDuty:
    def __init__(
        self, name: str, routing_key: SecretStr, url: str = PAGERDUTY_URL, source: str = "obsloop"
    ) -> None:
        self.name, self._routing_key, self._url, self.source = name, routing_key, url, source

    def requests(self, change: GroupChange) -> list[Request]:
        result = []
        for a in change.changed:
            event: dict[str, Any] = {
                "event_action": "trigger" if a.status == "firing" else "resolve",
                "dedup_key": a.fingerprint,
            }
            if a.status == "firing":
                event["payload"] = {
                    "summary": a.summary[:1024],
                    "source": a.labels.get("faas.name", self.source),
                    "severity": _PD_SEVERITY.get(a.severity, "warning"),
                    "timestamp": _time(a.starts_at),
                    "component": a.labels.get("model.name", ""),
                    "group": a.labels.get("k8s.namespace.name", ""),
                    "class": a.labels.get("kind", ""),
                    "custom_details": {"labels": a.labels, "annotations": a.annotations},
                }
                event["links"] = [{"href": link, "text": "evidence"} for link in a.links]
            body = _json({"routing_key": self._routing_key.get_secret_value(), **event})
            result.append(Request(self.name, self._url, body, record=event, key=a.fingerprint))
        return result


class Slack:
    """Incoming-webhook messages. Summaries carry data (function and model names, attribute
    values), so ``&``, ``<`` and ``>`` are escaped as Slack asks: a name such as
    ``<!channel>`` or ``<https://x|click>`` shows as text instead of pinging or linking.
    Lines are packed into section blocks of at most :data:`SLACK_SECTION_CHARS` characters,
    at most :data:`SLACK_MAX_BLOCKS` per message; a larger group is sent as several messages."""

    def __init__(self, name: str, webhook_url: SecretStr) -> None:
        self.name, self._url = name, webhook_url

    def requests(self, change: GroupChange) -> list[Request]:
        icon = ":rotating_light:" if change.status == "firing" else ":white_check_mark:"
        heading = f"{icon} *{change.status.upper()}* {len(change.alerts)} alert(s)"
        sections = _sections([_slack_line(a) for a in change.alerts])
        per_message = SLACK_MAX_BLOCKS - 1  # the heading is a block too
        messages = [sections[i : i + per_message] for i in range(0, len(sections), per_message)] or [[]]
        result = []
        for number, chunk in enumerate(messages, 1):
            title = heading if len(messages) == 1 else f"{heading} ({number}/{len(messages)})"
            payload = {
                "text": title,
                "blocks": [{"type": "section", "text": {"type": "mrkdwn", "text": text}}
                           for text in (title, *chunk)],
            }
            result.append(Request(self.name, self._url.get_secret_value(), _json(payload),
                                  record=payload, key=change.group_key))
        return result


SLACK_SECTION_CHARS = 3000
"""Slack's limit on a section block's text."""
SLACK_MAX_BLOCKS = 50
"""Slack's limit on blocks in one message."""
_SLACK_ESCAPES = str.maketrans({"&": "&amp;", "<": "&lt;", ">": "&gt;"})


def slack_escape(text: str) -> str:
    """``text`` as literal mrkdwn: Slack's three control characters escaped."""
    return text.translate(_SLACK_ESCAPES)


def _slack_line(alert: Alert) -> str:
    """One alert's line, at most a section long: the summary is shortened by whole
    characters (an escape is never cut in half); the link is obsloop's own and kept whole."""
    link = ""
    if alert.links:  # ``|`` would end the URL inside ``<url|label>``
        link = f" <{slack_escape(alert.links[0]).replace('|', '%7C')}|evidence>"
        link = link if len(link) <= SLACK_SECTION_CHARS // 2 else ""
    prefix = f"• [{alert.status}] "
    summary = slack_escape(alert.summary)
    budget = SLACK_SECTION_CHARS - len(prefix) - len(link)
    if len(summary) > budget:
        pieces, used = [], 1  # room for the ellipsis
        for piece in map(slack_escape, alert.summary):
            if used + len(piece) > budget:
                break
            pieces.append(piece)
            used += len(piece)
        summary = "".join(pieces) + "…"
    return f"{prefix}{summary}{link}"


def _sections(lines: list[str]) -> list[str]:
    """Consecutive lines joined by newlines into texts of at most a section's length."""
    sections: list[str] = []
    for line in lines:
        if sections and len(sections[-1]) + 1 + len(line) <= SLACK_SECTION_CHARS:
            sections[-1] += "\n" + line
        else:
            sections.append(line)
    return sections


class SignedWebhook:
    def __init__(self, name: str, url: str, key: SecretStr) -> None:
        self.name, self._url, self._key = name, url, key

    def requests(self, change: GroupChange) -> list[Request]:
        payload = alertmanager_payload(change, "obsloop", "")
        payload["sentAt"] = _time(datetime.now(UTC))
        body = _json(payload)
        headers = {SIGNATURE_HEADER: sign(self._key.get_secret_value(), body)}
        return [Request(self.name, self._url, body, headers, record=payload, key=change.group_key)]
