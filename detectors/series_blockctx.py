"""Experimental: the context view at block scale (levels of block extremes)."""

from __future__ import annotations

_M64 = (1 << 64) - 1


class BlockContext:
    def __init__(self, block: int, levels: int = 8, order: int = 3, bits: int = 4096,
                 fill: int = 8) -> None:
        self.block, self.levels, self.order, self.bits, self.fill = block, levels, order, bits, fill
        self.log2 = bits.bit_length() - 1
        self.s = max(levels - 1, 1).bit_length()
        self.seen = bytearray(bits // 4)
        self.new = 0
        self.hist = 0
        self.nb = 0
        self.bn = 0
        self.bmin = self.bmax = self.bsum = 0.0
        self.ma = 0.0

    def _value(self, x: float) -> float:
        if self.bn == 0:
            return x
        bmin = x if x < self.bmin else self.bmin
        bmax = x if x > self.bmax else self.bmax
        ma = self.ma if self.nb else (self.bsum + x) / (self.bn + 1)
        return bmax if bmax - ma >= ma - bmin else bmin

    def _slots(self, x: float, lo: float, span: float) -> tuple[int, list[int]]:
        q = int((self._value(x) - lo) / span * self.levels) if span > 0.0 else 0
        q = 0 if q < 0 else (self.levels - 1 if q >= self.levels else q)
        h = (self.hist << self.s) | q
        order = self.order if self.order < self.nb else self.nb
        shift = 64 - self.log2
        out = []
        for k in range(1, order + 1):
            key = (h & ((1 << (self.s * (k + 1))) - 1)) | (k << 32)
            out.append(((key * 0x9E3779B97F4A7C15) & _M64) >> shift)
        return q, out

    def novelty(self, x: float, lo: float, span: float) -> float:
        if self.nb < self.order:
            return 0.0
        _, slots = self._slots(x, lo, span)
        seen, half, new = self.seen, self.bits >> 3, 0
        for idx in slots:
            byte, bit = idx >> 3, 1 << (idx & 7)
            if not (seen[byte] & bit or seen[byte + half] & bit):
                new += 1
        return new / len(slots) if slots else 0.0

    def learn(self, x: float, lo: float, span: float) -> None:
        if self.bn + 1 < self.block:
            if self.bn == 0:
                self.bmin = self.bmax = self.bsum = x
            else:
                self.bmin = min(self.bmin, x)
                self.bmax = max(self.bmax, x)
                self.bsum += x
            self.bn += 1
            return
        q, slots = self._slots(x, lo, span)
        mean = (self.bsum + x) / (self.bn + 1) if self.bn else x
        self.ma = mean if not self.nb else 0.5 * (self.ma + mean)
        self.bn = 0
        seen = self.seen
        for idx in slots:
            byte, bit = idx >> 3, 1 << (idx & 7)
            if not seen[byte] & bit:
                seen[byte] |= bit
                self.new += 1
        if self.new * self.fill >= self.bits:
            half = self.bits >> 3
            seen[half:] = seen[:half]
            seen[:half] = bytes(half)
            self.new = 0
        self.hist = ((self.hist << self.s) | q) & ((1 << (self.s * self.order)) - 1)
        self.nb += 1
