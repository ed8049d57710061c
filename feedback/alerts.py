"""Turning detections into alerts: grouping, deduplication and resolution.

Each anomalous series and kind is one alert (its fingerprint). Alerts are grouped by
``group_by`` labels, as Alertmanager groups them, so one notification carries every firing
alert of, say, one function. A detection whose alert is already firing is not re-sent until
``repeat_interval`` has passed; a pending detection (not confirmed yet) is not sent at all;
a cleared detection resolves its alert, and the group
resolves when its last alert does. Each notifier decides what it sends of a group change:
Alertmanager-style receivers get the whole group, PagerDuty only the alerts that changed.

The firing alerts are kept in a small JSON file (when one is given): after a restart, the
detection that clears an anomaly still resolves the page that was sent before it, instead of
leaving a PagerDuty incident open for ever.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Literal, Protocol, runtime_checkable

from obsloop.detectors.detection import Detection
from obsloop.feedback.config import DEFAULT_GROUP_BY
from obsloop.feedback.delivery import DeliveryFailed, Request, Sender

log = logging.getLogger(__name__)

_RESOLVED_KEPT = 4096

Status = Literal["firing", "resolved"]


@dataclass(frozen=True)
class Alert:
    fingerprint: str
    status: Status
    labels: dict[str, str]
    annotations: dict[str, str]
    starts_at: datetime
    ends_at: datetime | None
    severity: str
    summary: str
    links: tuple[str, ...] = ()


@dataclass(frozen=True)
class GroupChange:
    """One notification's worth: the group's alerts now, and which of them changed."""

    group_key: str
    group_labels: dict[str, str]
    status: Status
    alerts: tuple[Alert, ...]
    changed: tuple[Alert, ...]

    @property
    def common_labels(self) -> dict[str, str]:
        first, *rest = [a.labels for a in self.alerts]
        return {k: v for k, v in first.items() if all(o.get(k) == v for o in rest)}

    @property
    def common_annotations(self) -> dict[str, str]:
        first, *rest = [a.annotations for a in self.alerts]
        return {k: v for k, v in first.items() if all(o.get(k) == v for o in rest)}


class Notifier(Protocol):
    name: str

    def requests(self, change: GroupChange) -> list[Request]: ...


@runtime_checkable
class Resending(Notifier, Protocol):
    """A notifier whose receiver forgets a firing alert unless told again (Alertmanager's
    API): the firing alerts go to it every ``resend_interval``, not only on changes."""

    resend_interval: timedelta

    def resend(self, firing: Sequence[Alert]) -> list[Request]: ...


@dataclass(frozen=True)
class Delivery:
    target: str
    delivered: bool
    reason: str = ""


def alert_from(detection: Detection, starts_at: datetime) -> Alert:
    labels = {
        "alertname": f"obsloop_{detection.kind}",
        "kind": detection.kind,
        "severity": detection.severity,
        **detection.series,
    }
    annotations = {"summary": detection.describe(), "score": f"{detection.score:.3f}"}
    for name, value in detection.observed.items():
        annotations[f"observed_{name}"] = f"{value:g}"
        if name in detection.expected:
            low, high = detection.expected[name]
            annotations[f"expected_{name}"] = f"{low:g}..{high:g}"
    return Alert(
        fingerprint=detection.fingerprint,
        status="resolved" if detection.cleared else "firing",
        labels=labels,
        annotations=annotations,
        starts_at=starts_at,
        ends_at=detection.time if detection.cleared else None,
        severity=detection.severity,
        summary=detection.describe(),
        links=detection.evidence,
    )


@dataclass
class _State:
    alert: Alert
    sent_at: datetime
    group: str

    def to_json(self) -> dict[str, Any]:
        a = self.alert
        return {"fingerprint": a.fingerprint, "labels": a.labels, "annotations": a.annotations,
                "starts_at": a.starts_at.isoformat(), "severity": a.severity, "summary": a.summary,
                "links": list(a.links), "sent_at": self.sent_at.isoformat(), "group": self.group}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> _State:
        alert = Alert(fingerprint=data["fingerprint"], status="firing", labels=data["labels"],
                      annotations=data["annotations"], starts_at=datetime.fromisoformat(data["starts_at"]),
                      ends_at=None, severity=data["severity"], summary=data["summary"],
                      links=tuple(data["links"]))
        return cls(alert, datetime.fromisoformat(data["sent_at"]), data["group"])


class Alerter:
    def __init__(
        self,
        notifiers: Sequence[Notifier],
        sender: Sender,
        group_by: Sequence[str] = DEFAULT_GROUP_BY,
        repeat_interval: timedelta = timedelta(hours=4),
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
        state_file: Path | None = None,
    ) -> None:
        self.notifiers = list(notifiers)
        self.sender = sender
        self.group_by = tuple(group_by)
        self.repeat_interval = repeat_interval
        self.clock = clock
        self.state_file = state_file
        self._firing: dict[str, _State] = self._load()
        self._resolved: dict[str, None] = {}
        """Ids of the detections resolved lately (insertion-ordered, bounded): a clearing
        delivered twice resolves once."""

    def _load(self) -> dict[str, _State]:
        if self.state_file is None or not self.state_file.exists():
            return {}
        try:
            entries = json.loads(self.state_file.read_text())
            states = {state.alert.fingerprint: state
                      for state in (_State.from_json(entry) for entry in entries)}
        except (ValueError, KeyError, TypeError, AttributeError) as exc:
            # Unreadable state must not stop the alerts to come; the old ones time out
            # in Alertmanager (resolve_timeout) and need a manual resolve in PagerDuty.
            log.error("firing alerts in %s not restored (%s): alerts sent before the restart "
                      "will not be resolved automatically", self.state_file, exc)
            return {}
        return states

    def _save(self) -> None:
        if self.state_file is None:
            return
        self.state_file.parent.mkdir(parents=True, exist_ok=True)
        partial = self.state_file.with_suffix(".partial")
        partial.write_text(json.dumps([state.to_json() for state in self._firing.values()]))
        os.replace(partial, self.state_file)

    @property
    def firing(self) -> list[Alert]:
        """The alerts sent as firing and not resolved yet."""
        return [state.alert for state in self._firing.values()]

    def _group(self, labels: dict[str, str]) -> tuple[str, dict[str, str]]:
        group_labels = {k: labels[k] for k in self.group_by if k in labels}
        key = hashlib.sha256(json.dumps(sorted(group_labels.items())).encode()).hexdigest()[:16]
        return key, group_labels

    async def process(self, detection: Detection) -> list[Delivery]:
        """Notify about ``detection`` if it changes anything; returns one entry per target
        that was sent to (empty when deduplicated)."""
        if detection.pending:
            return []
        now = self.clock()
        known = self._firing.get(detection.fingerprint)
        if detection.cleared:
            if detection.id in self._resolved:
                return []
            self._resolved[detection.id] = None
            if len(self._resolved) > _RESOLVED_KEPT:
                del self._resolved[next(iter(self._resolved))]
            # Not known here: fired by another process (a detector worker that owned the
            # series before a rebalance) or before the state file was lost. Resolve anyway;
            # a receiver ignores the resolve of an alert it does not have, while an
            # unresolved page stays open for ever.
            self._firing.pop(detection.fingerprint, None)
            starts_at = known.alert.starts_at if known else detection.time
            changed = replace(alert_from(detection, starts_at), ends_at=now)
        else:
            if known is not None and now - known.sent_at < self.repeat_interval:
                return []
            changed = alert_from(detection, known.alert.starts_at if known else detection.time)
        group, group_labels = self._group(changed.labels)
        if not detection.cleared:
            self._firing[detection.fingerprint] = _State(changed, now, group)
        self._save()
        firing = tuple(s.alert for s in self._firing.values() if s.group == group)
        others = tuple(a for a in firing if a.fingerprint != changed.fingerprint)
        change = GroupChange(
            group_key="{}:{"
            + ", ".join(f'{k}="{v}"' for k, v in sorted(group_labels.items()))
            + "}",
            group_labels=group_labels,
            status="firing" if firing else "resolved",
            alerts=(*others, changed),
            changed=(changed,),
        )
        requests = [r for n in self.notifiers for r in n.requests(change)]
        results = await asyncio.gather(*(self._deliver(r) for r in requests))
        return list(results)

    @property
    def resend_interval(self) -> timedelta | None:
        """How often :meth:`resend` must run: the shortest interval of the notifiers that
        need it; None when none does."""
        return min((n.resend_interval for n in self.notifiers if isinstance(n, Resending)), default=None)

    async def resend(self) -> list[Delivery]:
        """Send the firing alerts again to the notifiers that need it. A failed resend is
        not a dead letter: the next one follows within the interval."""
        firing = self.firing
        requests = [r for n in self.notifiers if isinstance(n, Resending) for r in n.resend(firing)]
        return list(await asyncio.gather(*(self._deliver(r, dead_letter=False) for r in requests)))

    async def _deliver(self, request: Request, dead_letter: bool = True) -> Delivery:
        try:
            await self.sender.send(request, dead_letter)
        except DeliveryFailed as exc:
            log.error("alert not delivered: %s", exc)
            return Delivery(request.target, False, exc.reason)
        return Delivery(request.target, True)
