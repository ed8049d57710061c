"""The shape view of :class:`~obsloop.detectors.series.SeriesAnomalyDetector`: how far the
series' recent window of values is from every window shape it has learnt (ARTime's idea,
fuzzy adaptive resonance theory, written for a bounded state and O(1) work per point).

The series is cut into blocks of ``block`` points; a block's value is its extreme (the
larger departure, up or down, from a fast mean of the previous blocks' means: a spike must
survive the downsampling). The last ``window`` block values, each scaled to ``[0, 1]`` over
the range the caller gives (the context view's), are a point in the unit cube; a category
is a box in that cube (fuzzy ART with complement coding: a box ``[lo, hi]`` per dimension).
A window resonates with a box if the box, grown to hold it, stays within the vigilance
``rho`` (its summed width at most ``window * (1 - rho)``); the nearest resonating box grows
to hold it (fast learning), or, if none resonates, the window starts a new box (replacing
the one least recently used when all ``protos`` are taken). The novelty of a point is the
window's L1 distance to the nearest box, per dimension, over ``1 - rho``, capped at 1: 0
for a shape the series has made before, 1 for one at least a vigilance width away from
every learnt one.

Learning happens at block ends; in between, each point is scored with the block so far
(its running extreme) as the window's last value, against distances to the first
``window - 1`` dimensions computed once per block: O(``protos``) per point.
"""

from __future__ import annotations

from array import array
from typing import Any

__all__ = ["ShapeView"]


class ShapeView:
    """Bounded fuzzy-ART memory of window shapes (see the module docstring)."""

    __slots__ = ("block", "window", "protos", "rho", "bn", "bmin", "bmax", "bsum", "ma",
                 "past", "lo", "hi", "used", "clock", "pre", "nblocks", "_limit", "rel", "dmean",
                 "hold", "held", "feat", "chomp", "med")

    def __init__(self, block: int, window: int, protos: int, rho: float,
                 rel: float = 0.0) -> None:
        if block < 1 or window < 2 or protos < 1 or not 0.0 < rho < 1.0:
            raise ValueError(
                f"shape view needs block >= 1, window >= 2, protos >= 1 and 0 < rho < 1; "
                f"got {block}, {window}, {protos}, {rho}")
        self.block, self.window, self.protos, self.rho = block, window, protos, rho
        self._limit = window * (1.0 - rho)  # a box's largest summed width
        self.bn = 0  # points in the current block
        self.bmin = self.bmax = self.bsum = 0.0
        self.ma = 0.0  # fast mean of the block means (the extreme's reference)
        self.past: list[float] = []  # the last window - 1 block values, scaled, oldest first
        self.lo = array("f")  # box k's lower corner: lo[k * window : (k + 1) * window]
        self.hi = array("f")
        self.used = array("d")  # block count at box k's last win (least recent is replaced)
        self.clock = 0.0
        self.pre = array("d")  # box k's distance over the first window - 1 dimensions
        self.nblocks = 0
        self.rel = rel
        self.dmean = 0.0
        self.hold = False
        self.feat = "ext"
        self.chomp = 0.0
        self.med = 0.5
        self.held = 0.0

    def _value(self, x: float) -> float:
        """The current block's value with ``x`` in it: its larger departure from ``ma``
        (``feat`` "mean": its mean)."""
        if self.bn == 0:
            return x
        if self.feat == "mean":
            return (self.bsum + x) / (self.bn + 1)
        bmin = x if x < self.bmin else self.bmin
        bmax = x if x > self.bmax else self.bmax
        ma = self.ma if self.nblocks else (self.bsum + x) / (self.bn + 1)
        return bmax if bmax - ma >= ma - bmin else bmin

    def _features(self, vals: list[float], lo: float, span: float) -> list[float]:
        if self.feat == "shape":
            lo, hi = min(vals), max(vals)
            span = hi - lo
            if span <= 0.0:
                return [0.5] * len(vals)
        elif span <= 0.0:
            return [0.0] * len(vals)
        out = []
        for v in vals:
            z = (v - lo) / span
            out.append(0.0 if z < 0.0 else (1.0 if z > 1.0 else z))
        return out

    def _scale(self, best: float) -> float:
        if self.rel > 0.0:
            return best / (best + self.rel * self.dmean + 0.01 * self.window)
        nov = best / self._limit
        return nov if nov < 1.0 else 1.0

    def novelty(self, x: float, lo: float, span: float) -> float:
        """Novelty in ``[0, 1]`` of the window ending with ``x`` (0 until one is learnt)."""
        if not self.used or len(self.past) < self.window - 1:
            return 0.0
        if self.hold:
            if self.hold == "lag" or self.bn < self.block - 1:
                return self.held
            z = self._features([self._value(x)], lo, span)[0]
            if self.chomp > 0.0 and abs(z - self.med) < self.chomp:
                z = self.med
            win = [*self.past, z]
            return self._scale(self._nearest(win))
        pre = self.pre
        z = self._features([self._value(x)], lo, span)[0]
        w1 = self.window - 1
        blo, bhi = self.lo, self.hi
        best = 1e9
        j = w1
        for d in pre:
            a = blo[j]
            if z < a:
                d += a - z
            else:
                b = bhi[j]
                if z > b:
                    d += z - b
            if d < best:
                best = d
            j += w1 + 1
        return self._scale(best)

    def _nearest(self, win: list[float]) -> float:
        w = self.window
        blo, bhi = self.lo, self.hi
        best = 1e9
        for k in range(len(self.used)):
            base = k * w
            d = 0.0
            for j in range(w):
                z = win[j]
                a = blo[base + j]
                if z < a:
                    d += a - z
                else:
                    b = bhi[base + j]
                    if z > b:
                        d += z - b
            if d < best:
                best = d
        return best

    def learn(self, x: float, lo: float, span: float) -> None:
        """Add ``x`` to the current block; at a block end, learn the window it completes."""
        v = self._value(x)
        if self.bn == 0:
            self.bmin = self.bmax = self.bsum = x
        else:
            self.bmin = x if x < self.bmin else self.bmin
            self.bmax = x if x > self.bmax else self.bmax
            self.bsum += x
        self.bn += 1
        if self.bn < self.block:
            return
        mean = self.bsum / self.bn
        self.ma = mean if not self.nblocks else 0.5 * (self.ma + mean)
        self.bn = 0
        self.nblocks += 1
        past = self.past
        z = v if self.feat == "shape" else self._features([v], lo, span)[0]
        if self.chomp > 0.0:
            med = self.med
            self.med += 0.01 * ((1.0 if z > med else -1.0) if z != med else 0.0)
            if abs(z - med) < self.chomp:
                z = med
        past.append(z)
        w = self.window
        if len(past) == w:
            win = self._features(past, lo, span) if self.feat == "shape" else past
            self._resonate(win)
            del past[0]
        if not self.hold and len(past) == w - 1 and self.used:
            self._distances(past)

    def _resonate(self, win: list[float]) -> None:
        """Fuzzy ART step: grow the nearest box that stays within the vigilance, or start one."""
        w = self.window
        blo, bhi = self.lo, self.hi
        best_k, best_d = -1, 1e9
        min_d = 1e9
        limit = self._limit
        for k in range(len(self.used)):
            base = k * w
            d = size = 0.0
            for j in range(w):
                a, b = blo[base + j], bhi[base + j]
                z = win[j]
                size += b - a
                if z < a:
                    d += a - z
                elif z > b:
                    d += z - b
            if size + d <= limit and d < best_d:
                best_k, best_d = k, d
            if d < min_d:
                min_d = d
        self.clock += 1.0
        if self.hold and min_d < 1e9:
            self.held = self._scale(min_d)
        if min_d < 1e9:
            self.dmean += max(0.02, 1.0 / self.clock) * (min_d - self.dmean)
        if best_k < 0:
            if len(self.used) < self.protos:
                best_k = len(self.used)
                self.lo.extend(win)
                self.hi.extend(win)
                self.used.append(self.clock)
                self.pre.append(0.0)
                return
            used = self.used
            best_k = min(range(len(used)), key=used.__getitem__)
            base = best_k * w
            blo[base:base + w] = array("f", win)
            bhi[base:base + w] = array("f", win)
        elif best_d > 0.0:
            base = best_k * w
            for j in range(w):
                z = win[j]
                if z < blo[base + j]:
                    blo[base + j] = z
                elif z > bhi[base + j]:
                    bhi[base + j] = z
        self.used[best_k] = self.clock

    def _distances(self, past: list[float]) -> None:
        """Each box's distance to ``past`` over the window's first ``window - 1`` dimensions."""
        w = self.window
        blo, bhi, pre = self.lo, self.hi, self.pre
        for k in range(len(self.used)):
            base = k * w
            d = 0.0
            for j, z in enumerate(past):
                a = blo[base + j]
                if z < a:
                    d += a - z
                else:
                    b = bhi[base + j]
                    if z > b:
                        d += z - b
            pre[k] = d

    def to_list(self) -> list[Any]:
        """The state as a JSON-serialisable list (see :meth:`from_list`)."""
        return [self.bn, self.bmin, self.bmax, self.bsum, self.ma, self.nblocks, self.clock,
                list(self.past), [float(v) for v in self.lo], [float(v) for v in self.hi],
                list(self.used)]

    def load_list(self, state: list[Any]) -> None:
        """Restore :meth:`to_list` output (``ValueError`` if it does not fit the sizes)."""
        bn, bmin, bmax, bsum, ma, nblocks, clock, past, lo, hi, used = state
        w = self.window
        if (len(past) >= w or len(used) > self.protos or len(lo) != len(used) * w
                or len(hi) != len(lo)):
            raise ValueError("detector state: shape view does not match its parameters")
        self.bn, self.nblocks = int(bn), int(nblocks)
        self.bmin, self.bmax, self.bsum, self.ma, self.clock = (
            float(v) for v in (bmin, bmax, bsum, ma, clock))
        self.past = [float(v) for v in past]
        self.lo, self.hi = array("f", map(float, lo)), array("f", map(float, hi))
        self.used = array("d", map(float, used))
        self.pre = array("d", [0.0]) * len(self.used)
        if len(self.past) == w - 1 and self.used:
            self._distances(self.past)
