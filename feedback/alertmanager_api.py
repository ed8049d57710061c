"""obsloop's alerts *in* a team's Alertmanager, delivered the way Prometheus delivers them.

Each Alertmanager gets ``POST /api/v2/alerts`` with the group's alerts whenever the group
changes, and the firing ones again every ``resend_interval`` (:meth:`AlertmanagerApi.resend`):
a firing alert carries ``endsAt`` four intervals ahead, as Prometheus sets it, so an alert
whose sender died resolves by itself instead of firing for ever; a resolved alert carries
the time it ended. Routing, grouping, silences, inhibition and receivers are then the
team's own Alertmanager configuration.

Alertmanager accepts only the classic label names ``[a-zA-Z_][a-zA-Z0-9_]*`` (for
annotations too), while obsloop's labels follow OpenTelemetry (``faas.name``): names are
sanitized as Prometheus sanitizes OpenTelemetry names (each invalid character becomes
``_``), and the original names and values are kept in the ``original_labels`` annotation.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime, timedelta

from obsloop.feedback.alerts import Alert, GroupChange
from obsloop.feedback.delivery import Request

API_PATH = "/api/v2/alerts"
DEFAULT_RESEND_INTERVAL = timedelta(minutes=1)
ORIGINAL_LABELS = "original_labels"
"""The annotation holding ``{original name: value}`` of every label whose name was changed."""
_INVALID = re.compile(r"[^a-zA-Z0-9_]")


def label_name(name: str) -> str:
    """``name`` as a valid Prometheus label name (``faas.name`` -> ``faas_name``)."""
    name = _INVALID.sub("_", name)
    return f"_{name}" if not name or name[0].isdigit() else name


def _sanitized(values: dict[str, str]) -> tuple[dict[str, str], dict[str, str]]:
    """The valid-named label set, and the originals of the names that changed. Empty values
    are left out (Alertmanager treats an empty label as absent); a sanitized name that
    collides with one already present keeps the first value, the other stays in the originals."""
    valid: dict[str, str] = {}
    renamed: dict[str, str] = {}
    for name, value in sorted(values.items(), key=lambda item: (label_name(item[0]) != item[0], item[0])):
        if value == "":
            continue
        valid_name = label_name(name)
        if valid_name != name:
            renamed[name] = value
        valid.setdefault(valid_name, value)
    return valid, renamed


def _time(value: datetime) -> str:
    return value.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


class AlertmanagerApi:
    """A notifier posting to one or more Alertmanagers (``urls``: each one's base URL, such as
    ``http://alertmanager:9093``). Every Alertmanager of a cluster gets every alert, as
    Prometheus sends to each one it is configured with."""

    def __init__(
        self,
        name: str,
        urls: Sequence[str],
        resend_interval: timedelta = DEFAULT_RESEND_INTERVAL,
        external_url: str = "",
        headers: dict[str, str] | None = None,
    ) -> None:
        if not urls:
            raise ValueError(f"feedback.notifiers[{name}]: url or urls is required")
        self.name = name
        self._urls = [url.rstrip("/") + API_PATH for url in urls]
        self.resend_interval = resend_interval
        self.external_url = external_url
        self._headers = headers or {}

    def postable(self, alert: Alert, now: datetime) -> dict[str, object]:
        """One ``postableAlert`` of Alertmanager's API v2."""
        labels, renamed = _sanitized(alert.labels)
        annotations, _ = _sanitized(alert.annotations)
        if renamed:
            annotations[ORIGINAL_LABELS] = json.dumps(renamed, sort_keys=True)
        ends_at = alert.ends_at if alert.status == "resolved" and alert.ends_at else now + 4 * self.resend_interval
        return {
            "labels": labels,
            "annotations": annotations,
            "startsAt": _time(alert.starts_at),
            "endsAt": _time(ends_at),
            "generatorURL": alert.links[0] if alert.links else self.external_url,
        }

    def _post(self, alerts: Iterable[Alert], key: str) -> list[Request]:
        now = datetime.now(UTC)
        payload = [self.postable(alert, now) for alert in alerts]
        if not payload:
            return []
        return [Request.json(self.name, url, payload, self._headers, kind="alert", key=key) for url in self._urls]

    def requests(self, change: GroupChange) -> list[Request]:
        """The whole group, as Prometheus sends every alert of a rule each evaluation."""
        return self._post(change.alerts, change.group_key)

    def resend(self, firing: Sequence[Alert]) -> list[Request]:
        """Every firing alert again, before its ``endsAt`` passes."""
        return self._post(firing, "resend")
