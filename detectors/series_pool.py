"""One :class:`SeriesAnomalyDetector` per series id, with bounded memory and checkpoints.

Why a pool: the service scores tens of thousands of series (function x metric); models must
be created lazily, forgotten when a series goes idle (a function deleted or renamed), never
exceed a fixed budget, and survive a restart via :meth:`to_state` / :meth:`from_state`.
Eviction is least-recently-updated first (an ``OrderedDict`` moved to the end on each
update), so the cost per point stays ``O(1)``.
"""

from __future__ import annotations

import json
from collections import OrderedDict
from collections.abc import Callable, Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

from obsloop.detectors.series import SeriesAnomalyDetector, to_epoch

__all__ = ["SeriesDetectorPool"]

POOL_STATE_VERSION = 1


class SeriesDetectorPool:
    """Detectors keyed by series id.

    ``max_series`` bounds the number of live models (the least recently updated one is
    dropped to make room); ``idle_seconds`` drops a series whose last point is older than
    that, measured on the series' own clock (the timestamps it is fed), so replaying old
    data behaves the same as live data.

    >>> pool = SeriesDetectorPool(max_series=2)
    >>> for series in ("a", "b", "c"):
    ...     _ = pool.score_learn_one(series, 1.0, 0.0)
    >>> sorted(pool)
    ['b', 'c']
    """

    def __init__(
        self,
        max_series: int = 50_000,
        idle_seconds: float = 7 * 86_400.0,
        factory: Callable[[], SeriesAnomalyDetector] = SeriesAnomalyDetector,
    ) -> None:
        if max_series < 1:
            raise ValueError("max_series must be at least 1")
        self.max_series = max_series
        self.idle_seconds = idle_seconds
        self.factory = factory
        self._models: OrderedDict[str, SeriesAnomalyDetector] = OrderedDict()
        self.evicted = 0
        self.expired = 0

    def __len__(self) -> int:
        return len(self._models)

    def __iter__(self) -> Iterator[str]:
        return iter(self._models)

    def __contains__(self, series_id: object) -> bool:
        return series_id in self._models

    def get(self, series_id: str) -> SeriesAnomalyDetector | None:
        return self._models.get(series_id)

    def _model(self, series_id: str) -> SeriesAnomalyDetector:
        model = self._models.get(series_id)
        if model is None:
            while len(self._models) >= self.max_series:
                self._models.popitem(last=False)
                self.evicted += 1
            model = self.factory()
            self._models[series_id] = model
        else:
            self._models.move_to_end(series_id)
        return model

    def score_one(self, series_id: str, x: float, t: datetime | float) -> float:
        """Score without learning; an unknown series scores 0 (nothing to compare with)."""
        model = self._models.get(series_id)
        return 0.0 if model is None else model.score_one(x, t)

    def learn_one(self, series_id: str, x: float, t: datetime | float) -> None:
        self._model(series_id).learn_one(x, t)

    def score_learn_one(self, series_id: str, x: float, t: datetime | float, *, damped: bool = True) -> float:
        """Score then learn ``x`` for ``series_id`` (creates the model on first sight);
        ``damped=False`` skips the refractory damping (the window scorer's episodes do that job)."""
        return self._model(series_id).score_learn_one(x, t, damped=damped)

    def expire(self, now: datetime | float) -> list[str]:
        """Drop series whose last point is more than ``idle_seconds`` before ``now``."""
        cutoff = to_epoch(now) - self.idle_seconds
        # Update order is not time order across series (clocks differ), so scan them all:
        # O(live series), meant to run once per closed window, not once per point.
        stale = [sid for sid, m in self._models.items() if m.last_t < cutoff]
        for sid in stale:
            del self._models[sid]
        self.expired += len(stale)
        return stale

    def to_state(self) -> dict[str, Any]:
        """JSON-serialisable checkpoint of every live series, in least-recent-first order."""
        return {
            "version": POOL_STATE_VERSION,
            "series": {sid: m.to_state() for sid, m in self._models.items()},
        }

    def restore(self, state: dict[str, Any]) -> None:
        """Replace the live models by those of a checkpoint (keeps this pool's limits)."""
        if state.get("version") != POOL_STATE_VERSION:
            raise ValueError(f"unsupported pool state version {state.get('version')!r}")
        self._models.clear()
        for sid, s in state["series"].items():
            self._models[sid] = SeriesAnomalyDetector.from_state(s)
        while len(self._models) > self.max_series:
            self._models.popitem(last=False)
            self.evicted += 1

    @classmethod
    def from_state(cls, state: dict[str, Any], **kwargs: Any) -> SeriesDetectorPool:
        pool = cls(**kwargs)
        pool.restore(state)
        return pool

    def save(self, path: str | Path) -> None:
        """Write a checkpoint atomically (temporary file, then rename)."""
        path = Path(path)
        tmp = path.with_name(path.name + ".tmp")
        tmp.write_text(json.dumps(self.to_state(), separators=(",", ":")))
        tmp.replace(path)

    @classmethod
    def load(cls, path: str | Path, **kwargs: Any) -> SeriesDetectorPool:
        return cls.from_state(json.loads(Path(path).read_text()), **kwargs)
