"""What a window detector is: one object per kind that turns closed windows into detections
and keeps its state in the host's checkpoint (docs/extending.md, "A new window detector").

A :class:`~obsloop.detectors.host.DetectorHost` reads the windows that closed since its last
step, oldest first, and hands each detector the windows of one start at a time
(:meth:`WindowDetector.process`), then the whole step once (:meth:`WindowDetector.finish`).
Its checkpoint keeps each detector's :meth:`~WindowDetector.state` under its ``name``.

The :class:`Scope` says where a detector runs when ``obsloop detector-worker`` processes split
the fleet by function: a ``SERIES`` detector judges each function from its own windows and
runs in the host of the partition that owns the function; a ``FLEET`` detector judges what
spans functions (model versions, cost centers) and runs once, in the leader's host.
``obsloop serve`` runs every scope in one host.
"""

from __future__ import annotations

import enum
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any, ClassVar, TypeVar

from pydantic import ValidationError

from obsloop.core.settings import Section
from obsloop.detectors.config import DetectorsConfig
from obsloop.detectors.cost import Budget
from obsloop.detectors.detection import Detection
from obsloop.detectors.metrics import DetectorMetrics
from obsloop.detectors.windows import Window

S = TypeVar("S", bound=Section)


class Scope(enum.Flag):
    """Which share of the fleet a detector needs to see to judge it."""

    SERIES = enum.auto()
    """Each function on its own: a detector worker runs it per partition, on the functions it owns."""
    FLEET = enum.auto()
    """Across functions (model versions, cost centers): a detector worker runs it once, in its leader."""
    ALL = SERIES | FLEET
    """``obsloop serve``: one host sees everything."""


@dataclass(frozen=True)
class Step:
    """One bounded step of a host: the windows starting in ``[start, end)`` have closed."""

    start: datetime
    end: datetime
    window_seconds: int
    client: Any
    """The ClickHouse client, for a detector that reads more than the windows."""
    database: str


@dataclass(frozen=True)
class ClosedWindows:
    """The windows that start at ``start``: one per function and model version with data
    (a function that received nothing has none)."""

    start: datetime
    windows: list[Window]
    step: Step

    @property
    def end(self) -> datetime:
        return self.start + timedelta(seconds=self.step.window_seconds)


@dataclass
class DetectorContext:
    """What a host hands to each detector kind's :meth:`WindowDetector.build`."""

    config: DetectorsConfig
    scope: Scope
    """The host's scope: a detector of several scopes does only this share."""
    metrics: DetectorMetrics
    report_dir: Path
    budgets: dict[str, Budget] = field(default_factory=dict)
    """Monthly budgets of the functions this host sees (from the manifests)."""

    def settings(self, name: str, model: type[S]) -> S:
        """The detector's own section, ``detectors.sections.<name>`` (defaults when absent)."""
        try:
            return model.model_validate(self.config.sections.get(name, {}))
        except ValidationError as exc:
            raise ValueError("; ".join(
                f"detectors.sections.{'.'.join(map(str, (name, *e['loc'])))}: {e['msg']}" for e in exc.errors()
            )) from exc


class WindowDetector:
    """One kind of window detector; subclasses set ``name`` and ``scope`` and implement
    :meth:`build`, :meth:`state`, :meth:`restore` and :meth:`process` or :meth:`finish`."""

    name: ClassVar[str]
    """Its key in the checkpoint and in ``detectors.sections``; unique in the registry."""
    scope: ClassVar[Scope]

    @classmethod
    def build(cls, context: DetectorContext) -> WindowDetector | None:
        """A fresh detector for a host, or None when its settings turn it off."""
        raise NotImplementedError

    def process(self, closed: ClosedWindows) -> list[Detection]:
        """The detections of the windows starting at ``closed.start``."""
        return []

    def finish(self, step: Step, found: Sequence[Detection]) -> list[Detection]:
        """The detections of the whole step, after every detector processed its windows;
        ``found`` holds what the step found so far."""
        return []

    def state(self) -> Any:
        """Everything needed to continue after a restart, as JSON-serialisable data."""
        raise NotImplementedError

    def restore(self, state: Any) -> None:
        """Continue from :meth:`state`'s output (raises ValueError, KeyError or TypeError
        when it cannot read it)."""
        raise NotImplementedError

    def series_count(self) -> int:
        """Live series models (summed into ``obsloop_detector_series``)."""
        return 0

    def forget_episodes(self) -> int:
        """Drop open episodes without clearing them; returns how many (see
        :meth:`~obsloop.detectors.host.DetectorHost.forget_open_episodes`)."""
        return 0
