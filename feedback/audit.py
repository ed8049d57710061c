"""The audit table: every decision the feedback responder makes, taken or refused, with its reason.

It is also the responder's memory. Cooldowns and daily limits are counted from it (so a restart
does not reset them), and "was this detection already acted on" is asked of it before any
retraining run is triggered. Rows carry reasons the responder wrote itself, never raw exception
text from a forge or webhook, so no token can reach it.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Literal

from obsloop.pipelines.schema import SchemaOptions

AuditOutcome = Literal["applied", "dry_run", "refused", "noop", "failed", "invalid"]
"""``invalid``: a manifest or policy file that does not parse or validate."""

AUDIT_TABLE = "feedback_audit"
ALERT = "alert"
"""The ``action`` of a row recording an alert's deliveries."""
INVALID_FILE = "manifest"
"""The ``action`` of a row recording a manifest or policy file that is invalid."""


def audit_ddl(options: SchemaOptions) -> str:
    return f"""CREATE TABLE IF NOT EXISTS `{options.database}`.{AUDIT_TABLE} {options.on_cluster} (
    time DateTime64(3, 'UTC'),
    deployment LowCardinality(String),
    manifest String,
    detection_id String,
    action LowCardinality(String),
    outcome LowCardinality(String),
    reason String,
    before String,
    after String,
    reference String
) ENGINE = {options.engine()} ORDER BY (deployment, time)"""


@dataclass(frozen=True)
class TakenAction:
    """One action already taken (or, in dry-run, that would have been taken)."""

    deployment: str
    action: str
    time: datetime


@dataclass(frozen=True)
class AuditEntry:
    time: datetime
    deployment: str
    action: str
    """A feedback action's name (``scale_up``, ``rollback``, ...), :data:`ALERT` or
    :data:`INVALID_FILE`."""
    outcome: AuditOutcome
    reason: str
    manifest: str = ""
    """``path`` or ``path:line`` in the GitOps repository."""
    detection_id: str = ""
    before: dict[str, Any] = field(default_factory=dict)
    after: dict[str, Any] = field(default_factory=dict)
    reference: str = ""
    """Commit sha, pull-request URL or retraining run id."""


_COLUMNS = [
    "time",
    "deployment",
    "manifest",
    "detection_id",
    "action",
    "outcome",
    "reason",
    "before",
    "after",
    "reference",
]


class AuditLog:
    """Reads and writes ``feedback_audit`` through a clickhouse-connect client (the embedded
    ``chdb://`` one or a server's; the caller owns it, since only one embedded client may
    open a data directory per process)."""

    def __init__(self, client: Any, database: str = "default") -> None:
        self._client = client
        self._table = f"{database}.{AUDIT_TABLE}"
        client.command(audit_ddl(SchemaOptions(database=database)))

    def record(self, entry: AuditEntry) -> None:
        row = [
            entry.time.astimezone(UTC),
            entry.deployment,
            entry.manifest,
            entry.detection_id,
            entry.action,
            entry.outcome,
            entry.reason,
            json.dumps(entry.before, sort_keys=True),
            json.dumps(entry.after, sort_keys=True),
            entry.reference,
        ]
        self._client.insert(self._table, [row], column_names=_COLUMNS)

    def taken(self, since: datetime, dry_run: bool) -> list[TakenAction]:
        """Actions that count against cooldowns and daily limits: every row but alerts and
        invalid files, so a retired action's rows still count. A dry run counts its own
        would-be actions, so its output shows what the live responder would have done."""
        outcomes = ["applied", "dry_run"] if dry_run else ["applied"]
        result = self._client.query(
            f"SELECT deployment, action, time FROM {self._table} "
            "WHERE time >= {since:DateTime64(3, 'UTC')} AND outcome IN {outcomes:Array(String)} "
            "AND action NOT IN {rows:Array(String)} ORDER BY time",
            parameters={
                "since": since.astimezone(UTC).replace(tzinfo=None),
                "outcomes": outcomes,
                "rows": [ALERT, INVALID_FILE],
            },
        )
        return [
            TakenAction(deployment, action, time.replace(tzinfo=UTC))
            for deployment, action, time in result.result_rows
        ]

    def done(self, detection_id: str, action: str) -> str | None:
        """The reference of an applied (or dry-run) action for this detection, if any."""
        result = self._client.query(
            f"SELECT reference FROM {self._table} WHERE detection_id = {{id:String}} "
            "AND action = {action:String} AND outcome IN ('applied', 'dry_run') LIMIT 1",
            parameters={"id": detection_id, "action": action},
        )
        return result.result_rows[0][0] if result.result_rows else None

    def entries(self, deployment: str | None = None) -> list[AuditEntry]:
        where = "WHERE deployment = {d:String}" if deployment is not None else ""
        result = self._client.query(
            f"SELECT {', '.join(_COLUMNS)} FROM {self._table} {where} ORDER BY time",
            parameters={"d": deployment} if deployment is not None else None,
        )
        return [
            AuditEntry(
                time=row[0].replace(tzinfo=UTC),
                deployment=row[1],
                manifest=row[2],
                detection_id=row[3],
                action=row[4],
                outcome=row[5],
                reason=row[6],
                before=json.loads(row[7]),
                after=json.loads(row[8]),
                reference=row[9],
            )
            for row in result.result_rows
        ]
