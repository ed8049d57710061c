"""The feedback loop's tables: its audit log and its dead letters.

They belong to the schema ``obsloop schema apply`` and ``obsloop serve`` create (see
:mod:`obsloop.schema`), not only to a running loop: the dashboards read them on every
installation, including those where the loop has never run.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from obsloop.feedback.audit import audit_ddl
from obsloop.feedback.deadletter import dead_letter_ddl

if TYPE_CHECKING:
    from obsloop.pipelines.schema import SchemaOptions


def feedback_ddl(options: SchemaOptions) -> list[str]:
    return [audit_ddl(options), dead_letter_ddl(options)]
