"""Collector kinds by name: what ``collectors.<name>`` configures and what it builds.

As the OpenTelemetry Collector's factories: each kind is declared once, as a
:class:`CollectorKind` (its section's model, the pullers it builds, the push routes it
serves, the platforms it prices), and everything else is derived from the declarations:
``obsloop collect``'s choices, the pullers ``obsloop serve`` starts, the routes on the
OTLP/HTTP port, the configuration sections a file may hold and pricing's dispatch.

The shipped kinds are listed by module (:data:`BUILTIN`) and imported on first use; code
embedding obsloop adds its own with :func:`register`. Why: docs/design/collector-kinds.md.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from obsloop.collectors.checkpoint import CheckpointStore
from obsloop.collectors.enrich import TagLookup
from obsloop.collectors.normalize import Invocation
from obsloop.collectors.pricing import FORMULAS, PriceFormula
from obsloop.core.manifests import PLATFORM_ALIASES, normalize_platform
from obsloop.core.settings import Section

if TYPE_CHECKING:
    from aiohttp import web

    from obsloop.collectors.config import CollectorsConfig
    from obsloop.collectors.forward import AsyncSubmit, Submit
    from obsloop.collectors.push_auth import PortGuard
    from obsloop.collectors.request_budget import Limits

BUILTIN: dict[str, str] = {
    "aws": "obsloop.collectors.aws",
    "gcp": "obsloop.collectors.gcp",
    "azure": "obsloop.collectors.azure",
    "prometheus": "obsloop.collectors.prometheus",
}
"""The shipped kinds, each by the module whose ``KIND`` declares it (in ``collect``'s order)."""

Enrich = Callable[[Invocation], Invocation]


class Puller(Protocol):
    def poll_once(self) -> int:
        """Read what is new and hand it to the intake; returns the records handed."""
        ...


@dataclass
class Scheduled:
    """One puller and its polling interval; ``name`` labels its progress and its log lines."""

    name: str
    puller: Puller
    interval: float


@dataclass(frozen=True)
class PullContext:
    """What a kind's builder gets: its section, and the parts every puller shares."""

    collectors: CollectorsConfig
    section: Any
    """``collectors.<name>``, an instance of the kind's ``config`` model."""
    submit: Submit
    checkpoint_dir: Path
    now: float
    """Wall-clock seconds at build time: a first run backfills from ``now - backfill_seconds``."""
    enricher: Callable[[TagLookup | None], Enrich]

    def backfill_start(self) -> datetime:
        """Where a first run (no checkpoint yet) starts: ``backfill_seconds`` before :attr:`now`."""
        return datetime.fromtimestamp(self.now - self.section.backfill_seconds, UTC)

    def checkpoints(self, name: str) -> CheckpointStore:
        """The checkpoint file of the puller ``name`` (its :class:`Scheduled` name)."""
        return CheckpointStore(self.checkpoint_dir, name)

    def enrich(self, tag_lookup: TagLookup | None = None) -> Enrich:
        """Model, cost center and cost for invocations (one pricing per process)."""
        return self.enricher(tag_lookup)


@dataclass(frozen=True)
class PushContext:
    """What a kind's ``mount`` gets: the OTLP/HTTP port's application, its guard and the intake."""

    app: web.Application
    guard: PortGuard
    """Every route is behind it (the port's bearer token unless the route names its own credential)."""
    collectors: CollectorsConfig
    limits: Limits
    submit: AsyncSubmit
    enrich: Enrich


@dataclass(frozen=True)
class CollectorKind:
    """One kind of collector, configured as ``collectors.<name>``."""

    name: str
    config: type[Section]
    """The model of ``collectors.<name>``; ``enabled`` decides whether ``serve`` runs its pullers."""
    build: Callable[[PullContext], list[Scheduled]] | None = None
    """Its pullers (``obsloop collect <name>``, and ``serve`` when enabled); ``None``: push only."""
    mount: Callable[[PushContext], None] | None = None
    """Adds its push routes to the OTLP/HTTP port (``serve`` always calls it)."""
    pricing: Mapping[str, PriceFormula] = field(default_factory=dict)
    """Cost formulas of the ``cloud.platform`` values it reports that the shipped table does not price."""
    manifest_platforms: Mapping[str, str] = field(default_factory=dict)
    """Manifest ``spec.runtime.platform`` spellings -> the ``cloud.platform`` value they name."""


class UnknownCollector(ValueError):
    pass


_loaded: dict[str, CollectorKind] = {}


def names() -> tuple[str, ...]:
    """Every kind's name, the shipped ones first (nothing is imported)."""
    return (*BUILTIN, *(name for name in _loaded if name not in BUILTIN))


def kind(name: str) -> CollectorKind:
    """The kind called ``name``, its module imported on first use."""
    if name in _loaded:
        return _loaded[name]
    if name not in BUILTIN:
        raise UnknownCollector(f"unknown collector {name!r}; expected one of {', '.join(names())}")
    declared: CollectorKind = importlib.import_module(BUILTIN[name]).KIND
    if declared.name != name:
        raise ValueError(f"{BUILTIN[name]}.KIND is named {declared.name!r}, listed as {name!r}")
    _add(declared)
    return declared


def kinds() -> Iterator[CollectorKind]:
    for name in names():
        yield kind(name)


def register(declared: CollectorKind) -> None:
    """Add a kind defined outside :data:`BUILTIN` (before the configuration is loaded, so
    that ``collectors.<name>`` is known)."""
    if not declared.name.isidentifier():
        raise ValueError(f"collector name {declared.name!r} is not an identifier")
    if declared.name in names():
        raise ValueError(f"collector {declared.name!r} is already registered")
    _add(declared)


def _add(declared: CollectorKind) -> None:
    if priced := sorted(set(declared.pricing) & set(FORMULAS)):
        raise ValueError(f"collector {declared.name!r}: {', '.join(priced)} already priced")
    FORMULAS.update(declared.pricing)
    PLATFORM_ALIASES.update({normalize_platform(spelling): platform
                             for spelling, platform in declared.manifest_platforms.items()})
    _loaded[declared.name] = declared


def section(collectors: CollectorsConfig, name: str) -> Any | None:
    """``collectors.<name>``; ``None`` for a registered kind the configuration leaves out."""
    kind(name)  # an unknown name is an error, not an absent section
    return getattr(collectors, name, None)
