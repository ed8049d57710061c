"""Canary comparison: a function serving two model versions at once is in a blue/green
rollout; the version with less traffic is the canary (green), the other the baseline (blue).

A canary is judged against blue *in the same window*, not against its own history (it has
none), so a regression shows the window it happens. A regression opens an episode and emits
one detection labelled ``deployment.variant = green`` (the feedback loop answers it by
shifting ``trafficSplit`` back to blue); ``clear_after`` windows in which green is no worse
close it with a clearing.

>>> from datetime import UTC, datetime
>>> from obsloop.detectors.windows import SeriesKey, Window
>>> start = datetime(2026, 11, 27, 12, 0, tzinfo=UTC)
>>> def window(version, invocations, errors, p95):
...     key = SeriesKey("aws_lambda", "fraud-scorer", "fraud-detection-model", version)
...     return Window(start, 60, key, "spans", invocations, errors, 0, p95 / 2, p95, p95 * 1.5, 0.0, 0.0)
>>> watch = CanaryWatch(min_invocations=20)
>>> [d.summary for d in watch.compare(start, [window("2.1.0", 900, 9, 80.0), window("2.2.0", 100, 1, 85.0)])]
[]
>>> [d.kind for d in watch.compare(start, [window("2.1.0", 900, 9, 80.0), window("2.2.0", 100, 1, 400.0)])]
['latency']
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Iterable
from datetime import datetime, timedelta
from typing import Any

from obsloop.detectors.detection import VARIANT, Detection
from obsloop.detectors.windows import Window


class CanaryWatch:
    def __init__(
        self,
        *,
        latency_tolerance: float = 0.5,
        error_tolerance: float = 0.02,
        min_invocations: int = 20,
        clear_after: int = 3,
    ) -> None:
        self.latency_tolerance = latency_tolerance
        """Green's p95 may exceed blue's by this fraction before it is a regression."""
        self.error_tolerance = error_tolerance
        """Green's error rate may exceed blue's by this much (absolute) before it is one."""
        self.min_invocations = min_invocations
        """Either side needs this many invocations in the window to be judged at all."""
        self.clear_after = clear_after
        self.open: dict[str, dict[str, Any]] = {}
        """Open episodes by id: the detection's fields and the count of good windows since."""

    def compare(self, start: datetime, windows: Iterable[Window]) -> list[Detection]:
        """Judge every function with two or more versions in the windows starting at ``start``."""
        by_function: dict[tuple[str, str], list[Window]] = defaultdict(list)
        for window in windows:
            if window.invocations:
                by_function[(window.key.platform, window.key.function)].append(window)
        detections = []
        judged: set[str] = set()
        for versions in by_function.values():
            if len({w.key.model_version for w in versions}) < 2:
                continue
            blue, *greens = sorted(versions, key=lambda w: w.invocations, reverse=True)
            for green in greens:
                if min(blue.invocations, green.invocations) < self.min_invocations:
                    continue
                for kind, regressed, expected_high, observed in self._checks(blue, green):
                    episode = f"canary-{green.key.function}-{green.key.model_version}-{kind}"
                    judged.add(episode)
                    detection = self._update(episode, regressed, start, blue, green, kind, expected_high, observed)
                    if detection is not None:
                        detections.append(detection)
        for episode in list(self.open):
            if episode not in judged:  # green no longer served: the rollout ended
                detections.append(self._clear(episode, start))
        return detections

    def _checks(self, blue: Window, green: Window) -> list[tuple[str, bool, float, float]]:
        # A canary sees few invocations per window: one cold start moves its p95 and one
        # error its error rate. Slow means the median is slower too; failing means the
        # difference is also significant (two-proportion z-test, z > 3).
        latency_high = blue.p95_ms * (1 + self.latency_tolerance)
        slow = green.p95_ms > latency_high and green.p50_ms > blue.p50_ms * (1 + self.latency_tolerance)
        blue_errors = blue.errors / blue.invocations
        green_errors = green.errors / green.invocations
        errors_high = blue_errors + self.error_tolerance
        pooled = (blue.errors + green.errors) / (blue.invocations + green.invocations)
        spread = math.sqrt(pooled * (1 - pooled) * (1 / blue.invocations + 1 / green.invocations))
        significant = spread > 0 and (green_errors - blue_errors) / spread > 3
        return [
            ("latency", slow, latency_high, green.p95_ms),
            ("error_rate", green_errors > errors_high and significant, errors_high, green_errors),
        ]

    def _update(self, episode: str, regressed: bool, start: datetime, blue: Window, green: Window,
                kind: str, expected_high: float, observed: float) -> Detection | None:
        if regressed:
            if episode in self.open:
                self.open[episode]["good"] = 0
                return None
            metric = "p95_ms" if kind == "latency" else "error_rate"
            blue_value = blue.p95_ms if kind == "latency" else blue.errors / blue.invocations
            self.open[episode] = {"good": 0, "series": {**green.key.labels(), VARIANT: "green"}, "kind": kind}
            return Detection(
                id=episode, time=start + timedelta(seconds=green.seconds),
                series=self.open[episode]["series"], kind=kind,  # type: ignore[arg-type]
                score=min(1.0, 0.5 + (observed - expected_high) / max(observed, 1e-9)), severity="critical",
                observed={metric: observed}, expected={metric: (0.0, expected_high)},
                summary=(f"canary {green.key.model_version} of {green.key.function} regressed against "
                         f"{blue.key.model_version}: {metric} {observed:.4g} vs {blue_value:.4g} on blue"),
            )
        state = self.open.get(episode)
        if state is None:
            return None
        state["good"] += 1
        return self._clear(episode, start) if state["good"] >= self.clear_after else None

    def _clear(self, episode: str, start: datetime) -> Detection:
        state = self.open.pop(episode)
        return Detection(id=episode, time=start, series=state["series"], kind=state["kind"], score=0.0,
                         cleared=True, summary=f"canary {state['kind']} back within blue's range")

    def to_state(self) -> dict[str, Any]:
        return {"open": self.open}

    def restore(self, state: dict[str, Any]) -> None:
        self.open = dict(state.get("open", {}))
