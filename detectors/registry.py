"""The window detector kinds a host builds, by name: the built-in ones, then any
:func:`register`-ed one (docs/extending.md, "A new window detector").

Registration order is the order a host runs them in, and so the order of their detections
within a window.
"""

from __future__ import annotations

from obsloop.detectors.builtin import BudgetForecasts, CanaryComparison, ModelQuality, SeriesScoring
from obsloop.detectors.model_drift import ModelDrift
from obsloop.detectors.window_detector import DetectorContext, WindowDetector

KINDS: dict[str, type[WindowDetector]] = {}


def register(kind: type[WindowDetector]) -> type[WindowDetector]:
    """Add a detector kind (usable as a class decorator); its name must be new."""
    if kind.name in KINDS and KINDS[kind.name] is not kind:
        raise ValueError(f"a window detector named {kind.name!r} is registered already: {KINDS[kind.name]}")
    KINDS[kind.name] = kind
    return kind


for _kind in (SeriesScoring, CanaryComparison, BudgetForecasts, ModelDrift, ModelQuality):
    register(_kind)


def build(context: DetectorContext) -> list[WindowDetector]:
    """A fresh detector of every registered kind of the host's scope that its settings turn on."""
    unknown = sorted(set(context.config.sections) - set(KINDS))
    if unknown:
        raise ValueError(f"detectors.sections: no window detector named {', '.join(unknown)} "
                         f"(registered: {', '.join(KINDS)})")
    detectors = []
    for kind in KINDS.values():
        if kind.scope & context.scope:
            detector = kind.build(context)
            if detector is not None:
                detectors.append(detector)
    return detectors
